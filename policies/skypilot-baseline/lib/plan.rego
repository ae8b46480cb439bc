# Helpers shared by the baseline's rules (imported as data.lib.skyform.plan; outside the
# `skyform` namespace, so never evaluated as rules of their own).
#
# Written for plans of 10,000 instances (`cargo bench --bench policy_10k`): what runs once per
# object stays inline in the rules (a user function call costs more than the test it wraps), and
# each package scans the plan once per type it judges.
package lib.skyform.plan

# The value skyform writes where a value is known only after apply.
unknown := "(known after apply)"

# Every resource instance that exists after the plan (or, for drift and check, every live
# object): its `after` attributes are what the rules judge. Deletes have no `after`. (An array,
# not a set: a set of 10,000 whole objects costs their comparisons.)
objects := [r |
	some r in input.resource_changes
	r.mode == "managed"
	is_object(r.after)
]

# Objects of one type.
of_type(t) := [r | some r in objects; r.type == t]

# Whether a value is known (not "(known after apply)").
known(v) if v != unknown

# A Kubernetes quantity as a number: CPU in cores ("4", "4000m", 4), memory in bytes ("8Gi").
quantity(q) := units.parse(sprintf("%v", [q]))
