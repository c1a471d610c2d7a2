"""The project spec (`spec/mnist.yaml`): pydantic models, one per section.

Every field is typed, defaulted where a default makes sense, and documented by the docstring under
it; those docstrings become the JSON Schema descriptions (`mlctl schema`) and the README's
reference. YAML keys are camelCase (like Kubernetes and Helm values); Python names are snake_case.
Unknown keys are errors. Secrets are never values here, only references to where they live.

Relative paths in the spec resolve against the spec file's folder (as docker compose and
kustomize do), so `mlctl apply spec/mnist.yaml` means the same from any working directory.
"""

from __future__ import annotations

import math
import os
import re
import typing
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel

from runtime.settings import DEFAULTS as SERVING_DEFAULTS
from runtime.settings import PRECISIONS

SPEC_VERSION = "mlctl/v1"
# The seldon.io/rest-timeout floor: the wrapper's whole-second gunicorn timeout covers worker start.
MIN_REST_TIMEOUT_MS = 5000
# A gunicorn worker's start in the serving image: seconds, plus CPU-seconds per process starting
# at once (measured: bench/README.md, "Worker start-up"; min_rest_timeout_ms doubles the sum).
WORKER_START_S, WORKER_START_CPU_S = 0.6, 0.4

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL_MAX = 53
"""Helm's bound for release names, and so for every name mlctl derives objects from."""
QUANTITY_PATTERN = r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
"""Kubernetes resource.Quantity, as the API server parses it (the chart's schema says the same)."""
_QUANTITY = re.compile(QUANTITY_PATTERN)
# A container image reference: [registry[:port]/]path[:tag][@digest]; a path component's
# separators are distribution/reference's: one `.` or `_`, `__`, or any run of `-`.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# pvc://claim/folder: a claim name (DNS-1123 subdomain) and a folder inside it.
_PVC_FOLDER = r"^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[^\s]*[^\s/]$"


def _quantity(value: object) -> object:
    # YAML reads `cpu: 1` as an int and `cpu: 0.5` as a float; Kubernetes accepts both spellings.
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        value = str(value)
    if isinstance(value, str) and not _QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 1, 512Mi, 2Gi)")
    return value


def _image(value: str) -> str:
    if not _IMAGE.match(value):
        raise ValueError(f"{value!r} is not an image reference (e.g. ghcr.io/acme/mnist-seldon:0.1.0)")
    return value


Quantity = Annotated[str, BeforeValidator(_quantity)]
Image = Annotated[str, AfterValidator(_image)]


def _dns_label(value: str) -> str:
    if not re.match(DNS_LABEL_PATTERN, value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


DnsLabel = Annotated[str, Field(max_length=DNS_LABEL_MAX), AfterValidator(_dns_label)]
EnvName = Annotated[str, Field(pattern=_ENV_NAME)]


class Problem(ValueError):
    """A rule that spans fields, raised with the location (YAML keys) of the field to blame, so
    the error names that field's line rather than the section's."""

    def __init__(self, message: str, *loc: str | int) -> None:
        super().__init__(message)
        self.loc = loc


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors, camelCase aliases, docstrings as docs."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        validate_default=True,
    )


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the spec file's folder (passed as validation context)."""
    value = value.expanduser()
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        value = Path(os.path.normpath(Path(base) / value))
    return value


SpecPath = Annotated[Path, AfterValidator(_resolve_path)]


# --- secrets, by reference ------------------------------------------------------------------


class SecretRef(Strict):
    """Where a secret value lives: an environment variable or a file, never the value itself."""

    env: EnvName | None = None
    """Name of the environment variable that holds the value (e.g. REGISTRY_PASSWORD)."""
    file: SpecPath | None = None
    """Path of a file whose content (trailing newline stripped) is the value."""

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of `env` (a variable name) or `file` (a path)")
        return self

    def describe(self) -> str:
        """Where the value comes from, safe to print."""
        return f"environment variable {self.env}" if self.env else f"file {self.file}"


# --- data ----------------------------------------------------------------------------------


class DataSpec(Strict):
    """The training data: a folder the training command reads (`--data-dir`)."""

    dir: SpecPath
    """The data folder, relative to the spec file. The podman target copies it whole into the
    training Job's data volume."""
    download: bool = False
    """Pass `--download`: the training command fetches what the folder lacks (from `mirrors`,
    or from its own defaults)."""
    mirrors: list[Annotated[str, Field(pattern=r"^https?://")]] = Field(default_factory=list)
    """Base URLs passed as `--mirror`, tried in order (here and in the cluster's training Job);
    empty: the training command's own."""
    cluster_uri: Annotated[str, Field(pattern=_PVC_FOLDER)] | None = None
    """The same folder as the cluster's training Job reads it: pvc://claim/path (mounted
    read-only); empty means the Job starts from an empty folder (and downloads, with `download`)."""


# --- training ------------------------------------------------------------------------------


class Resources(Strict):
    """Kubernetes resource requests and limits (cpu, memory, …)."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    """Resources the scheduler reserves, e.g. {cpu: "1", memory: 512Mi}."""
    limits: dict[str, Quantity] = Field(default_factory=dict)
    """Hard caps, e.g. {cpu: "2", memory: 1Gi}."""

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        for name in self.requests.keys() & self.limits.keys():
            if _quantity_value(self.requests[name]) > _quantity_value(self.limits[name]):
                raise Problem(f"{self.requests[name]} exceeds limits.{name} ({self.limits[name]})", "requests", name)
        return self


_SUFFIX = {
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "E": 1e18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def _quantity_value(q: str) -> float:
    m = re.match(r"^[+]?([\d.]+(?:[eE][+-]?\d+)?)([a-zA-Z]*)$", q)
    assert m, q  # only called on values the Quantity validator accepted
    return float(m.group(1)) * _SUFFIX[m.group(2)]


class LocalRunner(Strict):
    """Train on this machine, as a subprocess (the model contract's training.command)."""

    kind: Literal["local"] = "local"
    threads: int | None = Field(None, ge=1, le=256)
    """torch intra-op threads; empty means one per core."""


class KubernetesRunner(Strict):
    """Train as a Kubernetes Job (the chart's `job-train.yaml`) in `kubernetes.namespace`."""

    kind: Literal["kubernetes"]
    image: Image | None = None
    """Retired: the training image is `training.image` now (the podman target and `mlctl build`
    use it whatever the runner)."""
    gpus: int = Field(0, ge=0, le=16)
    """nvidia.com/gpu devices requested by the Job; with 0 it trains on the CPU."""
    resources: Resources = Resources(requests={"cpu": "2", "memory": "2Gi"}, limits={"cpu": "4", "memory": "4Gi"})
    """Resources of the training container."""
    timeout_seconds: int = Field(3600, ge=60)
    """The Job's activeDeadlineSeconds; mlctl waits this long for it. The Job writes the
    artifact where the cluster serves it from: the `modelStore.uri` claim (pvc://) or bucket."""

    @model_validator(mode="after")
    def _image_moved(self) -> KubernetesRunner:
        if self.image is not None:
            raise Problem("moved to training.image (the image is the same whatever the runner)", "image")
        return self


Runner = Annotated[LocalRunner | KubernetesRunner, Field(discriminator="kind")]


class TrainingSpec(Strict):
    """How the model is trained. Any change here (or to the model code or data) retrains."""

    image: Image = "ghcr.io/example/mnist-train"
    """Training image (runtime/train.Dockerfile), run by the cluster's Job and the podman target.
    Without a tag, `mlctl build` tags it with a digest of what goes into it."""

    epochs: int = Field(5, ge=1, le=100)
    """Passes over the training set."""
    batch_size: int = Field(256, ge=1, le=8192)
    """Images per optimiser step."""
    learning_rate: float = Field(0.005, gt=0, le=10)
    """Peak learning rate of the one-cycle schedule (AdamW)."""
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    """Cross-entropy label smoothing."""
    weight_decay: float = Field(0.01, ge=0, lt=1)
    """Decoupled weight decay."""
    seed: int = Field(1, ge=0, le=2**32 - 1)
    """Random seed: the same seed, settings and data give the same weights."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` uses a GPU (with mixed precision) when one is visible."""
    limit_train: int | None = Field(None, ge=100, le=60000)
    """Train on the first N training images only (quick runs, tests); empty means all 60,000."""
    limit_test: int | None = Field(None, ge=100, le=10000)
    """Evaluate on the first N test images only; empty means all 10,000."""
    output: SpecPath = Path("../.mlctl/models")
    """Local folder of trained artifacts (one sub-folder per training hash). Relative to the spec."""
    runner: Runner = Field(default_factory=lambda: {"kind": "local"})
    """Where training runs: `kind: local` or `kind: kubernetes`."""

    @model_validator(mode="after")
    def _gpu_needs_a_runner_that_has_one(self) -> TrainingSpec:
        if isinstance(self.runner, KubernetesRunner):
            if self.device == "cuda" and self.runner.gpus == 0:
                raise Problem("device is cuda but runner.gpus is 0: request at least one GPU", "device")
        return self


# --- serving -------------------------------------------------------------------------------


class Autoscaling(Strict):
    """A HorizontalPodAutoscaler on the model pods (Seldon's hpaSpec)."""

    enabled: bool = False
    """Scale between minReplicas and maxReplicas on CPU use instead of fixed `replicas`."""
    min_replicas: int = Field(1, ge=1, le=100)
    """Fewest pods."""
    max_replicas: int = Field(4, ge=1, le=100)
    """Most pods."""
    target_cpu_utilization: int = Field(70, ge=1, le=100)
    """Average CPU use (percent of the request) the autoscaler aims for."""

    @model_validator(mode="after")
    def _min_le_max(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise Problem(f"{self.min_replicas} is greater than maxReplicas ({self.max_replicas})", "minReplicas")
        return self


class Probe(Strict):
    """Timing of an HTTP probe on the model container."""

    initial_delay_seconds: int = Field(5, ge=0, le=3600)
    """Wait this long after start before the first probe."""
    period_seconds: int = Field(10, ge=1, le=3600)
    """Probe every this many seconds."""
    timeout_seconds: int = Field(2, ge=1, le=600)
    """A probe slower than this fails."""
    failure_threshold: int = Field(3, ge=1, le=100)
    """Consecutive failures before the pod is marked unready (or restarted, for liveness)."""


class Probes(Strict):
    """Readiness (`/health/status`, a real tiny prediction) and liveness (`/health/ping`)."""

    readiness: Probe = Probe(initial_delay_seconds=5, period_seconds=5)
    """Gates traffic to a pod."""
    liveness: Probe = Probe(initial_delay_seconds=30, period_seconds=10)
    """Restarts a pod that stops answering."""


class LocalServing(Strict):
    """The local server `mlctl serve` and `mlctl apply` (target local) run."""

    host: str = "127.0.0.1"
    """Address to print and probe; the Seldon wrapper itself listens on all interfaces."""
    port: int = Field(9000, ge=1, le=65535)
    """HTTP port of the REST endpoints."""


KSERVE_STORE_SCHEMES = ("s3", "pvc")
"""Stores the KServe path supports: S3 (credentials from the storage Secret, KServe's way) and
PVCs. KServe also reads gs:// and Azure, with credentials in other forms this spec cannot name yet."""
ENGINES = ("seldon", "kserve")
"""The model servers mlctl deploys: Seldon Core v1 (its Python wrapper) or KServe (its SDK)."""


class KServeSpec(Strict):
    """What only the KServe engine uses."""

    image: Image = "ghcr.io/example/mnist-kserve"
    """Serving image (runtime/kserve.Dockerfile: the KServe SDK's ModelServer, no seldon-core),
    tagged like `serving.image`."""
    deployment_mode: Literal["Standard", "Knative"] = "Standard"
    """The InferenceService's serving.kserve.io/deploymentMode: `Standard` (a Deployment and a
    Service; formerly RawDeployment) or `Knative` (a Knative Service, scale to zero; formerly
    Serverless)."""
    storage_initializer_image: Image = "kserve/storage-initializer:v0.20.0"
    """KServe's storage-initializer image. The chart declares the init container itself, hardened
    (KServe 0.20 injects it with no securityContext, which Pod Security "restricted" refuses, and
    injects nothing when one of that name exists). Append @sha256:… to pin it."""


class ServingSpec(Strict):
    """The model server."""

    engine: Literal[ENGINES] = "seldon"
    """The model server: `seldon` (Seldon Core v1, a SeldonDeployment) or `kserve` (KServe, an
    InferenceService speaking KServe's V1 and the Open Inference Protocol V2). The same trained
    artifact and the same answers either way."""
    image: Image = "ghcr.io/example/mnist-seldon"
    """Seldon serving image (runtime/seldon.Dockerfile). Without a tag, `mlctl build` tags it with
    a digest of what goes into it (Dockerfile, requirements, model code), so changed model code
    means a new image. Engine kserve uses `kserve.image`."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """When the kubelet pulls the image."""
    replicas: int = Field(1, ge=0, le=100)
    """Model pods when autoscaling is off."""
    workers: int = Field(SERVING_DEFAULTS.workers, ge=1, le=64)
    """Worker processes per pod (Seldon: GUNICORN_WORKERS; KServe: the ModelServer's --workers)."""
    threads: int = Field(SERVING_DEFAULTS.threads, ge=1, le=64)
    """Threads per gunicorn worker (GUNICORN_THREADS); engine seldon only."""
    torch_threads: int = Field(SERVING_DEFAULTS.torch_threads, ge=1, le=64)
    """torch intra-op threads per worker (TORCH_THREADS)."""
    precision: Literal[PRECISIONS] = SERVING_DEFAULTS.precision
    """The arithmetic the model serves in (MODEL_PRECISION), for a model that offers a choice:
    `int8` (a quantized form, where the model has one; the shipped example's is calibrated at
    training time, bench/README.md has the figures) or `float32` (the weights as trained)."""
    rest_timeout_ms: int = Field(MIN_REST_TIMEOUT_MS, ge=MIN_REST_TIMEOUT_MS, le=600000)
    """The request timeout (ms). Seldon: the seldon.io/rest-timeout annotation, which the wrapper
    also makes gunicorn's worker timeout in whole seconds; that clock runs while each worker
    starts, so it must cover worker start-up (see `_timeout_covers_worker_start`). KServe: the
    predictor's `timeout`, in whole seconds rounded up."""
    grpc: bool | None = None
    """Serve Seldon's gRPC API (one more process, ~40 MB) on the port the operator declares,
    9500; false leaves that port unanswered. Unset: on with engine seldon. Engine seldon only:
    mlctl's KServe predictor serves REST (V1 and V2) on one port, as Knative requires."""
    executor: bool = False
    """Keep Seldon's executor (seldon-container-engine) in the model pods. The 1.17.1 operator
    gives it no capability drop and no field to add one, so such pods meet Pod Security
    `baseline`, not `restricted`; without it the predictor Service reaches the model's port 9000.
    Engine seldon only."""
    resources: Resources = Resources(requests={"cpu": "1", "memory": "512Mi"}, limits={"cpu": "2", "memory": "1Gi"})
    """Resources of the model container."""
    autoscaling: Autoscaling = Field(default_factory=dict)
    """Horizontal autoscaling."""
    probes: Probes = Field(default_factory=dict)
    """Health probes."""
    local: LocalServing = Field(default_factory=dict)
    """Local serving (`mlctl serve`)."""
    kserve: KServeSpec = Field(default_factory=dict)
    """Engine kserve only: its image and deployment mode."""

    @property
    def grpc_enabled(self) -> bool:
        """Whether the model server answers gRPC: `grpc`, or the engine's default."""
        return self.engine == "seldon" and (self.grpc if self.grpc is not None else SERVING_DEFAULTS.grpc_workers > 0)

    @property
    def engine_image(self) -> str:
        """The serving image of the engine in use."""
        return self.kserve.image if self.engine == "kserve" else self.image

    @model_validator(mode="after")
    def _fields_fit_the_engine(self) -> ServingSpec:
        # Judged by value, not by presence, so a dumped spec (every default written out) loads again.
        if self.engine == "seldon":
            if self.kserve != KServeSpec():
                raise Problem("applies to engine kserve only; this spec's serving.engine is seldon", "kserve")
            return self
        seldon_only = {
            "executor": (self.executor, "Seldon's executor (seldon-container-engine); KServe's pods have none"),
            "grpc": (self.grpc, "Seldon's gRPC API; mlctl's KServe predictor serves REST (V1 and V2) on one port"),
            "threads": (
                self.threads != SERVING_DEFAULTS.threads,
                "gunicorn threads per worker; the KServe ModelServer's workers are asyncio processes",
            ),
        }
        for key, (used, what) in seldon_only.items():
            if used:
                raise Problem(f"engine seldon only ({what}): remove it for engine kserve", key)
        return self

    @model_validator(mode="after")
    def _timeout_covers_worker_start(self) -> ServingSpec:
        if self.engine != "seldon":
            return self
        cpus = _quantity_value(self.resources.limits.get("cpu") or self.resources.requests.get("cpu") or "1")
        need_ms = min_rest_timeout_ms(self.workers, cpus)
        if self.rest_timeout_ms < need_ms:
            raise Problem(
                f"{self.rest_timeout_ms} ms is too short for {self.workers} workers on {cpus:g} CPU: the wrapper "
                f"makes it gunicorn's worker timeout, which also covers each worker's start; use at least {need_ms}",
                "restTimeoutMs",
            )
        return self


def min_rest_timeout_ms(workers: int, cpus: float) -> int:
    """The shortest seldon.io/rest-timeout that lets `workers` gunicorn workers start on `cpus`.

    The wrapper makes the annotation gunicorn's worker timeout in whole seconds, and that clock
    runs while a worker starts. A start costs WORKER_START_S plus WORKER_START_CPU_S of CPU for
    each process starting at once (the workers and the gRPC server), as measured in the serving
    image (bench/README.md, "Worker start-up"); twice that, so that a slower node does not kill
    workers while they start, and never under MIN_REST_TIMEOUT_MS.
    """
    start_s = WORKER_START_S + WORKER_START_CPU_S * (workers + 1) / max(cpus, 0.001)
    return max(MIN_REST_TIMEOUT_MS, 1000 * math.ceil(2 * start_s))


# --- where the model lives, and credentials --------------------------------------------------


class WeightsSpec(Strict):
    """Bring your own weights (the tutorial's `seldon generate-deployment IMAGE MODEL_URI`): deploy
    a trained model folder, verified by its digest, instead of training one."""

    dir: SpecPath
    """A model folder as `mlctl train` writes them (model.pt and metadata.json), e.g. trained on
    another machine or by another project. Relative to the spec file."""
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    """model.pt's sha256 (`sha256sum model.pt`): the only weights mlctl takes from `dir` and the
    only weights the server loads."""


class ModelStore(Strict):
    """Where the cluster's model server fetches the trained artifact from."""

    uri: Annotated[str, Field(pattern=r"^(s3|gs|gcs|azure|minio|pvc)://[^\s/]+(/[^\s]*)?$")] = (
        "pvc://mlctl-models/mnist"
    )
    """The store's root: object storage (s3://bucket/path, gs://…) or pvc://claim/path. Each
    model gets a folder of its own under it, named like its local folder (`<name>-<hash12>`), so
    a release names exactly the weights it serves and old models stay."""

    @property
    def scheme(self) -> str:
        return self.uri.split("://", 1)[0]

    @property
    def is_pvc(self) -> bool:
        return self.scheme == "pvc"

    @property
    def bucket(self) -> str:
        """The bucket, or the claim of a pvc:// store."""
        return self.uri.split("://", 1)[1].split("/", 1)[0]

    @property
    def prefix(self) -> str:
        """The path inside the bucket or claim, without slashes at either end ("" at the root)."""
        return self.uri.split("://", 1)[1].partition("/")[2].strip("/")

    def join(self, folder: str) -> str:
        """The URI of `folder` in the store."""
        return f"{self.scheme}://{self.bucket}/{'/'.join(p for p in (self.prefix, folder) if p)}"

    def rclone_path(self, folder: str = "") -> str:
        """`remote:bucket/path` for rclone (the remote is named after the scheme, as in the chart)."""
        return f"{self.scheme}:{'/'.join(p for p in (self.bucket, self.prefix, folder) if p)}"


class RegistrySpec(Strict):
    """Credentials for pulling the private images (a kubernetes.io/dockerconfigjson Secret)."""

    existing_secret: DnsLabel | None = None
    """Use this existing pull Secret instead of creating one."""
    server: str | None = None
    """Registry host, e.g. ghcr.io; empty means the images are public (no pull secret)."""
    username: str | None = None
    """Registry user name."""
    password: SecretRef | None = None
    """Where the registry password or token lives."""

    @model_validator(mode="after")
    def _credentials_complete(self) -> RegistrySpec:
        if self.existing_secret or not self.server:
            return self
        missing = [k for k in ("username", "password") if getattr(self, k) is None]
        if missing:
            raise Problem(
                f"server is set but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: "
                "give them, or name an existingSecret",
                "server",
            )
        return self

    @property
    def creates_secret(self) -> bool:
        return bool(self.server) and not self.existing_secret


def _rclone_value(value: object) -> object:
    # rclone reads its options from environment variables: `env_auth: false` means "false".
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, (int, float)) else value


RcloneValue = Annotated[str, BeforeValidator(_rclone_value)]

# rclone options that carry credentials, across its backends: they belong in a Secret.
_CREDENTIAL_OPTIONS = re.compile(
    r"(secret|password|passphrase|token|credential|private_key|sas_url|api_key|client_key)|^(pass|key|account_key"
    r"|access_key_id|sse_customer_key|sse_kms_key_id|service_account_file|user_pass)$"
)


def _no_credentials(options: dict[str, str]) -> dict[str, str]:
    for name in options:
        if _CREDENTIAL_OPTIONS.search(name):
            raise Problem(
                f"{name} carries a credential, and storage.rclone is written into the values as is: give the "
                "S3 keys as storage.accessKeyId / storage.secretAccessKey ({env: VAR} or {file: path}), or put "
                "the remote's secrets in a Secret and name it in storage.existingSecret",
                name,
            )
    return options


class StorageSpec(Strict):
    """Credentials for the model store (an Opaque Secret of rclone RCLONE_CONFIG_* keys)."""

    existing_secret: DnsLabel | None = None
    """Use this existing Secret (RCLONE_CONFIG_<REMOTE>_* keys) instead of creating one; with
    engine kserve it also needs the keys KServe's initializer reads (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, and AWS_ENDPOINT_URL/S3_ENDPOINT for a non-AWS endpoint)."""
    rclone: Annotated[
        dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], RcloneValue], AfterValidator(_no_credentials)
    ] = Field(default_factory=lambda: {"type": "s3", "provider": "Minio", "env_auth": "false"})
    """Non-secret rclone options for the remote, e.g. {type: s3, provider: AWS, region: eu-west-1,
    endpoint: http://minio.minio:9000}."""
    access_key_id: SecretRef | None = None
    """Where the access key id lives."""
    secret_access_key: SecretRef | None = None
    """Where the secret access key lives."""
    initializer_image: Image = "seldonio/rclone-storage-initializer:1.17.1"
    """Seldon's storage-initializer image (entrypoint `rclone copy`): the chart declares the init
    container with it, and the training Job uploads with it. Append @sha256:… to pin it."""
    upload_endpoint: Annotated[str, Field(pattern=r"^https?://")] | None = None
    """The S3 endpoint as this machine reaches it, for `mlctl apply` to upload the model when
    `rclone.endpoint` is an address inside the cluster; empty means `rclone.endpoint` (or AWS)."""


class ServiceAccountSpec(Strict):
    """The ServiceAccount of the model pods, their storage initializer and the training Job."""

    create: bool = False
    """Create it (named `name`, or after the release)."""
    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)] | None = None
    """The ServiceAccount the pods run as; empty (and create false) means the namespace's default.
    Workload identity (IRSA, GKE) binds cloud credentials to it: set storage.rclone.env_auth."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Annotations of the created ServiceAccount, e.g. eks.amazonaws.com/role-arn."""


class KubernetesSpec(Strict):
    """The cluster target of `mlctl apply --target kubernetes`."""

    namespace: DnsLabel = "models"
    """Namespace of the release."""
    release: DnsLabel = "mnist"
    """Helm release name (also names the SeldonDeployment)."""
    context: str | None = None
    """kubeconfig context; empty means the current one."""
    create_namespace: bool = True
    """Pass --create-namespace to helm."""
    timeout_seconds: int = Field(600, ge=30, le=7200)
    """How long helm --wait and the rollout may take."""
    endpoint: Annotated[str, Field(pattern=r"^https?://")] | None = None
    """Base URL of the predictions endpoint through an ingress (Seldon's gateway; with engine
    kserve the InferenceService's own URL, its status.url); empty means port-forward."""
    service_account: ServiceAccountSpec = Field(default_factory=dict)
    """The pods' ServiceAccount (for workload identity)."""
    network_policy: bool = False
    """Add NetworkPolicies: the model pods admit only their serving and metrics ports, the
    training Job's and the test's pods nothing."""
    test_image: Image = "python:3.11-slim"
    """The `helm test` pod's image (any Python 3); append @sha256:… to pin it."""


# --- the whole spec ------------------------------------------------------------------------


class Spec(Strict):
    """An mlctl project: train a model package, serve it with Seldon Core or KServe, deploy it with Helm."""

    api_version: Literal["mlctl/v1"] = Field(SPEC_VERSION, alias="apiVersion")
    """Spec format version."""
    name: DnsLabel = "mnist"
    """Project and model name (names the artifact folder and the Kubernetes objects)."""
    model: SpecPath = Path("../model")
    """The model package: a folder of Python code with its contract, model.yaml (the class,
    inputs, output labels, training command and examples; docs/model-contract.md). Relative to
    the spec file."""
    target: Literal["local", "podman", "kubernetes"] = "local"
    """What `mlctl apply` does by default: run the model on this machine (`local`), run the
    release's pods here in containers as the cluster would (`podman`), or deploy it."""
    data: DataSpec | None = None
    """Training and test data; empty for a model whose training command needs none (it makes
    or carries its own)."""
    training: TrainingSpec = Field(default_factory=dict)
    """Training settings."""
    serving: ServingSpec = Field(default_factory=dict)
    """Serving settings."""
    weights: WeightsSpec | None = None
    """Bring your own weights: serve this model folder instead of training (the `training`
    settings are then unused); empty means mlctl trains the model."""
    model_store: ModelStore = Field(default_factory=dict)
    """Where the cluster fetches the trained model."""
    registry: RegistrySpec = Field(default_factory=dict)
    """Image pull credentials."""
    storage: StorageSpec = Field(default_factory=dict)
    """Model-store credentials."""
    kubernetes: KubernetesSpec = Field(default_factory=dict)
    """Cluster target."""

    @model_validator(mode="after")
    def _store_fits_the_engine(self) -> Spec:
        scheme = self.model_store.scheme
        if self.serving.engine == "kserve" and scheme not in KSERVE_STORE_SCHEMES:
            raise Problem(
                f"{scheme}:// is not a store mlctl gives KServe's storage initializer: use "
                + " or ".join(f"{s}://" for s in KSERVE_STORE_SCHEMES)
                + (" (minio:// is rclone's name for an S3 remote)" if scheme == "minio" else ""),
                "modelStore",
                "uri",
            )
        return self

    @model_validator(mode="after")
    def _store_credentials(self) -> Spec:
        store, storage = self.model_store, self.storage
        if not store.is_pvc and not storage.existing_secret:
            refs = {"accessKeyId": storage.access_key_id, "secretAccessKey": storage.secret_access_key}
            missing = [key for key, ref in refs.items() if ref is None]
            if missing and storage.rclone.get("env_auth") != "true":
                raise Problem(
                    f"{store.uri} needs credentials: set storage.existingSecret, "
                    f"or storage.{' and storage.'.join(missing)}, or storage.rclone.env_auth: 'true'",
                    "modelStore",
                    "uri",
                )
        return self


def spec_json_schema() -> dict:
    """The JSON Schema of the spec (by alias: the YAML's camelCase keys)."""
    return Spec.model_json_schema(by_alias=True)


def _models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation names: X, X | None, Annotated[X | Y, …]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
