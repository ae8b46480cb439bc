//! IAM policy semantics shared by projects (Resource Manager) and service accounts (IAM), on the
//! shared floor so that neither API imports the other: etag concurrency, validation (members
//! included: [`check_member`]), dropping empty bindings (contract §3).

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::{Policy, State};
use crate::util::{etag_bytes, new_etag};

/// The `Policy` JSON. `version` is 3 when a binding has a condition, else 1 even when 3 was
/// requested (commonly observed; not verified against a source).
pub fn render(p: &Policy) -> Value {
    let conditional = p.bindings.iter().any(|b| b.get("condition").is_some_and(|c| !c.is_null()));
    let mut v = json!({"version": if conditional { 3 } else { 1 }, "etag": p.etag});
    if !p.bindings.is_empty() {
        v["bindings"] = Value::Array(p.bindings.clone());
    }
    if !p.audit_configs.is_empty() {
        v["auditConfigs"] = Value::Array(p.audit_configs.clone());
    }
    v
}

const MEMBER_PREFIXES: &[&str] = &[
    "user:",
    "serviceAccount:",
    "group:",
    "domain:",
    "principal://",
    "principalSet://",
    "deleted:",
    "projectOwner:",
    "projectEditor:",
    "projectViewer:",
];

/// Policy member validation: a `serviceAccount:` member of the user-managed form must name an
/// existing, already visible account. Other member kinds (and Google-managed accounts, and
/// Workload Identity members `p.svc.id.goog[ns/ksa]`) are not checked.
pub fn check_member(st: &State, member: &str, delay_ms: u64) -> Result<(), ApiError> {
    let Some(email) = member.strip_prefix("serviceAccount:") else {
        return Ok(());
    };
    if !email.ends_with(".iam.gserviceaccount.com") {
        return Ok(());
    }
    match st.iam.accounts.get(email) {
        Some(sa) if sa.visible(delay_ms) => Ok(()),
        _ => Err(ApiError::invalid_argument(format!("Service account {email} does not exist."))),
    }
}

/// Applies a `setIamPolicy` request body (`{policy, updateMask?}`) to `current`.
///
/// `check_member` validates each member that is new to the policy (used for service-account
/// existence, which is subject to eventual consistency).
pub fn set(
    current: &mut Policy,
    body: &Value,
    check_member: impl Fn(&str) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let policy = body.get("policy").filter(|p| p.is_object()).ok_or_else(|| {
        ApiError::field_violation("policy", "Request contains an invalid argument: policy is required.")
    })?;
    if let Some(etag) = policy.get("etag").and_then(Value::as_str).filter(|e| !e.is_empty()) {
        if etag_bytes(etag) != etag_bytes(&current.etag) {
            return Err(ApiError::aborted(
                "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
            ));
        }
    }
    let mask = body.get("updateMask").and_then(Value::as_str).unwrap_or("bindings,etag");
    let fields: Vec<&str> = mask.split(',').map(str::trim).collect();
    let version = policy.get("version").and_then(Value::as_i64).unwrap_or(1);
    if ![0, 1, 3].contains(&version) {
        return Err(ApiError::invalid_argument(format!(
            "Invalid policy version {version}; valid values are 0, 1 and 3."
        )));
    }
    let mut bindings = current.bindings.clone();
    if fields.contains(&"bindings") {
        bindings = Vec::new();
        let given = policy.get("bindings").and_then(Value::as_array).cloned().unwrap_or_default();
        for b in given {
            let role = b.get("role").and_then(Value::as_str).unwrap_or("");
            if !(role.starts_with("roles/") || role.contains("/roles/")) {
                return Err(ApiError::invalid_argument(format!("Role {role:?} is not a valid role name.")));
            }
            let condition = b.get("condition").filter(|c| !c.is_null()).cloned();
            if condition.is_some() && version != 3 {
                return Err(ApiError::invalid_argument("Policies with conditions must set version 3."));
            }
            let mut members: Vec<String> = Vec::new();
            for m in b.get("members").and_then(Value::as_array).into_iter().flatten() {
                let m = m.as_str().unwrap_or("").to_string();
                let known = m == "allUsers"
                    || m == "allAuthenticatedUsers"
                    || MEMBER_PREFIXES.iter().any(|p| m.starts_with(p) && m.len() > p.len());
                if !known {
                    return Err(ApiError::invalid_argument(format!("Invalid member type in {m:?}.")));
                }
                let existed = current.bindings.iter().any(|cb| {
                    cb["role"] == role && cb["members"].as_array().is_some_and(|ms| ms.iter().any(|x| x == m.as_str()))
                });
                if !existed {
                    check_member(&m)?;
                }
                if !members.contains(&m) {
                    members.push(m);
                }
            }
            // Bindings left without members disappear, as on the real API.
            if members.is_empty() {
                continue;
            }
            let mut nb = json!({"role": role, "members": members});
            if let Some(c) = condition {
                nb["condition"] = c;
            }
            bindings.push(nb);
        }
    }
    if fields.contains(&"auditConfigs") {
        current.audit_configs = policy.get("auditConfigs").and_then(Value::as_array).cloned().unwrap_or_default();
    }
    current.bindings = bindings;
    current.etag = new_etag();
    Ok(())
}

/// `testIamPermissions`: the permissions asked about that the caller holds (`held`: with IAM
/// enforced, what its roles grant; otherwise every one).
pub fn test_permissions(body: &Value, held: impl Fn(&str) -> bool) -> Value {
    let perms: Vec<Value> = body
        .get("permissions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.as_str().is_some_and(&held))
        .cloned()
        .collect();
    if perms.is_empty() { json!({}) } else { json!({"permissions": perms}) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &str) -> Result<(), ApiError> {
        Ok(())
    }

    #[test]
    fn stale_etag_is_aborted_and_fresh_one_works() {
        let mut p = Policy::default();
        let body =
            json!({"policy": {"etag": p.etag, "bindings": [{"role": "roles/viewer", "members": ["user:a@b.c"]}]}});
        set(&mut p, &body, ok).unwrap();
        assert_ne!(p.etag, "ACAB");
        // The same (now stale) etag again.
        let err = set(&mut p, &body, ok).unwrap_err();
        assert_eq!((err.http, err.status, err.reason), (409, "ABORTED", "aborted"));
        // Without an etag the write is unconditional.
        set(&mut p, &json!({"policy": {"bindings": []}}), ok).unwrap();
        assert!(p.bindings.is_empty());
    }

    #[test]
    fn empty_bindings_disappear_and_members_dedupe() {
        let mut p = Policy::default();
        let body = json!({"policy": {"bindings": [
            {"role": "roles/viewer", "members": []},
            {"role": "roles/editor", "members": ["user:a@b.c", "user:a@b.c"]}]}});
        set(&mut p, &body, ok).unwrap();
        let r = render(&p);
        assert_eq!(r["bindings"], json!([{"role": "roles/editor", "members": ["user:a@b.c"]}]));
        assert_eq!(r["version"], 1);
    }

    #[test]
    fn conditions_need_version_3() {
        let mut p = Policy::default();
        let b = json!({"role": "roles/viewer", "members": ["user:a@b.c"], "condition": {"title": "t", "expression": "true"}});
        assert_eq!(set(&mut p, &json!({"policy": {"version": 1, "bindings": [b]}}), ok).unwrap_err().http, 400);
        set(&mut p, &json!({"policy": {"version": 3, "bindings": [b]}}), ok).unwrap();
        assert_eq!(render(&p)["version"], 3);
    }

    #[test]
    fn bad_members_and_failed_checks_are_rejected() {
        let mut p = Policy::default();
        let bad = json!({"policy": {"bindings": [{"role": "roles/viewer", "members": ["alice"]}]}});
        assert_eq!(set(&mut p, &bad, ok).unwrap_err().http, 400);
        let sa = json!({"policy": {"bindings": [{"role": "roles/viewer", "members": ["serviceAccount:x@p.iam.gserviceaccount.com"]}]}});
        let err = set(&mut p, &sa, |_| Err(ApiError::invalid_argument("no"))).unwrap_err();
        assert_eq!(err.http, 400);
        assert_eq!(p, Policy::default());
    }
}
