"""model/inference.py, the network both servers run, in-process: engine-free (this environment has
neither seldon_core nor kserve), the trained network's answers, the probe, the metadata facts,
and the process rule (a pickled model arrives unloaded)."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from model.artifact import DigestMismatch
from model.inference import OUTPUT_NAMES, MnistModel, ModelNotLoaded
from model.net import Net
from model.preprocess import normalize
from model.settings import ServingSettings
from tests.helpers import REPO


def settings(model_dir, **kw) -> ServingSettings:
    return ServingSettings(model_uri=str(model_dir), **kw)


@pytest.fixture(scope="module")
def loaded(trained_model_dir) -> MnistModel:
    model = MnistModel(settings(trained_model_dir))
    model.load()
    return model


def test_the_core_imports_no_engine():
    code = "import sys, model.inference; print(sorted(m for m in ('seldon_core', 'kserve') if m in sys.modules))"
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_predict_gives_log_probabilities_of_the_trained_network(loaded, trained_model_dir, mnist_test):
    images, labels = mnist_test[0][:256], mnist_test[1][:256]
    rows = loaded.predict(images)
    assert rows.shape == (256, 10) and rows.dtype == np.float32
    assert np.allclose(np.exp(rows).sum(1), 1, atol=1e-4)
    assert (rows.argmax(1) == labels).mean() >= 0.97
    net = Net()
    state = torch.load(io.BytesIO((trained_model_dir / "model.pt").read_bytes()), weights_only=True)
    net.load_state_dict(state)
    with torch.inference_mode():
        eager = net.eval()(normalize(images)).numpy()
    assert loaded.precision == "int8"
    assert (rows.argmax(1) == eager.argmax(1)).mean() >= 0.99  # int8 against the float32 module
    np.testing.assert_allclose(rows, loaded.predict(images), atol=0)  # deterministic


def test_float32_serves_the_module_itself(trained_model_dir, mnist_test):
    model = MnistModel(settings(trained_model_dir, precision="float32"))
    model.load()
    net = Net()
    net.load_state_dict(torch.load(io.BytesIO((trained_model_dir / "model.pt").read_bytes()), weights_only=True))
    images = mnist_test[0][:64]
    with torch.inference_mode():
        eager = net.eval()(normalize(images)).numpy()
    assert model.precision == "float32"
    np.testing.assert_allclose(model.predict(images), eager, atol=1e-4)


def test_health_metadata_and_version(loaded, trained_model_dir):
    meta = json.loads((trained_model_dir / "metadata.json").read_text())
    health = loaded.health()
    assert health["status"] == "ok" and health["model_sha256"] == meta["sha256"] and health["precision"] == "int8"
    assert 0 <= health["probe_class"] <= 9
    assert loaded.version == meta["sha256"][:12]
    described = loaded.describe()
    assert described["versions"] == [meta["sha256"][:12]]
    assert described["custom"]["sha256"] == meta["sha256"]
    assert described["custom"]["int8_test_accuracy"] == str(meta["int8"]["test_accuracy"])
    assert OUTPUT_NAMES == tuple(f"t:{i}" for i in range(10))


def test_a_pickled_model_arrives_unloaded_with_its_settings(loaded):
    copy = pickle.loads(pickle.dumps(loaded))
    assert copy.settings == loaded.settings and not copy.loaded and copy.sha256 is None
    with pytest.raises(ModelNotLoaded):
        copy.predict(np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(ModelNotLoaded):
        copy.health()


def test_other_weights_than_model_sha256_are_refused(trained_model_dir):
    with pytest.raises(DigestMismatch, match="refusing to serve other weights"):
        MnistModel(settings(trained_model_dir, model_sha256="ab" * 32)).load()
