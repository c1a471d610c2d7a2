"""runtime/settings.py is the one place the server's settings are written: the server reads it,
mlctl's local server is started through it, and the chart and the serving image agree with it."""

from __future__ import annotations

import re

import pytest

from runtime.settings import DEFAULTS, ServingSettings, SettingsError, env_name
from tests.chart.helpers import find_helm, one, template
from tests.helpers import REPO


def test_the_environment_round_trips():
    changed = ServingSettings(
        precision="float32",
        torch_threads=3,
        workers=4,
        grpc_workers=0,
        skip_empty_metric_updates=False,
        model_sha256="ab" * 32,
    )
    for settings in (DEFAULTS, changed):
        assert ServingSettings.from_env(settings.to_env()) == settings
    assert ServingSettings.from_env({}) == DEFAULTS
    assert ServingSettings.from_env({"MODEL_PRECISION": " Float32 ", "MODEL_SHA256": "AB" * 32}) == ServingSettings(
        precision="float32", model_sha256="ab" * 32
    )


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MODEL_PRECISION": "fp16"}, "MODEL_PRECISION='fp16': expected one of int8, float32"),
        ({"TORCH_THREADS": "0"}, "TORCH_THREADS='0': expected a whole number ≥ 1"),
        ({"GUNICORN_WORKERS": "two"}, "GUNICORN_WORKERS='two': expected a whole number"),
        ({"MODEL_SHA256": "abc"}, "MODEL_SHA256='abc': expected 64 hex digits"),
        ({"MODEL_SKIP_EMPTY_METRIC_UPDATES": "yes"}, "expected 0 or 1"),
        ({"MODEL_METRICS_FLUSH_S": "-1"}, "MODEL_METRICS_FLUSH_S='-1': expected a number ≥ 0"),
    ],
)
def test_a_bad_value_names_its_variable(env, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        ServingSettings.from_env(env)


def _dockerfile_env(path) -> dict[str, str]:
    text = path.read_text().replace("\\\n", " ")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            out.update(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", line))
    return out


def test_the_serving_image_sets_the_defaults():
    env = _dockerfile_env(REPO / "runtime" / "seldon.Dockerfile")
    expected = DEFAULTS.to_env()
    set_here = {k: v for k, v in env.items() if k in expected}
    assert set_here == {k: expected[k] for k in set_here}
    # The ones a pod's behaviour hangs on are set there explicitly, not left to the wrapper.
    assert {env_name(s) for s in ("workers", "threads", "torch_threads", "grpc_workers", "model_uri")} <= set(set_here)


def test_the_kserve_image_sets_the_model_defaults():
    """runtime/kserve.Dockerfile sets the model's settings it sets to DEFAULTS, and none of those only
    the Seldon server reads (runtime/kserve_server.py never does)."""
    env = _dockerfile_env(REPO / "runtime" / "kserve.Dockerfile")
    expected = DEFAULTS.to_env()
    set_here = {k: v for k, v in env.items() if k in expected}
    assert set_here == {k: expected[k] for k in set_here}
    assert {env_name(s) for s in ("torch_threads", "model_uri")} <= set(set_here)
    seldon_only = {env_name(s) for s in ("workers", "threads", "grpc_workers", "metrics_flush_s")}
    assert not seldon_only & set(env)


@pytest.mark.skipif(find_helm() is None, reason="no helm binary (run scripts/fetch-tools.sh)")
def test_the_chart_sets_the_defaults_under_the_same_names():
    """The chart's model container env, with values.yaml's defaults, is DEFAULTS' environment."""
    objects = template({"model": {"uri": "pvc://models/mnist"}})
    sdep = one(objects, "SeldonDeployment")
    container = sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    expected = DEFAULTS.to_env()
    assert set(env) <= set(expected), f"the chart sets {set(env) - set(expected)}, which the server never reads"
    assert env == {k: expected[k] for k in env}
    assert len(env) >= 7


def test_the_request_bounds_are_the_contracts():
    """The server's byte, pixel and batch bounds default to what model.yaml declares, as mlctl
    reads the same file; a contract that declares others gets those."""
    from mlctl.specload import load_contract
    from runtime.settings import DEFAULTS
    from tests.helpers import MODEL_PACKAGE

    contract = load_contract(MODEL_PACKAGE)
    image = next(i for i in contract.inputs if i.kind == "image")
    assert (DEFAULTS.max_image_bytes, DEFAULTS.max_image_pixels, DEFAULTS.max_batch) == (
        image.max_bytes,
        image.max_pixels,
        contract.max_batch,
    )


def test_bounds_are_read_from_the_contract_file(tmp_path):
    from runtime.settings import contract_bounds

    file = tmp_path / "model.yaml"
    file.write_text("inputs:\n  - {name: i, kind: image, maxBytes: 2048, maxPixels: 900}\nmaxBatch: 8\n")
    assert contract_bounds(file) == {"max_image_bytes": 2048, "max_image_pixels": 900, "max_batch": 8}
    file.write_text("inputs:\n  - {name: t, kind: tensor}\n")  # nothing declared: the defaults stay
    assert contract_bounds(file) == {}
    assert contract_bounds(tmp_path / "missing.yaml") == {}


def test_the_mnist_package_reads_the_runtimes_precision_setting():
    """MODEL_PRECISION is the runtime's setting (its name and values written in runtime/settings.py);
    the MNIST class reads the same variable and accepts the same values."""
    from model import inference
    from runtime.settings import PRECISIONS

    assert inference.PRECISION_ENV == env_name("precision")
    assert inference.PRECISIONS == PRECISIONS
