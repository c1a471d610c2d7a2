"""mlctl's prediction client in each protocol, against a loopback HTTP server that records what it
was sent and answers as each engine does (the real servers are in tests/serving)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from mlctl import predict
from mlctl.contract import Output
from mlctl.targets.local.server import ServerConfig, server_argv

PNG = b"\x89PNG\r\n\x1a\n-not-really-a-png"
SHA = "ab" * 32


OUTPUT = Output(name="t", labels=[f"class-{i}" for i in range(10)], scores="log-probabilities")


def _row(digit: int) -> list[float]:
    row = [-6.0] * 10
    row[digit] = -0.02
    return row


ANSWERS = {
    "seldon": {"data": {"names": [f"t:{i}" for i in range(10)], "tensor": {"shape": [1, 10], "values": _row(3)}},
               "meta": {"tags": {"model_sha256": SHA}}},
    "v2": {"model_name": "mnist", "outputs": [{"name": "t", "datatype": "FP32", "shape": [1, 10], "data": _row(3)}],
           "parameters": {"model_sha256": SHA}},
    "v1": {"predictions": [_row(3)]},
}  # fmt: skip


@pytest.fixture
def server():
    seen: list[tuple[str, str, bytes]] = []
    state = {"status": 200, "body": b"{}"}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers["Content-Type"], body))
            self.send_response(state["status"])
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", seen, state
    httpd.shutdown()


@pytest.mark.parametrize("protocol", predict.PROTOCOLS)
def test_each_protocol_posts_its_request_and_reads_its_answer(server, protocol):
    url, seen, state = server
    state["body"] = json.dumps(ANSWERS[protocol]).encode()
    result = predict.predict_image(url, PNG, protocol=protocol, model="digits", output=OUTPUT)
    assert (result.cls, result.label) == (3, "class-3") and abs(sum(result.scores) - 1) < 1e-9
    assert result.model_sha256 == (None if protocol == "v1" else SHA)
    path, content_type, body = seen[0]
    if protocol == "seldon":
        assert path == "/api/v1.0/predictions" and content_type.startswith("multipart/form-data")
        assert b'name="binData"' in body and PNG in body
    elif protocol == "v2":
        assert (path, content_type) == ("/v2/models/digits/infer", "application/json")
        (tensor,) = json.loads(body)["inputs"]
        assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("image", "BYTES", [1])
        assert base64.b64decode(tensor["data"][0]) == PNG
    else:
        assert path == "/v1/models/digits:predict"
        assert base64.b64decode(json.loads(body)["instances"][0]["b64"]) == PNG


def test_kserves_json_error_is_what_the_user_reads(server):
    url, _, state = server
    state["status"], state["body"] = 400, json.dumps({"error": "input 'image': not an image"}).encode()
    with pytest.raises(predict.PredictError, match="answered HTTP 400: input 'image': not an image") as err:
        predict.predict_image(url, PNG, protocol="v2")
    assert err.value.status == 400


@pytest.mark.parametrize(
    "answer",
    [
        {"outputs": [{"name": "other", "data": _row(1)}]},
        {"outputs": [{"name": "t", "data": _row(1)[:9]}]},
        {"outputs": "t"},
    ],
)
def test_a_v2_answer_without_a_score_per_label_in_the_output_is_refused(answer):
    with pytest.raises(predict.PredictError, match="no row of 10 scores"):
        predict.parse_prediction(answer, "v2", OUTPUT)


def test_probabilities_are_read_as_they_are_and_without_a_contract_labels_are_indices():
    answer = {"outputs": [{"name": "p", "datatype": "FP32", "shape": [1, 3], "data": [0.2, 0.5, 0.3]}]}
    read = predict.parse_prediction(answer, "v2", Output(name="p", labels=["a", "b", "c"]))
    assert (read.label, read.scores) == ("b", [0.2, 0.5, 0.3])
    bare = predict.parse_prediction(answer, "v2")
    assert (bare.label, bare.labels) == ("1", ("0", "1", "2"))


@pytest.mark.parametrize("protocol", predict.PROTOCOLS)
def test_a_tensor_is_posted_as_each_protocol_carries_numbers(server, protocol, tmp_path):
    url, seen, state = server
    state["body"] = json.dumps(ANSWERS[protocol]).encode()
    row = tmp_path / "row.json"
    row.write_text("[5.1, 3.5, 1.4, 0.2]")
    result = predict.predict_tensor(url, row, protocol=protocol, model="iris", input_name="features", output=OUTPUT)
    assert result.label == "class-3"
    path, content_type, body = seen[0]
    sent = json.loads(body)
    assert content_type == "application/json"
    if protocol == "seldon":
        assert sent == {"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}}
    elif protocol == "v2":
        assert path == "/v2/models/iris/infer"
        assert sent == {
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]
        }
    else:
        assert (path, sent) == ("/v1/models/iris:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})


def test_the_kserve_command_line_and_readiness(tmp_path: Path):
    cfg = ServerConfig(
        model_dir=tmp_path, http_port=8123, grpc_port=8124, workers=3, engine="kserve", model_name="digits"
    )
    argv = server_argv(cfg, binary="/py")
    assert argv == [
        "/py", "-m", "runtime.kserve_server", "--model_name=digits", "--http_port=8123",
        "--grpc_port=8124", "--workers=3", "--enable_grpc=false",
    ]  # fmt: skip
    assert cfg.readiness_paths == ("/v2/health/live", "/v2/models/digits/ready")
    assert ServerConfig(model_dir=tmp_path).readiness_paths == ("/health/ping", "/health/status")


def test_an_unknown_protocol_is_a_usage_error(mlctl, tmp_path: Path):
    image = tmp_path / "d.png"
    image.write_bytes(PNG)
    p = mlctl("predict", str(image), "--protocol", "v3")
    assert p.returncode == 2 and "'v3' is not one of: seldon, v2, v1" in p.stderr and "Traceback" not in p.stderr


def test_mlctl_predict_speaks_v2(mlctl, server, tmp_path: Path):
    url, seen, state = server
    state["body"] = json.dumps(ANSWERS["v2"]).encode()
    image = tmp_path / "d.png"
    image.write_bytes(PNG)
    p = mlctl("predict", str(image), "--url", url, "--protocol", "v2", "--model", "digits", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["predictions"][0]["index"] == 3 and seen[0][0] == "/v2/models/digits/infer"


def test_a_tensor_item_of_several_dimensions_is_sent_as_a_batch_of_one(server, tmp_path):
    """A 2×3 item (item_rank 2) is one item, not a batch of two rows; a file of two such items
    is a batch of two."""
    url, seen, state = server
    state["body"] = json.dumps(ANSWERS["v2"]).encode()
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    one.write_text("[[1, 2, 3], [4, 5, 6]]")
    two.write_text("[[[1, 2, 3], [4, 5, 6]], [[0, 0, 0], [0, 0, 0]]]")
    for file, shape in ((one, [1, 2, 3]), (two, [2, 2, 3])):
        predict.predict_tensor(url, file, protocol="v2", datatype="UINT8", item_rank=2, output=OUTPUT)
        assert json.loads(seen[-1][2])["inputs"][0]["shape"] == shape
