"""model/trainnet.py: training's cheaper `Net` computes the same function, with the same
gradients, and its dropout draws the same keep probability and scale as nn.Dropout."""

from __future__ import annotations

import pytest
import torch

from model.net import Net
from model.trainnet import Dropout, TrainingNet, as_net, keep_threshold, random_bytes


def twins(seed: int = 0) -> tuple[Net, TrainingNet]:
    torch.manual_seed(seed)
    net = Net()
    training = TrainingNet()
    training.load_state_dict(net.state_dict())
    return net.eval(), training.eval()


def test_outputs_and_gradients_equal_nets_exactly():
    net, training = twins()
    x = torch.randn(32, 1, 28, 28)
    out, out2 = net(x), training(x)
    assert torch.equal(out, out2)
    out.sum().backward()
    out2.sum().backward()
    for (name, a), (_, b) in zip(net.named_parameters(), training.named_parameters(), strict=True):
        assert torch.equal(a.grad, b.grad), name


def test_the_same_in_channels_last_bf16_as_training_runs_it():
    net, training = twins(1)
    net, training = net.to(memory_format=torch.channels_last), training.to(memory_format=torch.channels_last)
    x = torch.randn(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(net(x), training(x))


def test_it_is_a_net_whose_weights_load_into_net():
    _, training = twins()
    assert isinstance(training, Net)
    plain = as_net(training.to(memory_format=torch.channels_last))
    assert type(plain) is Net and not plain.training
    assert plain.state_dict().keys() == Net().state_dict().keys()
    assert all(v.is_contiguous() for v in plain.state_dict().values())


@pytest.mark.parametrize("p, threshold", [(0.25, 192), (0.5, 128), (0.75, 64), (0.3, None), (0.0, None), (1.0, None)])
def test_the_keep_threshold_is_exact_or_refused(p, threshold):
    assert keep_threshold(p) == threshold


def test_a_p_it_cannot_draw_exactly_is_refused():
    with pytest.raises(ValueError, match="not a whole number"):
        Dropout(0.3)


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_dropout_keeps_one_minus_p_and_scales_the_kept(p):
    torch.manual_seed(3)
    layer = Dropout(p).train()
    x = torch.ones(1000, 1000)
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.003  # 1e6 draws: σ ≈ 0.0004
    assert torch.equal(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    assert torch.equal(layer.eval()(x), x)


def test_mask_bytes_are_uniform_so_the_probability_is_exact():
    torch.manual_seed(5)
    data = random_bytes(2_560_000)
    assert data.dtype == torch.uint8 and data.numel() == 2_560_000
    hist = torch.bincount(data.long(), minlength=256).float()
    assert (hist / hist.mean() - 1).abs().max() < 0.05  # 10,000 per value, σ = 1 %: the largest of 256 stays under 5σ
    assert abs(hist[128:].sum() / hist.sum() - 0.5) < 0.002  # the top bit too (σ ≈ 0.0003)


def test_dropout_gradient_is_the_mask_and_keeps_the_inputs_memory_format():
    torch.manual_seed(7)
    layer = Dropout(0.25).train()
    x = torch.randn(8, 64, 12, 12).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = layer(x)
    assert y.is_contiguous()  # flatten after it is then a view
    y.backward(torch.ones_like(y))
    assert x.grad.is_contiguous(memory_format=torch.channels_last)  # max-pool's fast backward
    kept = y.detach() != 0
    assert torch.equal(x.grad, torch.where(kept, torch.tensor(4 / 3), torch.tensor(0.0)))


def test_a_seeded_run_draws_the_same_masks():
    layer = Dropout(0.5).train()
    x = torch.ones(256, 9216)
    torch.manual_seed(11)
    first = layer(x)
    torch.manual_seed(11)
    assert torch.equal(first, layer(x))
