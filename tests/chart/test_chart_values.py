"""values.yaml ↔ values.schema.json ↔ README, helm's schema checks, and validateValues' messages."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from tests.chart.helpers import (
    CHART,
    CI_VALUES,
    TRAINING,
    deep_merge,
    load_yaml,
    template,
    template_error,
    values_schema_paths,
)

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = load_yaml(CHART / "values.yaml")
LEAVES, MISMATCHES = values_schema_paths(VALUES, SCHEMA)
S3_CREDS = {"storage": {"credentials": {"access_key_id": "AK", "secret_access_key": "SK"}}}


def _objects_in(schema, path="$"):
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            yield path, schema
        for key, sub in schema.items():
            yield from _objects_in(sub, f"{path}.{key}")
    elif isinstance(schema, list):
        for i, sub in enumerate(schema):
            yield from _objects_in(sub, f"{path}[{i}]")


def test_schema_and_readme_table_are_generated_from_the_values_model():
    """values.schema.json and the README's table are mlctl/values.py's (python -m mlctl.chartdoc)."""
    from mlctl import chartdoc

    for path, text in chartdoc.rendered().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run python -m mlctl.chartdoc"


def test_values_yaml_holds_exactly_the_models_defaults():
    from mlctl.values import defaults

    assert VALUES == defaults()


def test_the_values_model_and_the_schema_reject_the_same_values():
    """A few values each side must refuse, so the generated schema keeps the model's bounds."""
    from pydantic import ValidationError

    from mlctl.values import ChartValues

    for bad in (
        {"serving": {"workers": 0}},
        {"model": {"name": "x" * 54}},
        {"serving": {"replica": 1}},
        {"serving": {"resources": {"limits": {"cpu": "two"}}}},
        {"storage": {"config": {"Bad-Key": "x"}}},
        {"training": {"ttlSecondsAfterFinished": -1}},
        {"serving": {"workers": "2"}},
    ):
        with pytest.raises(ValidationError):
            ChartValues.model_validate(deep_merge(VALUES, bad))
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(deep_merge(VALUES, bad), SCHEMA, cls=jsonschema.Draft7Validator)
    for good in (
        {"training": {"ttlSecondsAfterFinished": None}},
        {"model": {"name": "x" * 53}},
        {"storage": {"config": {"type": "s3", "chunk_size": "8M"}}},
    ):
        ChartValues.model_validate(deep_merge(VALUES, good))
        jsonschema.validate(deep_merge(VALUES, good), SCHEMA, cls=jsonschema.Draft7Validator)


def test_schema_is_valid_draft7():
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_every_object_in_the_schema_closes_its_keys():
    for path, obj in _objects_in(SCHEMA):
        assert "additionalProperties" in obj, f"{path} leaves unknown keys open"
        # Only free-form maps (annotations, selectors, quantities, rclone options) take any key,
        # and then only with typed values.
        if obj["additionalProperties"] is not False:
            assert isinstance(obj["additionalProperties"], dict) and "type" in obj["additionalProperties"], path


def test_every_leaf_is_described():
    def walk(schema, path):
        for key, sub in schema.get("properties", {}).items():
            assert sub.get("description"), f"{path}{key} has no description"
            if "properties" in sub:
                walk(sub, f"{path}{key}.")

    walk(SCHEMA, "")


def test_values_yaml_validates_against_the_schema():
    jsonschema.validate(VALUES, SCHEMA, cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize("path", CI_VALUES, ids=lambda p: p.stem)
def test_ci_values_validate_against_the_schema(path):
    jsonschema.validate(deep_merge(VALUES, load_yaml(path)), SCHEMA, cls=jsonschema.Draft7Validator)


def test_values_and_schema_have_the_same_keys():
    assert not MISMATCHES
    assert len(LEAVES) > 50  # the walk really went down into the tree


def test_values_schema_walk_sees_a_mismatch():
    values = deep_merge(VALUES, {"serving": {"replica": 1}})
    del values["tests"]["image"]["pullPolicy"]
    _, problems = values_schema_paths(values, SCHEMA)
    assert sorted(problems) == [
        "serving.replica: in values.yaml, not in the schema",
        "tests.image.pullPolicy: in the schema, not in values.yaml",
    ]


def _commented(leaf: str, names: set[str]) -> bool:
    """A leaf counts as commented when its own comment or its group's (probes, resources) exists."""
    parts = leaf.split(".")
    return any(".".join(parts[:n]) in names for n in range(len(parts), 0, -1))


def test_every_value_is_commented_with_its_name():
    names = set(re.findall(r"^\s*#\s*([A-Za-z_][\w.]*)", (CHART / "values.yaml").read_text(), re.M))
    missing = [leaf for leaf in sorted(LEAVES) if not _commented(leaf, names)]
    assert not missing, f"values.yaml has no comment beginning with {missing}"


def test_readme_lists_every_value():
    readme = (CHART / "README.md").read_text()
    missing = [leaf for leaf in sorted(LEAVES) if f"`{leaf}`" not in readme]
    assert not missing, f"README.md values table lacks {missing}"


# --- helm enforces the schema ----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"serving": {"replica": 2}}, "replica"),  # a typo
        ({"serving": {"workers": 0}}, "workers"),  # below the minimum
        ({"serving": {"workers": "2"}}, "workers"),  # a string where an integer belongs
        ({"serving": {"image": {"pullPolicy": "Sometimes"}}}, "pullPolicy"),
        ({"model": {"name": "Bad_Name"}}, "name"),  # not a DNS-1123 label
        ({"model": {"uri": "models/mnist"}}, "uri"),  # no scheme
        ({"model": {"sha256": "abc"}}, "sha256"),
        ({"training": {"gpus": -1}}, "gpus"),
        ({"storage": {"config": {"Bad-Key": "x"}}}, "Bad-Key"),
        # The wrapper makes it gunicorn's worker timeout in whole seconds, which covers worker start:
        # 1 ms became a 1 s timeout that killed workers while they loaded the model.
        ({"serving": {"restTimeoutMs": 4999}}, "restTimeoutMs"),
        ({"serving": {"image": {"digest": "sha256:short"}}}, "digest"),
    ],
)
def test_helm_rejects_values_the_schema_forbids(each_helm, bad, fragment):
    err = template_error(deep_merge({"model": {"uri": "pvc://m/p"}}, bad), helm=each_helm)
    assert "schema" in err.lower() and fragment in err


# --- validateValues: every problem, all at once ------------------------------------------------

CASES = {
    "uri missing": ({}, ["model.uri is required"]),
    "remote differs from scheme": (
        {"model": {"uri": "gs://b/p"}, **S3_CREDS},
        ['storage.remote "s3" must equal the scheme of model.uri "gs"'],
    ),
    "registry without credentials": (
        {"model": {"uri": "pvc://m/p"}, "registry": {"server": "ghcr.io"}},
        ["registry.server is set but registry.username or registry.password is empty"],
    ),
    "registry credentials without server": (
        {"model": {"uri": "pvc://m/p"}, "registry": {"username": "u", "password": "p"}},
        ["registry.server is empty"],
    ),
    "object storage without credentials": (
        {"model": {"uri": "s3://b/p"}},
        ['model.uri "s3://b/p" is object storage but there are no credentials'],
    ),
    "autoscaling min above max": (
        {
            "model": {"uri": "pvc://m/p"},
            "serving": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
        },
        ["minReplicas (5) is greater than serving.autoscaling.maxReplicas (2)"],
    ),
    "service name too long": ({"model": {"uri": "pvc://m/p"}}, ["longer than 63 characters"]),
    "training into a whole claim": (
        {"model": {"uri": "pvc://m"}, "training": TRAINING},
        ['model.uri "pvc://m" names a whole claim'],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_validate_values_message(helm, case):
    values, messages = CASES[case]
    # Helm caps release names at 53 characters; "<release>-mnist-seldon-default" still overflows 63.
    release = "r" * 50 if case == "service name too long" else "t"
    err = template_error(values, helm=helm, release=release)
    assert "VALUES VALIDATION" in err
    for message in messages:
        assert message in err


def test_validate_values_reports_every_problem_at_once(helm):
    values = {
        "model": {"uri": "s3://b/p"},
        "storage": {"remote": "gs"},
        "registry": {"server": "ghcr.io"},
        "serving": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 1}},
    }
    err = template_error(values, helm=helm)
    assert err.count("VALUES VALIDATION") == 1
    assert len(re.findall(r"^\s+- ", err, re.M)) == 4, err
    for fragment in ['storage.remote "gs"', "registry.server is set", "no credentials", "minReplicas (3)"]:
        assert fragment in err


@pytest.mark.parametrize(
    "values",
    [
        {"model": {"uri": "pvc://m/p"}, "storage": {"existingSecret": "s"}},  # pvc:// with a Secret is fine
        {"model": {"uri": "s3://b/p"}, "storage": {"config": {"env_auth": "true"}}},  # workload identity
        {"model": {"uri": "s3://b/p"}, "storage": {"existingSecret": "s"}},
        {"model": {"uri": "pvc://m/p/"}, "training": {**TRAINING, "data": {"claimName": "d", "subPath": "x"}}},
        {"model": {"uri": "pvc://m"}},
    ],
)
def test_valid_combinations_render(helm, values):
    assert template(values, helm=helm)
