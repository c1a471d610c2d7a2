"""`helm test` check: post the model contract's examples to the predictions endpoint and demand
each one's answer: its label, or (a bad input) its 4xx status.

Standard library only (it runs in a bare python image). Reads PREDICT_URL, PROTOCOL (`seldon`:
an image as multipart binData, a tensor as JSON ndarray, Seldon's answer; `v2`: the Open
Inference Protocol, an image as a base64 BYTES tensor, the answer's named output) and EXAMPLES
(examples.json: the output's name and labels, and each example's file, input, kind, datatype,
item rank, expect or status; the files lie beside it) from the environment. Retries while the Service warms
up (ATTEMPTS, RETRY_SECONDS). Prints one JSON line with what each example got; exits 0 only when
every example got its answer.
"""

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid


def multipart(field: str, filename: str, payload: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def depth(values):
    return 1 + depth(values[0]) if isinstance(values, list) and values else 0


def flat(values):
    return [x for v in values for x in flat(v)] if isinstance(values, list) else [values]


def shape(values):
    return [len(values), *shape(values[0])] if isinstance(values, list) and values else []


def request(example: dict, payload: bytes, protocol: str) -> tuple[bytes, str]:
    """The body that carries one example in `protocol`."""
    if example["kind"] == "image":
        if protocol == "seldon":
            return multipart("binData", example["file"], payload)
        data = [base64.b64encode(payload).decode()]
        tensor = {"name": example["input"], "datatype": "BYTES", "shape": [1], "data": data}
        return json.dumps({"inputs": [tensor]}).encode(), "application/json"
    try:
        values = json.loads(payload)
    except ValueError:
        return payload, "application/json"  # a bad example: sent as it is
    rows = values if depth(values) > example["itemRank"] else [values]
    if protocol == "seldon":
        return json.dumps({"data": {"ndarray": rows}}).encode(), "application/json"
    tensor = {"name": example["input"], "datatype": example["datatype"], "shape": shape(rows), "data": flat(rows)}
    return json.dumps({"inputs": [tensor]}).encode(), "application/json"


def scores(answer: dict, output: str) -> list[float]:
    """The first row of a Seldon v1 answer (ndarray or tensor), or of a V2 answer's `output`."""
    if "outputs" in answer:
        for candidate in answer["outputs"]:
            if candidate.get("name") == output:
                width = candidate["shape"][-1]
                return [float(x) for x in candidate["data"][:width]]
        raise ValueError(f"no output named {output} in the answer: {answer}")
    data = answer.get("data") or {}
    if "ndarray" in data:
        row = data["ndarray"]
        while row and isinstance(row[0], list):
            row = row[0]
        return [float(x) for x in row]
    if "tensor" in data:
        shape_ = data["tensor"].get("shape") or []
        values = data["tensor"]["values"]
        width = shape_[-1] if shape_ else len(values)
        return [float(x) for x in values[:width]]
    raise ValueError(f"no data.ndarray or data.tensor in the answer: {answer}")


def post(url: str, body: bytes, content_type: str, attempts: int, pause: float) -> tuple[int, dict]:
    """(status, JSON answer); an unreachable server or a 5xx is retried, a 4xx is the answer."""
    for attempt in range(1, attempts + 1):
        req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return exc.code, {}
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            problem = str(exc)
        print(f"attempt {attempt}/{attempts}: {url}: {problem}", file=sys.stderr)
        if attempt < attempts:
            time.sleep(pause)
    raise ConnectionError(f"{url}: no answer after {attempts} attempts")


def main() -> int:
    url, protocol = os.environ["PREDICT_URL"], os.environ.get("PROTOCOL", "seldon")
    manifest = os.environ["EXAMPLES"]
    with open(manifest) as f:
        config = json.load(f)
    attempts = int(os.environ.get("ATTEMPTS", "10"))
    pause = float(os.environ.get("RETRY_SECONDS", "3"))
    labels, results, failed = config["output"]["labels"], [], []
    for example in config["examples"]:
        with open(os.path.join(os.path.dirname(manifest), example["file"]), "rb") as f:
            body, content_type = request(example, f.read(), protocol)
        try:
            status, answer = post(url, body, content_type, attempts, pause)
        except ConnectionError as exc:
            print(f"FAIL: {exc}", file=sys.stderr)
            return 1
        got = {"input": example["file"], "status": status}
        if status == 200:
            row = scores(answer, config["output"]["name"])
            got["label"] = labels[max(range(len(row)), key=row.__getitem__)] if len(row) == len(labels) else None
        results.append(got)
        if example["status"] and status != example["status"]:
            failed.append(f"{example['file']}: HTTP {status}, expected HTTP {example['status']}")
        elif not example["status"] and got.get("label") != example["expect"]:
            answered = f"answered {got.get('label')!r} (HTTP {status})"
            failed.append(f"{example['file']}: {answered}, expected {example['expect']!r}")
    print(json.dumps({"url": url, "examples": results}))
    for line in failed:
        print(f"FAIL: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
