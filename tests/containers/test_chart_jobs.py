"""The chart alone (plain `helm template`, no mlctl values): each ci/train-*-values.yaml's
training Job runs in the training image and writes a model that the predictor pod, rendered
from the same values, loads and answers with.

Rendered as the chart's CI would install them, plus only what this machine needs: the images
built here (their tags), no GPU (training.gpus 0), and for the downloading Job a mirror on the
podman network (no internet here) through the chart's own training.data.mirrors.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from mlctl import podman
from mlctl.pods import cluster_pods
from mlctl.predict import predict_image
from tests.chart.helpers import CHART, find_helm
from tests.containers.conftest import run
from tests.helpers import MNIST_DIR, REPO

NAMESPACE = "ci"
SAMPLE = REPO / "model" / "examples" / "digit-7.png"


def _render(values_file, overlay: dict) -> list[dict]:
    return [
        d
        for d in yaml.safe_load_all(
            run(
                find_helm(),
                "template",
                "ci",
                str(CHART),
                "--namespace",
                NAMESPACE,
                "-f",
                str(values_file),
                "-f",
                _write(overlay),
            ).stdout
        )
        if d
    ]


_written: list = []


def _write(data: dict) -> str:
    import tempfile

    f = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    yaml.safe_dump(data, f)
    f.close()
    _written.append(f.name)
    return f.name


@pytest.fixture(scope="module")
def tags(shipped):
    from tests.containers.conftest import mlctl

    images = {i["role"]: i["reference"] for i in json.loads(mlctl("build", str(shipped), "--json").stdout)["images"]}
    return {role: ref.rsplit(":", 1) for role, ref in images.items()}


@pytest.mark.parametrize("variant", ["train-gpu", "train-pvc"])
def test_the_charts_own_job_writes_a_model_the_server_loads(variant, tags, s3, mirror, initializer_image, tmp_path):
    overlay = {
        "serving": {"image": {"repository": tags["serving"][0], "tag": tags["serving"][1]}},
        "training": {"image": {"repository": tags["training"][0], "tag": tags["training"][1]}, "gpus": 0},
        "tests": {"enabled": False},
    }
    if variant == "train-gpu":
        overlay["training"]["data"] = {"mirrors": [mirror]}
    objects = _render(CHART / "ci" / f"{variant}-values.yaml", overlay)
    pods = {p.role: p for p in cluster_pods(objects, NAMESPACE)}
    cluster = podman.Cluster(objects, NAMESPACE, tmp_path / "state")
    if variant == "train-pvc":  # the data claim holds the files, as a data team would have put them
        shutil.copytree(MNIST_DIR, cluster.claim("mnist-data") / "mnist")
    runner = podman.PodRunner(cluster, {"io.mlctl.release": f"ci-{variant}", "io.mlctl.namespace": NAMESPACE})
    try:
        job = runner.run(pods["training"], wait="complete", timeout_s=900)
        meta = json.loads([line for line in job.logs("train").splitlines() if line.startswith("{")][-1])
        assert meta["train_examples"] == 10000 and meta["test_examples"] == 2000
        if variant == "train-pvc":
            written = cluster.claim("mnist-models") / "mnist" / "v1"
            assert sorted(p.name for p in written.iterdir()) == ["metadata.json", "model.pt"]
        else:
            assert set(s3.objects("models")) >= {"mnist/v2/model.pt", "mnist/v2/metadata.json"}
        served = runner.run(pods["predictor"], publish=[9000], timeout_s=300)
        answer = predict_image(f"http://127.0.0.1:{served.ports[9000]}", SAMPLE)
        assert answer.raw["meta"]["tags"]["model_sha256"] == meta["sha256"]
        # The network the Job trained answers the chart's sample digit with its label, and learned.
        assert meta["test_accuracy"] >= 0.9, meta["test_accuracy"]
        assert (len(answer.scores), answer.cls) == (10, 7)
    finally:
        for pod in runner.pods():
            runner.remove(pod["name"])
