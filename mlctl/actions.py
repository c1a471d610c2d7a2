"""What the light commands do (validate, render, template): plain functions returning data."""

from __future__ import annotations

from pathlib import Path

from mlctl import chart, helm, valuesfile
from mlctl import render as rendering
from mlctl.artifacts import artifact_dir, store_uri, training_hash
from mlctl.errors import UsageError
from mlctl.secrets import placeholders, resolve_secrets
from mlctl.spec import Spec
from mlctl.specload import load_contract, load_spec


def describe(spec: Spec) -> dict:
    """A short, secret-free summary of a spec."""
    digest = training_hash(spec)
    return {
        "name": spec.name,
        "target": spec.target,
        "engine": spec.serving.engine,
        "runner": spec.training.runner.kind,
        "trainingHash": digest,
        "artifact": str(artifact_dir(spec, digest)),
        "modelUri": store_uri(spec, digest),
        "release": spec.kubernetes.release,
        "namespace": spec.kubernetes.namespace,
    }


def validate(path: Path) -> dict:
    """The spec checked, and its model package against the contract (model.yaml, the class and
    its two methods, the example files), without starting a server."""
    spec = load_spec(path)
    contract = load_contract(spec.model)
    result = describe(spec)
    result["model"] = {
        "package": str(spec.model),
        "class": contract.model_class,
        "inputs": [i.name for i in contract.inputs],
        "labels": list(contract.output.labels),
        "examples": len(contract.examples),
    }
    examples = f"{len(contract.examples)} example{'s' if len(contract.examples) != 1 else ''}"
    weights = (
        f"weights from {spec.weights.dir} (sha256 {spec.weights.sha256[:12]}…)"
        if spec.weights
        else f"{spec.training.runner.kind} training ({spec.training.epochs} epochs, hash {result['trainingHash'][:12]})"
    )
    result["summary"] = (
        f"project {spec.name}, model {contract.model_class} ({len(contract.output.labels)} classes, {examples}), "
        f"target {spec.target}, engine {spec.serving.engine}, {weights}, "
        f"model store {spec.model_store.uri}, release {spec.kubernetes.namespace}/{spec.kubernetes.release}"
    )
    return result


def render(path: Path, output: Path | None, include_secrets: bool) -> str:
    """The values text for `path`'s spec; written to `output` when given (0600 with secrets)."""
    spec = load_spec(path)
    if include_secrets and output is None:
        raise UsageError(
            "--include-secrets needs --output FILE: credentials are never printed",
            hint="mlctl render SPEC --include-secrets -o secret-values.yaml",
        )
    secrets = resolve_secrets(spec) if include_secrets else None
    text = valuesfile.dump(rendering.build_values(spec, secrets, model_sha256=chart.local_model_sha(spec)))
    if output is not None:
        if include_secrets:
            valuesfile.write_private(output, text)
        else:
            Path(output).write_text(text, encoding="utf-8")
    return text


def template(path: Path, pods: bool = False) -> str:
    """The manifests `helm template` renders for the spec, with credentials redacted; with `pods`
    the Pods the cluster runs for them instead (operator-injected containers included)."""
    spec = load_spec(path)
    if not pods:
        values = rendering.build_values(spec, placeholders(spec), model_sha256=chart.local_model_sha(spec))
        with valuesfile.private_values_file(values) as file:
            return helm.template(spec.kubernetes.release, [file], namespace=spec.kubernetes.namespace)
    import yaml

    from mlctl.pods import cluster_pods

    docs = []
    for pod in cluster_pods(chart.rendered_objects(spec, train_job=True), spec.kubernetes.namespace):
        services = "".join(
            f"\n# Service {s.name}: " + ", ".join(f"{n} {p}→{t}" for n, (p, t) in s.ports.items()) for s in pod.services
        )
        docs.append(f"# {pod.role}: the pod of {pod.owner}{services}\n" + yaml.safe_dump(pod.manifest, sort_keys=False))
    return "---\n".join(docs)
