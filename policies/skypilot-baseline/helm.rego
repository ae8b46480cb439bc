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
	some r in plan.of_type("helm_release")
	object.get(r.after, "version", "") == ""
}

# SKY-IMG-001: every image in a release's values or a Kubernetes object is pinned by a tag
# (never `latest`) or a digest.
deny contains {
	"msg": sprintf("image %q at %s is not pinned: give it a version tag (not latest) or a digest", [image, where]),
	"id": "SKY-IMG-001",
	"address": r.address,
} if {
	some r in plan.objects
	workload(r.type)
	walk(r.after, [path, image])
	count(path) > 0
	path[count(path) - 1] == "image"
	is_string(image)
	plan.known(image)
	not pinned(image)
	where := concat(".", [sprintf("%v", [p]) | some p in path])
}

workload(t) if t == "helm_release"

workload(t) if startswith(t, "k8s_")

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

deny contains {
	"msg": sprintf("apiService.resources.%s.%s = %v is below the chart's minimum (%v); raise it or set apiService.skipResourceCheck = true", [kind, what, q, minimum[what]]),
	"id": "SKY-HELM-002",
	"address": r.address,
} if {
	some r in plan.of_type("helm_release")
	api := object.get(r.after, ["values", "apiService"], {})
	not api.skipResourceCheck == true
	some kind in ["requests", "limits"]
	some what, q in object.get(api, ["resources", kind], {})
	plan.known(q)
	below(what, q)
}

below("cpu", q) if plan.cpu(q) < plan.cpu(minimum.cpu)

below("memory", q) if plan.bytes(q) < plan.bytes(minimum.memory)
