"""`mlctl models`: the spec's models here, marked with the one the spec trains now."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlctl.artifacts import model_name
from mlctl.specload import load_spec
from tests.helpers import SPEC_HEAD, run_mlctl


def _artifact(folder: Path, payload: bytes) -> str:
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    (folder / "metadata.json").write_text(
        json.dumps(
            {"format": "mlctl.mnist/v1", "sha256": sha, "test_accuracy": 0.99, "created": "2026-12-01T00:00:00Z"}
        )
    )
    return sha


def test_models_lists_what_was_trained_here(tmp_path: Path):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(SPEC_HEAD + "modelStore: {uri: pvc://models/mnist}\ntraining: {output: out}\n")
    current = model_name(load_spec(spec_file))
    old_sha = _artifact(tmp_path / "out" / "mnist-0123456789ab", b"old")
    new_sha = _artifact(tmp_path / "out" / current, b"new")
    (tmp_path / "out" / "notes").mkdir()  # not a model
    p = run_mlctl("models", str(spec_file), "--json")
    assert p.returncode == 0, p.stderr
    listing = json.loads(p.stdout)
    assert [(m["name"], m["sha256"], m["current"]) for m in listing["local"]] == sorted(
        [("mnist-0123456789ab", old_sha, False), (current, new_sha, True)]
    )
    assert listing["serving"] == []
    text = run_mlctl("models", str(spec_file)).stdout
    assert f" * {current}  sha256 {new_sha[:12]}…" in text and f"(* the spec's model now: {current})" in text
