"""checkov (a peer's rule set) over everything the release creates: the chart's objects, the
training Job included, and the pods of `mlctl template --pods` (Seldon's injected containers
included). Every finding that stays is in tests/checkov/baseline.yaml with its reason; a new
finding fails, and so does a baseline entry checkov no longer reports (the baseline stays true).

Two renderings of the shipped spec: as shipped, and hardened (kubernetes.networkPolicy on, the
images pinned to the digests `mlctl build --push` records).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from mlctl import chart, images
from mlctl.pods import cluster_pods
from mlctl.specload import load_spec
from tests.chart.helpers import find_helm
from tests.helpers import REPO

CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
BASELINE = REPO / "tests" / "checkov" / "baseline.yaml"

pytestmark = [
    pytest.mark.skipif(not CHECKOV.is_file(), reason=f"{CHECKOV} missing (scripts/setup.sh creates it)"),
    pytest.mark.skipif(find_helm() is None, reason="no helm binary (run scripts/fetch-tools.sh)"),
]


PINNED = "@sha256:" + "5e" * 32  # stands for the registry's digest of a third-party image


def _spec(tmp: Path, hardened: bool) -> Path:
    raw = yaml.safe_load((REPO / "spec" / "mnist.yaml").read_text())
    raw["model"] = str(REPO / "model")
    raw["data"]["dir"] = str(REPO.parent / "shared" / "data" / "mnist")
    raw["training"]["output"] = str(tmp / "models")
    if hardened:
        raw["kubernetes"]["networkPolicy"] = True
        raw["kubernetes"]["testImage"] = "python:3.11-slim" + PINNED
        raw["storage"]["initializerImage"] = "seldonio/rclone-storage-initializer:1.17.1" + PINNED
    path = tmp / "mnist.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    spec = load_spec(path)
    if hardened:  # as `mlctl build --push` leaves it
        for ref in images.resolve(spec).values():
            images.record_push(spec, ref.reference, "sha256:" + ref.tag.ljust(64, "0"))
    return path


def _render(tmp: Path, hardened: bool) -> dict[str, str]:
    """Writes the scan's input; returns {checkov resource id: stable name}."""
    spec = load_spec(_spec(tmp, hardened))
    objects = chart.rendered_objects(spec, train_job=True)
    pods = cluster_pods(objects, spec.kubernetes.namespace)
    scan = tmp / "scan"
    scan.mkdir()
    (scan / "release.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    (scan / "pods.yaml").write_text(yaml.safe_dump_all([p.manifest for p in pods], sort_keys=False))
    names = {}
    for o in objects:
        kind, meta = o["kind"], o["metadata"]
        names[f"{kind}.{meta.get('namespace', 'default')}.{meta['name']}"] = f"{kind}/{meta['name']}"
    # Pod and Job names carry hashes of their content; findings are kept by role instead.
    names.update({f"Pod.{p.manifest['metadata']['namespace']}.{p.name}": f"Pod/{p.role} (pods)" for p in pods})
    for o in objects:
        if o["kind"] == "Job":
            names[f"Job.{o['metadata']['namespace']}.{o['metadata']['name']}"] = "Job/training"
            # checkov's graph checks see a Job's template as a Pod named after the Job and its labels.
            names[f"Pod.{o['metadata']['namespace']}.{o['metadata']['name']}."] = "Job/training (template)"
    return names


def _name(names: dict[str, str], resource: str) -> str:
    return names.get(resource) or next(
        (v for k, v in names.items() if k.endswith(".") and resource.startswith(k)), resource
    )


def _findings(tmp: Path, variant: str) -> set[tuple[str, str, str]]:
    names = _render(tmp, variant == "hardened")
    p = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(tmp / "scan"),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--quiet",
            "--skip-download",
            "--compact",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode in (0, 1), p.stderr[-2000:]  # 1: findings
    reports = json.loads(p.stdout)
    found = set()
    for report in reports if isinstance(reports, list) else [reports]:
        assert report["summary"]["parsing_errors"] == 0
        for failed in report["results"]["failed_checks"]:
            found.add((variant, failed["check_id"], _name(names, failed["resource"])))
    return found


def _baseline() -> set[tuple[str, str, str]]:
    out = set()
    for entry in yaml.safe_load(BASELINE.read_text()):
        assert entry.get("reason", "").strip(), f"{entry['check']}: every baselined finding says why it stays"
        out |= {(v, entry["check"], r) for v in entry["variants"] for r in entry["resources"]}
    return out


def test_checkov_finds_nothing_new_and_the_baseline_is_current(tmp_path: Path):
    found = set()
    for variant in ("shipped", "hardened"):
        (tmp_path / variant).mkdir()
        found |= _findings(tmp_path / variant, variant)
    baseline = _baseline()
    new, stale = sorted(found - baseline), sorted(baseline - found)
    assert not new, "new checkov findings (fix them, or baseline them with a reason):\n" + "\n".join(map(str, new))
    assert not stale, "baselined findings checkov no longer reports (remove them):\n" + "\n".join(map(str, stale))


def test_the_hardened_variant_fixes_what_the_issue_named(tmp_path: Path):
    """No token automount anywhere, a NetworkPolicy for every pod, our images pinned by digest."""
    found = _findings(tmp_path, "hardened")
    checks = {(c, r) for _, c, r in found}
    assert not [f for f in checks if f[0] in ("CKV_K8S_38", "CKV2_K8S_6", "CKV_K8S_21")]
    assert not [f for f in checks if f[0] == "CKV_K8S_43"], "an image is not pinned by digest"
    assert not [f for f in checks if f[0] in ("CKV_K8S_10", "CKV_K8S_11", "CKV_K8S_12", "CKV_K8S_13")], checks
