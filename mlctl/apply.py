"""`mlctl apply`: from the spec to a running model, doing only what is needed.

1. validate the spec (and, for the kubernetes target, resolve its credentials: a missing one
   stops the apply before the training, not after);  2. train unless the artifact for its
   training hash exists;
3. local target: make sure the local Seldon server runs this artifact, then check a real
   answers to the model contract's examples;
   kubernetes target: plan (helm status/get values), then upload → helm upgrade --install
   --atomic --wait → wait for Available → smoke test (mlctl/targets/kubernetes/deploy.py).
Each step reports through `on_step`; a failure raises an MlctlError that names its step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlctl import artifacts
from mlctl.errors import MlctlError
from mlctl.result import to_json
from mlctl.spec import Spec
from mlctl.specload import load_contract, load_spec

Target = Literal["local", "podman", "kubernetes"]


@dataclass(frozen=True)
class Step:
    name: str
    status: str  # "ok", "changed", "up to date", "planned"
    detail: str


@dataclass
class ApplyResult:
    target: Target
    dry_run: bool
    steps: list[Step] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return any(s.status in ("changed", "planned") for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {**to_json(self), "changed": self.changed, "seconds": round(self.seconds, 2)}


def _step(name: str, error: MlctlError) -> MlctlError:
    """The error, its message prefixed with the step it failed in (type and exit code kept)."""
    return error.prefixed(name)


def apply(
    path: Path,
    target: Target | None = None,
    dry_run: bool = False,
    on_step: Callable[[Step], None] = lambda step: None,
    on_log: Callable[[str], None] = lambda line: None,
) -> ApplyResult:
    """Run the steps; `on_step` hears each step's outcome, `on_log` a cluster training Job's log."""
    started = time.monotonic()
    spec = load_spec(path)
    result = ApplyResult(target=target or spec.target, dry_run=dry_run)

    def report(name: str, status: str, detail: str) -> None:
        result.steps.append(Step(name, status, detail))
        on_step(result.steps[-1])

    report("validate", "ok", f"{path}: project {spec.name}, target {result.target}")
    if result.target == "podman":
        _podman(spec, dry_run, report, result, on_log, path)
        result.seconds = time.monotonic() - started
        return result
    if result.target == "kubernetes" and not dry_run:
        _credentials(spec)  # before the long steps: a missing credential stops it now, not after training
    artifact = _train(spec, dry_run, report, on_log)
    if result.target == "local":
        _local(spec, artifact, dry_run, report, result, path)
    else:
        _kubernetes(spec, artifact, dry_run, report, result)
    result.seconds = time.monotonic() - started
    return result


def _train(spec: Spec, dry_run: bool, report, on_line) -> artifacts.Artifact | None:
    from mlctl import train

    digest = artifacts.training_hash(spec)
    if dry_run:
        existing = artifacts.read_local(artifacts.artifact_dir(spec, digest))
        if existing is None and spec.weights is not None:
            report("train", "planned", f"would take the spec's weights from {spec.weights.dir}")
        elif existing is None:
            report("train", "planned", f"would train ({spec.training.runner.kind} runner, hash {digest[:12]})")
        else:
            report("train", "up to date", f"{existing.name}: test accuracy {existing.test_accuracy:.2%}")
        return existing
    try:
        trained = train.train(spec, on_line=on_line)
    except MlctlError as exc:
        raise _step("train", exc) from exc
    a = trained.artifact
    if trained.imported:
        status = "changed" if trained.trained else "up to date"
        report("train", status, f"{a.name}: the spec's weights from {spec.weights.dir}, sha256 {a.sha256[:12]}…")
    elif trained.trained:
        report("train", "changed", f"trained {a.name} in {trained.seconds:.1f} s: test accuracy {a.test_accuracy:.2%}")
    else:
        report("train", "up to date", f"{a.name}: test accuracy {a.test_accuracy:.2%}")
    return a


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it (shorter to copy)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _local(spec: Spec, artifact, dry_run: bool, report, result: ApplyResult, spec_path: Path) -> None:
    from mlctl.targets.local import target as local

    running = local.current(spec)
    if dry_run:
        if local.serves(running, spec, artifact):
            report("serve", "up to date", f"{running.url} (pid {running.pid})")
        else:
            report(
                "serve",
                "planned",
                f"would {'restart' if running else 'start'} the local server on port {spec.serving.local.port}",
            )
        return
    try:
        state, action = local.ensure(spec, artifact)
    except MlctlError as exc:
        raise _step("serve", exc) from exc
    from mlctl import predict
    from mlctl.targets.shared import check as sample_check

    engine = spec.serving.engine
    what = "seldon-core-microservice" if engine == "seldon" else "KServe ModelServer"
    report(
        "serve",
        "up to date" if action == "up to date" else "changed",
        f"{action}: {what} at {state.url} (pid {state.pid}, log {state.log})",
    )
    protocol = predict.ENGINE_PROTOCOL[engine]
    # Through the engine's own endpoint; SmokeTestFailed when wrong.
    check = sample_check.check_examples(
        state.url, load_contract(spec.model), expected_sha256=artifact.sha256, protocol=protocol, model=spec.name
    )
    report("check", "ok", sample_check.summary(check))
    result.summary = {
        "url": state.url + predict.endpoint_for(protocol, spec.name),
        "protocol": protocol,
        "predictFlags": predict.cli_flags(protocol, spec_path),
        "baseUrl": state.url,
        "modelSha256": artifact.sha256,
        "testAccuracy": artifact.test_accuracy,
        "prediction": check,
        "pid": state.pid,
        "spec": str(spec_path),
        "sample": _shown(load_contract(spec.model).labelled_examples[0].input),
    }


def _podman(spec: Spec, dry_run: bool, report, result: ApplyResult, on_log, spec_path: Path) -> None:
    """The release's pods under podman (mlctl/targets/podman/target.py): images, train, serve, check."""
    from mlctl.targets.podman import target as podman_target

    if dry_run:
        podman_target.plan(spec, report)
        return
    from mlctl import predict

    done = podman_target.apply(spec, report, on_log)
    result.summary = {**done, "spec": str(spec_path), "predictFlags": predict.cli_flags(done["protocol"], spec_path)}


def _credentials(spec: Spec):
    """The spec's credentials, resolved; an error names the step and the missing reference."""
    from mlctl.secrets import resolve_secrets

    try:
        return resolve_secrets(spec)
    except MlctlError as exc:
        raise _step("credentials", exc) from exc


def _kubernetes(spec: Spec, artifact, dry_run: bool, report, result: ApplyResult) -> None:
    from mlctl.release import Release
    from mlctl.targets.kubernetes import deploy

    secrets = _credentials(spec)
    untrained = artifact is None
    if untrained:  # dry run before the first training: plan with what is known
        artifact = artifacts.planned(spec)
    try:
        release = Release.build(spec, artifact.sha256, secrets)  # once: the plan and the upgrade share it
        plan = deploy.plan(release)
    except MlctlError as exc:
        raise _step("plan", exc) from exc
    where = f"{plan.namespace}/{plan.release}"
    if dry_run:
        if plan.up_to_date:
            report("deploy", "up to date", f"release {where} revision {plan.revision} is up to date")
        else:
            report("deploy", "planned", f"would run: {' '.join(plan.argv)}")
            for change in plan.changes:
                new = "<after training>" if untrained and change["path"] == "model.sha256" else repr(change["new"])
                report("diff", "planned", f"{change['path']}: {change['old']!r} → {new}")
        result.summary = {"plan": plan.as_dict()}
        return
    done = deploy.deploy(release, artifact, plan)
    if done.upgraded:
        report("deploy", "changed", f"release {where} revision {done.revision}, SeldonDeployment {done.state}")
    else:
        report("deploy", "up to date", f"release {where} revision {done.revision} is up to date ({done.state})")
    from mlctl.targets.shared import check as sample_check

    report("check", "ok", f"{sample_check.summary(done.smoke)} via {done.smoke.get('via') or done.smoke['url']}")
    result.summary = {
        "release": where, "revision": done.revision, "modelSha256": artifact.sha256,
        "testAccuracy": artifact.test_accuracy, "smoke": done.smoke, "upload": done.upload,
        "changes": plan.changes,
    }  # fmt: skip
