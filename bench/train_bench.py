"""Training benchmark: the tutorial's loop vs ours, in one run (the machines are noisy, so only
same-run ratios mean anything).

Times one epoch of ../shared/baseline/seed_train.py (and projects its 14-epoch default) and one
full default run of `python -m model.train` (full data, to ≥ 99.0 %), each as a subprocess; peak
RSS comes from wait4() of that very subprocess. Prints a small table, then one JSON line, on
stdout; exits 1 if our run missed 99.0 %. Run it alone:
`flock /tmp/mlctl-heavy.lock .venv/bin/python bench/train_bench.py [-- EXTRA model.train ARGS]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED_EPOCHS = 14  # the tutorial's default


def run_measured(argv: list[str], cwd: Path) -> tuple[int, float, int, str, str]:
    """Run argv; return (exit code, wall seconds, peak RSS in MiB, stdout, stderr)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, text=True)
        # wait4 gives this child's own rusage; RUSAGE_CHILDREN would mix in earlier children.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, wall, usage.ru_maxrss // 1024, out.read(), err.read()


def json_lines(text: str) -> list[dict]:
    return [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-dir", type=Path, default=REPO.parent / "shared" / "baseline")
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    ap.add_argument("--skip-seed", action="store_true", help="time only our training")
    ap.add_argument("train_args", nargs="*", help="extra arguments for model.train (after --)")
    a = ap.parse_args()

    result: dict = {}
    if not a.skip_seed:
        rc, wall, rss, stdout, stderr = run_measured(
            [sys.executable, str(a.baseline_dir / "seed_train.py"), str(a.data_dir), "--epochs", "1"], a.baseline_dir
        )
        if rc:
            print(f"seed_train.py failed ({rc}): {stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return 1
        epoch = json_lines(stdout)[-1]
        result["seed"] = {
            "epoch_seconds": epoch["seconds"],
            "test_accuracy_1_epoch": epoch["test_accuracy"],
            "projected_14_epoch_seconds": round(epoch["seconds"] * SEED_EPOCHS, 1),
            "wall_seconds": round(wall, 1),
            "peak_rss_mib": rss,
        }

    with tempfile.TemporaryDirectory() as tmp:
        rc, wall, rss, stdout, stderr = run_measured(
            [
                sys.executable,
                "-m",
                "model.train",
                "--data-dir",
                str(a.data_dir),
                "--out",
                f"{tmp}/artifact",
                "--no-progress",
                *a.train_args,
            ],
            REPO,
        )
    if rc:
        print(f"model.train failed ({rc}): {stderr.strip()}", file=sys.stderr)
        return 1
    meta = json_lines(stdout)[-1]
    result["ours"] = {
        "train_seconds": meta["train_seconds"],
        "wall_seconds": round(wall, 1),
        "test_accuracy": meta["test_accuracy"],
        "epochs": meta["epochs"],
        "peak_rss_mib": rss,
        "hyperparameters": meta["hyperparameters"],
    }
    result["reached_99"] = meta["test_accuracy"] >= 0.99 and meta["test_examples"] == 10_000
    if "seed" in result:
        s, o = result["seed"], result["ours"]
        result["ratio_seed_epoch_to_ours_wall"] = round(s["epoch_seconds"] / o["wall_seconds"], 2)
        result["ratio_seed_14_epochs_to_ours_wall"] = round(s["projected_14_epoch_seconds"] / o["wall_seconds"], 2)

    rows = []
    if "seed" in result:
        s = result["seed"]
        rows += [
            (
                "seed: 1 epoch (train loop)",
                f"{s['epoch_seconds']:.1f} s",
                f"{s['test_accuracy_1_epoch']:.4f}",
                f"{s['peak_rss_mib']} MiB",
            ),
            (f"seed: {SEED_EPOCHS} epochs (projected)", f"{s['projected_14_epoch_seconds']:.0f} s", "", ""),
        ]
    o = result["ours"]
    rows += [
        (
            f"ours: {o['epochs']} epochs (train loop)",
            f"{o['train_seconds']:.1f} s",
            f"{o['test_accuracy']:.4f}",
            f"{o['peak_rss_mib']} MiB",
        ),
        ("ours: whole process (wall)", f"{o['wall_seconds']:.1f} s", "", ""),
    ]
    print(f"{'run':36} {'time':>9} {'test acc':>9} {'peak RSS':>10}")
    for r in rows:
        print(f"{r[0]:36} {r[1]:>9} {r[2]:>9} {r[3]:>10}")
    if "seed" in result:
        print(
            f"seed 1 epoch / ours whole run: {result['ratio_seed_epoch_to_ours_wall']}×   "
            f"seed 14 epochs / ours: {result['ratio_seed_14_epochs_to_ours_wall']}×"
        )
    print(json.dumps(result, sort_keys=True))
    return 0 if result["reached_99"] else 1


if __name__ == "__main__":
    sys.exit(main())
