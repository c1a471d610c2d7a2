"""The one preprocessing step training and serving share: uint8 pixels → normalised tensor.

Training applies `normalize` to whole uint8 batches held in memory; serving decodes an image to
the same 28×28 uint8 grid first and then calls the same `normalize`, so the two paths cannot
drift apart (the tutorial's server skipped Normalize: train/serve skew).
"""

import numpy as np
import torch

# Mean and standard deviation of the MNIST training pixels scaled to [0, 1] (the tutorial's).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
SIDE = 28


def normalize(pixels: "np.ndarray | torch.Tensor") -> torch.Tensor:
    """Map uint8 pixels shaped (N, 28, 28) or (28, 28) to float32 (N, 1, 28, 28), normalised
    exactly as ToTensor() followed by Normalize((0.1307,), (0.3081,))."""
    t = torch.as_tensor(pixels)
    if t.dtype != torch.uint8:
        raise TypeError(f"expected uint8 pixels, got {t.dtype}")
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3 or tuple(t.shape[1:]) != (SIDE, SIDE):
        raise ValueError(f"expected pixels shaped (N, {SIDE}, {SIDE}), got {tuple(t.shape)}")
    return ((t.to(torch.float32) / 255.0 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)
