"""The network, the one definition training and serving share: standardise, then a small MLP.

The standardisation (each feature's mean and standard deviation over the training split) is
part of the module, as buffers: the state_dict carries it, so model.pt alone is the model and
serving cannot standardise with other numbers than training did.
"""

from __future__ import annotations

import torch
from torch import nn

N_FEATURES = 8
N_CLASSES = 3
HIDDEN = 32


class TabularNet(nn.Module):
    """(N, 8) raw sensor readings → (N, 3) logits: standardise, 8→32→32→3 with ReLU."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(N_FEATURES))
        self.register_buffer("std", torch.ones(N_FEATURES))
        self.layers = nn.Sequential(
            nn.Linear(N_FEATURES, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, N_CLASSES),
        )

    def fit_standardisation(self, x: torch.Tensor) -> None:
        """Set the buffers from the training rows `x`; a constant feature keeps a std of 1
        (dividing by ~0 would blow its noise up)."""
        std = x.std(dim=0)
        self.mean.copy_(x.mean(dim=0))
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - self.mean) / self.std)
