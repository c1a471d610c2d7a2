"""Training: `python -m PACKAGE.train --out FOLDER` (mlctl adds its flags; unknown ones are
ignored here). Writes model.pt and metadata.json through the runtime's artifact writer and
prints the metadata as one JSON line. Replace the data and the fitting with yours."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

import numpy as np

from runtime import artifact


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m PACKAGE.train")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--training-hash", default=None)
    args, _ = parser.parse_known_args()
    rng = np.random.default_rng(args.seed)
    x = np.concatenate([rng.normal(-1.0, 0.7, size=(300, 2)), rng.normal(1.0, 0.7, size=(300, 2))])
    y = np.repeat([0, 1], 300)  # stand-ins for your data: two clouds of points
    order = rng.permutation(len(y))
    train, test = order[:500], order[500:]
    centroids = np.stack([x[train][y[train] == k].mean(0) for k in (0, 1)]).astype(np.float32)
    predicted = ((x[test][:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    accuracy = float((predicted == y[test]).mean())

    def save(path):
        with open(path, "wb") as f:
            np.save(f, centroids)

    metadata = {
        "format": artifact.FORMAT,
        "test_accuracy": accuracy,
        "seed": args.seed,
        "training_hash": args.training_hash,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    try:
        written = artifact.write_artifact(args.out, save, metadata)
    except artifact.ArtifactError as e:
        print(f"error: --out {e}", file=sys.stderr)
        return 2
    print(json.dumps(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
