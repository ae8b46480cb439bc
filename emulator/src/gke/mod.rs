//! GKE v1: clusters create/get/list/update/delete, node pools, operations (contract §4), on the
//! API floor. Both `projects/{p}/locations/{l}` and the legacy `projects/{p}/zones/{z}` forms are
//! served. GKE's Kubernetes webhooks for Google identities are [`identity`].
//!
//! Clusters report the configured endpoint and CA (the testbed points them at its real
//! kube-apiserver) once they are RUNNING.

pub mod identity;

use std::sync::Arc;

use axum::http::Method;
use serde_json::{Map, Value, json};

use crate::access::{Target, project_id};
use crate::api::{JsonApi, Reply};
use crate::app::{App, lock};
use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::state::{OpApi, OpError, OpStatus, Operation, State};
use crate::util::{b64, merge, now_ms, project_number, random_hex, rfc3339, str_field};

const VERSION: &str = "1.31.6-gke.1020000";

/// Kubernetes Engine, as the router registers it.
#[derive(Debug)]
pub struct Gke;

impl JsonApi for Gke {
    fn owns(&self, req: &ApiRequest) -> bool {
        matches!(req.segs().as_slice(), ["v1", "projects", _, "locations" | "zones", ..])
    }

    fn method(&self, req: &ApiRequest) -> Option<&'static str> {
        method(req)
    }

    fn authorize(&self, app: &App, req: &ApiRequest, method: &str) -> Result<(), ApiError> {
        crate::access::check_api(app, req, method, target, crate::access::denied)
    }

    fn handle<'a>(
        &'a self,
        app: &'a Arc<App>,
        req: &'a ApiRequest,
        method: &'a str,
    ) -> Reply<'a, Result<Value, ApiError>> {
        Box::pin(std::future::ready(handle(app, req, method)))
    }
}

/// What a GKE request acts on, for IAM enforcement: the cluster, the operation, or the location.
fn target(st: &State, req: &ApiRequest) -> Target {
    let s = req.segs();
    let p = s.get(2).map(|p| project_id(st, p)).unwrap_or_default();
    let location = s.get(4).copied().unwrap_or_default();
    let resource = match (s.get(5), s.get(6)) {
        (Some(&"clusters"), Some(c)) => format!("projects/{p}/locations/{location}/clusters/{c}"),
        (Some(&"operations"), Some(o)) => format!("projects/{p}/locations/{location}/operations/{o}"),
        _ => format!("projects/{p}/locations/{location}"),
    };
    Target { project: Some(p), resource, account: None }
}

/// The method name of a GKE request.
pub fn method(req: &ApiRequest) -> Option<&'static str> {
    let s = req.segs();
    let m = &req.method;
    let ["v1", "projects", _, "locations" | "zones", _, rest @ ..] = s.as_slice() else {
        return None;
    };
    Some(match (rest, req.verb.as_deref()) {
        (["clusters"], None) if m == Method::POST => "container.clusters.create",
        (["clusters"], None) if m == Method::GET => "container.clusters.list",
        (["clusters", _], None) => match *m {
            Method::GET => "container.clusters.get",
            Method::PUT => "container.clusters.update",
            Method::DELETE => "container.clusters.delete",
            _ => return None,
        },
        (["clusters", _, "nodePools"], None) if m == Method::GET => "container.nodePools.list",
        (["clusters", _, "nodePools"], None) if m == Method::POST => "container.nodePools.create",
        (["clusters", _, "nodePools", _], None) => match *m {
            Method::GET => "container.nodePools.get",
            Method::PUT => "container.nodePools.update",
            Method::DELETE => "container.nodePools.delete",
            _ => return None,
        },
        (["operations"], None) if m == Method::GET => "container.operations.list",
        (["operations", _], None) if m == Method::GET => "container.operations.get",
        _ => return None,
    })
}

fn cluster_key(project: &str, location: &str, name: &str) -> String {
    format!("{project}/{location}/{name}")
}

fn render_op(app: &App, op: &Operation) -> Value {
    let num = project_number(&op.project);
    let base = format!("{}v1/projects/{num}/locations/{}", app.base_url, op.location);
    let mut v = json!({
        "name": op.name,
        "zone": op.location,
        "location": op.location,
        "operationType": op.op_type,
        "status": op.status.as_str(),
        "selfLink": format!("{base}/operations/{}", op.name),
        "targetLink": format!("{base}/clusters/{}", op.target.replace('/', "/nodePools/")),
        "startTime": rfc3339(op.insert_ms),
    });
    if let Some(t) = op.end_ms {
        v["endTime"] = rfc3339(t).into();
    }
    if let Some(e) = &op.error {
        // gcloud fails an operation whose statusMessage is non-empty, so both are set.
        v["statusMessage"] = e.message.clone().into();
        v["error"] = json!({"code": crate::error::rpc_code(&e.code), "message": e.message});
    }
    v
}

fn render_cluster(app: &App, c: &Value) -> Value {
    let mut v = c.clone();
    let (p, l, n) = (str_field(c, "project"), str_field(c, "location"), str_field(c, "name"));
    let link = format!("{}v1/projects/{p}/locations/{l}/clusters/{n}", app.base_url);
    if let Some(pools) = v.get_mut("nodePools").and_then(Value::as_array_mut) {
        for np in pools {
            np["selfLink"] = format!("{link}/nodePools/{}", str_field(np, "name")).into();
        }
    }
    v["selfLink"] = link.into();
    if let Some(o) = v.as_object_mut() {
        o.remove("project");
    }
    v
}

fn not_found(what: &str) -> ApiError {
    ApiError::not_found(format!("Not found: {what}."))
}

/// The endpoint as the API reports it: a bare `host[:port]` (clients prepend `https://`).
fn endpoint(config: &str) -> String {
    config.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/').to_string()
}

fn zones_of(location: &str) -> Vec<String> {
    // A region (`us-central1`) has two dashes fewer than a zone (`us-central1-a`).
    if location.matches('-').count() >= 2 {
        vec![location.to_string()]
    } else {
        ["a", "b", "c"].iter().map(|z| format!("{location}-{z}")).collect()
    }
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 40
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn check_pool(project: &str, pool: Option<&str>) -> Result<(), ApiError> {
    match pool {
        None | Some("") => Ok(()),
        Some(p) if p == format!("{project}.svc.id.goog") => Ok(()),
        // The real API enforces the pool name; its exact message is not verified.
        Some(p) => Err(ApiError::field_violation(
            "cluster.workload_identity_config.workload_pool",
            format!("Workload Identity pool {p:?} is invalid: it must be \"{project}.svc.id.goog\"."),
        )),
    }
}

fn new_pool(name: &str, config: Value, count: i64, locations: &[String]) -> Value {
    json!({
        "name": name,
        "config": config,
        "initialNodeCount": count,
        "locations": locations,
        "status": "PROVISIONING",
        "version": VERSION,
        "management": {"autoUpgrade": true, "autoRepair": true},
        "etag": random_hex(8),
    })
}

/// Handles a request `method` recognised.
pub fn handle(app: &Arc<App>, req: &ApiRequest, method: &str) -> Result<Value, ApiError> {
    let mut st = lock(&app.state);
    let st = &mut *st;
    let project = st.project_id(&req.segments[2]);
    let location = req.segments[4].clone();
    let seg = |i: usize| req.segments.get(i).cloned().unwrap_or_default();
    match method {
        "container.operations.get" => {
            let op =
                st.ops.get(&seg(6)).filter(|o| o.api == OpApi::Container && o.project == project).ok_or_else(|| {
                    not_found(&format!("operation \"projects/{project}/locations/{location}/operations/{}\"", seg(6)))
                })?;
            Ok(render_op(app, op))
        }
        "container.operations.list" => {
            let ops: Vec<Value> = st
                .ops
                .values()
                .filter(|o| {
                    o.api == OpApi::Container && o.project == project && (location == "-" || o.location == location)
                })
                .map(|o| render_op(app, o))
                .collect();
            Ok(json!({"operations": ops}))
        }
        "container.clusters.list" => {
            let clusters: Vec<Value> = st
                .gke_clusters
                .values()
                .filter(|c| c["project"] == project.as_str() && (location == "-" || c["location"] == location.as_str()))
                .map(|c| render_cluster(app, c))
                .collect();
            Ok(if clusters.is_empty() { json!({}) } else { json!({"clusters": clusters}) })
        }
        "container.clusters.create" => create(app, st, req, &project, &location),
        _ => {
            let name = seg(6);
            let key = cluster_key(&project, &location, &name);
            let what = format!("projects/{project}/locations/{location}/clusters/{name}");
            let cluster = st.gke_clusters.get(&key).cloned().ok_or_else(|| not_found(&what))?;
            match method {
                "container.clusters.get" => Ok(render_cluster(app, &cluster)),
                "container.nodePools.list" => Ok(json!({"nodePools": render_cluster(app, &cluster)["nodePools"]})),
                "container.nodePools.get" => {
                    let pools = render_cluster(app, &cluster)["nodePools"].clone();
                    pools
                        .as_array()
                        .and_then(|a| a.iter().find(|p| p["name"] == seg(8).as_str()).cloned())
                        .ok_or_else(|| not_found(&format!("{what}/nodePools/{}", seg(8))))
                }
                _ => mutate(app, st, req, method, &project, &location, &name, cluster),
            }
        }
    }
}

fn create(app: &Arc<App>, st: &mut State, req: &ApiRequest, project: &str, location: &str) -> Result<Value, ApiError> {
    let given = req
        .body
        .get("cluster")
        .filter(|c| c.is_object())
        .cloned()
        .ok_or_else(|| ApiError::field_violation("cluster", "cluster is required."))?;
    let name = str_field(&given, "name").to_string();
    if !valid_name(&name) {
        return Err(ApiError::field_violation(
            "cluster.name",
            format!(
                "Invalid cluster name {name:?}: it must be 1-40 characters, lowercase letters, digits and hyphens, start with a letter and not end with a hyphen."
            ),
        ));
    }
    check_pool(project, given.pointer("/workloadIdentityConfig/workloadPool").and_then(Value::as_str))?;
    let key = cluster_key(project, location, &name);
    if st.gke_clusters.contains_key(&key) {
        return Err(ApiError::already_exists(format!(
            "Already exists: projects/{project}/locations/{location}/clusters/{name}."
        )));
    }
    let locations: Vec<String> = given
        .get("locations")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .filter(|v: &Vec<String>| !v.is_empty())
        .unwrap_or_else(|| zones_of(location));
    let node_config = given.get("nodeConfig").cloned().unwrap_or_else(|| json!({}));
    let mut node_config_full = json!({"machineType": "e2-medium", "diskSizeGb": 100, "diskType": "pd-balanced", "imageType": "COS_CONTAINERD",
        "oauthScopes": ["https://www.googleapis.com/auth/devstorage.read_only", "https://www.googleapis.com/auth/logging.write"],
        "serviceAccount": "default"});
    merge(&mut node_config_full, &node_config);
    let pools: Vec<Value> = match given.get("nodePools").and_then(Value::as_array) {
        Some(ps) if !ps.is_empty() => ps
            .iter()
            .map(|p| {
                let mut cfg = node_config_full.clone();
                merge(&mut cfg, p.get("config").unwrap_or(&Value::Null));
                let mut np = new_pool(
                    str_field(p, "name"),
                    cfg,
                    p.get("initialNodeCount").and_then(Value::as_i64).unwrap_or(3),
                    &locations,
                );
                for f in ["autoscaling", "management", "maxPodsConstraint"] {
                    if let Some(v) = p.get(f) {
                        np[f] = v.clone();
                    }
                }
                np
            })
            .collect(),
        _ => vec![new_pool(
            "default-pool",
            node_config_full.clone(),
            given.get("initialNodeCount").and_then(Value::as_i64).unwrap_or(3),
            &locations,
        )],
    };
    let node_count: i64 =
        pools.iter().map(|p| p["initialNodeCount"].as_i64().unwrap_or(0) * locations.len() as i64).sum();
    let mut cluster = given.clone();
    if let Some(o) = cluster.as_object_mut() {
        o.remove("initialNodeCount");
    }
    merge(
        &mut cluster,
        &json!({
            "name": name,
            "project": project,
            "location": location,
            "zone": location,
            "locations": locations,
            "id": random_hex(32),
            "status": "PROVISIONING",
            "createTime": rfc3339(now_ms()),
            "initialClusterVersion": VERSION,
            "currentMasterVersion": VERSION,
            "currentNodeVersion": VERSION,
            "currentNodeCount": node_count,
            "nodeConfig": node_config_full,
            "nodePools": pools,
            "network": given.get("network").cloned().unwrap_or_else(|| "default".into()),
            "subnetwork": given.get("subnetwork").cloned().unwrap_or_else(|| "default".into()),
            "labelFingerprint": random_hex(8),
            "etag": random_hex(8),
            "masterAuth": {},
        }),
    );
    st.gke_clusters.insert(key.clone(), cluster);
    let (endpoint, ca) = (endpoint(&app.config.gke_endpoint), b64(app.config.gke_ca_pem.as_bytes()));
    start_op(app, st, project, location, "CREATE_CLUSTER", &name, move |st| {
        if let Some(c) = st.gke_clusters.get_mut(&key) {
            c["status"] = "RUNNING".into();
            c["endpoint"] = endpoint.into();
            c["masterAuth"] = json!({"clusterCaCertificate": ca});
            if let Some(ps) = c["nodePools"].as_array_mut() {
                for p in ps {
                    p["status"] = "RUNNING".into();
                }
            }
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn mutate(
    app: &Arc<App>,
    st: &mut State,
    req: &ApiRequest,
    method: &str,
    project: &str,
    location: &str,
    name: &str,
    cluster: Value,
) -> Result<Value, ApiError> {
    let key = cluster_key(project, location, name);
    if let Some(op) = st.ops.values().find(|o| {
        o.api == OpApi::Container
            && o.project == project
            && o.status != OpStatus::Done
            && (o.target == name || o.target.starts_with(&format!("{name}/")))
    }) {
        // Not verified: the real API's wording for a concurrent operation.
        return Err(ApiError::failed_precondition(format!("Cluster is running incompatible operation {}.", op.name)));
    }
    if cluster["status"] != "RUNNING" && method != "container.clusters.delete" {
        return Err(ApiError::failed_precondition(format!(
            "Cluster {name} is not RUNNING (status {}).",
            cluster["status"]
        )));
    }
    match method {
        "container.clusters.delete" => {
            if let Some(c) = st.gke_clusters.get_mut(&key) {
                c["status"] = "STOPPING".into();
            }
            start_op(app, st, project, location, "DELETE_CLUSTER", name, move |st| {
                st.gke_clusters.remove(&key);
            })
        }
        "container.clusters.update" => {
            let update = req.body.get("update").and_then(Value::as_object).cloned().unwrap_or_default();
            let fields: Vec<(&String, &Value)> = update.iter().filter(|(_, v)| !v.is_null()).collect();
            if fields.len() != 1 {
                return Err(ApiError::invalid_argument(format!(
                    "Exactly one update can be applied to a cluster with each request; got {}.",
                    fields.len()
                )));
            }
            let (field, value) = (fields[0].0.clone(), fields[0].1.clone());
            if field == "desiredWorkloadIdentityConfig" {
                check_pool(project, value.get("workloadPool").and_then(Value::as_str))?;
            }
            if let Some(c) = st.gke_clusters.get_mut(&key) {
                c["status"] = "RECONCILING".into();
            }
            start_op(app, st, project, location, "UPDATE_CLUSTER", name, move |st| {
                if let Some(c) = st.gke_clusters.get_mut(&key) {
                    apply_update(c, &field, value);
                    c["status"] = "RUNNING".into();
                    c["etag"] = random_hex(8).into();
                }
            })
        }
        "container.nodePools.create" => {
            let np = req.body.get("nodePool").cloned().unwrap_or_default();
            let np_name = str_field(&np, "name").to_string();
            if !valid_name(&np_name) {
                return Err(ApiError::field_violation(
                    "node_pool.name",
                    format!("Invalid node pool name {np_name:?}."),
                ));
            }
            if cluster["nodePools"].as_array().is_some_and(|a| a.iter().any(|p| p["name"] == np_name.as_str())) {
                return Err(ApiError::already_exists(format!(
                    "Already exists: projects/{project}/locations/{location}/clusters/{name}/nodePools/{np_name}."
                )));
            }
            let locations: Vec<String> = serde_json::from_value(cluster["locations"].clone()).unwrap_or_default();
            let mut cfg = cluster["nodeConfig"].clone();
            merge(&mut cfg, np.get("config").unwrap_or(&Value::Null));
            let pool =
                new_pool(&np_name, cfg, np.get("initialNodeCount").and_then(Value::as_i64).unwrap_or(3), &locations);
            if let Some(ps) = st.gke_clusters.get_mut(&key).and_then(|c| c["nodePools"].as_array_mut()) {
                ps.push(pool);
            }
            start_op(app, st, project, location, "CREATE_NODE_POOL", &format!("{name}/{np_name}"), move |st| {
                with_pool(st, &key, &np_name, |p| p["status"] = "RUNNING".into());
            })
        }
        "container.nodePools.update" | "container.nodePools.delete" => {
            let np_name = req.segments[8].clone();
            if !cluster["nodePools"].as_array().is_some_and(|a| a.iter().any(|p| p["name"] == np_name.as_str())) {
                return Err(not_found(&format!(
                    "projects/{project}/locations/{location}/clusters/{name}/nodePools/{np_name}"
                )));
            }
            let target = format!("{name}/{np_name}");
            if method == "container.nodePools.delete" {
                return start_op(app, st, project, location, "DELETE_NODE_POOL", &target, move |st| {
                    if let Some(ps) = st.gke_clusters.get_mut(&key).and_then(|c| c["nodePools"].as_array_mut()) {
                        ps.retain(|p| p["name"] != np_name.as_str());
                    }
                });
            }
            // gcloud sends only `name` and the one changed field (contract §4); nodeVersion and
            // imageType are not required.
            let body = req.body_object()?;
            start_op(app, st, project, location, "UPGRADE_NODES", &target, move |st| {
                with_pool(st, &key, &np_name, |p| apply_pool_update(p, &body));
            })
        }
        _ => Err(ApiError::unimplemented(req.method.as_str(), &req.path)),
    }
}

fn with_pool(st: &mut State, key: &str, pool: &str, f: impl FnOnce(&mut Value)) {
    if let Some(p) = st
        .gke_clusters
        .get_mut(key)
        .and_then(|c| c["nodePools"].as_array_mut())
        .and_then(|ps| ps.iter_mut().find(|p| p["name"] == pool))
    {
        f(p);
    }
}

/// Applies one `ClusterUpdate` field. Known fields map to their cluster field; any other
/// `desiredX` sets field `x` (most ClusterUpdate fields mirror a Cluster field that way).
fn apply_update(c: &mut Value, field: &str, value: Value) {
    match field {
        "desiredWorkloadIdentityConfig" => {
            if str_field(&value, "workloadPool").is_empty() {
                if let Some(o) = c.as_object_mut() {
                    o.remove("workloadIdentityConfig");
                }
            } else {
                c["workloadIdentityConfig"] = value;
            }
        }
        "desiredMasterVersion" => c["currentMasterVersion"] = value,
        "desiredNodeVersion" => {
            c["currentNodeVersion"] = value.clone();
            if let Some(ps) = c["nodePools"].as_array_mut() {
                for p in ps {
                    p["version"] = value.clone();
                }
            }
        }
        other => {
            let bare = other.strip_prefix("desired").unwrap_or(other);
            let mut chars = bare.chars();
            let target: String =
                chars.next().map(|f| f.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default();
            if !target.is_empty() {
                c[target] = value;
            }
        }
    }
}

fn apply_pool_update(p: &mut Value, body: &Map<String, Value>) {
    for (k, v) in body {
        match k.as_str() {
            "name" | "projectId" | "zone" | "clusterId" | "nodePoolId" => {}
            "nodeVersion" => p["version"] = v.clone(),
            "locations" => p["locations"] = v.clone(),
            _ => p["config"][k] = v.clone(),
        }
    }
    p["etag"] = random_hex(8).into();
}

fn start_op(
    app: &Arc<App>,
    st: &mut State,
    project: &str,
    location: &str,
    op_type: &str,
    target: &str,
    finish: impl FnOnce(&mut State) + Send + 'static,
) -> Result<Value, ApiError> {
    let name = format!("operation-{}-{}", now_ms(), random_hex(8));
    let mut op = Operation::new(OpApi::Container, name, project, op_type, target);
    op.location = location.to_string();
    let op = app.run_op(st, op, async { Ok::<(), OpError>(()) }, move |st, res| {
        if res.is_ok() {
            finish(st);
        }
        Ok(())
    });
    app.persist(st);
    Ok(render_op(app, &op))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_drops_scheme() {
        assert_eq!(endpoint("https://127.0.0.1:6443/"), "127.0.0.1:6443");
        assert_eq!(endpoint("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn zones_of_region_and_zone() {
        assert_eq!(zones_of("us-central1").len(), 3);
        assert_eq!(zones_of("us-central1-a"), vec!["us-central1-a"]);
    }

    #[test]
    fn update_maps_desired_fields() {
        let mut c = json!({"workloadIdentityConfig": {"workloadPool": "p.svc.id.goog"}});
        apply_update(&mut c, "desiredWorkloadIdentityConfig", json!({"workloadPool": ""}));
        assert!(c.get("workloadIdentityConfig").is_none());
        apply_update(&mut c, "desiredLoggingService", json!("none"));
        assert_eq!(c["loggingService"], "none");
    }
}
