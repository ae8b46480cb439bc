# GKE: pods reach Google APIs as their own identity (Workload Identity), not as the node's.
package skyform.skypilot.gke

import data.lib.skyform.plan

# SKY-GKE-001: Workload Identity on the cluster. The password variant (a service-account key
# in a Secret) is warned about instead: see skyform.skypilot.auth.
deny contains {
	"msg": "Workload Identity is off: set workload_identity = true (and workload_metadata_mode = \"GKE_METADATA\")",
	"id": "SKY-GKE-001",
	"address": r.address,
} if {
	some r in plan.of_type("gcp_container_cluster")
	not r.after.workload_identity == true
	not key_variant
}

warn contains {
	"msg": "Workload Identity is off: the proxy runs with a service-account key; prefer Workload Identity",
	"id": "SKY-GKE-001",
	"address": r.address,
} if {
	some r in plan.of_type("gcp_container_cluster")
	not r.after.workload_identity == true
	key_variant
}

key_variant if count(plan.of_type("gcp_service_account_key")) > 0
