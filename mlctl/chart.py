"""What the chart renders from values (`helm template` on a 0600 values file): its objects, or
the decoded data of one of its Secrets, as the cluster's pods would read it."""

from __future__ import annotations

import yaml

from mlctl import helm, render, valuesfile
from mlctl.artifacts import artifact_dir, read_local, training_hash
from mlctl.secrets import Secrets, placeholders
from mlctl.spec import Spec


def local_model_sha(spec: Spec) -> str:
    """The digest of the spec's local artifact, or "" when it has not been trained here."""
    artifact = read_local(artifact_dir(spec), verify=False)
    return artifact.sha256 if artifact else ""


def rendered_objects(spec: Spec, secrets=None, train_job: bool = False, model_sha256: str | None = None) -> list[dict]:
    """The objects the chart renders for the spec (`helm template`), credentials redacted unless
    `secrets` are given; the model digest is the local artifact's unless given."""
    sha = local_model_sha(spec) if model_sha256 is None else model_sha256
    values = render.build_values(
        spec, secrets or placeholders(spec), model_sha256=sha, training_hash=training_hash(spec), train_job=train_job
    )
    return template_values(spec, values, secrets)


def template_values(spec: Spec, values: dict, secrets=None) -> list[dict]:
    """The objects the chart renders from these values (`helm template`, a 0600 values file)."""
    with valuesfile.private_values_file(values) as file:
        text = helm.template(
            spec.kubernetes.release,
            [file],
            namespace=spec.kubernetes.namespace,
            secrets=secrets.values() if secrets else (),
        )
    return [doc for doc in yaml.safe_load_all(text) if doc]


def chart_secret(spec: Spec, template: str, secrets: Secrets) -> dict[str, str]:
    """The decoded data of one of the chart's Secrets (`templates/secret-storage.yaml`, …) as the
    chart renders it for `spec`: what the cluster's pods will read. Credentials `secrets` lacks are
    stand-ins, so it renders with just the ones that Secret needs."""
    import base64
    from dataclasses import fields, replace

    stand_ins = placeholders(spec)
    full = replace(stand_ins, **{f.name: getattr(secrets, f.name) for f in fields(secrets) if getattr(secrets, f.name)})
    k = spec.kubernetes
    with valuesfile.private_values_file(render.build_values(spec, full)) as file:
        text = helm.template(k.release, [file], namespace=k.namespace, secrets=full.values(), show_only=[template])
    secret = next(d for d in yaml.safe_load_all(text) if d)
    return {name: base64.b64decode(value).decode() for name, value in (secret.get("data") or {}).items()}
