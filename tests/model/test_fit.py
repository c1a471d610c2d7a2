"""model/fit.py's freezing: once conv2 stops, the remaining steps train the fully connected layers
on the convolutions' output computed once per image, and that trains the same network as running
the frozen convolutions at every step; and --ema saves the exponential average of the weights
after every step, recomputed here by hand."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from model import fit as fit_module
from model.preprocess import normalize
from model.trainconfig import DEFAULT_FREEZE_CONV2, TrainConfig
from model.trainnet import TrainingNet, features, head


def synthetic(n: int = 160, seed: int = 0) -> types.SimpleNamespace:
    rng = np.random.default_rng(seed)
    return types.SimpleNamespace(
        train_x=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        train_y=rng.integers(0, 10, n, dtype=np.uint8),
    )


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(**overrides) -> dict[str, torch.Tensor]:
    torch.manual_seed(5)
    cfg = TrainConfig(data_dir="", out="", epochs=2, batch_size=32, seed=5, progress=False, **overrides)
    return fit_module.fit(cfg, synthetic(), "cpu", "fp32").state_dict()


def test_frozen_features_are_the_network_before_its_first_dropout(monkeypatch, one_thread):
    monkeypatch.setattr(fit_module, "FEATURE_BATCH_SIZE", 64)  # 150 images: batches of 64, 64, 22
    torch.manual_seed(2)
    net = TrainingNet()
    x = normalize(synthetic(150).train_x).contiguous(memory_format=torch.channels_last)
    cached = fit_module.frozen_features(net, x, "cpu", None)
    assert not any(p.requires_grad for p in (*net.conv1.parameters(), *net.conv2.parameters()))
    assert all(p.requires_grad for p in (*net.fc1.parameters(), *net.fc2.parameters()))
    assert cached.shape == (150, 9216) and cached.dtype == torch.float32
    with torch.no_grad():
        for rows in (slice(0, 5), slice(60, 70), slice(140, 150)):  # across the batch boundaries
            torch.testing.assert_close(cached[rows], features(net, x[rows]).flatten(1))
        torch.testing.assert_close(head(net.eval(), cached), net(x))


def test_training_on_the_cache_equals_running_the_frozen_convolutions(monkeypatch, one_thread):
    cached = train(freeze_conv2=0.5)

    def freeze_only(model, *_):  # conv1 and conv2 stop, but every step still runs them
        model.conv1.requires_grad_(False)
        model.conv2.requires_grad_(False)

    monkeypatch.setattr(fit_module, "frozen_features", freeze_only)
    uncached = train(freeze_conv2=0.5)
    assert cached.keys() == uncached.keys()
    for name in cached:
        torch.testing.assert_close(cached[name], uncached[name], rtol=1e-4, atol=1e-5, msg=name)


def test_conv2_stops_at_its_share_of_the_steps(one_thread):
    torch.manual_seed(5)
    initial = TrainingNet().state_dict()  # what a seeded run starts from
    # conv1 trains throughout unless conv2's freezing stops it (here, so each share shows on both)
    never, halfway, at_once = (train(freeze_conv1=1.0, freeze_conv2=share) for share in (1.0, 0.5, 0.0))
    for name in ("conv1.weight", "conv2.weight", "conv2.bias"):
        assert torch.equal(at_once[name], initial[name]), name  # frozen from the first step
        assert not torch.equal(halfway[name], initial[name]), name  # trained for half the steps
        assert not torch.equal(halfway[name], never[name]), name  # ... and only half
    for name in ("fc1.weight", "fc2.weight"):
        assert not torch.equal(at_once[name], initial[name]), name  # the head trains throughout


def test_conv2_stops_by_default_at_the_share_for_the_training_precision(one_thread):
    fp32_default = DEFAULT_FREEZE_CONV2["fp32"]
    other = next(v for v in DEFAULT_FREEZE_CONV2.values() if v != fp32_default)  # bf16's
    by_default, as_given, at_other = train(), train(freeze_conv2=fp32_default), train(freeze_conv2=other)
    for name in by_default:
        assert torch.equal(by_default[name], as_given[name]), name
    assert not torch.equal(by_default["conv2.weight"], at_other["conv2.weight"])


def test_ema_saves_the_exponential_average_of_every_steps_weights(one_thread):
    """With --ema d the saved weights are the average over the steps, computed here by hand from
    the weights after each optimizer step: the first step's weights, then avg = d·avg + (1 − d)·w."""
    decay = 0.9
    names = [name for name, _ in TrainingNet().named_parameters()]
    after_each_step: list[dict[str, torch.Tensor]] = []

    def record(optimizer, *_):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        after_each_step.append({n: p.detach().clone() for n, p in zip(names, params, strict=True)})

    hook = register_optimizer_step_post_hook(record)
    try:
        averaged = train(ema=decay)
    finally:
        hook.remove()
    assert len(after_each_step) == 2 * 5  # 2 epochs of 160 images in batches of 32
    by_hand = dict(after_each_step[0])
    for weights in after_each_step[1:]:
        by_hand = {n: decay * by_hand[n] + (1 - decay) * weights[n] for n in names}
    assert averaged.keys() == by_hand.keys()
    for name in names:
        torch.testing.assert_close(averaged[name], by_hand[name], msg=lambda m, name=name: f"{name}: {m}")
    # ... and not the last step's weights, which a run without the average saves.
    assert not torch.equal(averaged["fc1.weight"], after_each_step[-1]["fc1.weight"])
    torch.testing.assert_close(train(ema=0.0)["fc1.weight"], after_each_step[-1]["fc1.weight"])
