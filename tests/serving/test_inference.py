"""runtime/served.py over the MNIST package, in-process: engine-free (this environment has neither
seldon_core nor kserve), the trained network's answers through the contract's class, the probe,
the metadata facts, the answer's checks, and the process rule (a pickled model arrives unloaded)."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from model.net import Net
from model.preprocess import normalize
from runtime.artifact import DigestMismatch
from runtime.served import BadAnswer, ModelNotLoaded, ServedModel, column_names
from runtime.settings import ServingSettings
from tests.helpers import REPO


def served(model_dir, **kw) -> ServedModel:
    return ServedModel(ServingSettings(model_uri=str(model_dir), **kw), REPO / "model")


@pytest.fixture(scope="module")
def loaded(trained_model_dir) -> ServedModel:
    model = served(trained_model_dir)
    model.load()
    return model


def test_the_runtime_and_the_model_import_no_engine():
    code = (
        "import sys, runtime.served, model.inference; "
        "print(sorted(m for m in ('seldon_core', 'kserve', 'mlctl') if m in sys.modules))"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_predict_gives_log_probabilities_of_the_trained_network(loaded, trained_model_dir, mnist_test):
    images, labels = mnist_test[0][:256], mnist_test[1][:256]
    rows = loaded.predict({"pixels": images})
    assert rows.shape == (256, 10) and rows.dtype == np.float32
    assert np.allclose(np.exp(rows).sum(1), 1, atol=1e-4)
    assert (rows.argmax(1) == labels).mean() >= 0.97
    net = Net()
    state = torch.load(io.BytesIO((trained_model_dir / "model.pt").read_bytes()), weights_only=True)
    net.load_state_dict(state)
    with torch.inference_mode():
        eager = net.eval()(normalize(images)).numpy()
    assert loaded.facts["precision"] == "int8"
    assert (rows.argmax(1) == eager.argmax(1)).mean() >= 0.99  # int8 against the float32 module
    np.testing.assert_allclose(rows, loaded.predict({"pixels": images}), atol=0)  # deterministic
    as_images = loaded.predict({"image": list(images[:32])})  # the image input: the same grids
    np.testing.assert_allclose(as_images, rows[:32], atol=0)


def test_float32_serves_the_module_itself(trained_model_dir, mnist_test, monkeypatch):
    monkeypatch.setenv("MODEL_PRECISION", "float32")
    model = served(trained_model_dir)
    model.load()
    net = Net()
    net.load_state_dict(torch.load(io.BytesIO((trained_model_dir / "model.pt").read_bytes()), weights_only=True))
    images = mnist_test[0][:64]
    with torch.inference_mode():
        eager = net.eval()(normalize(images)).numpy()
    assert model.facts["precision"] == "float32"
    np.testing.assert_allclose(model.predict({"pixels": images}), eager, atol=1e-4)


def test_health_metadata_and_version(loaded, trained_model_dir):
    meta = json.loads((trained_model_dir / "metadata.json").read_text())
    health = loaded.health()
    assert health["status"] == "ok" and health["model_sha256"] == meta["sha256"] and health["precision"] == "int8"
    assert 0 <= health["probe_class"] <= 9
    assert loaded.version == meta["sha256"][:12]
    described = loaded.describe()
    assert described["versions"] == [meta["sha256"][:12]]
    assert described["custom"]["sha256"] == meta["sha256"]
    assert described["custom"]["class"] == "model.inference:MnistModel"
    assert described["custom"]["labels"] == ",".join(str(d) for d in range(10))
    assert column_names(loaded.contract.labels) == [f"t:{i}" for i in range(10)]


def test_an_answer_of_the_wrong_shape_is_a_bad_answer_not_a_prediction(loaded, monkeypatch):
    monkeypatch.setattr(loaded._model, "predict", lambda inputs: np.zeros((1, 9), np.float32))
    with pytest.raises(BadAnswer, match=r"answered float32 \(1, 9\) for 1 item\(s\) of `pixels`.*\(1, 10\)"):
        loaded.predict({"pixels": np.zeros((1, 28, 28), np.uint8)})
    monkeypatch.setattr(loaded._model, "predict", lambda inputs: [["7"]])
    with pytest.raises(BadAnswer):
        loaded.predict({"pixels": np.zeros((1, 28, 28), np.uint8)})


def test_a_pickled_model_arrives_unloaded_with_its_settings(loaded):
    copy = pickle.loads(pickle.dumps(loaded))
    assert copy.settings == loaded.settings and not copy.loaded and copy.sha256 is None
    with pytest.raises(ModelNotLoaded):
        copy.predict({"pixels": np.zeros((1, 28, 28), np.uint8)})
    with pytest.raises(ModelNotLoaded):
        copy.health()


def test_other_weights_than_model_sha256_are_refused_before_model_code_runs(trained_model_dir, monkeypatch):
    import runtime.served

    def no_import(*_: object) -> None:
        raise AssertionError("the model's code ran before its weights were verified")

    monkeypatch.setattr(runtime.served, "import_class", no_import)
    with pytest.raises(DigestMismatch, match="refusing to serve other weights"):
        served(trained_model_dir, model_sha256="ab" * 32).load()
