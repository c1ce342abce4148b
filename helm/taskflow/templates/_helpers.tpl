{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "taskflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of chart-owned helper objects: the release name, prefixed with the chart name unless it already contains it. */}}
{{- define "taskflow.fullname" -}}
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

{{/* Chart name and version for the helm.sh/chart label. */}}
{{- define "taskflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "taskflow.labels" -}}
helm.sh/chart: {{ include "taskflow.chart" . }}
{{ include "taskflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: taskflow
{{- end }}

{{/* Selector labels shared by every object of the release. */}}
{{- define "taskflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "taskflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component; call with (dict "ctx" $ "component" "tasks-api"). */}}
{{- define "taskflow.componentLabels" -}}
{{ include "taskflow.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "tasks-api"). */}}
{{- define "taskflow.componentSelectorLabels" -}}
{{ include "taskflow.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The six functions: Dapr app-id (= Knative Service name) -> target (= folder under functions/),
trigger, and for consumers the topic and route they receive (docs/architecture.md).
*/}}
{{- define "taskflow.catalog" -}}
tasks-api:
  target: tasks_api
  trigger: http
event-fanout:
  target: event_fanout
  trigger: cron
  binding: fanout-cron
  scheduleKey: fanout
reminder-dispatch:
  target: reminder_dispatch
  trigger: cron
  binding: reminder-cron
  scheduleKey: reminder
notifier:
  target: notifier
  trigger: topic
  topic: reminders
  route: /events/reminders
  bulk: true
recurrence:
  target: recurrence
  trigger: topic
  topic: task-events
  route: /events/task-completed
  match: event.type == "com.taskflow.task.completed.v1"
  bulk: true
audit:
  target: audit
  trigger: topic
  topic: task-events
  route: /events/task-events
  bulk: true
exports:
  target: exports
  trigger: topic
  topic: exports
  route: /events/exports
  binding: exports-cron
  scheduleKey: exports
  # a second cron trigger of the same function: the daily audit archive (route /cron/archive)
  archiveBinding: archive-cron
  archiveRoute: /cron/archive
{{- end }}

{{/* The app-ids in a fixed order. */}}
{{- define "taskflow.appIds" -}}
tasks-api event-fanout reminder-dispatch notifier recurrence audit exports
{{- end }}

{{/* Knative min-scale of one function; call with (dict "ctx" $ "name" "audit"). */}}
{{- define "taskflow.minScale" -}}
{{- $ctx := .ctx }}
{{- $fn := index $ctx.Values.functions .name }}
{{- $auto := 0 }}
{{- if and (ne .name "tasks-api") (eq $ctx.Values.eventDelivery "dapr") }}
{{- $auto = 1 }}
{{- end }}
{{- if kindIs "invalid" $fn.minScale }}
{{- $auto }}
{{- else }}
{{- if and (eq $auto 1) (lt (int $fn.minScale) 1) }}
{{- fail (printf "functions.%s.minScale must be >= 1 with eventDelivery=dapr: Dapr subscriptions and cron bindings run in the sidecar, so a scaled-to-zero %s receives nothing (use eventDelivery=knative to scale it to zero)" .name .name) }}
{{- end }}
{{- int $fn.minScale }}
{{- end }}
{{- end }}

{{/* Image reference. */}}
{{- define "taskflow.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Telemetry leaves the pods (OTLP env on the functions, tracing in the Dapr Configuration) when
     monitoring is enabled or the chart runs its own collector. */}}
{{- define "taskflow.telemetryOn" -}}
{{- if or .Values.monitoring.enabled .Values.monitoring.collector.enabled }}true{{ end }}
{{- end }}

{{/* Name of the chart's own OpenTelemetry Collector (Deployment, Service, ConfigMap). */}}
{{- define "taskflow.collectorName" -}}
{{- printf "%s-otel-collector" (include "taskflow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* OTLP/HTTP endpoint of the functions: the chart's collector, or monitoring.otlpEndpoint. */}}
{{- define "taskflow.otlpEndpoint" -}}
{{- if .Values.monitoring.collector.enabled }}
{{- printf "http://%s.%s.svc:4318" (include "taskflow.collectorName" .) .Release.Namespace }}
{{- else }}
{{- .Values.monitoring.otlpEndpoint }}
{{- end }}
{{- end }}

{{/* OTLP/gRPC host:port of the daprd sidecars: dapr.otelEndpoint, else the chart's collector, else
     monitoring.otlpGrpcEndpoint when monitoring is enabled; empty = Dapr tracing export off. */}}
{{- define "taskflow.daprOtelEndpoint" -}}
{{- if .Values.dapr.otelEndpoint }}
{{- .Values.dapr.otelEndpoint }}
{{- else if .Values.monitoring.collector.enabled }}
{{- printf "%s.%s.svc:4317" (include "taskflow.collectorName" .) .Release.Namespace }}
{{- else if .Values.monitoring.enabled }}
{{- .Values.monitoring.otlpGrpcEndpoint }}
{{- end }}
{{- end }}

{{/* Image of the chart's collector: built from tools/otelcol (tools/images.py), next to TaskFlow's
     image unless monitoring.collector.image.repository says otherwise. */}}
{{- define "taskflow.collectorImage" -}}
{{- $img := .Values.monitoring.collector.image }}
{{- $repo := $img.repository | default (printf "%s/otelcol-taskflow" (dir .Values.image.repository)) }}
{{- if $img.digest }}
{{- printf "%s@%s" $repo $img.digest }}
{{- else }}
{{- printf "%s:%s" $repo $img.tag }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding TaskFlow's secrets. */}}
{{- define "taskflow.secretName" -}}
{{- default "taskflow-secrets" .Values.secrets.existingSecret }}
{{- end }}

{{/* Name of the Secret holding the in-cluster PostgreSQL password. */}}
{{- define "taskflow.postgresqlSecretName" -}}
{{- default (printf "%s-postgresql" (include "taskflow.fullname" .)) .Values.postgresql.auth.existingSecret }}
{{- end }}

{{/* SQLAlchemy URL of TaskFlow's database as the chart renders it: secrets.databaseUrl, else derived
     from the in-cluster PostgreSQL's values; empty when it comes from an existing Secret. */}}
{{- define "taskflow.databaseUrl" -}}
{{- $pg := .Values.postgresql }}
{{- if .Values.secrets.databaseUrl }}
{{- .Values.secrets.databaseUrl }}
{{- else if and $pg.enabled $pg.auth.password (not $pg.auth.existingSecret) }}
{{- printf "postgresql+pg8000://%s:%s@%s:5432/%s" ($pg.auth.username | urlquery) ($pg.auth.password | urlquery) (include "taskflow.postgresqlHost" .) $pg.auth.database }}
{{- end }}
{{- end }}

{{/* Name of the Secret the migration Job reads `database-url` from: the chart's own hook Secret when
     the chart renders the URL, else the Secret the user manages. */}}
{{- define "taskflow.migrationSecretName" -}}
{{- if and (not .Values.secrets.existingSecret) (include "taskflow.databaseUrl" .) }}
{{- printf "%s-migrate" (include "taskflow.fullname" .) }}
{{- else }}
{{- include "taskflow.secretName" . }}
{{- end }}
{{- end }}

{{/* The in-cluster PostgreSQL (Secret, Service, StatefulSet) is a `pre-install` hook, lighter than the
     migration Job, so the database exists before the Job that migrates it and before any function
     starts. Only at install: upgrades leave it alone, and `helm uninstall` keeps it (and its volume).
     Call with (dict "weight" "-20"). */}}
{{- define "taskflow.postgresqlHookAnnotations" -}}
helm.sh/hook: pre-install
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation
{{- end }}

{{/* Host of the in-cluster PostgreSQL. */}}
{{- define "taskflow.postgresqlHost" -}}
{{- printf "%s-postgresql.%s.svc.cluster.local" (include "taskflow.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Name of the Secret holding Kafka credentials. */}}
{{- define "taskflow.kafkaSecretName" -}}
{{- default (printf "%s-kafka-auth" (include "taskflow.fullname" .)) .Values.kafka.auth.existingSecret }}
{{- end }}

{{/* Strimzi cluster name. */}}
{{- define "taskflow.kafkaClusterName" -}}
{{- include "taskflow.fullname" . }}
{{- end }}

{{/* Broker list as a list. */}}
{{- define "taskflow.kafkaBrokers" -}}
{{- if .Values.kafka.brokers }}
{{- join "," .Values.kafka.brokers }}
{{- else if .Values.kafka.strimzi.enabled }}
{{- printf "%s-kafka-bootstrap.%s.svc:9092" (include "taskflow.kafkaClusterName" .) .Release.Namespace }}
{{- else }}
{{- fail "set kafka.brokers (external Kafka) or kafka.strimzi.enabled=true" }}
{{- end }}
{{- end }}

{{/* SASL mechanism as Dapr's pubsub.kafka spells it. */}}
{{- define "taskflow.daprSaslMechanism" -}}
{{- $m := .Values.kafka.auth.saslMechanism }}
{{- if eq $m "SCRAM-SHA-512" }}SHA-512{{ else if eq $m "SCRAM-SHA-256" }}SHA-256{{ else }}PLAIN{{ end }}
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "taskflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "taskflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the HTTPEndpoint tasks-api uses to reach audit through Knative (eventDelivery=knative). */}}
{{- define "taskflow.auditEndpointName" -}}
audit-http
{{- end }}

{{/* Container securityContext of the "restricted" Pod Security Standard. */}}
{{- define "taskflow.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pod securityContext of the "restricted" profile (Deployments, Jobs, test Pod). */}}
{{- define "taskflow.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Dapr sidecar annotations of one function; call with (dict "ctx" $ "name" "audit"). */}}
{{- define "taskflow.daprAnnotations" -}}
{{- $v := .ctx.Values -}}
dapr.io/enabled: "true"
dapr.io/app-id: {{ .name | quote }}
dapr.io/app-port: {{ $v.dapr.appPort | quote }}
dapr.io/app-protocol: "http"
dapr.io/config: {{ $v.dapr.configName | quote }}
dapr.io/enable-metrics: "true"
dapr.io/metrics-port: {{ $v.dapr.metricsPort | quote }}
dapr.io/app-token-secret: {{ include "taskflow.secretName" .ctx | quote }}
{{- with $v.dapr.apiTokenSecret }}
dapr.io/api-token-secret: {{ . | quote }}
{{- end }}
dapr.io/graceful-shutdown-seconds: {{ $v.dapr.gracefulShutdownSeconds | quote }}
dapr.io/block-shutdown-duration: {{ $v.dapr.blockShutdownDuration | quote }}
dapr.io/log-as-json: {{ $v.dapr.logAsJson | quote }}
dapr.io/log-level: {{ $v.dapr.logLevel | quote }}
dapr.io/enable-app-health-check: "true"
dapr.io/app-health-check-path: "/healthz"
dapr.io/sidecar-seccomp-profile-type: {{ $v.dapr.sidecarSeccompProfile | quote }}
dapr.io/sidecar-cpu-request: {{ $v.dapr.sidecarResources.cpuRequest | quote }}
dapr.io/sidecar-memory-request: {{ $v.dapr.sidecarResources.memoryRequest | quote }}
dapr.io/sidecar-cpu-limit: {{ $v.dapr.sidecarResources.cpuLimit | quote }}
dapr.io/sidecar-memory-limit: {{ $v.dapr.sidecarResources.memoryLimit | quote }}
dapr.io/placement-host-address: ""
dapr.io/scheduler-host-address: ""
{{- end }}

{{/* Environment of one function container; call with (dict "ctx" $ "name" "audit" "knative" true). */}}
{{- define "taskflow.functionEnv" -}}
{{- $v := .ctx.Values }}
{{- $cat := include "taskflow.catalog" .ctx | fromYaml }}
{{- $fn := index $cat .name }}
{{- $secret := include "taskflow.secretName" .ctx -}}
- name: FUNCTION_TARGET
  value: {{ $fn.target | quote }}
{{- if not .knative }}
- name: PORT
  value: {{ $v.dapr.appPort | quote }}
{{- end }}
- name: TASKFLOW_MODE
  value: "dapr"
- name: TASKFLOW_EVENT_DELIVERY
  value: {{ $v.eventDelivery | quote }}
- name: TASKFLOW_SECRET_STORE
  value: "kubernetes"
- name: TASKFLOW_PUBSUB
  value: "taskflow-pubsub"
- name: TASKFLOW_STATE_STORE
  value: "taskflow-state"
- name: TASKFLOW_CONFIG_STORE
  value: "taskflow-config"
- name: TASKFLOW_WEBHOOK_BINDING
  value: "taskflow-webhook"
- name: TASKFLOW_ALLOW_LOOPBACK_WEBHOOKS
  value: "false"
- name: TASKFLOW_REMINDER_GRACE
  value: {{ $v.reminderGraceSeconds | quote }}
- name: HOME
  value: "/tmp"
{{- if include "taskflow.telemetryOn" .ctx }}
{{- /* The pod's one port is the app's (Knative): metrics leave by OTLP push, not a scrape. Each
       process names itself (service.instance.id = host name-pid, set by the app: Knative refuses
       fieldRef env by default), so two replicas never write the same series. */}}
- name: OTEL_SERVICE_NAME
  value: {{ .name | quote }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ include "taskflow.otlpEndpoint" .ctx | quote }}
- name: OTEL_METRIC_EXPORT_INTERVAL
  value: {{ mul $v.monitoring.exportIntervalSeconds 1000 | quote }}
{{- end }}
- name: TASKFLOW_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: database-url
{{- if eq .name "tasks-api" }}
- name: TASKFLOW_AUDIT_APP_ID
  value: {{ ternary (include "taskflow.auditEndpointName" .ctx) "audit" (eq $v.eventDelivery "knative") | quote }}
- name: TASKFLOW_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: jwt-secret
      optional: true
{{- with $v.auth.jwksUrl }}
- name: TASKFLOW_JWKS_URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.auth.issuer }}
- name: TASKFLOW_JWT_ISSUER
  value: {{ . | quote }}
{{- end }}
{{- with $v.auth.audience }}
- name: TASKFLOW_JWT_AUDIENCE
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if has .name (list "tasks-api" "notifier") }}
- name: TASKFLOW_WEBHOOK_BASE_URL
  value: {{ $v.webhook.baseUrl | quote }}
{{- end }}
{{- if eq .name "notifier" }}
- name: TASKFLOW_WEBHOOK_SIGNING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: webhook-signing-key
{{- end }}
{{- if eq $v.eventDelivery "dapr" }}
{{- /* Sidecar-delivered events and cron calls carry dapr-api-token; KafkaSource and PingSource cannot, so with
       eventDelivery=knative the routes are protected by cluster-local visibility and NetworkPolicy instead. */}}
- name: APP_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: app-api-token
{{- end }}
{{- with (index $v.functions .name).extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The function container; call with (dict "ctx" $ "name" "audit" "knative" true). */}}
{{- define "taskflow.functionContainer" -}}
{{- $v := .ctx.Values }}
{{- $fnv := index $v.functions .name -}}
- name: function
  image: {{ include "taskflow.image" .ctx }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  ports:
    - name: {{ ternary "http1" "http" .knative }}
      containerPort: {{ $v.dapr.appPort }}
      protocol: TCP
  env:
    {{- include "taskflow.functionEnv" . | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /healthz
      {{- if not .knative }}
      port: http
      {{- end }}
    periodSeconds: 5
    failureThreshold: 3
  {{- if not .knative }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: http
    initialDelaySeconds: 10
    periodSeconds: 20
  {{- end }}
  resources:
    {{- toYaml (default $v.resources $fnv.resources) | nindent 4 }}
  securityContext:
    {{- include "taskflow.containerSecurityContext" .ctx | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end }}
