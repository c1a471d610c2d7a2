"""The check every target ends with: the model contract's examples, posted to the running model.

Each labelled example must come back as its label, from the weights the release names (the
model_sha256 the answer carries); each bad example must be refused with its 4xx status. Used by
the local target, the podman target and the cluster's smoke test alike, through the engine's own
protocol, each as the input of its kind (`mlctl.predict.predict_file`).
"""

from __future__ import annotations

from typing import Any

from mlctl import poll, predict
from mlctl.contract import Contract
from mlctl.errors import SmokeTestFailed

ATTEMPTS = 5
RETRY_SECONDS = 2.0


def _unreachable_or_failing(exc: Exception) -> bool:
    """A 4xx is the model's final word; only an unreachable or failing server is retried."""
    return isinstance(exc, predict.PredictError) and (exc.status is None or exc.status >= 500)


def check_examples(
    base: str,
    contract: Contract,
    endpoint: str | None = None,
    expected_sha256: str | None = None,
    protocol: str = "seldon",
    model: str = "model",
) -> dict[str, Any]:
    """Post every example of `contract` to `base + endpoint` (default: the protocol's path for
    `model`) in `protocol`, retrying an unreachable or failing server, and demand each one's
    answer: its label (from the weights `expected_sha256` names, when given) or its status."""
    endpoint = endpoint or predict.endpoint_for(protocol, model)
    url = base.rstrip("/") + endpoint
    results, served = [], None
    for example in contract.examples:
        name = example.input.name
        try:
            answer = poll.retry(
                lambda e=example: predict.predict_file(
                    base, e.input, contract, endpoint=endpoint, protocol=protocol, model=model
                ),
                attempts=ATTEMPTS,
                every_s=RETRY_SECONDS,
                retry_if=_unreachable_or_failing,
            )
        except predict.PredictError as exc:
            if example.status is not None and exc.status == example.status:
                results.append({"input": name, "status": exc.status})
                continue
            wanted = f"answer {example.expect!r}" if example.expect is not None else f"answer HTTP {example.status}"
            raise SmokeTestFailed(f"smoke test: {name}: POST {url} should {wanted}, but: {exc.message}") from exc
        if example.status is not None:
            raise SmokeTestFailed(
                f"smoke test: {name}: {url} answered {answer.label!r}, but should refuse it with HTTP {example.status}",
                hint="the server accepts an input the model contract says it must refuse",
            )
        served = answer.model_sha256
        if expected_sha256 and served != expected_sha256:
            raise SmokeTestFailed(
                f"smoke test: {url} serves the weights {str(served)[:12]}…, not {expected_sha256[:12]}…",
                hint="a stale pod or store folder; check mlctl status and mlctl models",
            )
        if answer.label != example.expect:
            raise SmokeTestFailed(
                f"smoke test: {name}: {url} answered {answer.label!r} (p={answer.scores[answer.cls]:.3f}), "
                f"expected {example.expect!r}",
                hint="the deployed model is wrong or stale; check mlctl status and the model sha256",
            )
        results.append({"input": name, "label": answer.label, "score": round(answer.scores[answer.cls], 4)})
    return {"url": url, "examples": results, "modelSha256": served}


def summary(check: dict[str, Any]) -> str:
    """One line for a report: each example and its answer."""
    return ", ".join(
        f"{r['input']} → {r['label']} (p={r['score']})" if "label" in r else f"{r['input']} → HTTP {r['status']}"
        for r in check["examples"]
    )
