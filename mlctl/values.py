"""The chart's values as a pydantic model: the one source of the mnist-seldon chart's contract.

`render.build_values` validates what it writes against `ChartValues`; `values.schema.json` and
the values table in the chart's README are generated from it (`python -m mlctl.chartdoc`), and
tests/chart checks that the checked-in copies are current and that `values.yaml` holds exactly
these defaults. The chart stays installable without mlctl: helm reads the generated schema.

Keys are camelCase except the rclone option maps, whose keys are rclone's own option names.
A key is required in the schema unless its default is None or it is marked `optional` (the
keys of a Toleration or a NetworkPolicyPeer, the well-known rclone options).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from mlctl.spec import DNS_LABEL_MAX, DNS_LABEL_PATTERN, ENGINES, MIN_REST_TIMEOUT_MS, QUANTITY_PATTERN
from runtime.settings import DEFAULTS as SERVING_DEFAULTS
from runtime.settings import PRECISIONS

OPTIONAL = {"x-optional": True}
"""json_schema_extra of a key the schema does not require (the generator removes the marker)."""
NULLABLE = {"x-nullable": True}
"""json_schema_extra of a key whose null is a value (not "unset"): the schema admits null."""

_LABEL_OR_EMPTY = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"
_SUBDOMAIN_OR_EMPTY = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$"
_RCLONE_OPTION = r"^[a-z][a-z0-9_]*$"
_RESOURCE_NAME = r"^([a-z0-9.-]+/)?[a-z0-9-]+$"

PullPolicy = Literal["Always", "IfNotPresent", "Never"]
Digest = Annotated[str, Field(pattern=r"^(sha256:[0-9a-f]{64})?$")]
StringMap = dict[str, str]
Quantities = dict[
    Annotated[str, Field(pattern=_RESOURCE_NAME)], Annotated[str, Field(pattern=QUANTITY_PATTERN)] | int | float
]


class Values(BaseModel):
    """Base of the values models: strict types, unknown keys refused, docstrings as descriptions."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )


class RcloneOptions(BaseModel):
    """rclone options of a remote, keyed by rclone's own option names."""

    model_config = ConfigDict(
        extra="allow",
        strict=True,
        use_attribute_docstrings=True,
        json_schema_extra={"propertyNames": {"pattern": _RCLONE_OPTION}},
    )
    __pydantic_extra__: dict[str, str]

    @model_validator(mode="after")
    def _option_names(self) -> RcloneOptions:
        bad = [k for k in self.__pydantic_extra__ or {} if not re.match(_RCLONE_OPTION, k)]
        if bad:
            raise ValueError(f"{', '.join(bad)}: not an rclone option name ({_RCLONE_OPTION})")
        return self


# --- shared shapes ------------------------------------------------------------------------------


class Image(Values):
    """A container image."""

    repository: Annotated[str, Field(min_length=1)]
    """Image repository (registry/name)."""
    tag: str = ""
    """Image tag; empty: the chart's appVersion."""
    pull_policy: PullPolicy = "IfNotPresent"
    """imagePullPolicy of the container."""
    digest: Digest = ""
    """Pins the image by content (sha256:…); empty: the tag alone."""


class TaggedImage(Image):
    """A third-party image: its tag is required."""

    tag: Annotated[str, Field(min_length=1)]
    """Image tag."""


class Resources(Values):
    """Requests and limits of a container."""

    requests: Quantities = Field(default_factory=dict, json_schema_extra=OPTIONAL)
    """Minimum resources the scheduler reserves."""
    limits: Quantities = Field(default_factory=dict, json_schema_extra=OPTIONAL)
    """Hard limits."""


class Toleration(Values):
    """A pod toleration."""

    key: str | None = None
    """The taint key."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal."""
    value: str | None = None
    """The taint value (operator Equal)."""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """The taint effect matched; empty: all."""
    toleration_seconds: int | None = None
    """How long a NoExecute taint is tolerated."""


class Requirement(Values):
    """A set-based label requirement."""

    key: str | None = None
    """Label key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] | None = None
    """Operator."""
    values: list[str] | None = None
    """Values."""


class LabelSelector(Values):
    """A label selector."""

    match_labels: StringMap | None = None
    """Labels the peers carry."""
    match_expressions: list[Requirement] | None = None
    """Set-based requirements."""


class IpBlock(Values):
    """A CIDR range."""

    cidr: str
    """The range."""
    except_: list[str] | None = Field(None, alias="except")
    """Ranges left out."""


class Peer(Values):
    """A NetworkPolicyPeer."""

    pod_selector: LabelSelector | None = None
    """Pods (in the policy's namespace, or those of namespaceSelector)."""
    namespace_selector: LabelSelector | None = None
    """Namespaces."""
    ip_block: IpBlock | None = None
    """A CIDR range."""


# --- the sections -------------------------------------------------------------------------------


class Model(Values):
    """The model artifact and the graph node."""

    name: Annotated[str, Field(pattern=DNS_LABEL_PATTERN, max_length=DNS_LABEL_MAX)] = "classifier"
    """The graph node's and the model container's name (a DNS-1123 label)."""
    uri: Annotated[str, Field(pattern=r"^$|^[a-z][a-z0-9+.-]*://[^\s]+$")] = ""
    """The model's own folder (model.pt, metadata.json), which Seldon's storage initializer copies
    to /mnt/models: s3://bucket/path, gs://bucket/path or pvc://claim/path. Required (checked at
    template time with a clearer message)."""
    sha256: Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")] = ""
    """sha256 of model.pt (64 lower-case hex digits): MODEL_SHA256, the only weights the server
    loads; empty: no check."""


class ServiceAccount(Values):
    """The ServiceAccount of the serving pods, their storage initializer and the training Job."""

    create: bool = False
    """Create the ServiceAccount (named serviceAccount.name or the release's full name)."""
    name: Annotated[str, Field(pattern=_SUBDOMAIN_OR_EMPTY, max_length=253)] = ""
    """The ServiceAccount the pods run as (created, or existing); empty with create false: the
    namespace's default."""
    annotations: StringMap = Field(default_factory=dict)
    """Annotations of the created ServiceAccount (workload identity: eks.amazonaws.com/role-arn,
    iam.gke.io/gcp-service-account)."""


class Autoscaling(Values):
    """Horizontal pod autoscaling of the model pods."""

    enabled: bool = False
    """Replace serving.replicas with a Seldon hpaSpec."""
    min_replicas: Annotated[int, Field(ge=1)] = 1
    """The HPA's lower bound."""
    max_replicas: Annotated[int, Field(ge=1)] = 4
    """The HPA's upper bound (at least minReplicas, checked at template time)."""
    target_cpu_utilization_percentage: Annotated[int, Field(ge=1)] = Field(70, alias="targetCPUUtilizationPercentage")
    """Average CPU use, in percent of the request, the HPA aims for."""


class Probe(Values):
    """Timing of an HTTP probe."""

    initial_delay_seconds: Annotated[int, Field(ge=0)]
    """Seconds before the first probe."""
    period_seconds: Annotated[int, Field(ge=1)]
    """Seconds between probes."""
    timeout_seconds: Annotated[int, Field(ge=1)] = 2
    """Seconds before a probe times out."""
    failure_threshold: Annotated[int, Field(ge=1)] = 3
    """Consecutive failures before the probe fails."""


class Probes(Values):
    """Probe timings."""

    readiness: Probe = Field(default_factory=lambda: Probe(initial_delay_seconds=5, period_seconds=5))
    """Timing of the HTTP readiness probe on /health/status."""
    liveness: Probe = Field(default_factory=lambda: Probe(initial_delay_seconds=30, period_seconds=10))
    """Timing of the HTTP liveness probe on /health/ping."""


class Executor(Values):
    """Seldon's executor (seldon-container-engine)."""

    enabled: bool = False
    """Keep the executor in the pod (then the pod meets Pod Security baseline, not restricted);
    off sets seldon.io/no-engine."""


class KServeInitializer(Values):
    """KServe's storage initializer, declared by the chart (resources: storage.initializer's)."""

    image: TaggedImage = Field(
        default_factory=lambda: TaggedImage(repository="kserve/storage-initializer", tag="v0.20.0")
    )
    """The storage-initializer image (entrypoint: download args[0] into args[1])."""


class KServe(Values):
    """What only engine kserve uses."""

    deployment_mode: Literal["Standard", "Knative"] = "Standard"
    """serving.kserve.io/deploymentMode: Standard (a Deployment and a Service; formerly
    RawDeployment) or Knative (formerly Serverless)."""
    storage_initializer: KServeInitializer = Field(default_factory=KServeInitializer)
    """KServe's storage initializer."""


class Serving(Values):
    """The model server: Seldon Core v1's Python wrapper or KServe's ModelServer."""

    engine: Literal[ENGINES] = "seldon"
    """seldon renders a SeldonDeployment; kserve an InferenceService (serving.kserve.io/v1beta1)."""
    image: Image = Field(default_factory=lambda: Image(repository="ghcr.io/example/mnist-seldon"))
    """The serving image: runtime/seldon.Dockerfile's, or runtime/kserve.Dockerfile's for kserve."""
    replicas: Annotated[int, Field(ge=0)] = 1
    """Number of model pods when autoscaling is off."""
    workers: Annotated[int, Field(ge=1)] = SERVING_DEFAULTS.workers
    """GUNICORN_WORKERS: worker processes per pod."""
    threads: Annotated[int, Field(ge=1)] = SERVING_DEFAULTS.threads
    """GUNICORN_THREADS: threads per worker."""
    torch_threads: Annotated[int, Field(ge=1)] = SERVING_DEFAULTS.torch_threads
    """TORCH_THREADS: torch intra-op threads per worker."""
    precision: Literal[PRECISIONS] = SERVING_DEFAULTS.precision
    """MODEL_PRECISION: int8 (the model's quantized form, where it has one) or float32."""
    rest_timeout_ms: Annotated[int, Field(ge=MIN_REST_TIMEOUT_MS)] = MIN_REST_TIMEOUT_MS
    """Request timeout in ms. seldon: the seldon.io/rest-timeout annotation, which the wrapper
    also makes gunicorn's worker timeout in whole seconds (it covers each worker's start: at
    least 5000); kserve: the predictor's timeout, in seconds rounded up."""
    grpc: bool = SERVING_DEFAULTS.grpc_workers > 0
    """seldon: serve Seldon's gRPC API on port 9500 (GRPC_WORKERS=1); the operator declares that
    port either way. kserve: must be false (REST only, on one port)."""
    executor: Executor = Field(default_factory=Executor)
    """Seldon's executor (seldon-container-engine); seldon only."""
    kserve: KServe = Field(default_factory=KServe)
    """Engine kserve only."""
    resources: Resources = Field(
        default_factory=lambda: Resources(
            requests={"cpu": "1", "memory": "512Mi"}, limits={"cpu": "2", "memory": "1Gi"}
        )
    )
    """The model container's requests and limits."""
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    """Horizontal pod autoscaling of the model pods."""
    probes: Probes = Field(default_factory=Probes)
    """Probe timings."""
    pod_annotations: StringMap = Field(default_factory=dict)
    """Extra annotations on the model pods."""
    node_selector: StringMap = Field(default_factory=dict)
    """Node labels the model pods must match."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Tolerations of the model pods."""


class NetworkPolicy(Values):
    """An optional NetworkPolicy on the model pods."""

    enabled: bool = False
    """Admit ingress to the model pods only on their serving and metrics ports."""
    from_: list[Peer] = Field(default_factory=list, alias="from")
    """NetworkPolicy `from` peers allowed in; empty: any source on those ports."""


class Registry(Values):
    """The image pull Secret."""

    existing_secret: str = ""
    """A kubernetes.io/dockerconfigjson Secret to use instead of creating one."""
    server: str = ""
    """Registry host (e.g. ghcr.io); when set without existingSecret the chart creates the pull
    Secret."""
    username: str = ""
    """Registry user for the created pull Secret."""
    password: str = ""
    """Registry password or token for the created pull Secret."""
    email: str = ""
    """Optional e-mail recorded in the created pull Secret."""


class RcloneConfig(RcloneOptions):
    """Non-secret rclone options of the remote; any rclone option name is allowed, empty values
    are left out."""

    type: str = "s3"
    """The rclone backend (s3, google cloud storage, …)."""
    provider: str = Field("Minio", json_schema_extra=OPTIONAL)
    """The S3 provider (AWS, Minio, Ceph, …)."""
    endpoint: str = Field("", json_schema_extra=OPTIONAL)
    """The S3 endpoint URL (empty for AWS)."""
    region: str = Field("", json_schema_extra=OPTIONAL)
    """The S3 region."""
    env_auth: Literal["true", "false", ""] = Field("false", json_schema_extra=OPTIONAL)
    """"true": take credentials from the environment or workload identity."""


class RcloneCredentials(RcloneOptions):
    """Secret rclone options of the remote; any rclone option name is allowed, empty values are
    left out."""

    access_key_id: str = Field("", json_schema_extra=OPTIONAL)
    """The S3 access key."""
    secret_access_key: str = Field("", json_schema_extra=OPTIONAL)
    """The S3 secret key."""


class Initializer(Values):
    """The rclone image of the storage initializer and the Job's upload."""

    image: TaggedImage = Field(
        default_factory=lambda: TaggedImage(repository="seldonio/rclone-storage-initializer", tag="1.17.1")
    )
    """The storage-initializer image (entrypoint `rclone copy`)."""
    resources: Resources = Field(
        default_factory=lambda: Resources(
            requests={"cpu": "100m", "memory": "100Mi"}, limits={"cpu": "1", "memory": "1Gi"}
        )
    )
    """Requests and limits of the rclone containers."""


class Storage(Values):
    """Credentials for Seldon's rclone storage initializer and the training upload."""

    existing_secret: str = ""
    """An Opaque Secret with RCLONE_CONFIG_<REMOTE>_* keys to use instead of creating one (engine
    kserve: also AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL/S3_ENDPOINT)."""
    remote: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*$")] = "s3"
    """The rclone remote's name, equal to model.uri's scheme."""
    config: RcloneConfig = Field(default_factory=RcloneConfig)
    """Non-secret rclone options of the remote; any rclone option name is allowed, empty values
    are left out."""
    credentials: RcloneCredentials = Field(default_factory=RcloneCredentials)
    """Secret rclone options of the remote; any rclone option name is allowed, empty values are
    left out."""
    initializer: Initializer = Field(default_factory=Initializer)
    """The rclone image of the storage initializer and the Job's upload."""


class TrainingData(Values):
    """Where the Job reads its data (--data-dir /data)."""

    claim_name: Annotated[str, Field(pattern=_SUBDOMAIN_OR_EMPTY)] = ""
    """A PersistentVolumeClaim holding the training data (read-only); empty: an emptyDir (the
    training command downloads into it)."""
    sub_path: Annotated[str, Field(pattern=r"^([^/].*)?$")] = ""
    """The folder inside training.data.claimName."""
    mirrors: list[Annotated[str, Field(pattern=r"^https?://")]] = Field(default_factory=list)
    """Download base URLs tried in order (--mirror); empty: the training command's own."""


class Training(Values):
    """The training Job."""

    enabled: bool = False
    """Add the training Job."""
    image: Image = Field(default_factory=lambda: Image(repository="ghcr.io/example/mnist-train"))
    """The training image (runtime/train.Dockerfile)."""
    command: list[str] = Field(default_factory=list)
    """The training command (the model contract's training.command); required when enabled."""
    args: list[str] = Field(default_factory=list)
    """Extra training-command flags (hyper-parameters); the Job passes --data-dir,
    --download/--mirror and --out itself."""
    data: TrainingData = Field(default_factory=TrainingData)
    """Where the Job reads its data (--data-dir /data)."""
    resources: Resources = Field(
        default_factory=lambda: Resources(requests={"cpu": "1", "memory": "2Gi"}, limits={"cpu": "2", "memory": "4Gi"})
    )
    """The training container's requests and limits."""
    gpus: Annotated[int, Field(ge=0)] = 0
    """nvidia.com/gpu limit of the training container."""
    backoff_limit: Annotated[int, Field(ge=0)] = 0
    """Retries of a failed training pod."""
    active_deadline_seconds: Annotated[int, Field(ge=1)] = 3600
    """Seconds after which the Job is stopped."""
    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] | None = Field(None, json_schema_extra=NULLABLE)
    """Seconds after which a finished Job is deleted; null keeps it."""
    node_selector: StringMap = Field(default_factory=dict)
    """Node labels the training pod must match."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Tolerations of the training pod."""


class TestExample(Values):
    """One example of the model contract, as the `helm test` pod posts it."""

    file: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=200)]
    """Its file name (a key of the test ConfigMap)."""
    content: Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]*={0,2}$")]
    """The file's bytes, base64."""
    input: Annotated[str, Field(min_length=1)]
    """The model input it is posted as."""
    kind: Literal["image", "tensor"]
    """`image`: the bytes are an encoded image; `tensor`: a JSON array of numbers."""
    datatype: str = ""
    """A tensor's Open Inference Protocol datatype (FP32, …)."""
    item_rank: int = Field(0, ge=0, le=8)
    """How deep one item's numbers nest (a tensor's dimensions after the batch); 0 for an image."""
    expect: str = ""
    """The label the answer must name; empty for a bad input."""
    status: int = Field(0, ge=0, le=499)
    """The 4xx a bad input must be answered with; 0 for a good one."""


class TestOutput(Values):
    """How the `helm test` pod reads an answer: the model contract's output."""

    name: str = ""
    """The Open Inference Protocol output holding the scores."""
    labels: list[str] = Field(default_factory=list)
    """The class labels, in the order of the scores."""


class Tests(Values):
    """The `helm test` pod: it posts the model contract's examples (`mlctl render` writes them)."""

    enabled: bool = True
    """Add the `helm test` pod (when there are examples)."""
    image: TaggedImage = Field(default_factory=lambda: TaggedImage(repository="python", tag="3.11-slim"))
    """The test pod's image; it needs only Python 3's standard library."""
    output: TestOutput = Field(default_factory=TestOutput)
    """The answer's output and labels."""
    examples: list[TestExample] = Field(default_factory=list)
    """The examples, posted in order: each must be answered with its label or its status."""


class ChartValues(Values):
    """Values of the mnist-seldon chart. `mlctl render` writes them from spec/mnist.yaml; unknown
    keys are rejected everywhere except in free-form maps (annotations, node selectors, resource
    quantities, rclone options)."""

    name_override: Annotated[str, Field(pattern=_LABEL_OR_EMPTY, max_length=63)] = ""
    """Replaces the chart name in object names and the app.kubernetes.io/name label."""
    fullname_override: Annotated[str, Field(pattern=_LABEL_OR_EMPTY, max_length=55)] = ""
    """Replaces "<release>-<chart>" as the SeldonDeployment's name; at most 55 characters so
    "<name>-default" fits in 63."""
    model: Model = Field(default_factory=Model)
    """The model artifact and the graph node."""
    service_account: ServiceAccount = Field(default_factory=ServiceAccount)
    """The ServiceAccount of the serving pods, their storage initializer and the training Job."""
    serving: Serving = Field(default_factory=Serving)
    """The model server (Seldon Core v1 Python wrapper)."""
    network_policy: NetworkPolicy = Field(default_factory=NetworkPolicy)
    """An optional NetworkPolicy on the model pods."""
    registry: Registry = Field(default_factory=Registry)
    """The image pull Secret."""
    storage: Storage = Field(default_factory=Storage)
    """Credentials for Seldon's rclone storage initializer and the training upload."""
    training: Training = Field(default_factory=Training)
    """The training Job."""
    tests: Tests = Field(default_factory=Tests)
    """The `helm test` pod."""


def defaults() -> dict[str, Any]:
    """The values with every default: what charts/mnist-seldon/values.yaml must hold."""
    return ChartValues().model_dump(by_alias=True, mode="json")


def checked(values: dict[str, Any]) -> dict[str, Any]:
    """`values` after validating them against ChartValues (ValueError naming the key if not),
    with nothing added: the keys given, as given."""
    return ChartValues.model_validate(values).model_dump(by_alias=True, mode="json", exclude_unset=True)
