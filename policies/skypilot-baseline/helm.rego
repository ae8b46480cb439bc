# The SkyPilot chart: a known chart version, pinned images, and an API server sized as the
# chart requires.
package skyform.skypilot.helm

import data.lib.skyform.plan

# SKY-HELM-001 (warn): the chart version pinned; empty takes the newest at install.
warn contains {
	"msg": sprintf("chart %q has no version: each install takes the newest; pin `version`", [r.after.chart]),
	"id": "SKY-HELM-001",
	"address": r.address,
} if {
	some r in releases
	object.get(r.after, "version", "") == ""
}

# SKY-IMG-001: every image in a release's values or a Kubernetes object is pinned by a tag
# (never `latest`) or a digest.
deny contains {
	"msg": sprintf("image %q at %s is not pinned: give it a version tag (not latest) or a digest", [image, where]),
	"id": "SKY-IMG-001",
	"address": r.address,
} if {
	some r in workloads
	walk(r.after, [path, image])
	count(path) > 0
	path[count(path) - 1] == "image"
	is_string(image)
	image != plan.unknown
	not pinned(image)
	where := concat(".", [sprintf("%v", [p]) | some p in path])
}

# Helm releases and Kubernetes objects that may run containers (a manifest may hold a Deployment;
# a Secret, a ConfigMap, a namespace or a service account cannot).
workloads := array.concat(releases, [r | some r in plan.objects; startswith(r.type, "k8s_"); not r.type in no_image])

no_image := {"k8s_secret", "k8s_config_map", "k8s_namespace", "k8s_service_account"}

releases := plan.of_type("helm_release")

pinned(image) if contains(image, "@sha256:")

pinned(image) if {
	not contains(image, "@")
	parts := split(image, "/")
	name := parts[count(parts) - 1]
	tag := split(name, ":")
	count(tag) == 2
	not tag[1] in {"", "latest"}
}

# SKY-HELM-002: the API server's resources at least the chart's minimum (4 CPU, 8Gi), unless
# the release sets apiService.skipResourceCheck.
minimum := {"cpu": 4, "memory": "8Gi"}

least := {what: plan.quantity(q) | some what, q in minimum}

deny contains {
	"msg": sprintf("apiService.resources.%s.%s = %v is below the chart's minimum (%v); raise it or set apiService.skipResourceCheck = true", [kind, what, q, minimum[what]]),
	"id": "SKY-HELM-002",
	"address": r.address,
} if {
	some r in releases
	api := object.get(r.after, ["values", "apiService"], {})
	not api.skipResourceCheck == true
	some kind in ["requests", "limits"]
	some what, q in object.get(api, ["resources", kind], {})
	q != plan.unknown
	units.parse(sprintf("%v", [q])) < least[what]
}
