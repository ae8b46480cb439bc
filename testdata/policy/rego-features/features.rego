# A policy set that exercises the language rather than the deployment: comprehensions of every
# kind, `some` and `every`, functions, imports of data.*, aggregates and string built-ins. Used by
# tests/policy_opa.rs to hold regorus to OPA's answers.
package skyform.features

import data.lib.features.util
import data.limits
import data.registries

# Set, array and object comprehensions.
types := {r.type | some r in input.resource_changes}

counts := {t: n | some t in types; n := count([r | some r in input.resource_changes; r.type == t])}

managed := [r.address | some r in input.resource_changes; r.mode == "managed"]

warn contains sprintf("%d managed instances of %d types; most of one type: %d", [count(managed), count(types), max([n | some n in counts])]) if {
	count(managed) > 0
}

# `some i, x in` with an index, and a function from the imported package.
warn contains {"msg": sprintf("first change (%d) is %s in %s", [i, r.address, util.module_of(r)]), "id": "F-FIRST"} if {
	some i, r in input.resource_changes
	i == 0
}

# `every`: an instance whose every authorized network is closed passes; one with an open network
# is denied, naming each open value (sorted by a comprehension).
deny contains {"msg": sprintf("open networks: %s", [concat(", ", sort([n.value | some n in nets; util.open(n.value)]))]), "id": "F-NET", "address": r.address, "severity": util.severity(r.type)} if {
	some r in input.resource_changes
	r.type == "gcp_sql_instance"
	nets := object.get(r.after, ["ip_configuration", "authorized_networks"], [])
	not every_closed(nets)
}

every_closed(nets) if {
	every n in nets {
		not util.open(n.value)
	}
}

# Walk with a path, an image's tag through an `else` function, and a rule per image.
violation_images contains {"msg": sprintf("%s: image %s has tag %q", [r.address, image, util.tag(image)]), "address": r.address} if {
	some r in input.resource_changes
	walk(r.after, [path, image])
	count(path) > 0
	path[count(path) - 1] == "image"
	is_string(image)
	util.tag(image) in {"", "latest"}
}

# Object built-ins and a default severity.
warn contains {"msg": sprintf("%s: %s (severity %s)", [r.address, concat(",", sort(object.keys(object.filter(r.after, ["deletion_protection", "tier"])))), util.severity(r.type)])} if {
	some r in input.resource_changes
	r.type == "gcp_sql_instance"
}

# Variables (secrets masked) and providers (no credentials) are part of the input.
deny contains "a variable holds a secret in clear" if {
	some name, v in input.variables
	is_string(v)
	contains(lower(name), "password")
	v != "(sensitive value)"
}

warn contains sprintf("provider %s: project %s", [name, p.project]) if {
	some name, p in input.providers
	p.project
}

# Built-ins whose formatting must agree: sprintf of objects and sets, json.marshal, units, CIDRs,
# semver. (Not `%d` of a negative number: regorus 0.14 prints -1 as "--1"; docs/policy.md.)
warn contains {"msg": msg, "id": "F-BUILTINS"} if {
	count(types) > 0
	msg := sprintf("%v | %v | %s | %v | %v | %v | %d | %v", [
		counts,
		types,
		json.marshal({"b": 1, "a": types}),
		units.parse("500m"),
		units.parse_bytes("8Gi"),
		semver.compare("1.0.0-dev.20260808", "1.0.0"),
		count(managed),
		net.cidr_contains("10.0.0.0/8", "10.1.2.3"),
	])
}

# Data documents beside the policies (registries/data.json, limits/settings.yaml), imported as
# data.registries and data.limits: loaded at their directory's path, as `opa eval -d` does.
violation_registry contains {"msg": sprintf("%s: image %s is from a registry not in data.registries.allowed", [r.address, image]), "address": r.address} if {
	some r in input.resource_changes
	walk(r.after, [path, image])
	count(path) > 0
	path[count(path) - 1] == "image"
	is_string(image)
	not from_allowed_registry(image)
}

from_allowed_registry(image) if {
	some registry in registries.allowed
	startswith(image, concat("", [registry, "/"]))
}

warn contains {"msg": sprintf("%d Cloud SQL instances, more than %s allows (%d)", [n, limits.owner, limits.max_sql_instances]), "id": "F-DATA"} if {
	n := count([r | some r in input.resource_changes; r.type == "gcp_sql_instance"])
	n > limits.max_sql_instances
}
