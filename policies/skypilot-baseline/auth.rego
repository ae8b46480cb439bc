# How the API server authenticates to its database: IAM database authentication through
# Workload Identity (specs/skypilot-iam.toml) over a password and a key file
# (specs/skypilot-password.toml).
package skyform.skypilot.auth

import data.lib.skyform.plan

# SKY-AUTH-001 (warn): a built-in (password) database user.
warn contains {
	"msg": sprintf("database user %q logs in with a password: prefer IAM database authentication (type CLOUD_IAM_SERVICE_ACCOUNT) with Workload Identity, as specs/skypilot-iam.toml", [r.after.name]),
	"id": "SKY-AUTH-001",
	"address": r.address,
} if {
	some r in plan.of_type("gcp_sql_user")
	object.get(r.after, "type", "BUILT_IN") == "BUILT_IN"
}

# SKY-AUTH-002 (warn): a service-account key (a long-lived secret in a Kubernetes Secret).
warn contains {
	"msg": "a service-account key is a long-lived credential in a Secret: prefer Workload Identity, as specs/skypilot-iam.toml",
	"id": "SKY-AUTH-002",
	"address": r.address,
} if {
	some r in plan.of_type("gcp_service_account_key")
}
