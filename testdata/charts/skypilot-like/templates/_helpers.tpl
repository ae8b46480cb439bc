{{- define "skypilot.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "skypilot.serviceAccountName" -}}
{{- default (printf "%s-api-sa" (include "skypilot.fullname" .)) .Values.rbac.serviceAccountName -}}
{{- end -}}

{{- define "skypilot.labels" -}}
app.kubernetes.io/name: skypilot
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
