"""Bring your own weights (`weights: {dir, sha256}`): a spec that trains nothing takes a model
folder, checked against its digest and copied once into its own model folder, and deploys it:
`mlctl train` imports, a wrong digest or a folder that is not a model stops with exit 1 or 2, and
`mlctl apply --target kubernetes` uploads exactly those weights and releases them by digest."""

from __future__ import annotations

import json

from mlctl.artifacts import store_uri, training_hash
from mlctl.specload import load_spec
from tests.helpers import run_mlctl
from tests.k8s.conftest import local_artifact, write_spec
from tests.k8s.test_deploy import LABEL, answer, predicted, sdep


def byo_spec(tmp_path, sha256: str, uri: str = "s3://mlctl-models/mnist", folder: str = "brought"):
    return write_spec(tmp_path, uri=uri, extra=f"weights:\n  dir: {tmp_path / folder}\n  sha256: '{sha256}'\n")


def test_train_imports_the_weights_once_and_names_the_model_after_them(tmp_path):
    brought = local_artifact(tmp_path / "brought")
    spec_path = byo_spec(tmp_path, brought.sha256)
    first = run_mlctl("train", str(spec_path), "--json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert (result["imported"], result["trained"], result["sha256"]) == (True, True, brought.sha256)
    spec = load_spec(spec_path)
    assert result["artifact"] == str(spec.training.output / f"mnist-{training_hash(spec)[:12]}")
    again = run_mlctl("train", str(spec_path))
    assert again.returncode == 0 and again.stdout.startswith("up to date:"), again.stdout
    # Named by the weights alone: other training settings name the same model.
    (tmp_path / "other").mkdir()
    other = write_spec(tmp_path / "other", extra=f"weights:\n  dir: {brought.path}\n  sha256: '{brought.sha256}'\n")
    assert training_hash(load_spec(other)) == training_hash(spec)
    (tmp_path / "trained").mkdir()
    assert training_hash(load_spec(write_spec(tmp_path / "trained"))) != training_hash(spec)


def test_weights_other_than_the_digest_names_are_refused(tmp_path):
    local_artifact(tmp_path / "brought")
    p = run_mlctl("train", str(byo_spec(tmp_path, "0" * 64)))
    assert p.returncode == 1, p.stderr
    assert f"weights with sha256 {'0' * 64}" not in p.stderr
    assert "not the spec's weights.sha256 " + "0" * 64 in p.stderr
    assert not list((tmp_path / "models").glob("mnist-*"))  # nothing copied


def test_a_folder_that_is_no_model_is_a_usage_error(tmp_path):
    (tmp_path / "brought").mkdir()
    p = run_mlctl("train", str(byo_spec(tmp_path, "a" * 64)))
    assert p.returncode == 2 and "holds no model folder (model.pt and metadata.json)" in p.stderr, p.stderr


def test_a_digest_that_is_not_one_is_a_spec_error(tmp_path):
    p = run_mlctl("validate", str(byo_spec(tmp_path, "not-a-digest")))
    assert p.returncode == 2 and "weights.sha256: String should match pattern" in p.stderr, p.stderr


def test_apply_uploads_and_releases_exactly_the_brought_weights(fakes, tmp_path, secret_env, private_tmp):
    brought = local_artifact(tmp_path / "brought", payload=b"brought-weights" * 100)
    spec_path = byo_spec(tmp_path, brought.sha256, uri="pvc://models/mnist")
    spec = load_spec(spec_path)
    pod = "mnist-mlctl-upload"
    fakes.on("kubectl", ["apply"], {"stdout": f"pod/{pod} created\n"})
    fakes.on("kubectl", ["wait", f"pod/{pod}"], {"stdout": f"pod/{pod} condition met\n"})
    fakes.on("kubectl", ["exec"], {"pod_files": True})
    fakes.on("kubectl", ["delete"], {"stdout": f'pod "{pod}" deleted\n'})
    fakes.stateful_release()  # an empty release: the first upgrade installs it
    fakes.on("kubectl", ["get", "sdep"], sdep("Available"))
    fakes.on("kubectl", ["port-forward"], {"serve_release": answer(LABEL)})  # what the release names

    p = run_mlctl("apply", str(spec_path), "--json", env={"TMPDIR": str(private_tmp)})
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert "the spec's weights from" in next(s["detail"] for s in result["steps"] if s["name"] == "train")
    assert predicted(result["summary"]["smoke"]) == LABEL
    folder = store_uri(spec).removeprefix("pvc://models/")
    stored = fakes.folder / "pod-files" / "store" / folder / "model.pt"
    assert stored.read_bytes() == (brought.path / "model.pt").read_bytes()
    (revision,) = json.loads((fakes.folder / "state.json").read_text())["revisions"]
    assert revision["values"]["model"] == {"name": "mnist", "uri": store_uri(spec), "sha256": brought.sha256}
    assert "Job" not in json.dumps([c["files"] for c in fakes.calls("kubectl")])  # no training Job
