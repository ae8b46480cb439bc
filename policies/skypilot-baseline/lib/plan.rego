# Helpers shared by the baseline's rules (imported as data.lib.skyform.plan; outside the
# `skyform` namespace, so never evaluated as rules of their own).
package lib.skyform.plan

# The value skyform writes where a value is known only after apply.
unknown := "(known after apply)"

# Every resource instance that exists after the plan (or, for drift and check, every live
# object): its `after` attributes are what the rules judge. Deletes have no `after`.
objects contains r if {
	some r in input.resource_changes
	r.mode == "managed"
	is_object(r.after)
}

# Objects of one type.
of_type(t) := {r | some r in objects; r.type == t}

# Whether a value is known (not "(known after apply)").
known(v) if v != unknown

# A Kubernetes quantity of CPU as a number of cores ("4", "4000m", 4).
cpu(q) := q if is_number(q)

cpu(q) := units.parse(q) if is_string(q)

# A Kubernetes quantity of memory in bytes ("8Gi", "8192Mi").
bytes(q) := q if is_number(q)

bytes(q) := units.parse_bytes(q) if is_string(q)
