{{- /*
Helpers shared by every template of the mnist-seldon chart. All names are namespaced with the
chart name so a parent chart cannot shadow them.

  mnist-seldon.name                  chart name (or nameOverride), cut to 63 characters
  mnist-seldon.fullname              release-qualified name (or fullnameOverride), cut to 63 characters
  mnist-seldon.chart                 "name-version" for the helm.sh/chart label
  mnist-seldon.labels                the app.kubernetes.io/* and helm.sh/chart labels of every object
  mnist-seldon.selectorLabels        the stable subset of the labels (name + instance)
  mnist-seldon.podLabels             the labels of pod templates: no chart or app version, so a
                                     chart upgrade alone does not replace the pods
  mnist-seldon.image                 "repository:tag[@digest]" of an image map; the tag defaults to appVersion
  mnist-seldon.serviceAccountName    the ServiceAccount every pod runs as ("" for the namespace's default)
  mnist-seldon.podSecurityContext    the restricted pod securityContext for a uid (call with dict "uid" N)
  mnist-seldon.securityContext       the restricted container securityContext every container gets
  mnist-seldon.predictorService      the Service Seldon (or KServe) creates for the predictor
  mnist-seldon.servicePort           its REST port: Seldon's 9000 (the model) without the executor,
                                     8000 with it; KServe's 80
  mnist-seldon.predictPath           the path a client posts one prediction to: Seldon's
                                     /api/v1.0/predictions, or V2's /v2/models/<model>/infer
  mnist-seldon.initializerName       "<model.name>-model-initializer", the init container the operator looks for
  mnist-seldon.provisionVolume       "<model.name>-provision-location", the emptyDir it fills
  mnist-seldon.modelSource           what the initializer copies: model.uri, or the claim's folder under /mnt/pvc
  mnist-seldon.uriScheme             the scheme of model.uri ("s3", "gs", "pvc", …)
  mnist-seldon.objectStorage         "true" when model.uri is object storage (not pvc://)
  mnist-seldon.registrySecretName    the image pull Secret: registry.existingSecret or ours
  mnist-seldon.createRegistrySecret  "true" when the chart creates the image pull Secret
  mnist-seldon.registrySecretData    the data map of our image pull Secret (for the Secret and its checksum)
  mnist-seldon.storageSecretName     the rclone Secret: storage.existingSecret or ours
  mnist-seldon.createStorageSecret   "true" when the chart creates the rclone Secret
  mnist-seldon.useStorageSecret      "true" when the model's storage initializer gets a Secret
  mnist-seldon.storageSecretData     the data map of our rclone Secret (for the Secret and its checksum),
                                     with engine kserve also the AWS_ and S3_ env of KServe's initializer
  mnist-seldon.s3Endpoint            storage.config.endpoint without its scheme ("" when none)
  mnist-seldon.rcloneTarget          "remote:bucket/path" for the training Job's upload
  mnist-seldon.trainingClaim         JSON {claimName, subPath} of a pvc:// model.uri ("" claim: object storage)
  mnist-seldon.validateValues        gathers every problem in the values and fails once with all of them

Booleans come back as the strings "true" or "" because `include` always returns a string.
*/}}

{{- define "mnist-seldon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- /* Kubernetes names are limited to 63 characters (DNS-1123 labels). */}}
{{- define "mnist-seldon.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mnist-seldon.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mnist-seldon.labels" -}}
helm.sh/chart: {{ include "mnist-seldon.chart" . }}
{{ include "mnist-seldon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlctl
{{- end }}

{{- define "mnist-seldon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mnist-seldon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mnist-seldon.podLabels" -}}
{{ include "mnist-seldon.selectorLabels" . }}
app.kubernetes.io/part-of: mlctl
{{- end }}

{{- /* Call as (include "mnist-seldon.image" (dict "image" .Values.serving.image "root" $)). */}}
{{- define "mnist-seldon.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion | toString) }}
{{- with .image.digest }}@{{ . }}{{ end }}
{{- end }}

{{- define "mnist-seldon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "mnist-seldon.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- /*
Pod Security Standards "restricted": non-root, RuntimeDefault seccomp (pod level), and in every
container no privilege escalation and no capabilities; a read-only root filesystem on top.
*/}}
{{- define "mnist-seldon.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
{{- if .fsGroup }}
fsGroup: {{ .uid }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "mnist-seldon.securityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{- /*
Seldon's operator (GetPredictorKey, v1.17.1) names the predictor's Service "<sdep>-<predictor>"
and falls back to "seldon-<md5>" past 63 characters; validateValues rejects that case so this
name stays predictable for NOTES.txt and the test pod.
*/}}
{{- define "mnist-seldon.predictorService" -}}
{{- if eq .Values.serving.engine "kserve" }}
{{- /* KServe's PredictorServiceName (pkg/constants, v0.20.0): "<isvc>-predictor", port 80 → 8080. */}}
{{- printf "%s-predictor" (include "mnist-seldon.fullname" .) }}
{{- else }}
{{- printf "%s-default" (include "mnist-seldon.fullname" .) }}
{{- end }}
{{- end }}

{{- define "mnist-seldon.predictPath" -}}
{{- if eq .Values.serving.engine "kserve" }}
{{- printf "/v2/models/%s/infer" .Values.model.name }}
{{- else }}/api/v1.0/predictions{{ end }}
{{- end }}

{{- /*
With seldon.io/no-engine the operator points the predictor Service at the model's own http
port (the first port of its container Service, 9000); otherwise at the executor's 8000
(seldondeployment_controller.go createComponents, v1.17.1).
*/}}
{{- define "mnist-seldon.servicePort" -}}
{{- if eq .Values.serving.engine "kserve" }}80{{ else if .Values.serving.executor.enabled }}8000{{ else }}9000{{ end }}
{{- end }}

{{- /* The operator's names (model_initializer_injector.go, v1.17.1), cut to 63 characters as it cuts them. */}}
{{- define "mnist-seldon.initializerName" -}}
{{- printf "%s-model-initializer" .Values.model.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mnist-seldon.provisionVolume" -}}
{{- printf "%s-provision-location" .Values.model.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- /* A pvc://claim/path source is read from the claim mounted at /mnt/pvc, as the operator does. */}}
{{- define "mnist-seldon.modelSource" -}}
{{- if eq (include "mnist-seldon.uriScheme" .) "pvc" }}
{{- $parts := splitList "/" (trimPrefix "pvc://" .Values.model.uri) }}
{{- printf "/mnt/pvc/%s" (rest $parts | join "/") }}
{{- else }}
{{- .Values.model.uri }}
{{- end }}
{{- end }}

{{- define "mnist-seldon.uriScheme" -}}
{{- if contains "://" .Values.model.uri }}
{{- splitList "://" .Values.model.uri | first }}
{{- end }}
{{- end }}

{{- define "mnist-seldon.objectStorage" -}}
{{- $scheme := include "mnist-seldon.uriScheme" . }}
{{- if and $scheme (ne $scheme "pvc") }}true{{ end }}
{{- end }}

{{- define "mnist-seldon.createRegistrySecret" -}}
{{- if and (not .Values.registry.existingSecret) .Values.registry.server }}true{{ end }}
{{- end }}

{{- define "mnist-seldon.registrySecretName" -}}
{{- if .Values.registry.existingSecret }}
{{- .Values.registry.existingSecret }}
{{- else if .Values.registry.server }}
{{- printf "%s-registry" (include "mnist-seldon.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "mnist-seldon.registrySecretData" -}}
{{- $r := .Values.registry }}
{{- $entry := dict "username" $r.username "password" $r.password "auth" (printf "%s:%s" $r.username $r.password | b64enc) }}
{{- with $r.email }}{{ $_ := set $entry "email" . }}{{ end }}
{{- $config := dict "auths" (dict $r.server $entry) }}
.dockerconfigjson: {{ $config | toJson | b64enc }}
{{- end }}

{{- /*
Any non-empty credential means the user wants a Secret; object storage needs one even without
credentials, because the rclone remote's type/provider/endpoint reach the storage initializer
only through envSecretRefName.
*/}}
{{- define "mnist-seldon.createStorageSecret" -}}
{{- if not .Values.storage.existingSecret }}
{{- $hasCredentials := false }}
{{- range $k, $v := .Values.storage.credentials }}{{ if $v }}{{ $hasCredentials = true }}{{ end }}{{ end }}
{{- if or $hasCredentials (include "mnist-seldon.objectStorage" .) }}true{{ end }}
{{- end }}
{{- end }}

{{- define "mnist-seldon.useStorageSecret" -}}
{{- if or .Values.storage.existingSecret (include "mnist-seldon.createStorageSecret" .) }}true{{ end }}
{{- end }}

{{- define "mnist-seldon.storageSecretName" -}}
{{- if .Values.storage.existingSecret }}
{{- .Values.storage.existingSecret }}
{{- else }}
{{- printf "%s-storage" (include "mnist-seldon.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- /*
rclone reads a remote "NAME" from RCLONE_CONFIG_NAME_KEY variables; empty values are left out.
Seldon's initializer image presets the remote "gs" with RCLONE_CONFIG_GS_ANONYMOUS=true, which
would make workload identity or a service account download anonymously: our Secret says false
unless storage.config names anonymous itself.
*/}}
{{- define "mnist-seldon.storageSecretData" -}}
{{- $prefix := printf "RCLONE_CONFIG_%s_" (.Values.storage.remote | upper) }}
{{- $all := merge (dict) .Values.storage.credentials .Values.storage.config }}
{{- if and (eq .Values.storage.remote "gs") (not (hasKey .Values.storage.config "anonymous")) }}
{{- $_ := set $all "anonymous" "false" }}
{{- end }}
{{- range $k := keys $all | sortAlpha }}
{{- $v := get $all $k | toString }}
{{- if $v }}
{{ printf "%s%s" $prefix ($k | upper) }}: {{ $v | b64enc }}
{{- end }}
{{- end }}
{{- if eq .Values.serving.engine "kserve" }}
{{- /* What KServe's credential builder gives its initializer for an S3 Secret (pkg/credentials/s3, v0.20.0). */}}
{{- $c := .Values.storage.credentials }}
{{- $endpoint := toString (.Values.storage.config.endpoint | default "") }}
{{- $kserve := dict "AWS_ACCESS_KEY_ID" $c.access_key_id "AWS_SECRET_ACCESS_KEY" $c.secret_access_key "AWS_DEFAULT_REGION" (.Values.storage.config.region | default "") }}
{{- if $endpoint }}
{{- $_ := set $kserve "AWS_ENDPOINT_URL" $endpoint }}
{{- $_ := set $kserve "S3_ENDPOINT" (include "mnist-seldon.s3Endpoint" .) }}
{{- $_ := set $kserve "S3_USE_HTTPS" (ternary "1" "0" (hasPrefix "https://" $endpoint)) }}
{{- end }}
{{- range $k := keys $kserve | sortAlpha }}
{{- $v := get $kserve $k | toString }}
{{- if $v }}
{{ $k }}: {{ $v | b64enc }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mnist-seldon.s3Endpoint" -}}
{{- regexReplaceAll "^https?://" (toString (.Values.storage.config.endpoint | default "")) "" | trimSuffix "/" }}
{{- end }}

{{- define "mnist-seldon.rcloneTarget" -}}
{{- printf "%s:%s" .Values.storage.remote (regexReplaceAll "^[a-zA-Z][a-zA-Z0-9+.-]*://" .Values.model.uri "") }}
{{- end }}

{{- /*
The claim and folder a pvc:// model.uri names: the training Job mounts the claim and writes the
folder, the model is served from it. Use with fromJson; an object-storage uri gives "" claim.
*/}}
{{- define "mnist-seldon.trainingClaim" -}}
{{- if eq (include "mnist-seldon.uriScheme" .) "pvc" }}
{{- $parts := splitList "/" (trimPrefix "pvc://" .Values.model.uri) }}
{{- dict "claimName" (first $parts) "subPath" (rest $parts | join "/" | trimSuffix "/") | toJson }}
{{- else }}
{{- dict "claimName" "" "subPath" "" | toJson }}
{{- end }}
{{- end }}

{{- /*
Bitnami's pattern: collect every message, then fail once, so a user fixes all problems in one
round instead of one per `helm template`. Called from seldondeployment.yaml, whose first line
always renders (for either engine).
*/}}
{{- define "mnist-seldon.validateValues" -}}
{{- $msgs := list }}
{{- $v := .Values }}
{{- $scheme := include "mnist-seldon.uriScheme" . }}
{{- if not $v.model.uri }}
{{- $msgs = append $msgs "model.uri is required: the artifact folder Seldon's storage initializer fetches (s3://bucket/path, gs://bucket/path or pvc://claim/path)" }}
{{- else if not $scheme }}
{{- $msgs = append $msgs (printf "model.uri %q has no scheme: use s3://bucket/path, gs://bucket/path or pvc://claim/path" $v.model.uri) }}
{{- else if and (ne $scheme "pvc") (ne $scheme $v.storage.remote) }}
{{- $msgs = append $msgs (printf "storage.remote %q must equal the scheme of model.uri %q: rclone resolves %s:// through the RCLONE_CONFIG_%s_* keys" $v.storage.remote $scheme $scheme ($scheme | upper)) }}
{{- end }}
{{- if and $v.registry.server (not $v.registry.existingSecret) (or (not $v.registry.username) (not $v.registry.password)) }}
{{- $msgs = append $msgs "registry.server is set but registry.username or registry.password is empty: give both, or name an existing kubernetes.io/dockerconfigjson Secret in registry.existingSecret" }}
{{- end }}
{{- if and (not $v.registry.server) (not $v.registry.existingSecret) (or $v.registry.username $v.registry.password) }}
{{- $msgs = append $msgs "registry.username/registry.password are set but registry.server is empty: the pull secret needs the registry host (e.g. ghcr.io)" }}
{{- end }}
{{- if and (include "mnist-seldon.objectStorage" .) (not $v.storage.existingSecret) }}
{{- $c := $v.storage.credentials }}
{{- if and (ne (toString $v.storage.config.env_auth) "true") (or (not $c.access_key_id) (not $c.secret_access_key)) }}
{{- $msgs = append $msgs (printf "model.uri %q is object storage but there are no credentials: set storage.existingSecret, or storage.credentials.access_key_id and storage.credentials.secret_access_key, or storage.config.env_auth \"true\" for workload identity" $v.model.uri) }}
{{- end }}
{{- end }}
{{- $as := $v.serving.autoscaling }}
{{- if and $as.enabled (gt (int $as.minReplicas) (int $as.maxReplicas)) }}
{{- $msgs = append $msgs (printf "serving.autoscaling.minReplicas (%d) is greater than serving.autoscaling.maxReplicas (%d)" (int $as.minReplicas) (int $as.maxReplicas)) }}
{{- end }}
{{- if eq $v.serving.engine "kserve" }}
{{- if $v.serving.grpc }}
{{- $msgs = append $msgs "serving.grpc is Seldon's gRPC API: with serving.engine kserve set it to false (the KServe predictor serves REST, V1 and V2, on one port)" }}
{{- end }}
{{- if $v.serving.executor.enabled }}
{{- $msgs = append $msgs "serving.executor.enabled is Seldon's executor: KServe's pods have none, set it to false with serving.engine kserve" }}
{{- end }}
{{- if and $scheme (not (has $scheme (list "s3" "pvc"))) }}
{{- $msgs = append $msgs (printf "model.uri %q: with serving.engine kserve the chart delivers s3:// or pvc:// models" $v.model.uri) }}
{{- end }}
{{- end }}
{{- $svc := include "mnist-seldon.predictorService" . }}
{{- if gt (len $svc) 63 }}
{{- $msgs = append $msgs (printf "the predictor Service name %q is longer than 63 characters, so Seldon would hash it: use a shorter release name or a fullnameOverride of at most 55 characters" $svc) }}
{{- end }}
{{- if and $v.training.enabled (not $v.training.command) }}
{{- $msgs = append $msgs "training.enabled needs training.command: the model's training command (its model.yaml's training.command; mlctl render writes it)" }}
{{- end }}
{{- if and $v.training.enabled (eq $scheme "pvc") }}
{{- $claim := include "mnist-seldon.trainingClaim" . | fromJson }}
{{- if not $claim.subPath }}
{{- $msgs = append $msgs (printf "model.uri %q names a whole claim: the training Job writes the model into a folder of it (pvc://%s/mnist), since it replaces that folder atomically" $v.model.uri $claim.claimName) }}
{{- end }}
{{- end }}
{{- if $msgs }}
{{- fail (printf "\n\nVALUES VALIDATION:\n  - %s\n" (join "\n  - " $msgs)) }}
{{- end }}
{{- end }}
