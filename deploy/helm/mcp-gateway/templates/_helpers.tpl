{{/* The release's name for its objects: the release name, with the chart's name unless it already holds it. */}}
{{- define "mcp-gateway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the pods. */}}
{{- define "mcp-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "mcp-gateway.labels" -}}
{{ include "mcp-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mcp-gateway
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* repository:tag or repository@digest of an image value, the tag defaulting to the chart's appVersion. */}}
{{- define "mcp-gateway.image" -}}
{{- $img := index . 0 -}}{{- $root := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret with GATEWAY_IDENTITY_SECRET and GATEWAY_SESSION_SECRET. */}}
{{- define "mcp-gateway.secretName" -}}
{{- default (printf "%s-secrets" (include "mcp-gateway.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Whether the upstream is the example tool service. */}}
{{- define "mcp-gateway.ownTools" -}}
{{- if not .Values.upstream.image.repository -}}true{{- end -}}
{{- end -}}

{{/* The issuer URL's port, for the NetworkPolicy: its explicit port, else 443 (https) or 80 (http). */}}
{{- define "mcp-gateway.issuerPort" -}}
{{- if .Values.issuer.url -}}
{{- $u := urlParse .Values.issuer.url -}}
{{- $parts := splitList ":" $u.host -}}
{{- if gt (len $parts) 1 -}}{{ last $parts }}{{- else if eq $u.scheme "http" -}}80{{- else -}}443{{- end -}}
{{- else -}}
443
{{- end -}}
{{- end -}}

{{/* Fails the render on settings the gateway would refuse, naming the value to set. */}}
{{- define "mcp-gateway.validate" -}}
{{- if not .Values.publicURL -}}
{{- fail "publicURL is required: the https origin clients use, e.g. --set publicURL=https://mcp.example.com" -}}
{{- end -}}
{{- if not (or .Values.issuer.url .Values.issuer.authkitSubdomain) -}}
{{- fail "issuer.url or issuer.authkitSubdomain is required: the authorization server that issues the tokens" -}}
{{- end -}}
{{- if and .Values.redis.url .Values.redis.existingSecret -}}
{{- fail "redis.url and redis.existingSecret: set one" -}}
{{- end -}}
{{- if and .Values.policy.content .Values.policy.existingConfigMap -}}
{{- fail "policy.content and policy.existingConfigMap: set one" -}}
{{- end -}}
{{- if and .Values.client.existingSecret (not .Values.client.id) -}}
{{- fail "client.existingSecret needs client.id: the secret belongs to a pre-registered client (Option B)" -}}
{{- end -}}
{{- if and .Values.tools.workosApiKeyKey (not .Values.secrets.existingSecret) -}}
{{- fail "tools.workosApiKeyKey names a key of secrets.existingSecret, which is not set" -}}
{{- end -}}
{{- if and (not (include "mcp-gateway.ownTools" .)) .Values.tools.workosApiKeyKey -}}
{{- fail "tools.workosApiKeyKey applies to the example tool service only (upstream.image.repository is set)" -}}
{{- end -}}
{{- end -}}
