"""The sample check every target ends with: the chart's sample digit, posted to the running
model, must come back as its label, from the weights the release names (the model_sha256 tag).

Used by the local target, the podman target and the cluster's smoke test alike.
"""

from __future__ import annotations

from typing import Any

from mlctl import helm, poll, predict
from mlctl.errors import SmokeTestFailed

SAMPLE_PNG = helm.CHART / "files" / "digit.png"
SAMPLE_LABEL = helm.CHART / "files" / "digit.label"
ATTEMPTS = 5
RETRY_SECONDS = 2.0


def _unreachable_or_failing(exc: Exception) -> bool:
    """A 4xx is the model's final word; only an unreachable or failing server is retried."""
    return isinstance(exc, predict.PredictError) and (exc.status is None or exc.status >= 500)


def check_sample(
    base: str,
    endpoint: str | None = None,
    expected_sha256: str | None = None,
    protocol: str = "seldon",
    model: str = "mnist",
) -> dict[str, Any]:
    """Post the chart's sample digit to `base + endpoint` (default: the protocol's path for
    `model`) in `protocol`, retrying an unreachable or failing server, and demand its true label,
    and with `expected_sha256` that the answer comes from those weights; used for the local
    server, podman and the cluster alike, through either engine's own endpoint."""
    png, label = SAMPLE_PNG.read_bytes(), int(SAMPLE_LABEL.read_text().strip())
    endpoint = endpoint or predict.endpoint_for(protocol, model)
    url = base.rstrip("/") + endpoint
    try:
        answer = poll.retry(
            lambda: predict.predict_image(base, png, endpoint=endpoint, protocol=protocol),
            attempts=ATTEMPTS,
            every_s=RETRY_SECONDS,
            retry_if=_unreachable_or_failing,
        )
    except predict.PredictError as exc:
        raise SmokeTestFailed(f"smoke test: POST {url} failed: {exc.message}") from exc
    served = answer.model_sha256
    if expected_sha256 and served != expected_sha256:
        raise SmokeTestFailed(
            f"smoke test: {url} serves the weights {str(served)[:12]}…, not {expected_sha256[:12]}…",
            hint="a stale pod or store folder; check mlctl status and mlctl models",
        )
    if answer.cls != label:
        raise SmokeTestFailed(
            f"smoke test: {url} predicted {answer.cls}, but the sample digit is a {label}",
            hint="the deployed model is wrong or stale; check mlctl status and the model sha256",
        )
    return {
        "url": url,
        "label": label,
        "predicted": answer.cls,
        "score": round(answer.scores[answer.cls], 4),
        "modelSha256": served,
    }
