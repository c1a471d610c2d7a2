"""Reusable helpers for testing the mnist-seldon chart with real helm binaries, no cluster.

Import as `from tests.chart.helpers import ...` (tests/chart/conftest.py puts the repo root on
sys.path). What they do:

- find the helm binaries: Helm 4 (`helm` on PATH or .mlctl/bin/helm) and Helm 3
  (.mlctl/bin/helm3 or $HELM3), each checked by `helm version`;
- `template()` runs `helm template` with a values dict (written to a 0600 temp file, never on
  the command line) and returns the rendered objects; `template_error()` returns the failure text;
- `validate_object()` checks one rendered object: built-in kinds against the Kubernetes schemas of
  kubernetes-validate in strict mode (unknown fields are errors), SeldonDeployment against the
  v1.17.1 CRD's openAPIV3Schema from ../shared/schemas, made strict the same way.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from mlctl.render import examples_values
from mlctl.specload import load_contract

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mnist-seldon"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# CI runs in a fresh clone with ../shared beside it.
SHARED = REPO.parent / "shared"
SELDON_SCHEMA = SHARED / "schemas" / "seldondeployment-v1.json"
# KServe v0.20.0's InferenceService CRD as strict JSON Schema (see its README beside it).
KSERVE_SCHEMA = SHARED / "schemas" / "kserve" / "inferenceservice-v1beta1-strict.json"
MNIST_DIR = SHARED / "data" / "mnist"
TRAINING = {"enabled": True, "command": load_contract(REPO / "model").training.command}
"""`training` values that add the Job: the shipped model's training command (model/model.yaml)."""
EXAMPLES = examples_values(load_contract(REPO / "model"))
"""`tests` values with the shipped model's examples: what makes the chart render its test pod."""
# A recent Kubernetes the chart targets; kubernetes-validate picks its schemas for this version.
K8S_VERSION = "1.31"
RELEASE = "t"
NAMESPACE = "ml"


class HelmFailed(Exception):
    """helm exited non-zero; the message carries its argv and stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str):
        super().__init__(f"{' '.join(argv)} exited {returncode}:\n{stderr}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


def _major(binary: str) -> int | None:
    try:
        out = subprocess.run([binary, "version", "--short"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    version = out.stdout.strip()
    if out.returncode or not version.startswith("v"):
        return None
    return int(version[1:].split(".", 1)[0])


@functools.cache
def helm_binaries() -> dict[str, str]:
    """{"helm4": path, "helm3": path} for each real helm found; either may be missing."""
    found: dict[str, str] = {}
    candidates = [
        shutil.which("helm"),
        str(REPO / ".mlctl/bin/helm"),
        os.environ.get("HELM3"),
        str(REPO / ".mlctl/bin/helm3"),
        shutil.which("helm3"),
    ]
    for path in candidates:
        if not path or not os.access(path, os.X_OK):
            continue
        major = _major(path)
        if major in (3, 4) and f"helm{major}" not in found:
            found[f"helm{major}"] = path
    return found


def find_helm() -> str | None:
    """The preferred helm: Helm 4, else Helm 3, else None."""
    binaries = helm_binaries()
    return binaries.get("helm4") or binaries.get("helm3")


def run_helm(
    helm: str,
    *args: str,
    values: Mapping[str, Any] | None = None,
    values_files: Iterable[Path] = (),
    timeout: float = 120,
) -> str:
    """Run helm with optional values (a dict, passed as a 0600 file) and return stdout."""
    with tempfile.TemporaryDirectory(prefix="mnist-seldon-test-") as tmp:
        files = [str(f) for f in values_files]
        if values is not None:
            path = Path(tmp) / "values.yaml"
            path.touch(mode=0o600)
            path.write_text(yaml.safe_dump(dict(values), sort_keys=False))
            files.append(str(path))
        argv = [helm, *args, *[a for f in files for a in ("-f", f)]]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if p.returncode:
        raise HelmFailed(argv, p.returncode, p.stderr)
    return p.stdout


def template_text(
    values: Mapping[str, Any] | None = None,
    values_files: Iterable[Path] = (),
    helm: str | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    extra_args: Sequence[str] = (),
) -> str:
    helm = helm or find_helm()
    if helm is None:
        raise RuntimeError("no helm binary found (PATH, .mlctl/bin/helm, .mlctl/bin/helm3)")
    return run_helm(
        helm,
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        *extra_args,
        values=values,
        values_files=values_files,
    )


def template(
    values: Mapping[str, Any] | None = None,
    values_files: Iterable[Path] = (),
    helm: str | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    extra_args: Sequence[str] = (),
) -> list[dict]:
    """Render the chart and return its objects (test hooks included), in helm's order."""
    text = template_text(values, values_files, helm, release, namespace, extra_args)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def template_error(
    values: Mapping[str, Any] | None = None,
    values_files: Iterable[Path] = (),
    helm: str | None = None,
    release: str = RELEASE,
) -> str:
    """The stderr of a `helm template` that must fail; AssertionError when it renders."""
    try:
        template_text(values, values_files, helm, release)
    except HelmFailed as failed:
        return failed.stderr
    raise AssertionError(f"helm template rendered although it should have failed: values={values}")


def lint(values: Mapping[str, Any] | None = None, values_files: Iterable[Path] = (), helm: str | None = None) -> str:
    helm = helm or find_helm()
    assert helm, "no helm binary"
    return run_helm(helm, "lint", "--strict", str(CHART), values=values, values_files=values_files)


def find(objects: Iterable[dict], kind: str, name_suffix: str = "") -> list[dict]:
    return [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]


def one(objects: Iterable[dict], kind: str, name_suffix: str = "") -> dict:
    matches = find(objects, kind, name_suffix)
    assert len(matches) == 1, f"expected one {kind} *{name_suffix}, got {[o['metadata']['name'] for o in matches]}"
    return matches[0]


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict:
    """Helm's coalescing for plain maps: override wins, nested maps merge."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# --- validation -------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """Forbid unknown fields wherever an object schema lists its properties and does not opt out,
    as the API server's strict field validation does (plain CRD schemas only prune them)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def seldon_validator() -> jsonschema.protocols.Validator:
    if not SELDON_SCHEMA.is_file():
        raise FileNotFoundError(f"SeldonDeployment schema not found: {SELDON_SCHEMA}")
    schema = _strict(json.loads(SELDON_SCHEMA.read_text()))
    # Every object carries apiVersion/kind/metadata; the CRD's schema leaves them loose.
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


@functools.cache
def kserve_validator() -> jsonschema.protocols.Validator:
    """The strict file as shipped: it already forbids unknown fields and fixes apiVersion/kind."""
    if not KSERVE_SCHEMA.is_file():
        raise FileNotFoundError(f"InferenceService schema not found: {KSERVE_SCHEMA}")
    return jsonschema.Draft7Validator(json.loads(KSERVE_SCHEMA.read_text()))


CRD_VALIDATORS = {
    ("machinelearning.seldon.io/v1", "SeldonDeployment"): seldon_validator,
    ("serving.kserve.io/v1beta1", "InferenceService"): kserve_validator,
}
VALIDATED: dict[str, int] = {}
"""Objects validate_object passed, by kind (the closing notes report them)."""


def validate_object(obj: dict, k8s_version: str = K8S_VERSION) -> None:
    """Raise (jsonschema / kubernetes_validate ValidationError) unless obj is valid and strict."""
    crd = CRD_VALIDATORS.get((obj.get("apiVersion"), obj.get("kind")))
    if crd is not None:
        errors = sorted(crd().iter_errors(obj), key=lambda e: list(e.absolute_path))
        if errors:
            raise jsonschema.ValidationError(
                "; ".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
            )
    else:
        kubernetes_validate.validate(obj, k8s_version, strict=True)
    VALIDATED[obj["kind"]] = VALIDATED.get(obj["kind"], 0) + 1


def validate_all(objects: Iterable[dict], k8s_version: str = K8S_VERSION) -> None:
    for obj in objects:
        try:
            validate_object(obj, k8s_version)
        except Exception as exc:
            raise AssertionError(f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {exc}") from exc


# --- values and schema ------------------------------------------------------------------------


def values_schema_paths(
    values: Mapping[str, Any], schema: Mapping[str, Any], prefix: str = ""
) -> tuple[set[str], list[str]]:
    """Walk values.yaml and the schema together. Returns the documented leaves (where the schema
    stops declaring properties: a scalar, a list or a free-form map) and the mismatches: keys in
    the values the schema does not declare, and declared keys a non-empty values map lacks."""
    leaves: set[str] = set()
    problems: list[str] = []
    declared = schema.get("properties", {})
    for key, value in values.items():
        path = f"{prefix}{key}"
        sub = declared.get(key)
        if sub is None:
            if schema.get("additionalProperties") is False or not isinstance(schema.get("additionalProperties"), dict):
                problems.append(f"{path}: in values.yaml, not in the schema")
            else:
                leaves.add(path)
        elif isinstance(value, Mapping) and value and sub.get("properties"):
            sub_leaves, sub_problems = values_schema_paths(value, sub, f"{path}.")
            leaves |= sub_leaves
            problems += sub_problems
        else:
            leaves.add(path)
    if values:
        problems += [f"{prefix}{key}: in the schema, not in values.yaml" for key in declared if key not in values]
    return leaves, problems
