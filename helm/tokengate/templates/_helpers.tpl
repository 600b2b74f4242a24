{{/*
Helpers for the tokengate chart.

Every helper takes a context dict, not the usual root object, so that an application chart can call
the sidecar templates with its own root and the tokengate values:

    {{- $tg := dict "top" $ "values" .Values.tokengate }}       (in an application chart)
    {{- $ctx := dict "top" $ "values" .Values }}                (inside this chart)

"top" gives .Release and .Chart; "values" gives tokengate's values. Names depend only on the release
name and the values (never on the calling chart's name), so the ConfigMap and Secret rendered by this
chart (as a subchart) are the ones the sidecar container refers to.

Public (stable) templates for application charts:
  tokengate.sidecarContainer      one list item for spec.containers
  tokengate.sidecarVolumes        list items for spec.volumes
  tokengate.sidecarPodAnnotations map entries for spec.template.metadata.annotations (config checksum)
*/}}

{{- define "tokengate.name" -}}
{{- default "tokengate" .values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tokengate.fullname" -}}
{{- if .values.fullnameOverride }}
{{- .values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "tokengate.name" . }}
{{- if contains $name .top.Release.Name }}
{{- .top.Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .top.Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tokengate.chart" -}}
{{- printf "%s-%s" .top.Chart.Name .top.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tokengate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokengate.name" . }}
app.kubernetes.io/instance: {{ .top.Release.Name }}
{{- end }}

{{/* Common labels, without app.kubernetes.io/component (each object adds its own). */}}
{{- define "tokengate.labels" -}}
helm.sh/chart: {{ include "tokengate.chart" . }}
{{ include "tokengate.selectorLabels" . }}
{{- $version := default .top.Chart.AppVersion .values.image.tag }}
{{- if $version }}
app.kubernetes.io/version: {{ $version | trunc 63 | trimSuffix "-" | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .top.Release.Service }}
app.kubernetes.io/part-of: tokengate
{{- with .values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "tokengate.serviceAccountName" -}}
{{- if .values.serviceAccount.create }}
{{- default (include "tokengate.fullname" .) .values.serviceAccount.name }}
{{- else }}
{{- default "default" .values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tokengate.configMapName" -}}
{{- if .values.existingConfigMap }}
{{- .values.existingConfigMap }}
{{- else }}
{{- printf "%s-config" (include "tokengate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
The Secret-backed variables the pod needs, as a list of "ENV=valueKey" pairs: only those that the
rendered gateway.yaml names (a bearer-only gateway needs no session key and no Redis URL). With
existingConfigMap the chart cannot read the config, so every variable is passed, marked optional.
*/}}
{{- define "tokengate.secretEnv" -}}
{{- $config := include "tokengate.configData" . }}
{{- $keys := .values.secretKeys }}
{{- $all := list (list "TOKENGATE_CLIENT_SECRET" "clientSecret") (list "TOKENGATE_SESSION_KEY" "sessionKey") (list "TOKENGATE_REDIS_URL" "redisUrl") }}
{{- range $all }}
{{- $env := index . 0 }}
{{- $key := index $keys (index . 1) }}
{{- if and $key (or $.values.existingConfigMap (contains (printf "${%s" $env) $config)) }}
{{ $env }}={{ index . 1 }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tokengate.secretName" -}}
{{- if .values.secret.create }}
{{- printf "%s-secret" (include "tokengate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- required "tokengate: set existingSecret when secret.create is false" .values.existingSecret }}
{{- end }}
{{- end }}

{{/* "true" when this chart renders a Deployment (standalone, or the sidecar demo). */}}
{{- define "tokengate.rendersWorkload" -}}
{{- if or (eq .values.mode "standalone") (and (eq .values.mode "sidecar") .values.sidecar.demoApp.enabled) }}true{{ end }}
{{- end }}

{{/*
The image reference. The tag defaults to this chart's appVersion; an application chart that includes
the sidecar sees its own Chart object, so there tokengate.image.tag (or digest) must be set.
*/}}
{{- define "tokengate.image" -}}
{{- $img := .values.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- $tag := $img.tag }}
{{- if and (not $tag) (eq .top.Chart.Name "tokengate") }}
{{- $tag = .top.Chart.AppVersion }}
{{- end }}
{{- printf "%s:%s" $img.repository (required "tokengate: set image.tag or image.digest" $tag | toString) }}
{{- end }}
{{- end }}

{{/* gateway.yaml as text: the config value as a string, or the YAML structure serialised. */}}
{{/*
"true" when tokengate runs several workers and so shares metrics through prometheus-client's
multiprocess files; with one worker they stay in memory (process_* and python_* work).
*/}}
{{- define "tokengate.multiprocess" -}}
{{- $cfg := .values.config }}
{{- if kindIs "string" $cfg }}{{ $cfg = fromYaml $cfg }}{{ end }}
{{- $server := default dict $cfg.server }}
{{- if and .values.metrics.multiprocDir (gt (int (default 1 $server.workers)) 1) }}true{{ end }}
{{- end }}

{{- define "tokengate.configData" -}}
{{- if kindIs "string" .values.config }}
{{- .values.config }}
{{- else }}
{{- toYaml .values.config }}
{{- end }}
{{- end }}

{{/* Map entries for pod annotations: the config checksum (optional) and podAnnotations. */}}
{{- define "tokengate.sidecarPodAnnotations" -}}
{{- if and .values.configChecksum.enabled (not .values.existingConfigMap) -}}
checksum/tokengate-config: {{ include "tokengate.configData" . | sha256sum }}
{{- end }}
{{- end }}

{{/*
checkov skip annotations for the workload, each with its reason (README: "checkov findings"). Only
the skips that apply to these values are emitted: with image.digest set, CKV_K8S_43 and CKV_K8S_15
pass on their own.
*/}}
{{- define "tokengate.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_35=tokengate reads its secrets from the environment by contract (${VAR} in gateway.yaml); the Secret is not written to disk and the container runs one non-root process
{{- $digests := .values.image.digest }}
{{- if and (eq .values.mode "sidecar") .values.sidecar.demoApp.enabled }}
{{- $digests = and $digests .values.sidecar.demoApp.image.digest }}
{{- end }}
{{- if not $digests }}
checkov.io/skip2: CKV_K8S_43=the chart cannot know the digest of the image you build; set image.digest to pin it (recommended in production)
{{- if ne .values.image.pullPolicy "Always" }}
checkov.io/skip3: CKV_K8S_15=IfNotPresent with an immutable tag or a digest avoids making every pod start depend on the registry
{{- end }}
{{- end }}
{{- end }}

{{/* Fails the render on settings that would produce a pod that cannot work. */}}
{{- define "tokengate.validate" -}}
{{- $v := .values }}
{{- if not (has $v.mode (list "standalone" "sidecar")) }}
{{- fail (printf "tokengate: mode must be standalone or sidecar, not %q" (toString $v.mode)) }}
{{- end }}
{{- if and (not $v.secret.create) (not $v.existingSecret) (trim (include "tokengate.secretEnv" .)) }}
{{- fail "tokengate: set existingSecret when secret.create is false" }}
{{- end }}
{{- if and (kindIs "map" $v.config) (not $v.existingConfigMap) }}
{{- $server := default dict $v.config.server }}
{{- $admin := toString (default "" $server.admin_listen) }}
{{- if or (hasPrefix "127." $admin) (hasPrefix "localhost" $admin) (hasPrefix "[::1]" $admin) (eq $admin "") }}
{{- fail (printf "tokengate: config.server.admin_listen must be 0.0.0.0:%v in Kubernetes (the kubelet probes the pod IP); networkPolicy restricts who reaches it" $v.ports.admin) }}
{{- end }}
{{- if not (hasSuffix (printf ":%v" $v.ports.admin) $admin) }}
{{- fail (printf "tokengate: config.server.admin_listen %q does not use ports.admin (%v)" $admin $v.ports.admin) }}
{{- end }}
{{- $listen := toString (default "" $server.listen) }}
{{- if and $listen (not (hasSuffix (printf ":%v" $v.ports.http) $listen)) }}
{{- fail (printf "tokengate: config.server.listen %q does not use ports.http (%v)" $listen $v.ports.http) }}
{{- end }}
{{- $grace := toString (default "25s" $server.shutdown_grace) }}
{{- if regexMatch "^[0-9]+s$" $grace }}
{{- $need := add (trimSuffix "s" $grace | atoi) (int $v.preStopSleepSeconds) }}
{{- if le (int $v.terminationGracePeriodSeconds) $need }}
{{- fail (printf "tokengate: terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + config.server.shutdown_grace (%v)" $v.terminationGracePeriodSeconds $need) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The tokengate container, as one item of a pod's containers list. Used by this chart's Deployment
and, as tokengate.sidecarContainer, by application charts.
*/}}
{{- define "tokengate.container" -}}
{{- $v := .values -}}
- name: tokengate
  image: {{ include "tokengate.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    - run
    - --config
    - /etc/tokengate/gateway.yaml
    {{- with $v.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: http
      containerPort: {{ $v.ports.http }}
      protocol: TCP
    - name: admin
      containerPort: {{ $v.ports.admin }}
      protocol: TCP
  env:
    {{- range (include "tokengate.secretEnv" . | trim | splitList "\n") }}
    {{- if . }}
    {{- $pair := splitList "=" . }}
    - name: {{ index $pair 0 }}
      valueFrom:
        secretKeyRef:
          name: {{ include "tokengate.secretName" $ }}
          key: {{ index $v.secretKeys (index $pair 1) }}
          {{- if $v.existingConfigMap }}
          optional: true
          {{- end }}
    {{- end }}
    {{- end }}
    {{- if include "tokengate.multiprocess" . }}
    - name: PROMETHEUS_MULTIPROC_DIR
      value: {{ $v.metrics.multiprocDir | quote }}
    {{- end }}
    {{- with $v.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $v.startupProbe.enabled }}
  startupProbe:
    httpGet:
      path: /healthz
      port: admin
    periodSeconds: {{ $v.startupProbe.periodSeconds }}
    timeoutSeconds: {{ $v.startupProbe.timeoutSeconds }}
    failureThreshold: {{ $v.startupProbe.failureThreshold }}
  {{- end }}
  {{- if $v.livenessProbe.enabled }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: admin
    initialDelaySeconds: {{ $v.livenessProbe.initialDelaySeconds }}
    periodSeconds: {{ $v.livenessProbe.periodSeconds }}
    timeoutSeconds: {{ $v.livenessProbe.timeoutSeconds }}
    failureThreshold: {{ $v.livenessProbe.failureThreshold }}
  {{- end }}
  {{- if $v.readinessProbe.enabled }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: admin
    initialDelaySeconds: {{ $v.readinessProbe.initialDelaySeconds }}
    periodSeconds: {{ $v.readinessProbe.periodSeconds }}
    timeoutSeconds: {{ $v.readinessProbe.timeoutSeconds }}
    failureThreshold: {{ $v.readinessProbe.failureThreshold }}
    successThreshold: {{ $v.readinessProbe.successThreshold }}
  {{- end }}
  {{- if gt (int $v.preStopSleepSeconds) 0 }}
  lifecycle:
    preStop:
      exec:
        command: ["sleep", "{{ $v.preStopSleepSeconds }}"]
  {{- end }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  volumeMounts:
    - name: tokengate-config
      mountPath: /etc/tokengate
      readOnly: true
    - name: tokengate-tmp
      mountPath: /tmp
    {{- if include "tokengate.multiprocess" . }}
    - name: tokengate-metrics
      mountPath: {{ $v.metrics.multiprocDir }}
    {{- end }}
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
The volumes the tokengate container mounts, as items of a pod's volumes list. The ConfigMap is
mounted as a directory (never with subPath) so that its symlink swap reaches the pod and tokengate
hot-reloads the config.
*/}}
{{- define "tokengate.volumes" -}}
- name: tokengate-config
  configMap:
    name: {{ include "tokengate.configMapName" . }}
- name: tokengate-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if include "tokengate.multiprocess" . }}
- name: tokengate-metrics
  emptyDir:
    sizeLimit: 64Mi
{{- end }}
{{- with .values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "tokengate.sidecarContainer" -}}
{{- include "tokengate.validate" . }}
{{- include "tokengate.container" . }}
{{- end }}

{{- define "tokengate.sidecarVolumes" -}}
{{- include "tokengate.volumes" . }}
{{- end }}
