"""`mlctl init DIR --from …` for each starting point → `mlctl validate` → `mlctl apply` (local):
a new folder holds a spec and a model package that validate at once and serve their examples."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.helpers import run_mlctl


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init(folder: Path, start: str) -> Path:
    p = run_mlctl("init", str(folder), "--from", start, "--json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    spec = Path(result["spec"])
    assert spec == folder / "spec.yaml" and (folder / result["package"] / "model.yaml").is_file()
    v = run_mlctl("validate", str(spec))
    assert v.returncode == 0, v.stderr
    return spec


def _port(spec: Path, port: int) -> None:
    text = spec.read_text()
    assert "port: " in text, text
    spec.write_text(
        "\n".join(f"    port: {port}" if line.strip().startswith("port:") else line for line in text.splitlines())
        + "\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize("start", ["blank", "tabular", "mnist"])
def test_init_validates_and_applies_locally(tmp_path, start):
    folder = tmp_path / f"my-{start}"
    spec = _init(folder, start)
    _port(spec, free_port())
    if start == "mnist":  # the shipped recipe on a slice of the data: minutes are not the point here
        spec.write_text(
            spec.read_text().replace("  epochs: 5\n", "  epochs: 1\n  limitTrain: 3000\n  limitTest: 500\n")
        )
    try:
        p = run_mlctl("apply", str(spec), "--json", timeout=900)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
        result = json.loads(p.stdout)
        (check,) = [s for s in result["steps"] if s["name"] == "check"]
        assert check["status"] == "ok", check
        models = list((folder / ".mlctl" / "models").iterdir())
        assert models, "the model was trained into the new project's own folder"
    finally:
        run_mlctl("delete", str(spec))


def test_init_refuses_a_folder_with_files_and_an_unknown_start(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    p = run_mlctl("init", str(tmp_path))
    assert p.returncode == 2 and "not empty" in p.stderr and "Traceback" not in p.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"
    p = run_mlctl("init", str(tmp_path / "new"), "--from", "nope")
    assert p.returncode == 2 and "blank" in p.stderr and "tabular" in p.stderr
    assert not (tmp_path / "new").exists()
