"""The served model: decode/training parity, accuracy through real HTTP, bad input, concurrency,
the local server's lifecycle and the predict client's errors."""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from mlctl.predict import PredictError, encode_multipart, predict_image
from mlctl.targets.local.server import LocalServer, ServerConfig, ServerError
from model.inference import MnistModel
from model.preprocess import _median_above_127, image_to_grid, normalize, pixels_to_grid
from runtime.contract import read as read_contract
from runtime.decode import InputError, decode_image, to_tensor
from runtime.settings import DEFAULTS

REPO = Path(__file__).resolve().parents[2]
CONTRACT = read_contract(REPO / "model")
PIXELS, IMAGE = CONTRACT.input("pixels"), CONTRACT.image_input
N_ACCURACY = 1000  # test images sent through each endpoint and format
ENDPOINTS = ("/predict", "/api/v1.0/predictions")


def encode(pixels: np.ndarray, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height grey pixels, with a token IDAT: what a
    decompression bomb looks like before its pixels are inflated."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width + 1) * 8)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def grid(data: bytes, **kw: object) -> np.ndarray:
    """What the MNIST model makes of posted image bytes: the runtime's decode (with the contract's
    bounds), then the package's own inversion and resizing."""
    return image_to_grid(decode_image(data, mode=IMAGE.mode, min_side=IMAGE.min_decode_side, **kw))


def array_to_pixels(features: object, max_batch: int = 64) -> np.ndarray:
    """What the MNIST model makes of posted numbers: the runtime's checks, then its scaling."""
    return pixels_to_grid(to_tensor(features, PIXELS, max_batch))


def post_raw(url: str, body: bytes, content_type: str, timeout: float = 10) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# -- decode path, no server -------------------------------------------------------------------


def test_png_decode_matches_training_preprocessing(mnist_test):
    images, _ = mnist_test
    for i in range(0, 2000, 40):
        served = normalize(grid(encode(images[i], "PNG")))
        assert torch.equal(served, normalize(images[i])), f"test image {i}"


def test_arrays_in_both_scales_give_the_training_tensor(mnist_test):
    img = mnist_test[0][7]
    assert np.array_equal(array_to_pixels(img.astype(np.int64).tolist()), img[None])
    assert np.array_equal(array_to_pixels(img.reshape(784).tolist()), img[None])
    assert np.array_equal(array_to_pixels((img / 255.0).reshape(1, 784).tolist()), img[None])
    assert np.array_equal(array_to_pixels(img.reshape(1, 1, 28, 28)), img[None])


@pytest.mark.parametrize("shape", [(16, 784), (16, 28, 28), (16, 1, 28, 28)])
def test_a_batch_in_every_accepted_shape_gives_its_images_in_order(mnist_test, shape):
    images = mnist_test[0][:16]
    assert np.array_equal(array_to_pixels(images.reshape(shape).tolist()), images)
    assert np.array_equal(array_to_pixels((images / 255.0).reshape(shape)), images)


def test_a_batch_over_the_bound_is_a_413_and_an_empty_one_a_400(mnist_test):
    images = mnist_test[0][:5]
    assert array_to_pixels(images, max_batch=5).shape == (5, 28, 28)
    with pytest.raises(InputError, match=r"a batch of 5 items; this server takes at most 4 .*MODEL_MAX_BATCH") as e:
        array_to_pixels(images, max_batch=4)
    assert e.value.status == 413
    with pytest.raises(InputError, match="holds no item") as e:
        array_to_pixels(np.zeros((0, 784)))
    assert e.value.status == 400


@pytest.mark.parametrize(
    "payload, message",
    [
        ([[0.5]], "accepted shapes"),
        (np.full((28, 28), 300), "0..255"),
        (np.full((28, 28), -0.5), "0..255"),
        (np.full((28, 28), np.nan), "NaN"),
        ({"a": 1}, "numbers"),
    ],
)
def test_bad_arrays_are_rejected(payload, message):
    with pytest.raises(InputError, match=message):
        array_to_pixels(payload)


def test_dark_on_light_photo_is_inverted_and_resized(mnist_test):
    digit = mnist_test[0][0]
    big = np.asarray(Image.fromarray(255 - digit).resize((112, 84)), dtype=np.uint8)  # 4:3
    out = grid(encode(big, "JPEG", quality=95))
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out[0].max() < 40 and out[-1].max() < 40, "the padded, inverted background is black"
    assert out.max() > 200, "the strokes came out light"


def test_transparent_canvas_strokes_survive_compositing():
    rgba = np.zeros((56, 56, 4), dtype=np.uint8)
    rgba[10:46, 26:30] = (20, 20, 20, 255)  # dark stroke on a fully transparent canvas
    buf = encode(rgba, "PNG")
    out = grid(buf)
    assert out[:, 13:15].max() > 200 and out[:, :8].max() < 20


def test_sixteen_bit_and_palette_images_decode():
    wide = (np.arange(28 * 28, dtype=np.uint16).reshape(28, 28) * 80).astype(np.uint16)
    out16 = grid(encode(wide, "PNG"))
    assert out16.dtype == np.uint8 and out16.max() > 200
    pal = Image.fromarray(np.eye(28, dtype=np.uint8) * 255).convert("P")
    buf = io.BytesIO()
    pal.save(buf, format="GIF")
    assert grid(buf.getvalue()).max() == 255


def test_decompression_bomb_is_rejected_from_the_header_before_decoding(monkeypatch):
    def no_decoding(self: object) -> None:
        raise AssertionError("the pixels were decoded: the limit must be checked from the header")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(InputError) as e:
        grid(png_header(30_000, 30_000))
    assert e.value.status == 413 and "too many pixels" in e.value.message


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is edited to claim width × height."""
    data = bytearray(encode(np.zeros((8, 8), dtype=np.uint8), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_jpeg_fast_path_gives_pillows_pixels(mnist_test, monkeypatch):
    """libjpeg-turbo via simplejpeg (the server's JPEG path) and Pillow agree on every pixel for
    grey, colour and CMYK JPEGs of MNIST digits (CMYK is left to Pillow), at 28×28 and scaled."""
    from runtime import decode as decode_module

    assert decode_module.simplejpeg is not None, "simplejpeg is a serving requirement"
    images = mnist_test[0]
    bodies = []
    for i in range(0, 1000, 50):
        rgb = Image.fromarray(images[i]).convert("RGB")
        for img, quality in ((Image.fromarray(images[i]), 90), (rgb, 75), (rgb.convert("CMYK"), 90)):
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=quality)
            bodies.append(buf.getvalue())
    fast = [grid(b) for b in bodies]
    monkeypatch.setattr(decode_module, "simplejpeg", None)
    slow = [grid(b) for b in bodies]
    for n, (a, b) in enumerate(zip(fast, slow, strict=True)):
        assert np.array_equal(a, b), f"JPEG {n}"
    for i in range(0, 1000, 50):  # a large photo of a digit: decoded at a reduced scale, still right
        big = encode(np.asarray(Image.fromarray(images[i]).resize((600, 600))), "JPEG")
        assert np.abs(grid(big).astype(int) - images[i]).mean() < 8, f"test image {i}"


def test_jpeg_bomb_is_rejected_from_the_header_and_corrupt_jpegs_are_worded_by_pillow(monkeypatch):
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the pixels were decoded: the limit must be checked from the header")

    from runtime import decode as decode_module

    monkeypatch.setattr(decode_module.simplejpeg, "decode_jpeg", no_decoding)
    with pytest.raises(InputError) as e:
        grid(jpeg_claiming(30_000, 30_000))
    assert e.value.status == 413 and "30000×30000" in e.value.message
    monkeypatch.undo()
    whole = encode(np.full((64, 64), 200, dtype=np.uint8), "JPEG")
    with pytest.raises(InputError, match="(?i)truncated"):
        grid(whole[: len(whole) // 2])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 255), min_size=1, max_size=200), st.integers(0, 255))
def test_background_test_equals_numpy_median(values, shift):
    # Values bunched around 127/128 as well as spread out: the boundary is where it could differ.
    for arr in (np.array(values, np.uint8), np.clip(np.array(values) // 8 + 112 + shift % 8, 0, 255).astype(np.uint8)):
        assert _median_above_127(arr) == bool(np.median(arr) > 127), arr


# -- the wrapper's metrics store ------------------------------------------------------------

# Runs in the serving environment (seldon_core is not installed in the test one). The Manager
# lock and dict are swapped for recorders, so the script sees every access the update makes.
_METRICS_SCRIPT = """
import json, sys
from seldon_core.metrics import SeldonMetrics
from runtime.wrapper_fixes import skip_empty_metric_updates

class Recorder(dict):
    calls = 0
    def get(self, *a):
        Recorder.calls += 1
        return dict.get(self, *a)
    def __setitem__(self, k, v):
        Recorder.calls += 1
        dict.__setitem__(self, k, v)
    def __enter__(self):
        Recorder.calls += 1
    def __exit__(self, *exc):
        return False

m = SeldonMetrics()
m._lock, m.data = Recorder(), Recorder()
first, again = skip_empty_metric_updates(), skip_empty_metric_updates()
m.update([], "predict")
empty_calls = Recorder.calls
m.update([{"type": "COUNTER", "key": "model_predictions_total", "value": 3, "tags": {"label": "7"}}], "predict")
text, _ = m.generate_metrics()
print(json.dumps({"first": first, "again": again, "empty_calls": empty_calls,
                  "calls": Recorder.calls, "text": text}))
"""


@pytest.mark.slow
def test_empty_metric_updates_skip_the_manager_and_real_ones_still_count(serve_bin):
    python = Path(serve_bin).with_name("python")
    p = subprocess.run([str(python), "-c", _METRICS_SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert (out["first"], out["again"]) == (True, False), "installs once, idempotently"
    assert out["empty_calls"] == 0, "an empty update still went to the Manager"
    assert out["calls"] > 0
    assert "model_predictions_total{" in out["text"] and 'label="7"' in out["text"]
    assert out["text"].split('label="7"')[1].split("\n")[0].rstrip().endswith("3.0")


_GRPC_SCRIPT = r"""
import json, sys
import grpc
from seldon_core.proto import prediction_pb2, prediction_pb2_grpc

stub = prediction_pb2_grpc.ModelStub(grpc.insecure_channel(sys.argv[1]))
png = open(sys.argv[2], "rb").read()
# The gRPC process loads the model beside the REST workers and may listen after REST answers:
# the first call waits for the channel (up to its timeout) instead of failing at once.
answer = stub.Predict(prediction_pb2.SeldonMessage(binData=png), timeout=120, wait_for_ready=True)
try:
    stub.Predict(prediction_pb2.SeldonMessage(binData=b"not an image"), timeout=20)
    bad = None
except grpc.RpcError as e:
    bad = [e.code().name, e.details()]
print(json.dumps({"names": list(answer.data.names), "values": list(answer.data.tensor.values), "bad": bad}))
"""


@pytest.mark.slow
def test_grpc_answers_on_its_port_and_rejects_bad_input(trained_model_dir, serve_bin):
    """The operator declares gRPC on 9500; with GRPC_WORKERS=1 the wrapper's gRPC server answers
    there with the REST side's scores, and bad input gets INVALID_ARGUMENT, not UNKNOWN."""
    cfg = ServerConfig(model_dir=trained_model_dir, workers=1, extra_env={"GRPC_WORKERS": "1"})
    sample = REPO / "model" / "examples" / "digit-7.png"
    label = 7  # model/model.yaml: the example digit-7.png
    with LocalServer(cfg) as srv:
        rest = predict_image(srv.url, sample)
        python = Path(serve_bin).with_name("python")
        p = subprocess.run(
            [str(python), "-c", _GRPC_SCRIPT, f"127.0.0.1:{srv.cfg.grpc_port}", str(sample)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["names"] == [f"t:{i}" for i in range(10)]
    assert int(np.argmax(out["values"])) == label == rest.cls
    assert np.allclose(out["values"], rest.scores, atol=1e-4)  # the log-probabilities as served
    assert out["bad"][0] == "INVALID_ARGUMENT" and "not an image" in out["bad"][1]


# -- the real server --------------------------------------------------------------------------


@pytest.mark.slow
def test_first_requests_after_start_are_answered(trained_model_dir, serve_bin):
    """Every worker's first prediction answers (the fork deadlock hangs exactly there)."""
    cfg = ServerConfig(model_dir=trained_model_dir, workers=2, threads=1)
    with LocalServer(cfg, readiness=("/health/ping",)) as srv:
        img = encode(np.zeros((28, 28), dtype=np.uint8), "PNG")
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: predict_image(srv.url, img, timeout=20), range(8)))
    assert all(len(r.scores) == 10 for r in results)


ACCURACY_SAMPLE = np.arange(0, 10_000, 10_000 // N_ACCURACY)


@pytest.fixture(scope="module")
def in_process_classes(trained_model_dir, mnist_test) -> np.ndarray:
    """The class the served network (default settings: int8) gives each ACCURACY_SAMPLE image in
    this process, one image at a time as the server sees them; checks the model is a good one
    by the int8 accuracy training recorded (test_quantize.py holds it to the rebuilt network)."""
    meta = json.loads((trained_model_dir / "metadata.json").read_text())
    assert meta["int8"]["test_accuracy"] >= 0.985, "the test model is not a ~99 % model"
    model = MnistModel()
    model.load(trained_model_dir)
    return np.array([int(model.predict({"pixels": mnist_test[0][i : i + 1]}).argmax()) for i in ACCURACY_SAMPLE])


@pytest.mark.slow
@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_accuracy_through_http(server, mnist_test, in_process_classes, endpoint, fmt):
    """HTTP adds no error: a lossless PNG gets the in-process network's own answer for every
    image, a JPEG almost always (its compression moves a few borderline digits). A fixed
    sample's accuracy says more about the sample than the server: every 10th test image is
    harder than the rest for these models (98.3-98.6 % against 99.0-99.1 % on all 10,000)."""
    images, labels = mnist_test
    idx = ACCURACY_SAMPLE
    served = np.array([predict_image(server.url, encode(images[i], fmt), endpoint=endpoint).cls for i in idx])
    expected = in_process_classes
    agree = float((served == expected).mean())
    accuracy, expected_accuracy = float((served == labels[idx]).mean()), float((expected == labels[idx]).mean())
    if fmt == "PNG":
        assert agree == 1.0, f"{agree:.1%} of answers via PNG on {endpoint} are the network's"
    else:
        assert agree >= 0.99, f"{agree:.1%} of answers via JPEG on {endpoint} are the network's"
        assert accuracy >= expected_accuracy - 0.005, (accuracy, expected_accuracy)
    assert accuracy >= 0.98, f"{accuracy:.1%} via {fmt} on {endpoint}"


@pytest.mark.slow
def test_response_is_the_tutorial_shape_plus_tags(server, mnist_test):
    p = predict_image(server.url, encode(mnist_test[0][0], "PNG"))
    assert p.raw["data"]["names"] == [f"t:{i}" for i in range(10)]
    assert p.raw["data"]["tensor"]["shape"] == [1, 10]
    assert abs(sum(np.exp(p.scores)) - 1) < 1e-5  # log-probabilities
    tags = p.raw["meta"]["tags"]
    assert tags["predicted_class"] == p.cls == int(mnist_test[1][0])
    meta = json.loads((server.cfg.model_dir / "metadata.json").read_text())
    assert tags["model_sha256"] == meta["sha256"]
    assert tags["precision"] == "int8", "int8 is the default"
    assert "metrics" not in p.raw["meta"]


@pytest.mark.slow
def test_float32_on_request_and_when_the_artifact_has_no_int8_ranges(trained_model_dir, server, mnist_test, tmp_path):
    bodies = [encode(mnist_test[0][i], "PNG") for i in range(20)]
    int8 = [predict_image(server.url, b) for b in bodies]
    old = tmp_path / "model"  # an artifact from before int8 serving: no "int8" in its metadata
    old.mkdir()
    (old / "model.pt").write_bytes((trained_model_dir / "model.pt").read_bytes())
    meta = json.loads((trained_model_dir / "metadata.json").read_text())
    meta.pop("int8")
    (old / "metadata.json").write_text(json.dumps(meta))
    for model_dir, precision, logged in (
        (trained_model_dir, "float32", None),
        (old, "int8", "serving float32, not int8"),
    ):
        cfg = ServerConfig(model_dir=model_dir, workers=1, precision=precision)
        with LocalServer(cfg) as srv:
            answers = [predict_image(srv.url, b) for b in bodies]
            log = srv.log_text()
        assert {a.raw["meta"]["tags"]["precision"] for a in answers} == {"float32"}
        for a, q in zip(answers, int8, strict=True):
            assert a.cls == q.cls
            np.testing.assert_allclose(np.exp(a.scores), np.exp(q.scores), atol=0.02)  # as probabilities
        assert logged is None or logged in log, log[-2000:]


@pytest.mark.slow
def test_json_ndarray_input_matches_the_image_path(server, mnist_test):
    img = mnist_test[0][3]
    body = json.dumps({"data": {"ndarray": (img / 255.0).tolist()}}).encode()
    status, answer = post_raw(server.url + "/api/v1.0/predictions", body, "application/json")
    assert status == 200
    by_image = predict_image(server.url, encode(img, "PNG")).raw["data"]["tensor"]["values"]
    np.testing.assert_allclose(answer["data"]["ndarray"][0], by_image, atol=1e-5)


@pytest.mark.slow
def test_a_json_batch_is_answered_row_by_row_as_single_images_are(server, mnist_test):
    images, labels = mnist_test
    batch = images[100:132]
    body = json.dumps({"data": {"ndarray": batch.reshape(32, 784).tolist()}}).encode()
    status, answer = post_raw(server.url + "/api/v1.0/predictions", body, "application/json")
    assert status == 200, answer
    rows = np.asarray(answer["data"]["ndarray"])
    assert rows.shape == (32, 10)
    singles = [predict_image(server.url, encode(img, "PNG")).raw["data"]["tensor"]["values"] for img in batch]
    np.testing.assert_allclose(rows, np.asarray(singles).reshape(32, 10), atol=1e-5)
    assert answer["meta"]["tags"]["predicted_classes"] == rows.argmax(1).tolist()
    assert (rows.argmax(1) == labels[100:132]).mean() >= 0.95
    # The tensor form, N×1×28×28, answers a tensor N×10.
    tensor = {"shape": [4, 1, 28, 28], "values": images[:4].ravel().tolist()}
    status, answer = post_raw(
        server.url + "/api/v1.0/predictions", json.dumps({"data": {"tensor": tensor}}).encode(), "application/json"
    )
    assert status == 200 and answer["data"]["tensor"]["shape"] == [4, 10]


@pytest.mark.slow
def test_a_batch_over_the_servers_bound_is_refused_and_the_server_goes_on(server, mnist_test):
    images, labels = mnist_test
    too_many = DEFAULTS.max_batch + 1
    body = json.dumps({"data": {"ndarray": np.zeros((too_many, 784), np.uint8).tolist()}}).encode()
    status, answer = post_raw(server.url + "/api/v1.0/predictions", body, "application/json")
    assert status == 413 and f"at most {DEFAULTS.max_batch}" in answer["status"]["info"]
    assert predict_image(server.url, encode(images[5], "PNG")).cls == int(labels[5])


def _bad_requests(tmp_jpeg: bytes) -> list[tuple[str, bytes, str, int, str]]:
    mp = lambda field, data: encode_multipart(field, "x.bin", data)  # noqa: E731
    cases = [
        ("empty body", *mp("binData", b""), 400, "empty image"),
        ("not an image", *mp("binData", b"hello, world" * 10), 400, "not an image"),
        ("truncated jpeg", *mp("binData", tmp_jpeg[: len(tmp_jpeg) // 2]), 400, "truncated"),
        ("bomb", *mp("binData", png_header(30_000, 30_000)), 413, "too many pixels"),
        ("too many bytes", *mp("binData", b"\xff" * (2 * 1024 * 1024)), 413, "too large"),
        ("wrong field", *mp("file", tmp_jpeg), 400, "binData"),
        ("malformed json", b'{"data": {"ndarray": [1, 2', "application/json", 400, "JSON"),
        ("wrong shape", b'{"data": {"ndarray": [[1, 2]]}}', "application/json", 400, "shape"),
        ("bad tensor", b'{"data": {"tensor": {"shape": [1, 5], "values": [1]}}}', "application/json", 400, "reshape"),
        ("no data", b'{"foo": 1}', "application/json", 400, "Invalid request"),
        (
            "deep json",
            b'{"data": {"ndarray": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}",
            "application/json",
            400,
            "nests too deeply",
        ),
        (
            "malformed json field",
            b"json=%7B%22data",
            "application/x-www-form-urlencoded",
            400,
            "json field is not JSON",
        ),
        ("deep json field", b"json=" + b"%5B" * 50_000, "application/x-www-form-urlencoded", 400, "nests too deeply"),
        (
            "bad json field data",
            b"json=%7B%22data%22%3A%7B%22ndarray%22%3A%5B%5B1%2C2%5D%5D%7D%7D",
            "application/x-www-form-urlencoded",
            400,
            "shape",
        ),
    ]
    return cases


@pytest.mark.slow
def test_bad_input_gets_a_4xx_json_error_and_the_worker_survives(server, mnist_test):
    images, labels = mnist_test
    jpeg = encode(np.asarray(Image.fromarray(images[1]).resize((200, 200))), "JPEG")
    good = encode(images[2], "PNG")
    for name, body, ctype, status, message in _bad_requests(jpeg):
        got, answer = post_raw(server.url + "/api/v1.0/predictions", body, ctype)
        assert (got, name) == (status, name), answer
        assert message.lower() in answer["status"]["info"].lower(), (name, answer)
        assert predict_image(server.url, good).cls == int(labels[2]), f"after {name}"


@pytest.mark.slow
def test_concurrent_requests_give_the_sequential_answers(server, mnist_test):
    images = mnist_test[0]
    bodies = [encode(images[i], "JPEG") for i in range(48)]
    sequential = [predict_image(server.url, b).raw["data"]["tensor"]["values"] for b in bodies]
    jobs = [i % len(bodies) for i in range(16 * 12)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: (i, predict_image(server.url, bodies[i]).raw), jobs))
    for i, raw in answers:
        np.testing.assert_allclose(raw["data"]["tensor"]["values"], sequential[i], atol=1e-6)
        assert raw["meta"]["tags"]["predicted_class"] == int(np.argmax(sequential[i]))


@pytest.mark.slow
def test_health_metadata_and_metrics_endpoints(server, mnist_test):
    predict_image(server.url, encode(mnist_test[0][0], "PNG"))
    with urllib.request.urlopen(server.url + "/health/status", timeout=5) as r:
        assert json.loads(r.read())["jsonData"]["status"] == "ok"
    with urllib.request.urlopen(server.url + "/metadata", timeout=5) as r:
        meta = json.loads(r.read())
    assert meta["name"] == "model" and meta["outputs"][0]["schema"]["shape"] == [-1, 10]
    assert {"messagetype": "ndarray", "schema": {"shape": [-1, 28, 28]}} in meta["inputs"]
    assert meta["custom"]["max_batch"] == str(DEFAULTS.max_batch)
    with urllib.request.urlopen(server.metrics_url, timeout=5) as r:
        text = r.read().decode()
    assert f'label="{int(mnist_test[1][0])}"' in text and "model_predict_ms_total" in text


@pytest.mark.slow
def test_a_tampered_artifact_stops_the_server_with_its_log(trained_model_dir, serve_bin, tmp_path):
    bad = tmp_path / "model"
    bad.mkdir()
    (bad / "model.pt").write_bytes((trained_model_dir / "model.pt").read_bytes() + b"x")
    (bad / "metadata.json").write_text((trained_model_dir / "metadata.json").read_text())
    with pytest.raises(ServerError, match="SHA-256 does not match metadata.json"):
        LocalServer(ServerConfig(model_dir=bad, workers=1), start_timeout=60).start()


@pytest.mark.slow
def test_weights_other_than_model_sha256_are_never_served(trained_model_dir, serve_bin):
    """MODEL_SHA256 names the weights the deployment means; a consistent artifact of other
    weights at MODEL_URI stops every worker at start, and the log says both digests."""
    actual = json.loads((trained_model_dir / "metadata.json").read_text())["sha256"]
    expected = "ab" * 32
    cfg = ServerConfig(model_dir=trained_model_dir, workers=1, extra_env={"MODEL_SHA256": expected})
    with pytest.raises(ServerError) as failed:
        LocalServer(cfg, start_timeout=60).start()
    assert actual in str(failed.value) and expected in str(failed.value)
    ok = ServerConfig(model_dir=trained_model_dir, workers=1, extra_env={"MODEL_SHA256": actual.upper()})
    with LocalServer(ok, start_timeout=60) as srv:
        assert (
            predict_image(srv.url, encode(np.zeros((28, 28), dtype=np.uint8), "PNG")).raw["meta"]["tags"][
                "model_sha256"
            ]
            == actual
        )


def test_server_refuses_a_folder_without_metadata(tmp_path):
    with pytest.raises(ServerError, match="metadata.json"):
        LocalServer(ServerConfig(model_dir=tmp_path)).start()


# -- the client alone -------------------------------------------------------------------------


def test_predict_against_a_dead_url_says_connection_refused():
    from mlctl.tools import free_port

    with pytest.raises(PredictError, match="connection refused") as e:
        predict_image(f"http://127.0.0.1:{free_port()}", b"\x89PNG", timeout=2)
    assert e.value.hint


def test_predict_client_reports_an_unreadable_file(tmp_path: Path):
    with pytest.raises(PredictError, match="cannot read"):
        predict_image("http://127.0.0.1:9", tmp_path / "missing.png")


@pytest.mark.slow
def test_a_bad_setting_stops_the_server_naming_its_variable(trained_model_dir, serve_bin):
    """Settings come from the environment only (runtime/settings.py), checked before any worker."""
    cfg = ServerConfig(model_dir=trained_model_dir, workers=1, extra_env={"MODEL_PRECISION": "fp16"})
    with pytest.raises(ServerError, match=re.escape("MODEL_PRECISION='fp16': expected one of int8, float32")):
        LocalServer(cfg, start_timeout=60).start()
