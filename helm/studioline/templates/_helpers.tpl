{{/* Chart name and release-scoped names. */}}
{{- define "studioline.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "studioline.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Object name for one step: <fullname>-<service>. */}}
{{- define "studioline.serviceName" -}}
{{- printf "%s-%s" (include "studioline.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "studioline.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "studioline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: studioline
{{- end -}}

{{- define "studioline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "studioline.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "studioline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "studioline.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Deep merge of .over onto .base, as YAML. Unlike sprig's mergeOverwrite it lets false, 0 and ""
in a service entry override the defaults (mergo treats those as "empty" and skips them).
*/}}
{{- define "studioline.merge" -}}
{{- $out := deepCopy .base -}}
{{- range $k, $v := .over -}}
{{- if and (kindIs "map" $v) (kindIs "map" (get $out $k)) -}}
{{- $_ := set $out $k (include "studioline.merge" (dict "base" (get $out $k) "over" $v) | fromYaml) -}}
{{- else -}}
{{- $_ := set $out $k $v -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* One service's effective values: call with (dict "root" $ "name" $name "cfg" $cfg). */}}
{{- define "studioline.serviceValues" -}}
{{- include "studioline.merge" (dict "base" .root.Values.defaults "over" (.cfg | default dict)) -}}
{{- end -}}

{{- define "studioline.image" -}}
{{- $tag := .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if .svc.gpu.enabled -}}{{- $tag = printf "%s%s" $tag .root.Values.image.gpuTagSuffix -}}{{- end -}}
{{- printf "%s:%s" .root.Values.image.repository $tag -}}
{{- end -}}

{{/* The topics a step consumes, full names: the ingest step also reads each tenant's ingest.<tenant>. */}}
{{- define "studioline.topics" -}}
{{- $prefix := .root.Values.kafka.topicPrefix -}}
{{- $tenants := .root.Values.tenants | default dict -}}
{{- $topics := list (printf "%sstep.%s" $prefix .name) -}}
{{- range (.svc.extraTopics | default list) -}}
{{- $topics = append $topics (printf "%s%s" $prefix .) -}}
{{- if eq . "ingest" -}}
{{- range $tenant, $_ := $tenants -}}
{{- $topics = append $topics (printf "%singest.%s" $prefix $tenant) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $topics -}}
{{- end -}}

{{/* Selects the pods of every step of this release (not the init Job's). */}}
{{- define "studioline.stepPodSelector" -}}
matchLabels:
  app.kubernetes.io/name: {{ include "studioline.name" . }}
  app.kubernetes.io/instance: {{ .Release.Name }}
matchExpressions:
  - key: app.kubernetes.io/component
    operator: In
    values: {{ keys .Values.services | sortAlpha | toJson }}
{{- end -}}

{{/* Where the gRPC Secrets are mounted in a step's pod. */}}
{{- define "studioline.grpcTlsDir" -}}/var/run/secrets/studioline/grpc-tls{{- end -}}
{{- define "studioline.grpcTokensDir" -}}/var/run/secrets/studioline/grpc-tokens{{- end -}}

{{/* The settings every Studioline process needs (shared/config.py, STUDIOLINE_* names). */}}
{{- define "studioline.commonEnv" -}}
- name: STUDIOLINE_CONFIG
  value: /etc/studioline/config.yaml
- name: STUDIOLINE_ROUTING__TABLE
  value: /etc/studioline/routing.yaml
- name: STUDIOLINE_TENANT
  value: {{ .Values.tenant | quote }}
- name: STUDIOLINE_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: STUDIOLINE_LOG_JSON
  value: "true"
- name: STUDIOLINE_KAFKA__BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
- name: STUDIOLINE_KAFKA__TOPIC_PREFIX
  value: {{ .Values.kafka.topicPrefix | quote }}
- name: STUDIOLINE_KAFKA__GROUP_PREFIX
  value: {{ .Values.kafka.groupPrefix | quote }}
- name: STUDIOLINE_KAFKA__PARTITIONS
  value: {{ .Values.kafka.partitions | int | quote }}
- name: STUDIOLINE_KAFKA__REPLICATION_FACTOR
  value: {{ .Values.kafka.replicationFactor | int | quote }}
- name: STUDIOLINE_KAFKA__RETENTION_MS
  value: {{ .Values.kafka.retentionMs | int64 | quote }}
- name: STUDIOLINE_KAFKA__MAX_MESSAGE_BYTES
  value: {{ .Values.kafka.maxMessageBytes | int64 | quote }}
- name: STUDIOLINE_KAFKA__SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
{{- if .Values.kafka.existingSecret }}
- name: STUDIOLINE_KAFKA__SASL_MECHANISM
  value: {{ .Values.kafka.saslMechanism | quote }}
- name: STUDIOLINE_KAFKA__SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.existingSecret }}
      key: {{ .Values.kafka.usernameKey }}
- name: STUDIOLINE_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.existingSecret }}
      key: {{ .Values.kafka.passwordKey }}
{{- end }}
- name: STUDIOLINE_S3__ENDPOINT
  value: {{ .Values.s3.endpoint | quote }}
- name: STUDIOLINE_S3__SECURE
  value: {{ .Values.s3.secure | toString | quote }}
- name: STUDIOLINE_S3__REGION
  value: {{ .Values.s3.region | quote }}
- name: STUDIOLINE_S3__INCOMING_BUCKET
  value: {{ .Values.s3.buckets.incoming | quote }}
- name: STUDIOLINE_S3__ARTIFACTS_BUCKET
  value: {{ .Values.s3.buckets.artifacts | quote }}
- name: STUDIOLINE_S3__MODELS_BUCKET
  value: {{ .Values.s3.buckets.models | quote }}
- name: STUDIOLINE_S3__ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.existingSecret }}
      key: {{ .Values.s3.accessKeyKey }}
- name: STUDIOLINE_S3__SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.existingSecret }}
      key: {{ .Values.s3.secretKeyKey }}
{{- end -}}

{{/* Egress every Studioline pod needs: DNS, and the broker and S3 on their ports only. */}}
{{- define "studioline.infraEgress" -}}
{{- $np := .Values.networkPolicy -}}
# DNS: the cluster's resolver pods.
- to:
    - namespaceSelector: {}
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
# The broker and S3: towards networkPolicy.egressTo, or any destination when it is empty.
- ports:
    {{- range (concat $np.kafkaPorts $np.s3Ports | uniq) }}
    - {port: {{ . | int }}, protocol: TCP}
    {{- end }}
  {{- with $np.egressTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
