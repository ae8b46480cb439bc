# Cloud SQL: the instance behind the SkyPilot API server keeps its data and takes no client in
# clear or from everywhere.
package skyform.skypilot.cloudsql

import data.lib.skyform.plan

instances := plan.of_type("gcp_sql_instance")

# SKY-SQL-001: deletion protection on (a `destroy` must first turn it off, on purpose).
deny contains {
	"msg": "Cloud SQL deletion protection is off: set deletion_protection = true",
	"id": "SKY-SQL-001",
	"address": r.address,
} if {
	some r in instances
	not r.after.deletion_protection == true
}

# SKY-SQL-002: no authorized network open to every address (any /0, or 0.0.0.0).
deny contains {
	"msg": sprintf("authorized network %q opens the instance to every address", [n.value]),
	"id": "SKY-SQL-002",
	"address": r.address,
} if {
	some r in instances
	some n in r.after.ip_configuration.authorized_networks
	open_to_all(n.value)
}

open_to_all(cidr) if endswith(cidr, "/0")

open_to_all(cidr) if cidr == "0.0.0.0"

# SKY-SQL-003: SSL enforced (ssl_mode ENCRYPTED_ONLY or TRUSTED_CLIENT_CERTIFICATE_REQUIRED, or
# require_ssl).
deny contains {
	"msg": sprintf("SSL is not enforced (ssl_mode %q): set ip_configuration.ssl_mode = \"ENCRYPTED_ONLY\"", [mode]),
	"id": "SKY-SQL-003",
	"address": r.address,
} if {
	some r in instances
	mode := object.get(r.after, ["ip_configuration", "ssl_mode"], "(not set)")
	not mode in {"ENCRYPTED_ONLY", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED", plan.unknown}
	not r.after.ip_configuration.require_ssl == true
}
