"""The podman target: the release's pods on this machine, as the cluster would run them.

`mlctl apply --target podman` renders the chart with the real helm (credentials resolved, in
memory), turns it into the pods the cluster runs (mlctl/pods.py: Seldon 1.17.1's operator,
injected containers included, or KServe 0.20's controller for engine kserve) and runs them under
podman (mlctl/podman.py):

1. images: the training and serving images are built when their content changed (mlctl build);
2. train: the chart's training Job's pod, to completion, unless a Job of the same name (its
   arguments carry the training hash) completed already; it uploads the model to the store
   itself (object storage) or writes it into the claim's folder (pvc://);
3. serve: the predictor pod, replaced when its template changed; the storage initializer
   downloads the model, the model container starts under its securityContext, and mlctl waits
   for its readiness probe;
4. check: the model contract's examples through the predictor Service's port, in the engine's own
   protocol (Seldon's, or V2 for KServe), then the chart's own `helm test` pod.

What differs from a cluster, and why (nothing else does):
- a PersistentVolumeClaim is a host folder, `<state>/claims/<claim>`;
- the training Job's `data` emptyDir starts with the spec's `data.dir` files in it (this machine
  has no internet to download them; the trainer still verifies their checksums), and a
  `data.clusterUri` claim gets them copied in;
- Services are DNS names on the podman network `mlctl`, and the predictor's port is published on
  127.0.0.1 for mlctl itself (as `kubectl port-forward` would); a Service port other than its
  targetPort (KServe's 80 → 8080) is redirected inside the pod's network namespace, kube-proxy's
  part (root only); a model store inside the cluster (an S3 endpoint at a Service name) is a
  real S3 server in a container on that network under the endpoint's host name, which mlctl
  starts unless one is there (mlctl/targets/podman/store.py);
- probes run while mlctl waits; a container that restarts while starting fails the apply.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlctl import chart, helm, podman, predict
from mlctl.artifacts import import_weights, metadata_from_log, read_local, store_uri, training_hash
from mlctl.contract import Contract
from mlctl.errors import MlctlError
from mlctl.pods import ClusterPod, cluster_pods
from mlctl.release import Names, Release, redact, with_credentials
from mlctl.secrets import resolve_secrets
from mlctl.spec import Spec
from mlctl.specload import load_contract
from mlctl.targets.podman import store as podman_store

Report = Callable[[str, str, str], None]


SERVICE_PORT_LABEL = f"{podman.LABEL}.service-port"
"""On the predictor's podman pod: the container port its Service targets (published on 127.0.0.1)."""


def state_dir(spec: Spec) -> Path:
    k = spec.kubernetes
    return spec.training.output.parent / "podman" / k.namespace / k.release


def _labels(spec: Spec) -> dict[str, str]:
    return {f"{podman.LABEL}.release": spec.kubernetes.release, f"{podman.LABEL}.namespace": spec.kubernetes.namespace}


def _record(spec: Spec) -> Path:
    return state_dir(spec) / "training.json"


def _trained(spec: Spec, job: str | None) -> dict | None:
    """The metadata of the completed Job `job`, if this machine ran it to completion (job None:
    of the spec's own weights, once placed)."""
    try:
        record = json.loads(_record(spec).read_text())
    except (OSError, ValueError):
        return None
    return record.get("metadata") if record.get("job") == job else None


def _require_podman() -> None:
    why = podman.available()
    if why:
        raise MlctlError(
            f"podman cannot run containers here: {why}",
            hint="install podman (Debian: apt-get install podman buildah runc) and see "
            "../shared/NOTES.md for these machines' settings",
        )


@dataclass
class PodmanRelease:
    """One apply's view of the release under podman: the release (values built once), the objects
    the chart renders from them, the pods, the runner."""

    release: Release
    objects: list[dict]
    pods: dict[str, ClusterPod]
    runner: podman.PodRunner

    @property
    def spec(self) -> Spec:
        return self.release.spec

    @property
    def values(self) -> dict:
        return self.release.values

    @property
    def model_sha256(self) -> str:
        return self.release.model_sha256


def _release(
    spec: Spec,
    secrets,
    model_sha256: str = "",
    on_log: Callable[[str, str], None] | None = None,
    on_event: Callable[[str], None] = lambda _: None,
    values: dict | None = None,
) -> PodmanRelease:
    """The release as the chart renders it: from the spec, or from `values` (a recorded revision's)."""
    if values is None:
        release = Release.build(spec, model_sha256, secrets, train_job=True)
    else:
        release = Release(spec, Names.for_spec(spec), secrets, values)
    objects = chart.template_values(spec, release.values, secrets)
    pods = {p.role: p for p in cluster_pods(objects, spec.kubernetes.namespace)}
    cluster = podman.Cluster(objects, spec.kubernetes.namespace, state_dir(spec), seeds=_seeds(spec, pods))
    runner = podman.PodRunner(cluster, _labels(spec), on_event=on_event, on_log=on_log, secrets=secrets.values())
    return PodmanRelease(release, objects, pods, runner)


def _data_files(spec: Spec) -> list[Path]:
    """The files of data.dir (what the podman target hands the Job), checked before any pod
    starts: a missing or empty folder is an error unless the training command downloads."""
    data = spec.data
    assert data is not None
    files = sorted(p for p in data.dir.rglob("*") if p.is_file()) if data.dir.is_dir() else []
    if not files and not data.download:
        raise MlctlError(
            f"data.dir {data.dir} is missing or empty: the podman target puts its files into the "
            "training Job's data volume",
            hint="point data.dir at the data, or set data.download: true if the training command fetches it",
        )
    return files


def _seeds(spec: Spec, pods: dict[str, ClusterPod]) -> dict[str, Path]:
    """The Job's data emptyDir starts with data.dir's files (see the module's docstring)."""
    job = pods.get("training")
    if job is None or spec.data is None or spec.data.cluster_uri:
        return {}
    kinds = {v["name"]: v for v in job.manifest["spec"].get("volumes") or []}
    if "emptyDir" not in kinds.get("data", {}):
        return {}
    return {"data": spec.data.dir} if _data_files(spec) else {}


def _provision_data_claim(spec: Spec, release: PodmanRelease) -> None:
    """A data.clusterUri claim gets data.dir's files, as a data team would have put them there."""
    uri = spec.data.cluster_uri if spec.data else None
    if not uri:
        return
    assert spec.data is not None
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    folder = release.runner.cluster.claim(claim) / path
    for file in _data_files(spec):
        target = folder / file.relative_to(spec.data.dir)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)


def apply(spec: Spec, report: Report, on_log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Train (if needed), serve and check the release under podman; the summary for the CLI."""
    _require_podman()
    started = time.monotonic()
    secrets = resolve_secrets(spec, pulls_images=False)
    _step("store", lambda: _store(spec, secrets, report))
    built = _step("images", lambda: _images(spec, report, on_log))
    if spec.weights is not None:
        metadata = _step("train", lambda: _bring(spec, report))
    else:
        metadata = _step("train", lambda: _train(spec, secrets, report, on_log))
    release = _release(spec, secrets, model_sha256=metadata["sha256"], on_event=lambda e: on_log(f"serve: {e}"))
    port, ready_after = _step("serve", lambda: _serve(spec, release, report))
    base = _step("check", lambda: _check(release, port, report))
    protocol = predict.ENGINE_PROTOCOL[spec.serving.engine]
    return {
        "url": base + predict.endpoint_for(protocol, spec.name),
        "baseUrl": base,
        "protocol": protocol,
        "modelSha256": metadata["sha256"],
        "testAccuracy": metadata["test_accuracy"],
        "modelUri": release.values["model"]["uri"],
        "pod": release.pods["predictor"].name,
        "readyAfterSeconds": ready_after,
        "images": [i.reference for i in built.images],
        "seconds": round(time.monotonic() - started, 1),
    }


def plan(spec: Spec, report: Report) -> None:
    """What apply would do, read-only: which images are due, whether the Job and the predictor
    pod of this release are there."""
    _require_podman()
    from mlctl.targets.shared import build

    store = podman_store.state(spec)
    if store:
        report("store", "planned" if store.startswith("would") else "up to date", store)
    for reference, due in build.stale(spec, engine_name="podman").items():
        report("images", "planned" if due else "up to date", f"{'would build ' if due else ''}{reference}")
    secrets = resolve_secrets(spec, pulls_images=False)
    release = _release(spec, secrets)
    job = release.pods["training"].owner.removeprefix("Job/")
    metadata = _trained(spec, None if spec.weights else job)
    if spec.weights is not None and (metadata or {}).get("sha256") != spec.weights.sha256:
        metadata = None
    if metadata is None and spec.weights is not None:
        report("train", "planned", f"would place the spec's weights from {spec.weights.dir} in {store_uri(spec)}")
        report("serve", "planned", "would run the predictor pod with them")
    elif metadata is None:
        report("train", "planned", f"would run the pod of Job {job}")
        report("serve", "planned", "would run the predictor pod with the model the Job writes")
    else:
        release = _release(spec, secrets, model_sha256=metadata["sha256"])
        predictor = release.pods["predictor"]
        done = "the spec's weights are in place" if spec.weights else f"Job {job} completed"
        report("train", "up to date", f"{done}: test accuracy {metadata['test_accuracy']:.2%}")
        port = _ready_predictor(release, predictor)
        report(
            "serve",
            "up to date" if port else "planned",
            f"pod {predictor.name} on 127.0.0.1:{port}" if port else f"would run pod {predictor.name}",
        )
    report("check", "planned", "would post the model's examples and run the helm test pod")


def _store(spec: Spec, secrets, report: Report) -> None:
    """Something answers the spec's in-cluster store endpoint (mlctl/targets/podman/store.py)."""
    done = podman_store.ensure(spec, secrets)
    if done is not None:
        report("store", *done)


def _images(spec: Spec, report: Report, on_log: Callable[[str], None]):
    from mlctl.targets.shared import build

    built = build.build(spec, engine_name="podman", on_progress=lambda line: on_log(f"build: {line}"))
    for image in built.images:
        report("images", "changed" if image.built else "up to date", image.reference)
    return built


def _bring(spec: Spec, report: Report) -> dict:
    """The spec's own weights (weights.dir) where the pods fetch models from: the claim's host
    folder, or the folder mlctl's stand-in store serves; the model's metadata."""
    artifact, _ = import_weights(spec)
    uri = store_uri(spec)
    if spec.model_store.is_pvc:
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        folder: Path | None = state_dir(spec) / "claims" / claim / path
    else:
        folder = podman_store.objects_folder(spec, uri)
    if folder is None:
        raise MlctlError(
            f"weights: cannot place {artifact.name} in {uri}: the store the pods reach is not one mlctl serves here",
            hint=f"copy {artifact.location} to {uri} yourself (rclone copy), or let mlctl start the stand-in store",
        )
    placed = read_local(folder) if folder.is_dir() else None
    status = "up to date"
    if placed is None or placed.sha256 != artifact.sha256:
        folder.mkdir(parents=True, exist_ok=True)
        for file in artifact.files:  # the weights first: a complete metadata file means complete weights
            shutil.copy2(file, folder / file.name)
        status = "changed"
    _record(spec).parent.mkdir(parents=True, exist_ok=True)
    _record(spec).write_text(json.dumps({"job": None, "metadata": artifact.metadata}, indent=2))
    report("train", status, f"{artifact.name}: the spec's weights from {spec.weights.dir}, in {uri}")
    return artifact.metadata


def _train(spec: Spec, secrets, report: Report, on_log: Callable[[str], None]) -> dict:
    """The training Job's pod, unless a Job of its name completed here; the model's metadata."""

    def follow(container: str, line: str) -> None:
        if not (container == "train" and line.startswith("{")):  # the metadata line, read below
            on_log(f"{container}: {line}")

    release = _release(spec, secrets, on_log=follow)
    job = release.pods["training"]
    name = job.owner.removeprefix("Job/")
    metadata = _trained(spec, name)
    if metadata is not None:
        report("train", "up to date", f"Job {name} completed: test accuracy {metadata['test_accuracy']:.2%}")
        return metadata
    _provision_data_claim(spec, release)
    job_object = next(o for o in release.objects if o["kind"] == "Job")
    started = time.monotonic()
    deadline = int(job_object["spec"].get("activeDeadlineSeconds") or 3600)
    run = release.runner.run(job, wait="complete", timeout_s=deadline)
    digest = training_hash(spec)
    metadata = metadata_from_log(run.logs("train"))
    if metadata is None or metadata.get("training_hash") != digest:
        raise MlctlError(f"Job {name} finished but its train log has no metadata for training hash {digest[:12]}…")
    _record(spec).write_text(json.dumps({"job": name, "metadata": metadata}, indent=2))
    release.runner.remove(run.podman_name)
    report(
        "train",
        "changed",
        f"Job {name} in {time.monotonic() - started:.1f} s: test accuracy "
        f"{metadata['test_accuracy']:.2%}, model in {store_uri(spec, digest)}",
    )
    return metadata


def _serve(spec: Spec, release: PodmanRelease, report: Report) -> tuple[int, float | None]:
    """The predictor pod of this template, ready; (its published port, seconds to ready or None)."""
    predictor = release.pods["predictor"]
    running = _ready_predictor(release, predictor)
    if running is not None:
        report("serve", "up to date", f"pod {predictor.name} on 127.0.0.1:{running}")
        return running, None
    for pod in release.runner.pods():
        if pod["labels"].get(f"{podman.LABEL}.role") == "predictor":
            release.runner.remove(pod["name"])
    port = service_port(predictor)
    run = release.runner.run(
        predictor,
        publish=sorted({port, *podman.probe_ports(predictor)}),
        timeout_s=spec.kubernetes.timeout_seconds,
        labels={SERVICE_PORT_LABEL: str(port)},  # for `status`, which renders nothing
    )
    _record_revision(spec, release)
    report(
        "serve", "changed", f"pod {predictor.name} ready in {run.ready_after_s:.1f} s on 127.0.0.1:{run.ports[port]}"
    )
    return run.ports[port], run.ready_after_s


# --- revisions and rollback: what helm keeps for a cluster release -------------------------------


def _revisions_file(spec: Spec) -> Path:
    return state_dir(spec) / "revisions.json"


def revisions(spec: Spec) -> list[dict[str, Any]]:
    """Every predictor this machine ran for the release, oldest first: its revision, the model
    its values name and those values (credentials redacted)."""
    try:
        return json.loads(_revisions_file(spec).read_text())
    except (OSError, ValueError):
        return []


def _record_revision(spec: Spec, release: PodmanRelease) -> None:
    history = revisions(spec)
    history.append(
        {
            "revision": (history[-1]["revision"] + 1) if history else 1,
            "modelUri": release.values["model"]["uri"],
            "modelSha256": release.model_sha256,
            "pod": release.pods["predictor"].name,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "values": redact(release.values),
        }
    )
    _revisions_file(spec).write_text(json.dumps(history, indent=2))


def rollback(spec: Spec, report: Report, revision: int | None = None) -> dict[str, Any]:
    """Serve an earlier revision's values again (default: the one before the current), as
    `helm rollback` does: its model, with today's credentials; a new revision records it."""
    _require_podman()
    k = spec.kubernetes
    old = helm.pick_revision(revisions(spec), revision, f"{k.namespace}/{k.release} under podman")
    wanted = old["revision"]
    secrets = resolve_secrets(spec, pulls_images=False)
    release = _release(spec, secrets, values=with_credentials(old["values"], secrets))
    port, _ = _step("serve", lambda: _serve(spec, release, report))
    base = _step("check", lambda: _check(release, port, report))
    return {
        "to": wanted,
        "revision": revisions(spec)[-1]["revision"],
        "modelUri": old["modelUri"],
        "modelSha256": old["modelSha256"],
        "url": base + predict.endpoint_for(predict.ENGINE_PROTOCOL[spec.serving.engine], spec.name),
        "baseUrl": base,
    }


def _check(release: PodmanRelease, port: int, report: Report) -> str:
    """The model contract's examples through the published Service port, then the chart's helm
    test pod."""
    from mlctl.targets.shared import check as sample_check

    base = f"http://127.0.0.1:{port}"
    spec = release.spec
    check = sample_check.check_examples(
        base,
        load_contract(spec.model),
        expected_sha256=release.model_sha256,
        protocol=predict.ENGINE_PROTOCOL[spec.serving.engine],
        model=spec.name,
    )
    report("check", "ok", sample_check.summary(check))
    test = release.pods.get("test")
    if test is not None:
        run = release.runner.run(test, wait="complete", timeout_s=300)
        try:
            said = json.loads(run.logs("predict").strip().splitlines()[-1])
            verdict = f"{len(said['examples'])} examples answered as the model contract says"
        except (ValueError, IndexError, KeyError, TypeError):
            verdict = "passed"
        report("check", "ok", f"helm test pod {test.name}: {verdict}")
        release.runner.remove(run.podman_name)
    return base


def _step(name: str, action: Callable[[], Any]) -> Any:
    try:
        return action()
    except MlctlError as exc:
        raise exc.prefixed(name) from exc


def service_port(predictor: ClusterPod) -> int:
    """The predictor Service's REST target port (Seldon's `<sdep>-<predictor>` Service, or
    KServe's `<isvc>-predictor`)."""
    return predictor.services[-1].ports["http"][1]


def _ready_predictor(release: PodmanRelease, predictor: ClusterPod) -> int | None:
    """The host port of a running predictor pod built from this exact template that is ready."""
    name = podman.podman_name(release.spec.kubernetes.namespace, predictor.name)
    if not release.runner.running(name, [c["name"] for c in predictor.manifest["spec"]["containers"]]):
        return None
    port = podman.published_port(name, service_port(predictor))
    if port is None:
        return None
    probe = next(
        (c.get("readinessProbe") for c in predictor.manifest["spec"]["containers"] if c.get("readinessProbe")), None
    )
    ok = podman.probe_ok(probe, {service_port(predictor): port}) if probe else True
    return port if ok else None


def status(spec: Spec) -> dict[str, Any]:
    """The release's pods under podman, and what the predictor serves."""
    runner = podman.PodRunner(podman.Cluster([], spec.kubernetes.namespace, state_dir(spec)), _labels(spec))
    pods = runner.pods() if podman.available() is None else []
    out: dict[str, Any] = {
        "release": spec.kubernetes.release,
        "namespace": spec.kubernetes.namespace,
        "pods": [
            {"name": p["name"], "role": p["labels"].get(f"{podman.LABEL}.role"), "containers": p["containers"]}
            for p in pods
        ],
    }
    try:
        record = json.loads(_record(spec).read_text())
        out["trainedBy"], out["trainedSha256"] = record["job"], record["metadata"]["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    predictor = next((p for p in pods if p["labels"].get(f"{podman.LABEL}.role") == "predictor"), None)
    if predictor:
        names = Names.for_spec(spec)
        # The Service's target port, as _serve labelled the pod; a pod from before the label
        # was a Seldon one, whose Service port is its target port.
        target = int(predictor["labels"].get(SERVICE_PORT_LABEL) or names.service_port)
        port = podman.published_port(predictor["name"], target)
        protocol = predict.ENGINE_PROTOCOL[names.engine]
        out["url"] = f"http://127.0.0.1:{port}{predict.endpoint_for(protocol, names.model)}" if port else None
        if port:
            out["servingSha256"] = serving_sha256(
                f"http://127.0.0.1:{port}", names.engine, names.model, load_contract(spec.model)
            )
    return out


def serving_sha256(base: str, engine: str, model: str, contract: Contract) -> str | None:
    """The sha256 of the weights the server at `base` answers with, as it says itself, or None.

    Seldon: the model's `/health/status` (a real prediction; jsonData.model_sha256). KServe: the
    Open Inference Protocol's model metadata carries versions only (sha256[:12]), so a V2
    inference of the contract's first labelled example, whose answer's parameters name the full
    sha256.
    """
    import urllib.request

    try:
        if engine == "kserve":
            example = contract.labelled_examples[0].input
            return predict.predict_file(base, example, contract, timeout=5, protocol="v2", model=model).model_sha256
        with urllib.request.urlopen(f"{base}/health/status", timeout=5) as r:
            health = json.loads(r.read())
        return (health.get("jsonData") or {}).get("model_sha256")
    except (MlctlError, OSError, ValueError, AttributeError):
        return None


def delete(spec: Spec) -> dict[str, Any]:
    """Remove the release's pods and forget its training Job (the store and claims are kept)."""
    runner = podman.PodRunner(podman.Cluster([], spec.kubernetes.namespace, state_dir(spec)), _labels(spec))
    removed = [p["name"] for p in runner.pods() if runner.remove(p["name"])] if podman.available() is None else []
    _record(spec).unlink(missing_ok=True)
    shutil.rmtree(state_dir(spec) / "pods", ignore_errors=True)
    return {"release": spec.kubernetes.release, "namespace": spec.kubernetes.namespace, "removed": removed}
