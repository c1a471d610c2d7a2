"""The spec: valid specs load and round-trip; every broken spec under tests/data/specs gives exit 2,
the exact `file:line:col field: message` line, and no traceback — through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlctl.errors import SpecError, UsageError
from mlctl.spec import Spec, spec_json_schema
from mlctl.specload import load_spec
from tests.helpers import REPO, SPEC_HEAD

CASES = sorted((REPO / "tests" / "data" / "specs").glob("*.yaml"))


def test_shipped_spec_loads_and_round_trips():
    spec = load_spec(REPO / "spec" / "mnist.yaml")
    dumped = spec.model_dump(by_alias=True, mode="json", exclude_none=True)
    again = Spec.model_validate(dumped)
    assert again == spec
    assert dumped["serving"]["autoscaling"]["minReplicas"] == 1  # camelCase on the YAML side


def test_relative_paths_resolve_against_the_spec_folder(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    file = tmp_path / "sub" / "s.yaml"
    file.write_text(SPEC_HEAD + "data: {dir: ../data}\n")
    spec = load_spec(file)
    assert spec.data.dir == tmp_path / "data"
    assert spec.training.output == tmp_path / ".mlctl" / "models"  # defaults resolve the same way


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_broken_spec_names_file_line_and_field(case: Path, mlctl):
    rel = case.relative_to(REPO).as_posix()
    expected = case.with_suffix(".expected").read_text().strip()
    assert expected.startswith(f"{rel}:"), f"{case.with_suffix('.expected').name} must name the file"
    p = mlctl("validate", rel)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    assert p.stdout == ""
    assert expected in p.stderr, p.stderr


def test_every_problem_is_reported_at_once(tmp_path: Path):
    file = tmp_path / "s.yaml"
    file.write_text(SPEC_HEAD + "name: BAD\nserving:\n  workers: 0\n  bogus: 1\n")
    with pytest.raises(SpecError) as exc:
        load_spec(file)
    assert [p.split(" ", 1)[0].rsplit(":", 2)[1] for p in exc.value.problems] == ["3", "5", "6"]


def test_missing_file_and_directory_are_usage_errors(tmp_path: Path, mlctl):
    with pytest.raises(UsageError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(UsageError, match="is a directory"):
        load_spec(tmp_path)
    p = mlctl("validate", str(tmp_path / "nope.yaml"))
    assert p.returncode == 2 and "no such file" in p.stderr and "Traceback" not in p.stderr


def test_not_utf8_is_a_spec_error(tmp_path: Path):
    file = tmp_path / "s.yaml"
    file.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(file)


def test_secret_refs_hold_names_not_values():
    spec = load_spec(REPO / "spec" / "mnist.yaml")
    assert spec.registry.password is not None and spec.registry.password.env == "REGISTRY_PASSWORD"
    schema = spec_json_schema()
    assert set(schema["$defs"]["SecretRef"]["properties"]) == {"env", "file"}


def test_schema_documents_every_field():
    schema = spec_json_schema()
    missing = [
        f"{name}.{key}"
        for name, d in schema["$defs"].items()
        for key, prop in d.get("properties", {}).items()
        if not prop.get("description") and key != "kind"
    ]
    assert missing == []
    assert schema["additionalProperties"] is False


def test_schema_command_prints_valid_json(mlctl):
    p = mlctl("schema")
    assert p.returncode == 0
    assert json.loads(p.stdout)["title"] == "Spec"


def test_validate_prints_a_one_line_summary(mlctl):
    p = mlctl("validate", "spec/mnist.yaml")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("spec/mnist.yaml: valid — project mnist")
    assert len(p.stdout.strip().splitlines()) == 1
    data = json.loads(mlctl("validate", "spec/mnist.yaml", "--json").stdout)
    assert data["name"] == "mnist" and len(data["trainingHash"]) == 64


def test_training_hash_changes_with_hyperparameters_only(tmp_path: Path):
    from mlctl.artifacts import training_hash

    base = yaml.safe_load((REPO / "spec" / "mnist.yaml").read_text())
    a = Spec.model_validate(base)
    base["serving"]["workers"] = 3  # serving settings do not change the weights
    b = Spec.model_validate(base)
    base["training"]["seed"] = 99
    c = Spec.model_validate(base)
    assert training_hash(a) == training_hash(b) != training_hash(c)


def test_anchors_and_merge_keys_still_share_settings(tmp_path: Path):
    file = tmp_path / "s.yaml"
    file.write_text(
        SPEC_HEAD + "serving:\n  resources: &res {requests: {cpu: '1', memory: 1Gi}}\n"
        "training:\n  <<: {epochs: 2}\n  runner: {kind: kubernetes, resources: *res}\n"
    )
    spec = load_spec(file)
    assert spec.training.epochs == 2
    assert spec.training.runner.resources == spec.serving.resources


def test_a_recursive_alias_is_a_spec_error(tmp_path: Path):
    file = tmp_path / "s.yaml"
    file.write_text(SPEC_HEAD + "name: &a [*a]\n")
    with pytest.raises(SpecError, match=r"s\.yaml:3:7 YAML error: an alias refers to the node that contains it"):
        load_spec(file)


def test_a_document_nested_thousands_deep_is_a_spec_error_not_a_crash(tmp_path: Path):
    file = tmp_path / "s.yaml"
    file.write_text(SPEC_HEAD + "name: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(SpecError, match="nests too deeply"):
        load_spec(file)


def test_the_example_spec_and_the_spec_defaults_train_the_models_own_recipe():
    """The recipe is written once, in model/trainconfig.py: the spec's defaults are it, and the
    example spec spells it out unchanged."""
    from model import trainconfig as recipe

    expected = {
        "epochs": recipe.DEFAULT_EPOCHS,
        "batch_size": recipe.DEFAULT_BATCH_SIZE,
        "learning_rate": recipe.DEFAULT_LR,
        "label_smoothing": recipe.DEFAULT_LABEL_SMOOTHING,
        "weight_decay": recipe.DEFAULT_WEIGHT_DECAY,
        "seed": recipe.DEFAULT_SEED,
    }
    example = load_spec(REPO / "spec" / "mnist.yaml").training
    default = Spec.model_validate({"apiVersion": "mlctl/v1", "name": "mnist"}).training
    for training in (example, default):
        assert {k: getattr(training, k) for k in expected} == expected
