"""The int8 serving network (model/quantize.py): rebuilt from model.pt plus the qparams training
recorded, it is the network training evaluated, and it predicts what float32 predicts."""

from __future__ import annotations

import json

import pytest
import torch

from model import quantize
from model.net import Net
from model.preprocess import normalize

pytestmark = pytest.mark.skipif(not quantize.available(), reason="no x86 int8 engine in this torch")


def _float_net(model_dir) -> Net:
    net = Net()
    net.load_state_dict(torch.load(model_dir / "model.pt", weights_only=True))
    return net.eval()


def _evaluate(net, images, labels) -> tuple[torch.Tensor, float]:
    with torch.inference_mode(), quantize.quiet():
        out = torch.cat([net(normalize(images[i : i + 1000])) for i in range(0, len(labels), 1000)])
    return out, int((out.argmax(1) == torch.as_tensor(labels, dtype=torch.long)).sum()) / len(labels)


@pytest.mark.slow
def test_recorded_int8_accuracy_is_the_rebuilt_networks(trained_model_dir, mnist_test):
    images, labels = mnist_test
    meta = json.loads((trained_model_dir / "metadata.json").read_text())
    int8 = meta["int8"]
    assert int8["engine"] == "x86" and int8["calibration_images"] == quantize.CALIBRATION_IMAGES
    net = _float_net(trained_model_dir)
    out8, acc8 = _evaluate(quantize.build(net, int8["qparams"]), images, labels)
    out32, acc32 = _evaluate(net, images, labels)
    assert acc8 == pytest.approx(int8["test_accuracy"], abs=1e-9), "training evaluated another network"
    assert acc32 == pytest.approx(meta["test_accuracy"], abs=1e-9)
    assert acc8 >= 0.985 and acc8 >= acc32 - 0.003, (acc8, acc32)
    agree = float((out8.argmax(1) == out32.argmax(1)).float().mean())
    assert agree >= 0.998, f"int8 and float32 disagree on {1 - agree:.2%} of the test set"
    # The served log-probability of the predicted class stays close to float32's.
    top = out32.argmax(1, keepdim=True)
    assert float((out8.gather(1, top) - out32.gather(1, top)).abs().max()) < 0.25


@pytest.mark.slow
def test_calibrate_then_build_is_deterministic_through_json(trained_model_dir, mnist_test):
    images = normalize(mnist_test[0][:512])
    net = _float_net(trained_model_dir)
    qparams = quantize.calibrate(net, images)
    again = json.loads(json.dumps(qparams))
    with torch.inference_mode(), quantize.quiet():
        a, b = quantize.build(net, qparams)(images), quantize.build(net, again)(images)
    assert torch.equal(a, b)
    assert set(qparams) >= {"conv1_input_scale_0", "conv1.scale", "conv2.scale", "fc1.scale"}
    assert "fc2.scale" not in qparams, "fc2 stays float32"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda q: q.pop("conv2.scale"), "do not match"),
        (lambda q: q.update({"extra.scale": 1.0}), "do not match"),
        (lambda q: q.update({"conv2.scale": 0.0}), "positive scale"),
        (lambda q: q.update({"fc1.zero_point": True}), "not a number"),
        (lambda q: q.update({"fc1.scale": "0.1"}), "not a number"),
    ],
)
def test_build_refuses_qparams_that_do_not_fit(change, message):
    net = Net().eval()
    qparams = quantize.calibrate(net, torch.randn(8, 1, 28, 28))
    change(qparams)
    with pytest.raises(quantize.QuantizationError, match=message):
        quantize.build(net, qparams)
