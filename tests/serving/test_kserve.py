"""The KServe runtime (runtime/kserve_server.py) as a real server: `python -m runtime.kserve_server`
from .venv-kserve on loopback with 2 spawned workers, started once for the module.

Accuracy through every request form, the same answers as the Seldon server, a V2 client that is
not ours (tritonclient), every bad input a 4xx JSON error with the server still right afterwards,
the metadata, health and metrics endpoints, and the artifact checks that stop it. Skipped only
when .venv-kserve is missing (scripts/setup.sh makes it; CI always has it).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from PIL import Image

from mlctl.predict import predict_image
from mlctl.targets.local.server import LocalServer, ServerConfig, ServerError, server_argv, server_env
from mlctl.tools import free_port
from runtime.settings import DEFAULTS, REQUEST_OVERHEAD_BYTES
from tests.serving.test_serving import encode, png_header  # the Seldon tests' image helpers

pytestmark = pytest.mark.slow

MODEL = "model"  # ServerConfig's default model name
V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"
BATCH = DEFAULTS.max_batch
N_ACCURACY = 5000  # every second test image, through each of five request forms

OUTPUT_NAMES = tuple(f"t:{i}" for i in range(10))
"""Seldon's column names, which the KServe answers carry too."""


def torch_version() -> str:
    from importlib.metadata import version

    return version("torch")


def post(url: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:
    """POST; (status, headers, body) for any answer, errors included."""
    req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def post_json(url: str, payload: Any) -> tuple[int, Any]:
    status, _, body = post(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    return status, json.loads(body)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def v2_rows(answer: dict) -> np.ndarray:
    (output,) = answer["outputs"]
    assert output["name"] == "t" and output["datatype"] == "FP32"
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


def binary_request(tensors: list[tuple[dict, bytes]], extra: dict | None = None) -> tuple[bytes, dict[str, str]]:
    """An OIP binary-extension body: the JSON header, then each tensor's bytes."""
    inputs = [{**spec, "parameters": {"binary_data_size": len(raw)}} for spec, raw in tensors]
    header = json.dumps({"inputs": inputs, **(extra or {})}).encode()
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    return header + b"".join(raw for _, raw in tensors), headers


def bytes_tensor(items: list[bytes]) -> bytes:
    """OIP's binary BYTES layout: each element's 4-byte little-endian length, then its bytes."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def batches(indices: list[int]) -> list[list[int]]:
    return [indices[i : i + BATCH] for i in range(0, len(indices), BATCH)]


# -- the request forms --------------------------------------------------------------------------
# Each takes the server's URL and a batch of uint8 images and returns the (N, 10) log-probabilities.


def via_v1_b64_png(url: str, images: np.ndarray) -> np.ndarray:
    status, answer = post_json(url + V1, {"instances": [{"b64": b64(encode(img, "PNG"))} for img in images]})
    assert status == 200, answer
    return np.asarray(answer["predictions"], dtype=np.float32)


def via_v2_json_bytes(url: str, images: np.ndarray) -> np.ndarray:
    data = [b64(encode(img, "PNG")) for img in images]
    status, answer = post_json(
        url + V2, {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(data)], "data": data}]}
    )
    assert status == 200, answer
    return v2_rows(answer)


def via_v2_binary_bytes(url: str, images: np.ndarray) -> np.ndarray:
    items = [encode(img, "PNG") for img in images]
    body, headers = binary_request(
        [({"name": "image", "datatype": "BYTES", "shape": [len(items)]}, bytes_tensor(items))]
    )
    status, _, raw = post(url + V2, body, headers)
    assert status == 200, raw[:500]
    return v2_rows(json.loads(raw))


def via_v2_uint8(url: str, images: np.ndarray) -> np.ndarray:
    tensor = {"name": "pixels", "datatype": "UINT8", "shape": [len(images), 28, 28], "data": images.ravel().tolist()}
    status, answer = post_json(url + V2, {"inputs": [tensor]})
    assert status == 200, answer
    return v2_rows(answer)


def via_v2_fp32(url: str, images: np.ndarray) -> np.ndarray:
    values = (images.reshape(len(images), 784) / 255.0).astype(np.float32)
    tensor = {"name": "pixels", "datatype": "FP32", "shape": [len(images), 784], "data": values.ravel().tolist()}
    status, answer = post_json(url + V2, {"inputs": [tensor]})
    assert status == 200, answer
    return v2_rows(answer)


FORMS = {
    "v1-b64-png": via_v1_b64_png,
    "v2-json-bytes": via_v2_json_bytes,
    "v2-binary-bytes": via_v2_binary_bytes,
    "v2-uint8": via_v2_uint8,
    "v2-fp32-784": via_v2_fp32,
}


@pytest.fixture(scope="module")
def kserve_answers(kserve_server, mnist_test) -> dict[str, np.ndarray]:
    """Every request form's (N_ACCURACY, 10) log-probabilities for the same test images."""
    images = mnist_test[0]
    indices = list(range(0, 10_000, 10_000 // N_ACCURACY))
    out = {}
    with ThreadPoolExecutor(4) as pool:  # both workers busy, as a loaded server would be
        for name, form in FORMS.items():
            rows = pool.map(lambda idx, form=form: form(kserve_server.url, images[idx]), batches(indices))
            out[name] = np.concatenate(list(rows))
    return out


def test_accuracy_through_every_request_form(kserve_answers, mnist_test):
    labels = mnist_test[1][:: 10_000 // N_ACCURACY]
    for name, rows in kserve_answers.items():
        assert rows.shape == (N_ACCURACY, 10), name
        accuracy = float((rows.argmax(1) == labels).mean())
        assert accuracy >= 0.985, f"{name}: {accuracy:.4f}"
        assert np.allclose(np.exp(rows).sum(1), 1, atol=1e-4), f"{name}: not log-probabilities"


def test_every_request_form_gives_the_same_answers(kserve_answers):
    # A 28×28 PNG decodes to exactly its pixels and x/255 scales back exactly: one input grid.
    reference = kserve_answers["v2-uint8"]
    for name, rows in kserve_answers.items():
        np.testing.assert_allclose(rows, reference, atol=1e-5, err_msg=name)


def test_the_seldon_server_gives_the_same_classes_and_scores(kserve_answers, server, mnist_test):
    images = mnist_test[0][:: 10_000 // N_ACCURACY]
    seldon = []
    for start in range(0, N_ACCURACY, BATCH):
        body = json.dumps({"data": {"ndarray": images[start : start + BATCH].reshape(-1, 784).tolist()}}).encode()
        status, _, raw = post(server.url + "/api/v1.0/predictions", body, {"Content-Type": "application/json"})
        assert status == 200, raw[:300]
        seldon.append(np.asarray(json.loads(raw)["data"]["ndarray"], dtype=np.float32))
    seldon_rows = np.concatenate(seldon)
    kserve_rows = kserve_answers["v1-b64-png"]
    assert (seldon_rows.argmax(1) == kserve_rows.argmax(1)).all()
    np.testing.assert_allclose(kserve_rows, seldon_rows, atol=1e-4)


def test_v2_answer_names_its_columns_and_its_weights(kserve_server, trained_model_dir, mnist_test):
    sha = json.loads((trained_model_dir / "metadata.json").read_text())["sha256"]
    status, answer = post_json(
        kserve_server.url + V2,
        {
            "id": "req-7",
            "inputs": [
                {"name": "pixels", "datatype": "UINT8", "shape": [1, 784], "data": mnist_test[0][0].ravel().tolist()}
            ],
        },
    )
    assert status == 200, answer
    assert answer["id"] == "req-7" and answer["model_name"] == MODEL and answer["model_version"] == sha[:12]
    assert answer["parameters"] == {"model_sha256": sha, "precision": "int8", "torch": torch_version()}
    assert answer["outputs"][0]["parameters"]["names"] == ",".join(OUTPUT_NAMES)
    assert answer["outputs"][0]["parameters"]["labels"] == ",".join(str(d) for d in range(10))
    assert answer["outputs"][0]["shape"] == [1, 10]
    # mlctl's own client reads the same answer (its v2 and v1 protocols).
    png = encode(mnist_test[0][0], "PNG")
    for protocol in ("v2", "v1"):
        p = predict_image(kserve_server.url, png, protocol=protocol, model=MODEL)
        assert p.cls == int(mnist_test[1][0]), protocol
    assert predict_image(kserve_server.url, png, protocol="v2", model=MODEL).model_sha256 == sha


def test_binary_data_output_is_honoured(kserve_server, mnist_test):
    images = mnist_test[0][:5]
    tensor = {"name": "pixels", "datatype": "UINT8", "shape": [5, 784], "data": images.ravel().tolist()}
    body = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    status, headers, raw = post(kserve_server.url + V2, body, {"Content-Type": "application/json"})
    assert status == 200, raw[:300]
    json_length = int(headers["inference-header-content-length"])
    header = json.loads(raw[:json_length])
    (output,) = header["outputs"]
    assert "data" not in output and output["parameters"]["binary_data_size"] == 5 * 10 * 4
    rows = np.frombuffer(raw[json_length:], dtype="<f4").reshape(5, 10)
    np.testing.assert_allclose(rows, via_v2_uint8(kserve_server.url, images), atol=1e-6)


def test_tritonclient_gets_the_right_classes(kserve_server, mnist_test):
    import tritonclient.http as triton

    images, labels = mnist_test[0][:256], mnist_test[1][:256]
    client = triton.InferenceServerClient(kserve_server.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
        metadata = client.get_model_metadata(MODEL)
        assert metadata["platform"] == "pytorch"
        got_bytes, got_uint8, got_json = [], [], []
        for start in range(0, 256, BATCH):
            batch = images[start : start + BATCH]
            pngs = triton.InferInput("image", [len(batch)], "BYTES")
            pngs.set_data_from_numpy(
                np.array([encode(img, "PNG") for img in batch], dtype=np.object_), binary_data=True
            )
            result = client.infer(MODEL, [pngs])  # no outputs named: tritonclient asks for binary ones
            assert result.get_output("t")["parameters"]["binary_data_size"] == len(batch) * 40
            got_bytes.append(result.as_numpy("t"))
            pixels = triton.InferInput("pixels", [len(batch), 28, 28], "UINT8")
            pixels.set_data_from_numpy(batch, binary_data=True)
            json_out = triton.InferRequestedOutput("t", binary_data=False)
            result = client.infer(MODEL, [pixels], outputs=[json_out])
            assert "data" in result.get_output("t")
            got_uint8.append(result.as_numpy("t"))
            plain = triton.InferInput("pixels", [len(batch), 784], "FP32")  # all-JSON, no Content-Type
            plain.set_data_from_numpy((batch.reshape(-1, 784) / 255.0).astype(np.float32), binary_data=False)
            got_json.append(client.infer(MODEL, [plain], outputs=[json_out]).as_numpy("t"))
        for name, got in (("BYTES", got_bytes), ("UINT8", got_uint8), ("FP32 JSON", got_json)):
            predicted = np.concatenate(got).argmax(1)
            assert (predicted == labels).mean() >= 0.97, name
        np.testing.assert_allclose(np.concatenate(got_bytes), np.concatenate(got_uint8), atol=1e-5)
        with pytest.raises(Exception, match=r"\[400\].*not an image"):
            junk = triton.InferInput("image", [1], "BYTES")
            junk.set_data_from_numpy(np.array([b"junk" * 10], dtype=np.object_), binary_data=True)
            client.infer(MODEL, [junk])
    finally:
        client.close()


# Runs in .venv-kserve (the test environment has no gRPC stubs): kserve's own OIP gRPC messages.
_GRPC_SCRIPT = r"""
import io, json, struct, sys
import grpc
import numpy as np
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc as pb_grpc

stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(sys.argv[1]))
pixels = np.frombuffer(open(sys.argv[2], "rb").read(), np.uint8).reshape(-1, 784)
png = open(sys.argv[3], "rb").read()
Tensor = pb.ModelInferRequest.InferInputTensor

def infer(tensor, raw=()):
    request = pb.ModelInferRequest(model_name="model", inputs=[tensor], raw_input_contents=list(raw))
    r = stub.ModelInfer(request, timeout=20)
    out = r.outputs[0]
    values = out.contents.fp32_contents or np.frombuffer(r.raw_output_contents[0], "<f4")
    return {"rows": np.asarray(values).reshape(list(out.shape)).tolist(), "names": out.parameters["names"].string_param}

answers = {
    "uint8": infer(Tensor(name="pixels", datatype="UINT8", shape=list(pixels.shape),
                          contents=pb.InferTensorContents(uint_contents=pixels.ravel().tolist()))),
    "bytes": infer(Tensor(name="image", datatype="BYTES", shape=[1],
                          contents=pb.InferTensorContents(bytes_contents=[png]))),
    "raw bytes": infer(Tensor(name="image", datatype="BYTES", shape=[1]), [struct.pack("<I", len(png)) + png]),
}
try:
    infer(Tensor(name="image", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"junk"])))
    bad = None
except grpc.RpcError as e:
    bad = [e.code().name, e.details()]
ready = stub.ModelReady(pb.ModelReadyRequest(name="model"), timeout=20).ready
print(json.dumps({"answers": answers, "bad": bad, "ready": ready}))
"""


def test_grpc_answers_as_rest_does(kserve_server, kserve_bin, mnist_test, tmp_path):
    images, labels = mnist_test[0][:8], mnist_test[1][:8]
    (tmp_path / "pixels.bin").write_bytes(images.tobytes())
    (tmp_path / "digit.png").write_bytes(encode(images[0], "PNG"))
    p = subprocess.run(
        [
            kserve_bin,
            "-c",
            _GRPC_SCRIPT,
            f"127.0.0.1:{kserve_server.cfg.grpc_port}",
            *(str(tmp_path / n) for n in ("pixels.bin", "digit.png")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["ready"] is True
    rest = via_v2_uint8(kserve_server.url, images)
    np.testing.assert_allclose(out["answers"]["uint8"]["rows"], rest, atol=1e-5)
    assert np.argmax(out["answers"]["uint8"]["rows"], 1).tolist() == labels.tolist()
    for form in ("bytes", "raw bytes"):
        np.testing.assert_allclose(out["answers"][form]["rows"], rest[:1], atol=1e-5, err_msg=form)
    assert {a["names"] for a in out["answers"].values()} == {",".join(OUTPUT_NAMES)}
    assert out["bad"][0] == "INVALID_ARGUMENT" and "not an image" in out["bad"][1]


# -- bad input ----------------------------------------------------------------------------------


def _v2(tensor: dict, **extra: Any) -> tuple[bytes, dict[str, str]]:
    return json.dumps({"inputs": [tensor], **extra}).encode(), {"Content-Type": "application/json"}


def _v1(payload: Any) -> tuple[bytes, dict[str, str]]:
    return json.dumps(payload).encode(), {"Content-Type": "application/json"}


def _image(data: bytes) -> dict:
    return {"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64(data)]}


def image_limit(srv: LocalServer) -> int:
    """The server's MODEL_MAX_IMAGE_BYTES (the fixture sets it)."""
    return int(srv.cfg.extra_env["MODEL_MAX_IMAGE_BYTES"])


def bad_requests(mnist_test, max_image_bytes: int) -> list[tuple[str, str, bytes, dict[str, str], int, str]]:
    """(name, path, body, headers, status, a piece of the error) for every kind of bad input."""
    digit = mnist_test[0][1]
    jpeg = encode(np.asarray(Image.fromarray(digit).resize((200, 200))), "JPEG")
    png = encode(digit, "PNG")
    json_type = {"Content-Type": "application/json"}
    too_big = b"\x89PNG" + b"\xff" * max_image_bytes  # 4 bytes over the image limit, under the body limit
    good_binary, _ = binary_request([({"name": "image", "datatype": "BYTES", "shape": [1]}, bytes_tensor([png]))])
    header_length = len(good_binary) - len(bytes_tensor([png]))
    binary = {"Content-Type": "application/octet-stream"}
    pixels = {"name": "pixels", "datatype": "UINT8", "shape": [1, 784], "data": [0] * 784}
    return [
        ("v2 empty image", V2, *_v2(_image(b"")), 400, "empty image"),
        ("v2 not an image", V2, *_v2(_image(b"hello, world" * 10)), 400, "not an image"),
        ("v2 truncated jpeg", V2, *_v2(_image(jpeg[: len(jpeg) // 2])), 400, "truncated"),
        ("v2 decompression bomb", V2, *_v2(_image(png_header(30_000, 30_000))), 413, "too many pixels"),
        ("v2 not base64", V2, *_v2({**_image(b""), "data": ["*not base64*"]}), 400, "not base64"),
        ("v2 element not a string", V2, *_v2({**_image(b""), "data": [7]}), 400, "base64 string"),
        (
            "v2 image too large",
            V2,
            *binary_request([({"name": "image", "datatype": "BYTES", "shape": [1]}, bytes_tensor([too_big]))]),
            413,
            "too large",
        ),
        (
            "v2 batch over MODEL_MAX_BATCH",
            V2,
            *_v2({**pixels, "shape": [BATCH + 1, 784], "data": [0] * 784 * (BATCH + 1)}),
            413,
            f"at most {BATCH}",
        ),
        (
            "v2 images over MODEL_MAX_BATCH",
            V2,
            *_v2({**_image(png), "shape": [BATCH + 1], "data": [b64(png)] * (BATCH + 1)}),
            413,
            f"at most {BATCH}",
        ),
        ("v2 wrong datatype", V2, *_v2({**pixels, "datatype": "INT64"}), 400, "UINT8 or FP32"),
        ("v2 image not BYTES", V2, *_v2({**pixels, "name": "image"}), 400, "must be BYTES"),
        ("v2 wrong shape", V2, *_v2({**pixels, "shape": [1, 783], "data": [0] * 783}), 400, "[N, 28, 28] or [N, 784]"),
        ("v2 shape and data disagree", V2, *_v2({**pixels, "shape": [2, 784]}), 400, "needs 1568 values"),
        ("v2 pixel out of range", V2, *_v2({**pixels, "data": [300] * 784}), 400, "0..255"),
        ("v2 fractional UINT8", V2, *_v2({**pixels, "data": [0.5] * 784}), 400, "whole numbers"),
        ("v2 wrong input name", V2, *_v2({**pixels, "name": "input0"}), 400, "unknown input tensor 'input0'"),
        ("v2 two inputs", V2, json.dumps({"inputs": [pixels, pixels]}).encode(), json_type, 400, "exactly one input"),
        ("v2 no inputs", V2, b'{"inputs": []}', json_type, 400, "exactly one input"),
        ("v2 unknown output", V2, *_v2(pixels, outputs=[{"name": "probabilities"}]), 400, "unknown output"),
        ("v2 malformed json", V2, b'{"inputs": [{"name": "pix', json_type, 400, "not JSON"),
        ("v2 invalid request", V2, b'{"inputs": [{"name": "pixels", "shape": "28x28"}]}', json_type, 400, "shape"),
        ("v2 binary without its header", V2, good_binary, binary, 400, "Inference-Header-Content-Length"),
        (
            "v2 binary bad header length",
            V2,
            good_binary,
            {**binary, "Inference-Header-Content-Length": "ten"},
            400,
            "not a whole number",
        ),
        (
            "v2 binary header past the body",
            V2,
            good_binary,
            {**binary, "Inference-Header-Content-Length": "99999"},
            400,
            "the body has",
        ),
        (
            "v2 binary data cut short",
            V2,
            good_binary[:-100],
            {**binary, "Inference-Header-Content-Length": str(header_length)},
            400,
            "runs past",
        ),
        (
            "v2 binary BYTES truncated",
            V2,
            *binary_request(
                [({"name": "image", "datatype": "BYTES", "shape": [1]}, bytes_tensor([png])[:-5] + b"\x00")]
            ),
            400,
            "truncated BYTES",
        ),
        (
            "v2 binary pixels too short",
            V2,
            *binary_request([({"name": "pixels", "datatype": "FP32", "shape": [1, 784]}, b"\x00" * 784)]),
            400,
            "needs 3136 bytes",
        ),
        (
            "v2 binary NaN pixels",
            V2,
            *binary_request(
                [({"name": "pixels", "datatype": "FP32", "shape": [1, 784]}, np.full(784, np.nan, "<f4").tobytes())]
            ),
            400,
            "NaN",
        ),
        ("v2 unknown model", "/v2/models/other/infer", *_v2(pixels), 404, "other"),
        ("v1 malformed json", V1, b'{"instances": [', json_type, 400, "Unrecognized request format"),
        ("v1 no instances", V1, *_v1({"inputs": [1]}), 400, "instances"),
        ("v1 empty instances", V1, *_v1({"instances": []}), 400, "no instances"),
        ("v1 not an image", V1, *_v1({"instances": [{"b64": b64(b"GIF89a" + b"\0" * 40)}]}), 400, "instances[0]: "),
        ("v1 bad key", V1, *_v1({"instances": [{"bytes": b64(png)}]}), 400, '{"b64"'),
        ("v1 wrong pixel shape", V1, *_v1({"instances": [[1, 2, 3]]}), 400, "accepted shapes"),
        (
            "v1 several images in one instance",
            V1,
            *_v1({"instances": [np.zeros((2, 784), int).tolist()]}),
            400,
            "one item per instance",
        ),
        (
            "v1 over MODEL_MAX_BATCH",
            V1,
            *_v1({"instances": [{"b64": b64(png)}] * (BATCH + 1)}),
            413,
            f"at most {BATCH}",
        ),
        ("v1 not JSON at all", V1, png, {"Content-Type": "image/png"}, 400, "instances"),
    ]


def test_bad_input_gets_a_4xx_json_error_and_the_server_stays_right(kserve_server, mnist_test):
    images, labels = mnist_test
    good = images[2:3]
    for name, path, body, headers, status, message in bad_requests(mnist_test, image_limit(kserve_server)):
        got, _, raw = post(kserve_server.url + path, body, headers)
        answer = json.loads(raw)  # every error is JSON
        assert (got, name) == (status, name), answer
        assert set(answer) == {"error"} and message.lower() in answer["error"].lower(), (name, answer)
        assert via_v2_uint8(kserve_server.url, good).argmax(1).tolist() == [int(labels[2])], f"after {name}"


def _raw_http(url: str, head: bytes, body_chunks: list[bytes] = ()) -> tuple[int, dict]:
    """Send a request head (and optional body pieces) on a bare socket; read the answer to EOF.
    A server that waits for more than was sent never answers: that fails with a message once the
    socket's timeout passes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server may close as soon as it has answered
        data = b""
        while True:
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                pytest.fail(f"no answer within {SOCKET_TIMEOUT_S} s: the server is waiting for the rest of the body")
            if not part:
                break
            data += part
    head_text, _, payload = data.partition(b"\r\n\r\n")
    status = int(head_text.split(b" ", 2)[1])
    return status, json.loads(payload)


SOCKET_TIMEOUT_S = 10


def test_a_body_over_the_limit_is_refused_before_it_is_read(kserve_server, mnist_test):
    limit = image_limit(kserve_server) + REQUEST_OVERHEAD_BYTES
    # Content-Length one byte over the limit, and not one byte of the body sent: answered at once.
    head = (
        f"POST {V2} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {limit + 1}\r\n\r\n"
    ).encode()
    status, answer = _raw_http(kserve_server.url, head)  # an answer at all: the body was never awaited
    assert status == 413 and f"the limit is {limit}" in answer["error"]
    # Exactly the limit is let through (and then fails as the bad JSON it is, a 400).
    head_at_limit = head.replace(str(limit + 1).encode(), str(limit).encode())
    status, answer = _raw_http(kserve_server.url, head_at_limit, [b" " * limit])
    assert status == 400, answer
    # A chunked body is cut off once it passes the limit, however much more the client sends.
    chunked = (
        f"POST {V1} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b" " * 256 * 1024
    chunks = [b"%x\r\n" % len(piece) + piece + b"\r\n"] * (2 * limit // len(piece))
    status, answer = _raw_http(kserve_server.url, chunked.encode(), chunks)
    assert status == 413 and "request body too large" in answer["error"]
    assert via_v2_uint8(kserve_server.url, mnist_test[0][3:4]).argmax(1).tolist() == [int(mnist_test[1][3])]


# -- endpoints ----------------------------------------------------------------------------------


def test_metadata_health_and_readiness(kserve_server, trained_model_dir):
    sha = json.loads((trained_model_dir / "metadata.json").read_text())["sha256"]
    meta = get_json(kserve_server.url + f"/v2/models/{MODEL}")
    assert meta["name"] == MODEL and meta["platform"] == "pytorch" and meta["versions"] == [sha[:12]]
    assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [("image", "BYTES"), ("pixels", "UINT8")]
    assert meta["outputs"] == [{"name": "t", "datatype": "FP32", "shape": [-1, 10]}]
    assert get_json(kserve_server.url + "/v2/health/live") == {"live": True}
    assert get_json(kserve_server.url + "/v2/health/ready") == {"ready": True}
    assert get_json(kserve_server.url + f"/v2/models/{MODEL}/ready") == {"name": MODEL, "ready": True}
    assert get_json(kserve_server.url + f"/v1/models/{MODEL}") == {"name": MODEL, "ready": True}
    with pytest.raises(urllib.error.HTTPError) as missing:
        get_json(kserve_server.url + "/v2/models/other/ready")
    assert missing.value.code == 404 and "error" in json.loads(missing.value.read())


def _counts(metrics_url: str) -> dict[str, float]:
    with urllib.request.urlopen(metrics_url, timeout=10) as r:
        text = r.read().decode()
    assert f'request_predict_seconds_count{{model_name="{MODEL}"}}' in text, "kserve's own metrics"
    return {m[1]: float(m[2]) for m in re.finditer(r'^model_predictions_total\{label="(\d)"\} (\S+)$', text, re.M)}


def test_each_worker_loads_its_own_weights_and_metrics_sum_over_workers(kserve_server, trained_model_dir, mnist_test):
    images, labels = mnist_test
    before = _counts(kserve_server.metrics_url)
    sample = list(range(300, 500))
    with ThreadPoolExecutor(8) as pool:  # concurrent connections reach both workers
        rows = list(pool.map(lambda i: via_v2_uint8(kserve_server.url, images[i : i + 1]), sample))
    predicted = [int(r.argmax()) for r in rows]
    assert np.mean(np.array(predicted) == labels[sample]) >= 0.97
    expected = {str(d): before.get(str(d), 0.0) + predicted.count(d) for d in range(10) if predicted.count(d)}
    for _ in range(6):  # each scrape lands on some worker; every one must show the sum
        counts = _counts(kserve_server.metrics_url)
        assert {d: counts.get(d, 0.0) for d in expected} == expected
    log = kserve_server.log_text()
    sha = json.loads((trained_model_dir / "metadata.json").read_text())["sha256"]
    loaded = {
        int(pid) for pid in re.findall(rf"loaded \S+ \(sha256 {sha}, precision int8[^)]*\) with \S+ in pid (\d+)", log)
    }
    served = {int(pid) for pid in re.findall(rf'127\.0\.0\.1:\d+ (\d+) - "POST {re.escape(V2)} ', log)}
    assert len(loaded) == 3, f"the parent and both workers load the weights themselves: {loaded}"
    assert len(served) == 2 and served <= loaded, (served, loaded)
    assert kserve_server.proc is not None and kserve_server.proc.pid in loaded - served, "the parent serves no HTTP"


# -- what stops the server ----------------------------------------------------------------------


def _fails_to_start(model_dir: Path, **env: str) -> str:
    """The error of a KServe server (one worker: the parent's checks are the same) that must not start."""
    cfg = ServerConfig(model_dir=model_dir, engine="kserve", workers=1, extra_env=env)
    with pytest.raises(ServerError) as failed:
        LocalServer(cfg, start_timeout=60).start()
    return str(failed.value)


def test_a_tampered_artifact_stops_the_server(trained_model_dir, kserve_bin, tmp_path):
    bad = tmp_path / "model"
    bad.mkdir()
    (bad / "model.pt").write_bytes((trained_model_dir / "model.pt").read_bytes() + b"x")
    (bad / "metadata.json").write_text((trained_model_dir / "metadata.json").read_text())
    message = _fails_to_start(bad)
    assert "exited with status 1" in message and "SHA-256 does not match metadata.json" in message


def test_weights_other_than_model_sha256_stop_the_server(trained_model_dir, kserve_bin):
    actual = json.loads((trained_model_dir / "metadata.json").read_text())["sha256"]
    message = _fails_to_start(trained_model_dir, MODEL_SHA256="ab" * 32)
    assert actual in message and "ab" * 32 in message and "refusing to serve other weights" in message


def test_a_bad_setting_stops_the_server_naming_its_variable(trained_model_dir, kserve_bin):
    message = _fails_to_start(trained_model_dir, MODEL_MAX_BATCH="lots")
    assert "exited with status 2" in message and "MODEL_MAX_BATCH='lots': expected a whole number" in message


def test_a_worker_that_cannot_load_stops_the_server(trained_model_dir, kserve_bin, tmp_path):
    """As `mlctl serve` and the chart run it (2 workers, no gRPC) the parent only checks the
    artifact, without torch. Should the weights change before a spawned worker loads its own copy
    (here: the moment the parent says it checked them), that worker stops the whole server, which
    exits 1, instead of kserve restarting it in a loop."""
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir)
    cfg = ServerConfig(model_dir=model_dir, engine="kserve", workers=2, http_port=free_port(), grpc_port=free_port())
    proc = subprocess.Popen(
        server_argv(cfg, kserve_bin),
        env=server_env(cfg),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    log, mapped = [], None
    watchdog = threading.Timer(90, os.killpg, (proc.pid, signal.SIGKILL))  # a server that never stops
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line)
            if f"in pid {proc.pid}; each worker loads it" in line:  # the parent's "checked …"
                with open(model_dir / "model.pt", "ab") as f:
                    f.write(b"x")
                mapped = [m.path for m in psutil.Process(proc.pid).memory_maps()]
                break
        log.append(proc.communicate(timeout=90)[0])
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = "".join(log)
    assert mapped is not None, f"the parent never said it checked the artifact:\n{text[-3000:]}"
    assert not [m for m in mapped if "libtorch" in m], "the parent serves no model: it needs no torch"
    assert proc.returncode == 1, text[-3000:]
    assert "SHA-256 does not match metadata.json" in text and "could not load the model: stopping the server" in text
