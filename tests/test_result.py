"""Every --json output has camelCase keys: results are dataclasses rendered by mlctl.result."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mlctl.result import Result, internal, to_json
from mlctl.targets.kubernetes.deploy import DeployPlan
from mlctl.targets.shared.build import BuildResult, BuiltImage


@dataclass
class Inner(Result):
    size_bytes: int
    note_path: Path


@dataclass
class Outer(Result):
    helm_status: str
    inner: list[Inner]
    chart_values: dict = field(default_factory=dict)
    cache: object = internal(default=None)


def _snake_keys(value, data_maps=("values", "chartValues")) -> list[str]:
    if isinstance(value, dict):
        found = [k for k in value if "_" in k]
        return found + [s for k, v in value.items() if k not in data_maps for s in _snake_keys(v)]
    if isinstance(value, list):
        return [s for v in value for s in _snake_keys(v)]
    return []


def test_fields_become_camel_case_and_data_maps_keep_their_keys():
    out = Outer("deployed", [Inner(3, Path("/x"))], {"access_key_id": "k"}, cache=object()).as_dict()
    assert out == {
        "helmStatus": "deployed",
        "inner": [{"sizeBytes": 3, "notePath": "/x"}],
        "chartValues": {"access_key_id": "k"},
    }
    assert to_json((1, Path("a"))) == [1, "a"]


def test_the_results_commands_print_have_no_snake_case_keys():
    plan = DeployPlan(
        "mnist",
        "models",
        None,
        ["helm"],
        True,
        "deployed",
        3,
        [],
        True,
        {"storage": {"credentials": {"access_key_id": "***"}}},
    )
    built = BuildResult("podman", "host", [BuiltImage("serving", "r:1", "sha256:x", "c", True, 10)], 1.5)
    for result in (plan, built):
        data = result.as_dict()
        assert not _snake_keys(data), (type(result).__name__, _snake_keys(data))
        assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", k) for k in data)
    assert plan.as_dict()["upToDate"] is True and plan.as_dict()["helmStatus"] == "deployed"
