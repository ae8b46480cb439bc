# The baseline's own unit tests, for `opa test policies/skypilot-baseline` (tests/policy_opa.rs runs
# them with the real OPA). skyform skips `*_test.rego` files: they are not policies.
package skyform.skypilot_test

import data.skyform.skypilot.auth
import data.skyform.skypilot.cloudsql
import data.skyform.skypilot.gke
import data.skyform.skypilot.helm

instance(after) := {"resource_changes": [{
	"address": "gcp_sql_instance.db", "mode": "managed", "type": "gcp_sql_instance", "after": after,
}]}

seed_instance := {
	"deletion_protection": true,
	"ip_configuration": {"ipv4_enabled": true, "ssl_mode": "ENCRYPTED_ONLY", "authorized_networks": []},
}

ids(results) := {r.id | some r in results}

test_the_seed_instance_passes if {
	count(cloudsql.deny) == 0 with input as instance(seed_instance)
}

test_deletion_protection_off_is_denied if {
	ids(cloudsql.deny) == {"SKY-SQL-001"} with input as instance(object.union(seed_instance, {"deletion_protection": false}))
}

test_an_open_network_is_denied if {
	nets := {"ip_configuration": {"ssl_mode": "ENCRYPTED_ONLY", "authorized_networks": [{"name": "all", "value": "0.0.0.0/0"}]}}
	ids(cloudsql.deny) == {"SKY-SQL-002"} with input as instance(object.union(seed_instance, nets))
}

test_ssl_not_enforced_is_denied if {
	ssl := {"ip_configuration": {"ssl_mode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED", "authorized_networks": []}}
	ids(cloudsql.deny) == {"SKY-SQL-003"} with input as instance(object.union(seed_instance, ssl))
}

release(values, version) := {"resource_changes": [{
	"address": "helm_release.skypilot", "mode": "managed", "type": "helm_release",
	"after": {"chart": "skypilot-nightly", "version": version, "values": values},
}]}

test_a_latest_image_is_denied if {
	values := {"extraInitContainers": [{"image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:latest"}]}
	ids(helm.deny) == {"SKY-IMG-001"} with input as release(values, "1.0.0")
}

test_small_resources_are_denied_unless_the_check_is_skipped if {
	small := {"resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}
	count(helm.deny) == 2 with input as release({"apiService": small}, "1.0.0")
	count(helm.deny) == 0 with input as release({"apiService": object.union(small, {"skipResourceCheck": true})}, "1.0.0")
}

test_an_unpinned_chart_is_warned if {
	ids(helm.warn) == {"SKY-HELM-001"} with input as release({}, "")
	count(helm.warn) == 0 with input as release({}, "1.0.0-dev.20260808")
}

test_workload_identity_denied_off_warned_with_a_key if {
	cluster := {"address": "gcp_container_cluster.c", "mode": "managed", "type": "gcp_container_cluster", "after": {"workload_identity": false}}
	key := {"address": "gcp_service_account_key.k", "mode": "managed", "type": "gcp_service_account_key", "after": {}}
	ids(gke.deny) == {"SKY-GKE-001"} with input as {"resource_changes": [cluster]}
	count(gke.deny) == 0 with input as {"resource_changes": [cluster, key]}
	ids(gke.warn) == {"SKY-GKE-001"} with input as {"resource_changes": [cluster, key]}
	ids(auth.warn) == {"SKY-AUTH-002"} with input as {"resource_changes": [cluster, key]}
}
