# Helpers imported as data.lib.features.util: functions with several bodies, `else`, defaults.
package lib.features.util

# The module path of an address ("" at the root).
module_of(r) := r.module if r.module != ""

else := "(root)"

# A network open to the world.
open(cidr) if endswith(cidr, "/0")

open(cidr) if cidr == "0.0.0.0"

# The tag of an image, "" without one.
tag(image) := t if {
	parts := split(image, "/")
	name := parts[count(parts) - 1]
	pieces := split(name, ":")
	count(pieces) == 2
	t := pieces[1]
} else := ""

default severity(_) := "low"

severity(t) := "high" if startswith(t, "gcp_sql_")

severity(t) := "medium" if t == "helm_release"
