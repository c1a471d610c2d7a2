"""One release of the chart, computed once per command and passed down.

`Names` is where the release lives and what its objects are called, from the spec alone (status,
delete and rollback need no more). `Release` adds the credentials and the exact values mlctl
installs for one model, built and validated once: the plan diffs them, the upgrade writes them,
the podman target renders its pods from them. `redact` and `values_diff` know which values are
credentials, so plans, diffs and recorded revisions show `***` instead.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from mlctl import helm, render, tools
from mlctl.secrets import Secrets, resolve_secrets
from mlctl.spec import Spec

PREDICTOR = "default"
# The predictor Service's REST port: the model's own 9000 with seldon.io/no-engine, the
# executor's 8000 with it, KServe's 80 (the chart's mnist-seldon.servicePort; tests hold the
# two together).
MODEL_PORT, EXECUTOR_PORT, KSERVE_PORT = 9000, 8000, 80
# Values that carry credentials; a path ending in ".*" covers everything under it.
SECRET_PATHS = ("registry.password", "storage.credentials.*")


@dataclass(frozen=True)
class Names:
    """Where the release lives and the names of the objects mlctl talks to."""

    target: helm.Target
    served: str
    """The SeldonDeployment or InferenceService: the chart's fullname, which mlctl's values set
    (render.fullname)."""
    predictor_service: str
    service_port: int
    engine: str = "seldon"
    model: str = "model"
    """The model's name in KServe's V1/V2 paths (the spec's name)."""

    @classmethod
    def for_spec(cls, spec: Spec) -> Names:
        served = render.fullname(spec)
        if spec.serving.engine == "kserve":  # KServe's PredictorServiceName, port 80 → 8080
            service, port = f"{served}-predictor", KSERVE_PORT
        else:
            service, port = f"{served}-{PREDICTOR}", EXECUTOR_PORT if spec.serving.executor else MODEL_PORT
        return cls(helm.Target.for_spec(spec), served, service, port, spec.serving.engine, spec.name)

    @property
    def resource(self) -> str:
        """kubectl's name for the served object: `sdep/NAME` or `isvc/NAME`."""
        return f"{'isvc' if self.engine == 'kserve' else 'sdep'}/{self.served}"

    @property
    def kind(self) -> str:
        return "InferenceService" if self.engine == "kserve" else "SeldonDeployment"


@dataclass(frozen=True)
class Release:
    """What one install or upgrade puts into the cluster."""

    spec: Spec
    names: Names
    secrets: Secrets
    values: dict[str, Any] = field(repr=False)
    """Validated against the chart's contract; holds credentials (see `redacted`)."""

    @classmethod
    def build(cls, spec: Spec, model_sha256: str, secrets: Secrets | None = None, train_job: bool = False) -> Release:
        """The release of `spec` serving the weights `model_sha256` (the training Job enabled too
        with `train_job`, as the podman target runs it)."""
        secrets = resolve_secrets(spec) if secrets is None else secrets
        values = render.build_values(spec, secrets, model_sha256=model_sha256, train_job=train_job)
        return cls(spec, Names.for_spec(spec), secrets, values)

    @property
    def target(self) -> helm.Target:
        return self.names.target

    @property
    def model_sha256(self) -> str:
        return self.values["model"]["sha256"]

    def redacted(self) -> dict[str, Any]:
        return redact(self.values)


def _is_secret(path: str) -> bool:
    return any(path == p or (p.endswith(".*") and path.startswith(p[:-1])) for p in SECRET_PATHS)


def _leaves(values: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(values, dict) and values:
        out: dict[str, Any] = {}
        for k, v in values.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): values}


def redact(values: dict[str, Any]) -> dict[str, Any]:
    """A copy with every credential replaced by `***` (empty ones stay empty)."""

    def walk(node: Any, prefix: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{prefix}{k}.") for k, v in node.items()}
        return tools.MASK if node and _is_secret(prefix.rstrip(".")) else node

    return walk(values, "")


def values_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
    """[{path, old, new}] for every leaf that differs; credentials compared, but shown as `***`."""
    before, after = _leaves(old or {}), _leaves(new)
    changes = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a == b:
            continue
        if _is_secret(path):
            a, b = (tools.MASK if a else a), (tools.MASK if b else b)
        changes.append({"path": path, "old": a, "new": b})
    return changes


def with_credentials(values: dict[str, Any], secrets: Secrets) -> dict[str, Any]:
    """A copy of `values` (say, a recorded revision's, credentials redacted) with `secrets` where
    build_values puts them."""
    out = copy.deepcopy(values)
    out["registry"]["password"] = secrets.registry_password or ""
    out["storage"]["credentials"] = {
        "access_key_id": secrets.storage_access_key_id or "",
        "secret_access_key": secrets.storage_secret_access_key or "",
    }
    return out
