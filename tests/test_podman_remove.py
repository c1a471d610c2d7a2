"""PodRunner.remove rides out podman 4.3's busy-mount race, and nothing else."""

from __future__ import annotations

import json

import pytest

from mlctl import podman, poll, tools

BUSY = "Error: removing container 24c1 root filesystem: unlinkat /var/lib/…/userdata/shm: device or resource busy"


def _runner(monkeypatch, rm_failures: list[str]) -> tuple[podman.PodRunner, list[tuple[str, ...]]]:
    calls: list[tuple[str, ...]] = []

    def fake(*args: str, timeout: float = 120, input: str | None = None) -> str:
        calls.append(args)
        if args[:2] == ("pod", "inspect"):
            return json.dumps({"Containers": []})
        if args[:2] == ("pod", "rm") and rm_failures:
            raise tools.ToolError(["podman", *args], 125, rm_failures.pop(0))
        return ""

    monkeypatch.setattr(podman, "_podman", fake)
    monkeypatch.setattr(poll, "_sleep", lambda s: None)
    return podman.PodRunner(podman.Cluster([], "models", None), {}), calls


def test_a_busy_mount_is_retried_until_the_pod_goes(monkeypatch):
    runner, calls = _runner(monkeypatch, [BUSY, BUSY])
    assert runner.remove("models.p") is True
    assert [c[:2] for c in calls].count(("pod", "rm")) == 3


def test_any_other_failure_is_not_retried(monkeypatch):
    runner, calls = _runner(monkeypatch, ["Error: no such pod"])
    with pytest.raises(tools.ToolError, match="no such pod"):
        runner.remove("models.p")
    assert [c[:2] for c in calls].count(("pod", "rm")) == 1


def test_a_mount_busy_for_good_still_fails(monkeypatch):
    runner, calls = _runner(monkeypatch, [BUSY] * podman.RM_ATTEMPTS)
    with pytest.raises(tools.ToolError, match="device or resource busy"):
        runner.remove("models.p")
    assert [c[:2] for c in calls].count(("pod", "rm")) == podman.RM_ATTEMPTS
