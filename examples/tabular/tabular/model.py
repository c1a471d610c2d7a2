"""The served model: the contract's class (model.yaml's `class: tabular.model:TabularModel`).

The server builds it with no arguments, calls `load` once in each process that serves (after
any fork: torch state made before a fork can deadlock in the child), and `predict` per request.
It has checked what reaches these methods already: the weights' sha256 against the release's,
and each request's datatype, shape and batch size against model.yaml; so neither checks again.
Imports nothing from mlctl, runtime or an engine: the same class serves under any of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tabular.net import TabularNet


class TabularModel:
    """Pump sensor readings → the probabilities of normal, overheat and vibration."""

    def __init__(self) -> None:
        self._net: TabularNet | None = None

    def load(self, folder: Path) -> None:
        """Read `folder/model.pt` (a TabularNet state_dict, standardisation included)."""
        state = torch.load(Path(folder) / "model.pt", map_location="cpu", weights_only=True)
        net = TabularNet()
        net.load_state_dict(state)
        self._net = net.eval()

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """`inputs["features"]`, (N, 8) float32 → (N, 3) float32 probabilities, each row summing to 1,
        columns in model.yaml's label order (the network's output order, tabular.data.LABELS)."""
        if self._net is None:
            raise RuntimeError("predict() before load(): the server loads the model first")
        features = torch.from_numpy(np.ascontiguousarray(inputs["features"], dtype=np.float32))
        with torch.inference_mode():
            return torch.softmax(self._net(features), dim=1).numpy()
