"""model.preprocess.normalize: a table lookup that must equal the arithmetic it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.data import load_mnist
from model.preprocess import normalize, reference_normalize


def test_every_pixel_value_matches_the_arithmetic():
    pixels = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)  # 0..255, three times
    got = normalize(pixels)
    assert got.dtype == torch.float32 and tuple(got.shape) == (1, 1, 28, 28)
    assert torch.equal(got, reference_normalize(torch.from_numpy(pixels)).reshape(1, 1, 28, 28))


@pytest.mark.slow
def test_whole_training_set_is_bit_identical_to_the_arithmetic(mnist_dir):
    """The vectorised arithmetic on 47 M pixels, against the table: not one bit differs."""
    images = load_mnist(mnist_dir).train_x
    assert torch.equal(normalize(images), reference_normalize(torch.as_tensor(images)).unsqueeze(1))


def test_numpy_and_torch_inputs_agree():
    pixels = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    assert torch.equal(normalize(pixels), normalize(torch.from_numpy(pixels)))
    assert torch.equal(normalize(pixels[0]), normalize(pixels)[:1])


@pytest.mark.parametrize(
    "pixels, error, message",
    [
        (np.zeros((28, 28), dtype=np.float32), TypeError, "uint8"),
        (torch.zeros(28, 28), TypeError, "uint8"),
        (np.zeros((27, 28), dtype=np.uint8), ValueError, "shaped"),
        (np.zeros((2, 1, 28, 28), dtype=np.uint8), ValueError, "shaped"),
    ],
)
def test_wrong_input_is_refused(pixels, error, message):
    with pytest.raises(error, match=message):
        normalize(pixels)
