"""`helm test` check: post a real MNIST digit to the predictions endpoint and demand the right class.

Standard library only (it runs in a bare python image). Reads PREDICT_URL, SAMPLE_PNG and
SAMPLE_LABEL from the environment, and PROTOCOL: `seldon` (multipart binData, Seldon's answer)
or `v2` (the Open Inference Protocol: the PNG as a base64 BYTES tensor named `image`, the answer's
output `t`); retries while the Service warms up (ATTEMPTS, RETRY_SECONDS); exits 0 only when the
answer's argmax equals the digit's true label.
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
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def v2_request(payload: bytes) -> tuple[bytes, str]:
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(payload).decode()]}
    return json.dumps({"inputs": [tensor]}).encode(), "application/json"


def scores(answer: dict) -> list[float]:
    """The first row of a Seldon v1 answer (ndarray or tensor), or of a V2 answer's output `t`."""
    if "outputs" in answer:
        for output in answer["outputs"]:
            if output.get("name") == "t":
                width = output["shape"][-1]
                return [float(x) for x in output["data"][:width]]
        raise ValueError(f"no output named t in the answer: {answer}")
    data = answer.get("data") or {}
    if "ndarray" in data:
        row = data["ndarray"]
        while row and isinstance(row[0], list):
            row = row[0]
        return [float(x) for x in row]
    if "tensor" in data:
        shape = data["tensor"].get("shape") or []
        values = data["tensor"]["values"]
        width = shape[-1] if shape else len(values)
        return [float(x) for x in values[:width]]
    raise ValueError(f"no data.ndarray or data.tensor in the answer: {answer}")


def main() -> int:
    url = os.environ["PREDICT_URL"]
    with open(os.environ["SAMPLE_PNG"], "rb") as f:
        png = f.read()
    with open(os.environ["SAMPLE_LABEL"]) as f:
        label = int(f.read().strip())
    attempts = int(os.environ.get("ATTEMPTS", "10"))
    pause = float(os.environ.get("RETRY_SECONDS", "3"))
    protocol = os.environ.get("PROTOCOL", "seldon")
    if protocol == "v2":
        body, content_type = v2_request(png)
    else:
        body, content_type = multipart("binData", "digit.png", png)
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.load(response)
            break
        except (urllib.error.URLError, OSError) as exc:
            print(f"attempt {attempt}/{attempts}: {url}: {exc}", file=sys.stderr)
            if attempt == attempts:
                return 1
            time.sleep(pause)
    row = scores(answer)
    predicted = max(range(len(row)), key=row.__getitem__)
    print(json.dumps({"url": url, "label": label, "predicted": predicted, "scores": row}))
    if predicted != label:
        print(f"FAIL: predicted {predicted}, the digit is a {label}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
