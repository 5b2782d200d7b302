{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "modelrollout.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, unless it already contains the chart name. */}}
{{- define "modelrollout.fullname" -}}
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

{{- define "modelrollout.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelrollout.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "modelrollout.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "modelrollout.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: modelrollout
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "modelrollout.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelrollout.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespaces watched in namespace mode, as a list: the release namespace by default. */}}
{{- define "modelrollout.watchNamespaces" -}}
{{- $ns := .Values.watch.namespaces | default (list .Release.Namespace) | uniq }}
{{- toJson $ns }}
{{- end }}

{{- define "modelrollout.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
RBAC rules, derived from the API calls the operator makes (operator/modelrollout/kube.py,
handlers.py, routers/) and from what kopf itself needs. tests/unit/test_chart_static.py checks them
against the code. Secrets: create only (each ModelDeployment's prediction-token key, never read back).
No ConfigMaps, no Pods/exec, no wildcards.
*/}}
{{- define "modelrollout.rules" -}}
# The custom resource: kopf lists and watches it (reconciles read that cache; a GET when it knows nothing yet).
# Read-only: the operator never writes the object itself (no spec, no finalizer, no annotations).
- apiGroups: ["modelrollout.io"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch"]
# Everything the operator decides is written to status.
- apiGroups: ["modelrollout.io"]
  resources: ["modeldeployments/status"]
  verbs: ["patch"]
# One Deployment per revision: watched for readiness, written by server-side apply (which needs
# create for a new revision), pruned when it leaves the history.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# The stable and canary Services: watched (a cache the reconciles read) and read when the cache
# knows nothing yet, to skip unchanged applies; written by server-side apply. Both live as long as
# the ModelDeployment (garbage collection deletes them with it), so no delete.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Why a revision's pods are not ready (a container that cannot start or keeps exiting, with the
# model server's reason): listed by label, only while the revision is short of ready pods. Never
# read one by one, watched or changed.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# One PodDisruptionBudget per ModelDeployment over all its pods: written by server-side apply
# (create when missing), deleted when spec.disruptionBudget.enabled is false. Never read.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["create", "patch", "delete"]
# The HorizontalPodAutoscaler on the stable revision when spec.serving.autoscaling is set: written
# by server-side apply (create when missing), deleted when autoscaling is unset. Never read.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["create", "patch", "delete"]
# Retraining runs (spec.retraining): one Job per run, created once ("already exists" is the same
# run) and read while it runs; never listed or watched.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "create"]
# Events for humans and Argo CD (kopf posts core/v1 Events).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Each ModelDeployment's prediction-token key: created once when missing ("already exists" is the
# answer that it is there). Create only: it is never read (the rule below reads only Secrets named for Prometheus);
# no update, patch or delete, so it changes none (the key Secret is immutable and garbage-collected).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
{{- if .Values.rbac.readSecrets }}
# Prometheus credentials a ModelDeployment names in spec.analysis.prometheus (authorization,
# basicAuth, tls): read by name with get at each gate check, never listed, watched or cached.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- if .Values.rbac.routers.gatewayAPI }}
# Gateway API router: the HTTPRoute carrying the weights, and the GRPCRoute of traffic.gatewayAPI.grpc.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes", "grpcroutes"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}
{{- if .Values.rbac.routers.istio }}
# Istio router: the VirtualService carrying the weights; a DestinationRule an earlier version wrote
# is only read and deleted.
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["networking.istio.io"]
  resources: ["destinationrules"]
  verbs: ["get", "delete"]
{{- end }}
{{- if .Values.rbac.routers.nginx }}
# NGINX router: the canary Ingress.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}
{{- end }}

{{/*
The Lease the operator replicas elect their leader with (operator/modelrollout/leader.py): read,
created once, then renewed and taken over by update with a resourceVersion precondition.
*/}}
{{- define "modelrollout.leaderElectionRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end }}
