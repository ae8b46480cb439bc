//! GKE's authentication and authorization of Google identities (API floor, GKE's folder), as
//! Kubernetes webhooks for a real kube-apiserver (the testbed's): a GKE cluster accepts Google
//! OAuth access tokens, names the user by the account's email (so RBAC can bind it), and
//! authorizes it by IAM (`container.*` permissions) as well as RBAC.
//!
//! - `POST /gke/v1/tokenreview` (`--authentication-token-webhook-config-file`): an
//!   `authentication.k8s.io/v1` TokenReview. A token the emulator minted (token endpoint, metadata
//!   server) is its service account: `username` = the email, `uid` = the account's unique id,
//!   groups `system:authenticated`. Anything else is `authenticated: false`.
//! - `POST /gke/v1/subjectaccessreview[?project=P]` (`--authorization-webhook-config-file`, after
//!   RBAC): an `authorization.k8s.io/v1` SubjectAccessReview. A user `<name>@<project>.iam.gserviceaccount.com`
//!   is allowed when the IAM policy of `P` (default: the account's project) grants the request's
//!   GKE permission ([`kube_permission`]); otherwise `allowed: false` with a reason naming the
//!   missing permission, never `denied` (RBAC may still allow).
//!
//! Neither needs an `Authorization` header (the apiserver sends none) nor `--enforce-iam`: the
//! apiserver only calls them when configured to. Neither echoes a token.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::access::{account_project, narrowest_role, project_role};
use crate::app::{App, lock};
use crate::http::{json_response, parse_query};

/// The TokenReview webhook's path.
pub const TOKEN_REVIEW_PATH: &str = "/gke/v1/tokenreview";
/// The SubjectAccessReview webhook's path.
pub const SUBJECT_ACCESS_REVIEW_PATH: &str = "/gke/v1/subjectaccessreview";

/// Answers a POST to one of the webhook paths; `None` for any other path.
pub fn handle(app: &App, path: &str, query: Option<&str>, body: &[u8]) -> Option<Response> {
    match path {
        TOKEN_REVIEW_PATH => Some(token_review(app, body)),
        SUBJECT_ACCESS_REVIEW_PATH => Some(subject_access_review(app, query, body)),
        _ => None,
    }
}

fn bad(kind: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({"error": format!("the body is not a {kind}")}))
}

/// The request's `apiVersion` when it is of `group`, else `group/v1` (answers echo the version).
fn api_version(review: &Value, group: &str) -> String {
    review["apiVersion"]
        .as_str()
        .filter(|v| v.starts_with(&format!("{group}/")))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{group}/v1"))
}

fn token_review(app: &App, body: &[u8]) -> Response {
    let Ok(review) = serde_json::from_slice::<Value>(body) else { return bad("TokenReview") };
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    let status = match app.tokens.principal(token) {
        Some(p) => {
            let uid = lock(&app.state)
                .iam
                .accounts
                .get(&p.email)
                .and_then(|a| a.resource["uniqueId"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| p.email.clone());
            let mut s = json!({
                "authenticated": true,
                "user": {"username": p.email, "uid": uid, "groups": ["system:authenticated"]},
            });
            // The token is good for whatever audience the apiserver asks about.
            if let Some(a) = review["spec"]["audiences"].as_array().filter(|a| !a.is_empty()) {
                s["audiences"] = Value::Array(a.clone());
            }
            s
        }
        None => json!({
            "authenticated": false,
            "error": "not an access token of a Google service account (unknown or expired)",
        }),
    };
    json_response(
        StatusCode::OK,
        &json!({"apiVersion": api_version(&review, "authentication.k8s.io"), "kind": "TokenReview", "status": status}),
    )
}

fn subject_access_review(app: &App, query: Option<&str>, body: &[u8]) -> Response {
    let Ok(review) = serde_json::from_slice::<Value>(body) else { return bad("SubjectAccessReview") };
    let spec = &review["spec"];
    let user = spec["user"].as_str().unwrap_or_default();
    let (allowed, reason) = decide(app, query, spec, user);
    json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": api_version(&review, "authorization.k8s.io"),
            "kind": "SubjectAccessReview",
            "status": {"allowed": allowed, "reason": reason},
        }),
    )
}

fn decide(app: &App, query: Option<&str>, spec: &Value, user: &str) -> (bool, String) {
    let Some(account_project) = account_project(user) else {
        return (false, format!("{user:?} is not a Google service account; GKE's IAM authorization does not apply"));
    };
    let permission = match spec.get("resourceAttributes").filter(|a| a.is_object()) {
        Some(a) => {
            let s = |k: &str| a[k].as_str().unwrap_or_default();
            kube_permission(s("group"), s("resource"), s("subresource"), s("verb"))
        }
        // Discovery and other non-resource paths: any read access to the project's clusters.
        None => "container.clusters.get".to_string(),
    };
    let project = query
        .map(parse_query)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "project")
        .map(|(_, v)| v)
        .unwrap_or_else(|| account_project.to_string());
    match project_role(&lock(&app.state), &project, user, &permission) {
        Some(role) => (true, format!("IAM: {role} on project {project} grants {permission}")),
        None => {
            let hint = narrowest_role(&permission).map(|r| format!(" (e.g. by {r})")).unwrap_or_default();
            (false, format!("IAM: permission {permission} is not granted to {user} on project {project}{hint}"))
        }
    }
}

/// API groups built into Kubernetes. Objects of other groups (custom resources) are GKE's
/// `container.thirdPartyObjects.*`.
const BUILT_IN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "extensions",
    "flowcontrol.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
];

/// Kubernetes resource plurals whose GKE permission names are camel case (`configmaps` →
/// `container.configMaps.*`); every other plural is used as it is (`pods`, `secrets`).
const CAMEL: &[(&str, &str)] = &[
    ("apiservices", "apiServices"),
    ("certificatesigningrequests", "certificateSigningRequests"),
    ("clusterrolebindings", "clusterRoleBindings"),
    ("clusterroles", "clusterRoles"),
    ("configmaps", "configMaps"),
    ("controllerrevisions", "controllerRevisions"),
    ("cronjobs", "cronJobs"),
    ("csidrivers", "csiDrivers"),
    ("csinodes", "csiNodes"),
    ("customresourcedefinitions", "customResourceDefinitions"),
    ("daemonsets", "daemonSets"),
    ("endpointslices", "endpointSlices"),
    ("horizontalpodautoscalers", "horizontalPodAutoscalers"),
    ("ingressclasses", "ingressClasses"),
    ("limitranges", "limitRanges"),
    ("localsubjectaccessreviews", "localSubjectAccessReviews"),
    ("mutatingwebhookconfigurations", "mutatingWebhookConfigurations"),
    ("networkpolicies", "networkPolicies"),
    ("persistentvolumeclaims", "persistentVolumeClaims"),
    ("persistentvolumes", "persistentVolumes"),
    ("poddisruptionbudgets", "podDisruptionBudgets"),
    ("podtemplates", "podTemplates"),
    ("priorityclasses", "priorityClasses"),
    ("replicasets", "replicaSets"),
    ("replicationcontrollers", "replicationControllers"),
    ("resourcequotas", "resourceQuotas"),
    ("rolebindings", "roleBindings"),
    ("runtimeclasses", "runtimeClasses"),
    ("selfsubjectaccessreviews", "selfSubjectAccessReviews"),
    ("selfsubjectrulesreviews", "selfSubjectRulesReviews"),
    ("serviceaccounts", "serviceAccounts"),
    ("statefulsets", "statefulSets"),
    ("storageclasses", "storageClasses"),
    ("subjectaccessreviews", "subjectAccessReviews"),
    ("tokenreviews", "tokenReviews"),
    ("validatingwebhookconfigurations", "validatingWebhookConfigurations"),
    ("volumeattachments", "volumeAttachments"),
];

/// The GKE permission of a Kubernetes request: `container.<resource>.<verb>`, with the resource
/// named as GKE names it and the verb folded (`watch` → `list`, `patch` → `update`,
/// `deletecollection` → `delete`); `pods/log` → `container.pods.getLogs`, `pods/exec`,
/// `pods/portforward`, `pods/attach` → `container.pods.exec`/`portForward`/`attach`,
/// `<resource>/proxy` → `container.<resource>.proxy`, `serviceaccounts/token` →
/// `container.serviceAccounts.createToken`; other subresources are their parent's.
pub fn kube_permission(group: &str, resource: &str, subresource: &str, verb: &str) -> String {
    let name = if !BUILT_IN_GROUPS.contains(&group) {
        "thirdPartyObjects"
    } else {
        CAMEL.iter().find(|(k, _)| *k == resource).map_or(resource, |(_, v)| *v)
    };
    let verb = match verb {
        "watch" => "list",
        "patch" => "update",
        "deletecollection" => "delete",
        v => v,
    };
    match (group, resource, subresource) {
        ("", "pods", "log") => "container.pods.getLogs".to_string(),
        ("", "pods", "exec") => "container.pods.exec".to_string(),
        ("", "pods", "portforward") => "container.pods.portForward".to_string(),
        ("", "pods", "attach") => "container.pods.attach".to_string(),
        ("", "serviceaccounts", "token") => "container.serviceAccounts.createToken".to_string(),
        (_, _, "proxy") => format!("container.{name}.proxy"),
        _ => format!("container.{name}.{verb}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_requests_map_to_gke_permissions() {
        let p = kube_permission;
        assert_eq!(p("", "pods", "", "get"), "container.pods.get");
        assert_eq!(p("", "pods", "", "watch"), "container.pods.list");
        assert_eq!(p("", "configmaps", "", "patch"), "container.configMaps.update");
        assert_eq!(p("apps", "deployments", "", "deletecollection"), "container.deployments.delete");
        assert_eq!(p("apps", "deployments", "scale", "update"), "container.deployments.update");
        assert_eq!(p("", "services", "proxy", "get"), "container.services.proxy");
        assert_eq!(p("", "pods", "log", "get"), "container.pods.getLogs");
        assert_eq!(p("", "pods", "exec", "create"), "container.pods.exec");
        assert_eq!(p("", "pods", "portforward", "create"), "container.pods.portForward");
        assert_eq!(
            p("rbac.authorization.k8s.io", "clusterrolebindings", "", "create"),
            "container.clusterRoleBindings.create"
        );
        assert_eq!(p("cert-manager.io", "certificates", "", "list"), "container.thirdPartyObjects.list");
        assert_eq!(p("", "namespaces", "", "create"), "container.namespaces.create");
    }
}
