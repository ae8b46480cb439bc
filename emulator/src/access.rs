//! IAM enforcement (`Config::enforce_iam`, `--enforce-iam`), shared floor: the permission each API
//! method needs, the permissions the predefined roles grant, and the check of a principal against
//! a project's IAM policy. One table for every API, the Cloud SQL connector endpoint and the GKE
//! webhooks included; it knows the method names, not the API modules.
//!
//! - [`need`]: every method name the APIs return (`sql.instances.get`, `storage.objects.insert`)
//!   → the real IAM permission (`cloudsql.instances.get`, `storage.objects.create`).
//! - [`ROLES`]: predefined roles as permission patterns (`storage.objects.*`, `*.get`), modelled on
//!   Google's published role definitions, cut down to the permissions of the emulated APIs.
//! - [`check_api`]: each JSON API's `authorize` (the router's interface) calls it with what the
//!   request acts on ([`Target`]) and its refusal's shape; Cloud Storage checks
//!   [`project_grants`] itself. The router calls them after routing, before faults and the
//!   handler. Only a principal's token (minted by the token endpoint or the metadata server) is
//!   checked; the configured admin token, no token, and enforcement off act as the project owner.
//!
//! Caveat: binding conditions are not evaluated (a conditional binding grants as if it had none),
//! and only the project's policy counts (plus, for a service account, the account's own policy):
//! no folders, organisations or bucket policies.

use serde_json::json;

use crate::app::{App, lock};
use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::state::{Policy, State};

/// What a method needs of the principal calling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Need {
    /// Nothing: `testIamPermissions` answers any caller about itself.
    Nothing,
    /// This permission on the resource's project.
    Permission(&'static str),
}

/// The IAM permission method `method` (an API's method name) needs; `None` for a name no API
/// returns (the check then refuses: enforcement fails closed).
pub fn need(method: &str) -> Option<Need> {
    use Need::{Nothing, Permission as P};
    Some(match method {
        // Cloud SQL Admin.
        "sql.instances.get" | "sql.instances.listServerCas" | "sql.operations.get" | "sql.operations.list" => {
            P("cloudsql.instances.get")
        }
        "sql.instances.list" => P("cloudsql.instances.list"),
        "sql.instances.insert" => P("cloudsql.instances.create"),
        "sql.instances.patch" | "sql.instances.update" => P("cloudsql.instances.update"),
        "sql.instances.delete" => P("cloudsql.instances.delete"),
        "sql.instances.restart" => P("cloudsql.instances.restart"),
        "sql.connect.get" | "sql.connect.generateEphemeralCert" => P("cloudsql.instances.connect"),
        "sql.databases.insert" => P("cloudsql.databases.create"),
        "sql.databases.get" => P("cloudsql.databases.get"),
        "sql.databases.list" => P("cloudsql.databases.list"),
        "sql.databases.patch" | "sql.databases.update" => P("cloudsql.databases.update"),
        "sql.databases.delete" => P("cloudsql.databases.delete"),
        "sql.users.insert" => P("cloudsql.users.create"),
        "sql.users.get" | "sql.users.list" => P("cloudsql.users.list"),
        "sql.users.update" => P("cloudsql.users.update"),
        "sql.users.delete" => P("cloudsql.users.delete"),
        // IAM.
        "iam.serviceAccounts.get" => P("iam.serviceAccounts.get"),
        "iam.serviceAccounts.list" => P("iam.serviceAccounts.list"),
        "iam.serviceAccounts.create" => P("iam.serviceAccounts.create"),
        "iam.serviceAccounts.patch" | "iam.serviceAccounts.update" => P("iam.serviceAccounts.update"),
        "iam.serviceAccounts.delete" => P("iam.serviceAccounts.delete"),
        "iam.serviceAccounts.enable" => P("iam.serviceAccounts.enable"),
        "iam.serviceAccounts.disable" => P("iam.serviceAccounts.disable"),
        "iam.serviceAccounts.getIamPolicy" => P("iam.serviceAccounts.getIamPolicy"),
        "iam.serviceAccounts.setIamPolicy" => P("iam.serviceAccounts.setIamPolicy"),
        "iam.serviceAccounts.keys.get" => P("iam.serviceAccountKeys.get"),
        "iam.serviceAccounts.keys.list" => P("iam.serviceAccountKeys.list"),
        "iam.serviceAccounts.keys.create" => P("iam.serviceAccountKeys.create"),
        "iam.serviceAccounts.keys.delete" => P("iam.serviceAccountKeys.delete"),
        // Resource Manager.
        "cloudresourcemanager.v1.projects.get" | "cloudresourcemanager.v3.projects.get" => {
            P("resourcemanager.projects.get")
        }
        "cloudresourcemanager.v1.projects.getIamPolicy" | "cloudresourcemanager.v3.projects.getIamPolicy" => {
            P("resourcemanager.projects.getIamPolicy")
        }
        "cloudresourcemanager.v1.projects.setIamPolicy" | "cloudresourcemanager.v3.projects.setIamPolicy" => {
            P("resourcemanager.projects.setIamPolicy")
        }
        "iam.serviceAccounts.testIamPermissions"
        | "cloudresourcemanager.v1.projects.testIamPermissions"
        | "cloudresourcemanager.v3.projects.testIamPermissions" => Nothing,
        // GKE (node pools are parts of their cluster, as on GKE).
        "container.clusters.get" | "container.nodePools.get" | "container.nodePools.list" => {
            P("container.clusters.get")
        }
        "container.clusters.list" => P("container.clusters.list"),
        "container.clusters.create" => P("container.clusters.create"),
        "container.clusters.update"
        | "container.nodePools.create"
        | "container.nodePools.update"
        | "container.nodePools.delete" => P("container.clusters.update"),
        "container.clusters.delete" => P("container.clusters.delete"),
        "container.operations.get" => P("container.operations.get"),
        "container.operations.list" => P("container.operations.list"),
        // Service Usage.
        "serviceusage.services.get" | "serviceusage.services.batchGet" => P("serviceusage.services.get"),
        "serviceusage.services.list" => P("serviceusage.services.list"),
        "serviceusage.services.enable" | "serviceusage.services.batchEnable" => P("serviceusage.services.enable"),
        "serviceusage.services.disable" => P("serviceusage.services.disable"),
        "serviceusage.operations.get" => P("serviceusage.operations.get"),
        // Cloud Storage.
        "storage.buckets.get" => P("storage.buckets.get"),
        "storage.buckets.list" => P("storage.buckets.list"),
        "storage.buckets.insert" => P("storage.buckets.create"),
        "storage.buckets.delete" => P("storage.buckets.delete"),
        "storage.objects.get" => P("storage.objects.get"),
        "storage.objects.list" => P("storage.objects.list"),
        "storage.objects.insert" => P("storage.objects.create"),
        "storage.objects.patch" => P("storage.objects.update"),
        "storage.objects.delete" => P("storage.objects.delete"),
        _ => return None,
    })
}

/// The permission method `method` needs, if it needs one.
pub fn permission(method: &str) -> Option<&'static str> {
    match need(method)? {
        Need::Permission(p) => Some(p),
        Need::Nothing => None,
    }
}

/// A predefined role: permission patterns it grants, where `*` stands for any run of characters
/// (`storage.objects.*`, `*.get`), less the patterns it excepts.
#[derive(Debug)]
pub struct Role {
    /// `roles/...`.
    pub name: &'static str,
    /// What it grants.
    pub grants: &'static [&'static str],
    /// What it does not grant after all.
    pub except: &'static [&'static str],
}

impl Role {
    /// Whether the role grants `permission`.
    pub fn grants(&self, permission: &str) -> bool {
        self.grants.iter().any(|p| glob(p, permission)) && !self.except.iter().any(|p| glob(p, permission))
    }
}

/// Writes to RBAC objects, which `roles/container.developer` lacks (as on GKE).
const RBAC_WRITES: &[&str] = &[
    "container.roles.create",
    "container.roles.update",
    "container.roles.delete",
    "container.roles.bind",
    "container.roles.escalate",
    "container.roleBindings.create",
    "container.roleBindings.update",
    "container.roleBindings.delete",
    "container.clusterRoles.create",
    "container.clusterRoles.update",
    "container.clusterRoles.delete",
    "container.clusterRoles.bind",
    "container.clusterRoles.escalate",
    "container.clusterRoleBindings.create",
    "container.clusterRoleBindings.update",
    "container.clusterRoleBindings.delete",
    // Developers work in clusters, they do not make or remove them.
    "container.clusters.create",
    "container.clusters.update",
    "container.clusters.delete",
];

/// The predefined roles the emulator knows, narrowest first (so the first that grants a
/// permission is the one to suggest). A role not listed grants nothing. Like Google's, the
/// product roles also grant `resourcemanager.projects.get`.
pub const ROLES: &[Role] = &[
    Role {
        name: "roles/storage.objectViewer",
        grants: &["storage.objects.get", "storage.objects.list", "resourcemanager.projects.get"],
        except: &[],
    },
    Role {
        name: "roles/storage.objectAdmin",
        grants: &["storage.objects.*", "resourcemanager.projects.get"],
        except: &[],
    },
    Role { name: "roles/storage.admin", grants: &["storage.*", "resourcemanager.projects.get"], except: &[] },
    Role {
        name: "roles/cloudsql.viewer",
        grants: &["cloudsql.*.get", "cloudsql.*.list", "resourcemanager.projects.get", "serviceusage.services.get"],
        except: &[],
    },
    Role {
        name: "roles/cloudsql.client",
        grants: &["cloudsql.instances.connect", "cloudsql.instances.get", "resourcemanager.projects.get"],
        except: &[],
    },
    Role {
        name: "roles/cloudsql.instanceUser",
        grants: &["cloudsql.instances.login", "cloudsql.instances.get", "resourcemanager.projects.get"],
        except: &[],
    },
    // "Full control of existing instances excluding modifying users, SSL certificates or deleting
    // resources."
    Role {
        name: "roles/cloudsql.editor",
        grants: &["cloudsql.*", "resourcemanager.projects.get", "serviceusage.services.get"],
        except: &[
            "cloudsql.*.delete",
            "cloudsql.users.create",
            "cloudsql.users.update",
            "cloudsql.instances.login",
            "cloudsql.*.getIamPolicy",
            "cloudsql.*.setIamPolicy",
        ],
    },
    Role {
        name: "roles/cloudsql.admin",
        grants: &["cloudsql.*", "resourcemanager.projects.get", "serviceusage.services.get"],
        except: &[],
    },
    Role {
        name: "roles/container.viewer",
        grants: &["container.*.get", "container.*.list", "container.pods.getLogs", "resourcemanager.projects.get"],
        except: &["container.secrets.*"],
    },
    Role {
        name: "roles/container.developer",
        grants: &["container.*", "resourcemanager.projects.get"],
        except: RBAC_WRITES,
    },
    Role { name: "roles/container.admin", grants: &["container.*", "resourcemanager.projects.get"], except: &[] },
    Role {
        name: "roles/iam.serviceAccountViewer",
        grants: &[
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.list",
            "iam.serviceAccountKeys.get",
            "iam.serviceAccountKeys.list",
            "resourcemanager.projects.get",
        ],
        except: &[],
    },
    Role {
        name: "roles/serviceusage.serviceUsageViewer",
        grants: &[
            "serviceusage.services.get",
            "serviceusage.services.list",
            "serviceusage.operations.get",
            "resourcemanager.projects.get",
        ],
        except: &[],
    },
    Role {
        name: "roles/serviceusage.serviceUsageAdmin",
        grants: &["serviceusage.*", "resourcemanager.projects.get"],
        except: &[],
    },
    Role {
        name: "roles/iam.serviceAccountAdmin",
        grants: &["iam.serviceAccounts.*", "resourcemanager.projects.get"],
        except: &[],
    },
    Role {
        name: "roles/iam.serviceAccountKeyAdmin",
        grants: &[
            "iam.serviceAccountKeys.*",
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.list",
            "resourcemanager.projects.get",
        ],
        except: &[],
    },
    Role {
        name: "roles/resourcemanager.projectIamAdmin",
        grants: &["resourcemanager.projects.getIamPolicy", "resourcemanager.projects.setIamPolicy"],
        except: &[],
    },
    Role {
        name: "roles/iam.securityReviewer",
        grants: &["*.getIamPolicy", "iam.*.get", "iam.*.list", "resourcemanager.projects.get"],
        except: &[],
    },
    // Read-only, but not object data (storage.objects.get/list are not in roles/viewer) and not
    // Kubernetes Secrets (as on GKE).
    Role {
        name: "roles/viewer",
        grants: &["*.get", "*.list", "*.getIamPolicy", "container.pods.getLogs"],
        except: &["storage.objects.*", "container.secrets.*"],
    },
    Role { name: "roles/editor", grants: &["*"], except: &["*.setIamPolicy"] },
    Role { name: "roles/owner", grants: &["*"], except: &[] },
];

/// The role named `name`, if the emulator knows it.
pub fn role(name: &str) -> Option<&'static Role> {
    ROLES.iter().find(|r| r.name == name)
}

/// The narrowest known role that grants `permission` (for hints in refusals).
pub fn narrowest_role(permission: &str) -> Option<&'static str> {
    ROLES.iter().find(|r| r.grants(permission)).map(|r| r.name)
}

/// `*` matches any run of characters (dots included); everything else matches itself.
fn glob(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut i, mut j) = (0, 0);
    // The last `*` seen and the position in `s` it is matched up to.
    let mut star: Option<(usize, usize)> = None;
    while j < s.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == s[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

/// The role of a binding in `policies` that grants `permission` to service account `email`.
pub fn granting_role(policies: &[&Policy], email: &str, permission: &str) -> Option<&'static str> {
    let member = format!("serviceAccount:{email}");
    policies.iter().flat_map(|p| p.bindings.iter()).find_map(|b| {
        let is_member = b["members"].as_array().is_some_and(|ms| ms.iter().any(|m| m == member.as_str()));
        let role = role(b["role"].as_str().unwrap_or_default())?;
        (is_member && role.grants(permission)).then_some(role.name)
    })
}

/// The role in the policy of `project` that grants `permission` to service account `email`.
pub fn project_role(st: &State, project: &str, email: &str, permission: &str) -> Option<&'static str> {
    let policy = st.crm_policies.get(&project_id(st, project))?;
    granting_role(&[policy], email, permission)
}

/// Whether the policy of `project` grants `permission` to service account `email`.
pub fn project_grants(st: &State, project: &str, email: &str, permission: &str) -> bool {
    project_role(st, project, email, permission).is_some()
}

/// Whether `caller` (a principal's email; `None` for the admin token) holds `permission` on
/// `project` (and on a resource with its own policy `extra`): always when enforcement is off.
/// For `testIamPermissions`.
pub fn caller_holds(
    app: &App,
    st: &State,
    caller: Option<&str>,
    project: &str,
    extra: Option<&Policy>,
    permission: &str,
) -> bool {
    let Some(email) = caller.filter(|_| app.config.enforce_iam) else { return true };
    let mut policies: Vec<&Policy> = st.crm_policies.get(&project_id(st, project)).into_iter().collect();
    policies.extend(extra);
    granting_role(&policies, email, permission).is_some()
}

/// A project id for `p`, which may be a project number the emulator has seen.
pub fn project_id(st: &State, p: &str) -> String {
    if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
        if let Some(id) = st.project_ids.get(p) {
            return id.clone();
        }
    }
    p.to_string()
}

/// The project of service account `email` (`<name>@<project>.iam.gserviceaccount.com`).
pub fn account_project(email: &str) -> Option<&str> {
    let (name, domain) = email.split_once('@')?;
    let project = domain.strip_suffix(".iam.gserviceaccount.com")?;
    (!name.is_empty() && !project.is_empty()).then_some(project)
}

/// What a request acts on, for the check and the refusal: each API says it of its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whose policy counts; `None`: none can grant (an unknown operation).
    pub project: Option<String>,
    /// The resource, as the refusal names it.
    pub resource: String,
    /// A service account the request acts on (its own policy counts too).
    pub account: Option<String>,
}

/// Whether the target's policies grant `permission` to `email`.
fn target_grants(st: &State, t: &Target, email: &str, permission: &str) -> bool {
    let Some(project) = &t.project else { return false };
    let mut policies: Vec<&Policy> = st.crm_policies.get(project).into_iter().collect();
    if let Some(sa) = t.account.as_ref().and_then(|a| st.iam.accounts.get(a)) {
        policies.push(&sa.policy);
    }
    granting_role(&policies, email, permission).is_some()
}

/// With IAM enforced, a principal's request to a JSON API needs the method's permission on the
/// resource's project: `403 PERMISSION_DENIED` otherwise, made by `refusal` (the API's shape, e.g.
/// [`denied`]) from the caller's email, the permission and the target.
pub fn check_api(
    app: &App,
    req: &ApiRequest,
    method: &str,
    target: impl FnOnce(&State, &ApiRequest) -> Target,
    refusal: impl FnOnce(&str, &str, &Target) -> ApiError,
) -> Result<(), ApiError> {
    let Some(email) = req.caller.as_deref().filter(|_| app.config.enforce_iam) else { return Ok(()) };
    let permission = match need(method) {
        Some(Need::Nothing) => return Ok(()),
        Some(Need::Permission(p)) => p,
        None => method,
    };
    let st = lock(&app.state);
    let t = target(&st, req);
    if target_grants(&st, &t, email, permission) {
        return Ok(());
    }
    eprintln!("iam: refused {email} {permission} on {}", t.resource);
    Err(refusal(email, permission, &t))
}

/// The refusal most Google APIs answer: `403 PERMISSION_DENIED` with an `ErrorInfo` detail.
pub fn denied(_email: &str, permission: &str, t: &Target) -> ApiError {
    ApiError::permission_denied(format!(
        "Permission '{permission}' denied on resource '{}' (or it may not exist).",
        t.resource
    ))
    .with_detail(json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "IAM_PERMISSION_DENIED",
        "domain": "iam.googleapis.com",
        "metadata": {"permission": permission, "resource": t.resource},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "storage.objects.get"));
        assert!(glob("storage.objects.*", "storage.objects.get"));
        assert!(!glob("storage.objects.*", "storage.buckets.get"));
        assert!(glob("*.get", "cloudsql.instances.get"));
        assert!(!glob("*.get", "container.pods.getLogs"));
        assert!(glob("cloudsql.*.get", "cloudsql.instances.get"));
        assert!(glob("*.getIamPolicy", "resourcemanager.projects.getIamPolicy"));
        assert!(!glob("iam.*.list", "iam.serviceAccounts.get"));
        assert!(glob("a*b*c", "aXXbYYbc"));
    }

    fn grants(role: &str, permission: &str) -> bool {
        super::role(role).unwrap_or_else(|| panic!("role {role}")).grants(permission)
    }

    #[test]
    fn viewer_reads_but_not_object_data_or_secrets() {
        for p in [
            "cloudsql.instances.get",
            "cloudsql.instances.list",
            "container.clusters.get",
            "container.pods.get",
            "container.pods.getLogs",
            "resourcemanager.projects.getIamPolicy",
            "iam.serviceAccounts.get",
            "iam.serviceAccountKeys.list",
            "serviceusage.services.list",
            "storage.buckets.get",
        ] {
            assert!(grants("roles/viewer", p), "{p}");
        }
        for p in [
            "storage.objects.get",
            "storage.objects.list",
            "storage.objects.create",
            "container.secrets.get",
            "container.secrets.list",
            "container.services.proxy",
            "cloudsql.instances.update",
            "cloudsql.instances.connect",
            "resourcemanager.projects.setIamPolicy",
        ] {
            assert!(!grants("roles/viewer", p), "{p}");
        }
    }

    #[test]
    fn the_roles_grant_what_google_says() {
        assert!(grants("roles/owner", "resourcemanager.projects.setIamPolicy"));
        assert!(grants("roles/editor", "storage.objects.delete"));
        assert!(grants("roles/editor", "resourcemanager.projects.getIamPolicy"));
        assert!(!grants("roles/editor", "resourcemanager.projects.setIamPolicy"));
        assert!(grants("roles/storage.objectViewer", "storage.objects.list"));
        assert!(!grants("roles/storage.objectViewer", "storage.objects.create"));
        assert!(grants("roles/storage.objectAdmin", "storage.objects.update"));
        assert!(!grants("roles/storage.objectAdmin", "storage.buckets.create"));
        assert!(grants("roles/storage.admin", "storage.buckets.delete"));
        assert!(grants("roles/cloudsql.client", "cloudsql.instances.connect"));
        assert!(!grants("roles/cloudsql.client", "cloudsql.instances.login"));
        assert!(grants("roles/cloudsql.instanceUser", "cloudsql.instances.login"));
        assert!(!grants("roles/cloudsql.instanceUser", "cloudsql.instances.connect"));
        assert!(grants("roles/cloudsql.editor", "cloudsql.instances.update"));
        assert!(!grants("roles/cloudsql.editor", "cloudsql.instances.delete"));
        assert!(!grants("roles/cloudsql.viewer", "cloudsql.instances.connect"));
        assert!(grants("roles/cloudsql.admin", "cloudsql.users.create"));
        assert!(grants("roles/container.developer", "container.secrets.get"));
        assert!(!grants("roles/container.developer", "container.clusterRoleBindings.create"));
        assert!(grants("roles/container.developer", "container.clusterRoleBindings.get"));
        assert!(grants("roles/container.admin", "container.clusterRoleBindings.create"));
        assert!(!grants("roles/container.viewer", "container.secrets.get"));
        assert!(grants("roles/iam.securityReviewer", "iam.serviceAccounts.getIamPolicy"));
        assert!(grants("roles/iam.securityReviewer", "resourcemanager.projects.getIamPolicy"));
        assert!(!grants("roles/iam.securityReviewer", "cloudsql.instances.get"));
        assert!(grants("roles/iam.serviceAccountViewer", "iam.serviceAccountKeys.get"));
        assert!(!grants("roles/iam.serviceAccountViewer", "iam.serviceAccounts.getIamPolicy"));
        assert!(grants("roles/serviceusage.serviceUsageViewer", "serviceusage.services.list"));
        assert!(!grants("roles/serviceusage.serviceUsageViewer", "serviceusage.services.enable"));
        assert_eq!(narrowest_role("cloudsql.instances.connect"), Some("roles/cloudsql.client"));
        assert_eq!(narrowest_role("storage.objects.create"), Some("roles/storage.objectAdmin"));
        assert_eq!(narrowest_role("container.pods.get"), Some("roles/container.viewer"));
    }

    #[test]
    fn service_account_projects() {
        assert_eq!(account_project("a@p-1.iam.gserviceaccount.com"), Some("p-1"));
        assert_eq!(account_project("123-compute@developer.gserviceaccount.com"), None);
        assert_eq!(account_project("alice@example.com"), None);
    }
}
