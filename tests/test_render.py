"""Spec → values: shape, secrets only on request, files written 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from mlctl.errors import UsageError
from mlctl.render import build_values
from mlctl.secrets import Secrets, placeholders, resolve_secrets
from mlctl.specload import load_spec
from mlctl.valuesfile import dump, write_private
from tests.helpers import REPO, SPEC_HEAD

SPEC = REPO / "spec" / "mnist.yaml"
CREDS = {
    "REGISTRY_PASSWORD": "reg-pw-5f1e",
    "MLCTL_S3_ACCESS_KEY_ID": "AKIA-77x",
    "MLCTL_S3_SECRET_ACCESS_KEY": "s3cr3t-9q",
}


def test_values_carry_no_secret_unless_given(monkeypatch):
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    spec = load_spec(SPEC)
    plain = yaml.safe_dump(build_values(spec))
    assert not any(v in plain for v in CREDS.values())
    full = build_values(spec, resolve_secrets(spec))
    assert full["registry"]["password"] == CREDS["REGISTRY_PASSWORD"]
    assert full["storage"]["credentials"] == {
        "access_key_id": CREDS["MLCTL_S3_ACCESS_KEY_ID"],
        "secret_access_key": CREDS["MLCTL_S3_SECRET_ACCESS_KEY"],
    }
    assert "reg-pw" not in repr(resolve_secrets(spec))


def test_missing_variable_is_named_without_values(monkeypatch):
    monkeypatch.delenv("REGISTRY_PASSWORD", raising=False)
    with pytest.raises(UsageError, match="registry.password: environment variable REGISTRY_PASSWORD is not set"):
        resolve_secrets(load_spec(SPEC))


def test_a_target_that_pulls_no_image_does_not_ask_for_the_registry_password(monkeypatch):
    from mlctl.secrets import UNUSED_REGISTRY_PASSWORD

    monkeypatch.delenv("REGISTRY_PASSWORD", raising=False)
    for k in ("MLCTL_S3_ACCESS_KEY_ID", "MLCTL_S3_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, CREDS[k])
    spec = load_spec(SPEC)
    assert resolve_secrets(spec, pulls_images=False).registry_password == UNUSED_REGISTRY_PASSWORD
    monkeypatch.setenv("REGISTRY_PASSWORD", CREDS["REGISTRY_PASSWORD"])  # set: used as it is
    assert resolve_secrets(spec, pulls_images=False).registry_password == CREDS["REGISTRY_PASSWORD"]
    for k in ("MLCTL_S3_ACCESS_KEY_ID", "MLCTL_S3_SECRET_ACCESS_KEY"):  # the store's keys are still needed
        monkeypatch.delenv(k)
    with pytest.raises(UsageError, match="storage.accessKeyId: environment variable MLCTL_S3_ACCESS_KEY_ID"):
        resolve_secrets(spec, pulls_images=False)


def test_secret_from_file(tmp_path: Path, monkeypatch):
    (tmp_path / "pw").write_text("from-a-file\n")
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(
        SPEC_HEAD + "modelStore: {uri: pvc://models/mnist}\n"
        "registry: {server: ghcr.io, username: bot, password: {file: pw}}\n"
    )
    secrets = resolve_secrets(load_spec(spec_file))
    assert secrets == Secrets(registry_password="from-a-file")


def test_placeholders_hide_every_value():
    spec = load_spec(SPEC)
    hidden = placeholders(spec)
    assert set(hidden.values()) == {"<redacted>"} and len(hidden.values()) == 3


def test_existing_secrets_need_no_credentials(tmp_path: Path, monkeypatch):
    for k in CREDS:
        monkeypatch.delenv(k, raising=False)
    f = tmp_path / "s.yaml"
    f.write_text(
        SPEC_HEAD + "modelStore: {uri: s3://b/m}\nregistry: {existingSecret: pull}\nstorage: {existingSecret: store}\n"
    )
    spec = load_spec(f)
    assert resolve_secrets(spec) == Secrets()
    values = build_values(spec)
    assert values["registry"]["existingSecret"] == "pull" and values["storage"]["existingSecret"] == "store"


def test_write_private_is_0600_from_creation(tmp_path: Path, monkeypatch):
    from mlctl import valuesfile

    modes: list[int] = []
    mkstemp = valuesfile.tempfile.mkstemp

    def recording_mkstemp(*args, **kwargs):
        fd, name = mkstemp(*args, **kwargs)
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))  # before a byte is written
        return fd, name

    monkeypatch.setattr(valuesfile.tempfile, "mkstemp", recording_mkstemp)
    target = tmp_path / "v.yaml"
    write_private(target, "a: 1\n")
    assert modes == [0o600]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == "a: 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["v.yaml"]


def test_write_private_keeps_the_old_file_when_the_replace_fails(tmp_path: Path, monkeypatch):
    from mlctl import valuesfile

    target = tmp_path / "v.yaml"
    write_private(target, "old: 1\n")
    seen: list[str] = []

    def failing_replace(src, dst):
        seen.append(Path(src).read_text())  # the new content was complete in the temporary file
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(valuesfile.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        write_private(target, "new: 2\n")
    assert seen == ["new: 2\n"]
    assert target.read_text() == "old: 1\n"  # never half-written
    assert [p.name for p in tmp_path.iterdir()] == ["v.yaml"]  # and no temporary file left behind


def test_render_cli_writes_secrets_only_when_asked(tmp_path: Path, mlctl, shipped_copy):
    plain, full = tmp_path / "values.yaml", tmp_path / "secret-values.yaml"
    p = mlctl("render", shipped_copy, "-o", str(plain), env=CREDS)
    assert p.returncode == 0, p.stderr
    assert not any(v in plain.read_text() for v in CREDS.values())
    p = mlctl("render", shipped_copy, "--include-secrets", "-o", str(full), env=CREDS)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(full.stat().st_mode) == 0o600
    assert all(v in full.read_text() for v in CREDS.values())
    assert not any(v in p.stdout + p.stderr for v in CREDS.values())


def test_render_refuses_to_print_secrets(mlctl, shipped_copy):
    p = mlctl("render", shipped_copy, "--include-secrets", env=CREDS)
    assert p.returncode == 2 and "never printed" in p.stderr
    assert not any(v in p.stdout + p.stderr for v in CREDS.values())


def test_dump_quotes_what_helm_would_misread():
    # helm reads YAML 1.1: a plain `n` or `y` is a boolean there, `1.0` a float.
    text = dump({"username": "n", "tag": "1.0", "other": "y", "plain": "mlctl-bot"})
    assert yaml.safe_load(text) == {"username": "n", "tag": "1.0", "other": "y", "plain": "mlctl-bot"}
    assert 'username: "n"' in text and 'tag: "1.0"' in text and "plain: mlctl-bot" in text
