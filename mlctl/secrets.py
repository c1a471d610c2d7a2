"""Resolve the spec's secret references (environment variables, files) into values.

Values live only in memory and in the 0600 values files mlctl writes on request; every error
names where the value was expected, never the value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mlctl.errors import UsageError
from mlctl.spec import SecretRef, Spec


@dataclass(frozen=True)
class Secrets:
    """The credentials a spec needs, resolved. `repr` never shows them."""

    registry_password: str | None = None
    storage_access_key_id: str | None = None
    storage_secret_access_key: str | None = None

    def __repr__(self) -> str:
        present = [k for k, v in vars(self).items() if v is not None]
        return f"Secrets(<{', '.join(present) or 'none'}>)"

    def values(self) -> list[str]:
        """Every resolved secret (to mask them in anything mlctl prints)."""
        return [v for v in vars(self).values() if v]


def resolve(ref: SecretRef, field: str) -> str:
    """The value a reference points at; UsageError naming the variable or file when absent."""
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if not value:
            raise UsageError(
                f"{field}: environment variable {ref.env} is not set (or empty)",
                hint=f"export {ref.env}=… (from your secret store) and run again",
            )
        return value
    assert ref.file is not None  # SecretRef guarantees exactly one of env/file
    try:
        value = ref.file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise UsageError(f"{field}: cannot read {ref.file}: {exc.strerror}") from exc
    if not value:
        raise UsageError(f"{field}: {ref.file} is empty")
    return value


UNUSED_REGISTRY_PASSWORD = "unused-the-images-are-built-here"
"""The pull Secret's password where no image is pulled from the registry (the podman target)."""


def resolve_secrets(spec: Spec, pulls_images: bool = True) -> Secrets:
    """Resolve the credentials the chart will put in Secrets (skipping those it will not create).

    `pulls_images=False` is for a target that builds its images where it runs them and pulls none
    from the spec's registry (podman): its password is not asked for, and when it is not set the
    pull Secret renders with UNUSED_REGISTRY_PASSWORD, which nothing reads."""
    reg, sto = spec.registry, spec.storage
    creates_storage = not spec.model_store.is_pvc and not sto.existing_secret

    def maybe(ref: SecretRef | None, field: str, needed: bool) -> str | None:
        return resolve(ref, field) if (needed and ref is not None) else None

    password = None
    if reg.creates_secret and reg.password is not None:
        try:
            password = resolve(reg.password, "registry.password")
        except UsageError:
            if pulls_images:
                raise
            password = UNUSED_REGISTRY_PASSWORD
    return Secrets(
        registry_password=password,
        storage_access_key_id=maybe(sto.access_key_id, "storage.accessKeyId", creates_storage),
        storage_secret_access_key=maybe(sto.secret_access_key, "storage.secretAccessKey", creates_storage),
    )


def placeholders(spec: Spec) -> Secrets:
    """Stand-ins for previews (`mlctl template`, `--dry-run`): the Secrets render, values hidden."""
    reg, sto = spec.registry, spec.storage
    creates_storage = not spec.model_store.is_pvc and not sto.existing_secret
    hidden = "<redacted>"
    return Secrets(
        registry_password=hidden if reg.creates_secret and reg.password else None,
        storage_access_key_id=hidden if creates_storage and sto.access_key_id else None,
        storage_secret_access_key=hidden if creates_storage and sto.secret_access_key else None,
    )
