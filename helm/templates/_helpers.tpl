{{- /*
Names. Datahavn's objects have fixed names, as zero-to-jupyterhub's do (hub,
proxy-public): the subcharts' values refer to them (hub.extraVolumes mounts
datahavn-hub-config), and values cannot be templated. One release per namespace.
*/}}

{{- define "datahavn.labels" -}}
app.kubernetes.io/name: datahavn
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "datahavn.matchLabels" -}}
app.kubernetes.io/name: datahavn
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- /* A project's name in object names: "_" is not allowed there, "-" is not allowed in project names. */}}
{{- define "datahavn.projectSlug" -}}
{{- . | replace "_" "-" }}
{{- end }}

{{- /* The claim of a project's volume: list root project kind */}}
{{- define "datahavn.claimName" -}}
{{- $root := index . 0 }}{{- $project := index . 1 }}{{- $kind := index . 2 }}
{{- $volume := index (index $root.Values.projects $project) $kind }}
{{- $volume.existingClaim | default (printf "datahavn-%s-%s" (include "datahavn.projectSlug" $project) $kind) }}
{{- end }}

{{- define "datahavn.image" -}}
{{- if .tag }}{{ printf "%s:%s" .name .tag }}{{ else }}{{ .name }}{{ end }}
{{- end }}

{{- /* The audit service's image: its own, else the hub's (which holds datahavn). */}}
{{- define "datahavn.auditImage" -}}
{{- if .Values.audit.image.name }}{{ include "datahavn.image" .Values.audit.image }}
{{- else }}{{ include "datahavn.image" .Values.jupyterhub.hub.image }}{{ end }}
{{- end }}

{{- /* Dask schedulers' and workers' image: its own, else the workspaces' (same libraries). */}}
{{- define "datahavn.daskImage" -}}
{{- if .Values.dask.image.name }}{{ include "datahavn.image" .Values.dask.image }}
{{- else }}{{ include "datahavn.image" .Values.jupyterhub.singleuser.image }}{{ end }}
{{- end }}

{{- define "datahavn.daskEnabled" -}}
{{- if (index .Values "dask-gateway").enabled }}true{{ end }}
{{- end }}

{{- /* dask-gateway's full name, by the subchart's own rule (its objects are named after it). */}}
{{- define "datahavn.gatewayFullname" -}}
{{- $dg := index .Values "dask-gateway" }}
{{- if $dg.fullnameOverride }}
{{- $dg.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default "dask-gateway" $dg.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- /* dask-gateway's traefik TCP port (schedulers by TLS SNI): "web" when it shares the web port. */}}
{{- define "datahavn.gatewayTcpPort" -}}
{{- dig "traefik" "service" "ports" "tcp" "port" "web" (index .Values "dask-gateway") }}
{{- end }}

{{- define "datahavn.gatewayTraefik" -}}
{{- printf "traefik-%s" (include "datahavn.gatewayFullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- /*
A secret value: the one given in values, else the one already in the cluster
(so an upgrade keeps it), else a new random one. list root secretName key given generated
*/}}
{{- define "datahavn.secretValue" -}}
{{- $root := index . 0 }}{{- $name := index . 1 }}{{- $key := index . 2 }}
{{- $given := index . 3 }}{{- $generated := index . 4 }}
{{- if $given }}
{{- $given }}
{{- else }}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace $name }}
{{- if and $existing $existing.data (hasKey $existing.data $key) }}
{{- index $existing.data $key | b64dec }}
{{- else }}
{{- $generated }}
{{- end }}
{{- end }}
{{- end }}

{{- /* Pod and container security contexts for Datahavn's own services. */}}
{{- define "datahavn.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "datahavn.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{- /* NetworkPolicy peer: the cluster DNS. */}}
{{- define "datahavn.dnsEgress" -}}
- to:
    - namespaceSelector:
        {{- toYaml .Values.networkPolicy.dns.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml .Values.networkPolicy.dns.podSelector | nindent 8 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}

{{- define "datahavn.hubPeer" -}}
podSelector:
  matchLabels:
    app: jupyterhub
    component: hub
{{- end }}

{{- define "datahavn.proxyPeer" -}}
podSelector:
  matchLabels:
    app: jupyterhub
    component: proxy
{{- end }}

{{- /* The schedulers and workers of one project (labels set by kube.cluster_config). */}}
{{- define "datahavn.projectDaskSelector" -}}
matchLabels:
  app.kubernetes.io/name: dask-gateway
  datahavn/project: {{ . }}
matchExpressions:
  - key: app.kubernetes.io/component
    operator: In
    values: [dask-scheduler, dask-worker]
{{- end }}
