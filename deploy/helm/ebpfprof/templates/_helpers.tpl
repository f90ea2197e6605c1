{{/* SPDX-License-Identifier: Apache-2.0 */}}

{{/* Labels every object carries besides its own app.kubernetes.io/name. */}}
{{- define "ebpfprof.chartLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Where the agents send profiles: the configured endpoint, else the gateway of this release. */}}
{{- define "ebpfprof.agentEndpoint" -}}
{{- if .Values.agent.config.endpoint -}}
{{ .Values.agent.config.endpoint }}
{{- else if .Values.gateway.enabled -}}
http://otel-gateway:4318
{{- else -}}
{{ fail "agent.config.endpoint must be set when gateway.enabled is false: the agents need somewhere to send profiles" }}
{{- end -}}
{{- end -}}

{{/* The agent's configuration file: the values' config plus what the DaemonSet's mounts fix. */}}
{{- define "ebpfprof.agentConfig" -}}
{{- $c := deepCopy .Values.agent.config -}}
{{- $_ := set $c "endpoint" (include "ebpfprof.agentEndpoint" .) -}}
{{- $_ := set $c "control" (dict "listen" (printf "127.0.0.1:%v" .Values.agent.controlPort)) -}}
{{- $_ := set $c "kubernetes" (dict "logRoot" "/host/var/log" "downwardApiDir" "/etc/podinfo") -}}
{{- toYaml $c -}}
{{- end -}}
