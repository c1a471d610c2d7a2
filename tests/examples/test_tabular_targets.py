"""The tabular example end to end on the local target, both engines: `mlctl apply` trains it,
starts the real server and posts its four examples through the engine's protocol (each label
from the release's weights, the bad row a 400); `mlctl predict` reads the labels; nothing in
mlctl/ or runtime/ names the example (tests/test_genericity.py holds that)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.helpers import REPO, run_mlctl

pytestmark = pytest.mark.slow
PACKAGE = REPO / "examples" / "tabular" / "tabular"
SPEC = REPO / "examples" / "tabular" / "spec.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_spec(folder: Path, engine: str, port: int | None = None, namespace: str | None = None) -> Path:
    """The shipped tabular spec, its package and outputs made absolute, on `engine` (and `port`,
    `namespace` when given)."""
    text = SPEC.read_text()
    text = text.replace("model: tabular", f"model: {PACKAGE}")
    text = text.replace("output: ../../.mlctl/models", f"output: {folder / 'models'}")
    if port is not None:
        text = text.replace("port: 9100", f"port: {port}")
    if namespace is not None:
        text = text.replace("namespace: models", f"namespace: {namespace}")
    if engine == "kserve":
        kserve = "  engine: kserve\n  kserve: {image: ghcr.io/example/pumps-kserve}\n  #"
        text = text.replace("  engine: seldon", kserve)
    spec = folder / f"{engine}.yaml"
    spec.write_text(text)
    return spec


@pytest.mark.parametrize("engine", ["seldon", "kserve"])
def test_the_tabular_example_trains_serves_and_passes_its_examples(tmp_path, engine):
    spec = write_spec(tmp_path, engine, free_port())
    try:
        p = run_mlctl("apply", str(spec), "--json", timeout=600)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
        result = json.loads(p.stdout)
        (check,) = [s["detail"] for s in result["steps"] if s["name"] == "check"]
        for example, label in (("normal", "normal"), ("overheat", "overheat"), ("vibration", "vibration")):
            assert f"{example}.json → {label} (p=" in check, check
        assert "five-features.json → HTTP 400" in check, check
        assert result["summary"]["testAccuracy"] >= 0.9
        protocol = ["--protocol", "v2"] if engine == "kserve" else []
        p = run_mlctl(
            "predict", str(PACKAGE / "examples" / "overheat.json"), "--spec", str(spec), "--json",
            "--url", result["summary"]["baseUrl"], *protocol,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        (answer,) = json.loads(p.stdout)["predictions"]
        assert answer["class"] == "overheat", answer
    finally:
        run_mlctl("delete", str(spec))
