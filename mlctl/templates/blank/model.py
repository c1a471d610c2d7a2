"""Your model: the class the contract (model.yaml) names. Replace the nearest-centroid rule with
your network; keep the two methods. The server checks the weights' digest and every request
against model.yaml before these run, so neither checks again."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Model:
    def __init__(self) -> None:
        self.centroids: np.ndarray | None = None

    def load(self, folder: Path) -> None:
        """Read what training wrote into `folder` (model.pt: here, a numpy array)."""
        with open(folder / "model.pt", "rb") as f:
            self.centroids = np.load(f)

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """inputs["x"]: (N, 2) float32 → (N, 2) probabilities of negative and positive."""
        assert self.centroids is not None, "load() first"
        x = inputs["x"]
        distances = ((x[:, None, :] - self.centroids[None]) ** 2).sum(-1)
        scores = np.exp(-(distances - distances.min(1, keepdims=True)))
        return (scores / scores.sum(1, keepdims=True)).astype(np.float32)
