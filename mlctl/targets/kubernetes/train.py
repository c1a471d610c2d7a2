"""Train as a Kubernetes Job: the chart's `templates/job-train.yaml`, applied with kubectl.

The Job is rendered by the same chart `mlctl apply` installs (`helm template --show-only`), so
there is one definition of it. Its name carries a hash of what it does (arguments, which include
the training hash, image and destination), so a Job that already completed under that name has
already trained this exact model: it is reused unless `force`. The Job's `train` container prints
the artifact's metadata as its last JSON line on stdout; mlctl reads it back with `kubectl logs`.

The Secrets the Job needs (the storage Secret its rclone upload reads, the image pull Secret) and
its ServiceAccount (when the chart creates one) are applied beside it, annotated with the
release's name and namespace so a later `helm upgrade --install` adopts them instead of refusing to overwrite them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import yaml

from mlctl import helm, kubectl, poll, render, tools, valuesfile
from mlctl.artifacts import StoredArtifact, TrainResult, metadata_from_log, store_uri, training_hash
from mlctl.errors import MlctlError
from mlctl.secrets import Secrets, resolve_secrets
from mlctl.spec import KubernetesRunner, Spec

JOB_TEMPLATE = "templates/job-train.yaml"
STORAGE_SECRET_TEMPLATE = "templates/secret-storage.yaml"
REGISTRY_SECRET_TEMPLATE = "templates/secret-registry.yaml"
SERVICE_ACCOUNT_TEMPLATE = "templates/serviceaccount.yaml"
TRAIN_CONTAINER = "train"
POLL_SECONDS = 5.0
# The Job's own activeDeadlineSeconds ends it; this margin covers API latency around that moment.
DEADLINE_MARGIN_S = 120
LOG_TAIL = 20

# Indirections so tests can run the polling loop on a fake clock.


def render_job(spec: Spec, secrets: Secrets, digest: str) -> list[dict]:
    """The Job and the Secrets it needs, as the chart renders them (Secrets first)."""
    values = render.build_values(spec, secrets, training_hash=digest, train_job=True)
    # --show-only fails on a template that renders nothing, so ask only for what will render.
    templates = [JOB_TEMPLATE]
    if not spec.model_store.is_pvc and not spec.storage.existing_secret:
        templates.insert(0, STORAGE_SECRET_TEMPLATE)
    if spec.registry.creates_secret:
        templates.insert(0, REGISTRY_SECRET_TEMPLATE)
    if spec.kubernetes.service_account.create:
        templates.insert(0, SERVICE_ACCOUNT_TEMPLATE)
    k = spec.kubernetes
    with valuesfile.private_values_file(values) as file:
        text = helm.template(k.release, [file], namespace=k.namespace, secrets=secrets.values(), show_only=templates)
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    for obj in objects:
        if obj["kind"] in ("Secret", "ServiceAccount"):
            obj["metadata"].setdefault("annotations", {}).update(
                {"meta.helm.sh/release-name": k.release, "meta.helm.sh/release-namespace": k.namespace}
            )
    return objects


def job_state(job: dict | None) -> tuple[str, str]:
    """("absent" | "running" | "complete" | "failed", reason) of a Job object."""
    if job is None:
        return "absent", ""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "complete", cond.get("reason") or ""
        if cond.get("type") == "Failed":
            why = ": ".join(x for x in (cond.get("reason"), cond.get("message")) if x)
            return "failed", why or "Failed"
    return "running", ""


def _log_tail(t: helm.Target, job: str, secrets: Secrets) -> str:
    try:
        text = kubectl.logs(t, f"job/{job}", TRAIN_CONTAINER, tail=LOG_TAIL)
    except tools.ToolError as exc:
        return f"(no logs: {tools.tail(exc.stderr, 3) or 'kubectl logs failed'})"
    return tools.masked([tools.tail(text, LOG_TAIL)], secrets.values())[0] or "(empty log)"


def _read_metadata(t: helm.Target, job: str, digest: str) -> dict:
    try:
        text = kubectl.logs(t, f"job/{job}", TRAIN_CONTAINER, tail=200)
    except MlctlError as exc:
        raise MlctlError(
            f"training Job {job} completed but its log is gone, so mlctl cannot read the model's metadata",
            hint="retrain with --force (or keep Jobs: training.ttlSecondsAfterFinished is null by default)",
        ) from exc
    meta = metadata_from_log(text)
    if meta is None:
        raise MlctlError(f"training Job {job} completed but its `{TRAIN_CONTAINER}` log has no metadata line")
    if meta.get("training_hash") not in (None, digest):
        raise MlctlError(
            f"training Job {job} reports training hash {str(meta['training_hash'])[:12]}…, expected {digest[:12]}…",
            hint="retrain with --force",
        )
    return meta


def _follow(t: helm.Target, job: str, seen: list[str], on_line: Callable[[str], None], secrets: Secrets) -> None:
    """Pass the log lines printed since the last poll to `on_line` (the trainer prints one line
    per epoch with --no-progress, so a short tail per poll misses nothing)."""
    try:
        lines = kubectl.logs(t, f"job/{job}", TRAIN_CONTAINER, tail=50).splitlines()
    except MlctlError:
        return  # the pod may not have started yet
    overlap = next((n for n in range(min(len(seen), len(lines)), 0, -1) if seen[-n:] == lines[:n]), 0)
    for line in lines[overlap:]:
        on_line(tools.masked([line], secrets.values())[0])
    seen[:] = lines


def wait_for_job(
    t: helm.Target, job: str, timeout_s: float, secrets: Secrets, on_line: Callable[[str], None] | None = None
) -> None:
    """Poll until the Job completes, passing its new log lines to `on_line` when given;
    MlctlError naming the Job, its reason and its last log lines when it fails or outlives
    `timeout_s`."""
    seen: list[str] = []

    def finished() -> bool | None:
        state, why = job_state(kubectl.get_json(t, "job", job))
        if on_line is not None and state in ("running", "complete", "failed"):
            _follow(t, job, seen, on_line, secrets)
        if state == "failed":
            raise MlctlError(
                f"training Job {job} failed ({why}); last log lines:\n{_log_tail(t, job, secrets)}",
                hint=f"kubectl logs job/{job} -c {TRAIN_CONTAINER} -n {t.namespace}",
            )
        if state == "absent":
            raise MlctlError(f"training Job {job} disappeared while mlctl was waiting for it")
        return True if state == "complete" else None

    def timed_out() -> bool:
        raise MlctlError(
            f"training Job {job} did not finish within {timeout_s:.0f}s; last log lines:\n{_log_tail(t, job, secrets)}",
            hint=f"kubectl describe job/{job} -n {t.namespace}",
        )

    poll.until(finished, deadline=poll.deadline_in(timeout_s), every_s=POLL_SECONDS, on_timeout=timed_out)


def train(spec: Spec, force: bool = False, on_line: Callable[[str], None] | None = None) -> TrainResult:
    """Run (or reuse) the training Job for the spec's training hash; the artifact is the model's
    folder in the store, where the Job wrote it."""
    runner = spec.training.runner
    assert isinstance(runner, KubernetesRunner)
    started = time.monotonic()
    digest = training_hash(spec)
    t = helm.Target.for_spec(spec)
    secrets = resolve_secrets(spec)
    objects = render_job(spec, secrets, digest)
    job = next(o for o in objects if o["kind"] == "Job")["metadata"]["name"]

    state, _ = job_state(kubectl.get_json(t, "job", job))
    trained = True
    if state == "complete" and not force:
        trained = False
    else:
        if state != "absent" and (force or state == "failed"):
            # A Job's pod template is immutable, and a finished Job never runs again: replace it.
            kubectl.delete(t, "job", job)
            state = "absent"
        if state == "absent":
            kubectl.apply_objects(t, objects, secrets=secrets.values())
        wait_for_job(t, job, runner.timeout_seconds + DEADLINE_MARGIN_S, secrets, on_line)

    meta = _read_metadata(t, job, digest)
    try:
        str(meta["sha256"]), float(meta["test_accuracy"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MlctlError(f"training Job {job}: incomplete metadata line ({exc})") from exc
    artifact = StoredArtifact(meta, store_uri(spec, digest))
    return TrainResult(artifact, trained=trained, seconds=time.monotonic() - started, training_hash=digest)
