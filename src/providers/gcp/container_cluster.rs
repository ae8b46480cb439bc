//! `gcp_container_cluster`: a GKE cluster (its default node pool included).
//!
//! Exports what a Kubernetes provider needs (`endpoint`, `ca_certificate` as
//! PEM, `name`, `location`, `project`) and the `workload_pool`. Enabling
//! Workload Identity on an existing cluster is refused unless
//! `workload_identity_in_place = true` (the seed advises against it).
//!
//! Idempotent: the create operation is recorded before it is waited on; a
//! create that meets ALREADY_EXISTS waits for the cluster to run and converges
//! the updatable settings. GKE takes one update field per request and one
//! operation at a time: updates are sent one after another, retrying
//! "incompatible operation" until the deadline.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Value as Json, json};
use tokio::time::Instant;

use super::client::{Api, ApiError};
use super::operation::{self, Op};
use super::{Gcp, Run, deadline, jstr, live, project_attr, str_attr};
use crate::foundation::names::NameRule;
use crate::foundation::schema::{AttrType, Attribute, ResourceSchema, SchemaKind};
use crate::providers::{
    ApplyAction, ApplyRequest, ApplyResponse, Checkpoint, LiveObject, PlanRequest, PlanResponse, ProviderError,
    ReadRequest,
};
use crate::value::Value;

/// The attributes a cluster exports (shared with the data source).
pub fn computed_attrs() -> Vec<Attribute> {
    vec![
        Attribute::computed("endpoint", AttrType::String, "The control plane's address (host, no scheme)."),
        Attribute::computed("ca_certificate", AttrType::String, "The cluster CA certificate (PEM)."),
        Attribute::computed("workload_pool", AttrType::String, "<project>.svc.id.goog when Workload Identity is on."),
        Attribute::computed("self_link", AttrType::String, "API URL of the cluster."),
        Attribute::computed("status", AttrType::String, "RUNNING, PROVISIONING, …"),
    ]
}

/// Schema.
pub fn schema() -> ResourceSchema {
    let mut attributes = vec![
        Attribute::required("name", AttrType::String, "Cluster name.").force_new().rule(NameRule::GkeCluster),
        Attribute::required("location", AttrType::String, "Region or zone, e.g. us-central1.").force_new(),
        Attribute::optional(
            "workload_identity",
            AttrType::Bool,
            "Enable Workload Identity (workload pool <project>.svc.id.goog).",
        ),
        Attribute::optional(
            "workload_identity_in_place",
            AttrType::Bool,
            "Allow enabling Workload Identity on an existing cluster (refused by default). Default false.",
        )
        .default(false),
        Attribute::optional("initial_node_count", AttrType::Number, "Nodes per zone of the default pool.").force_new(),
        Attribute::optional("machine_type", AttrType::String, "Machine type of the default pool, e.g. e2-standard-4.")
            .force_new(),
        Attribute::optional("release_channel", AttrType::String, "RAPID, REGULAR, STABLE or UNSPECIFIED.")
            .also_computed(),
        Attribute::optional(
            "workload_metadata_mode",
            AttrType::String,
            "Node metadata mode of the default pool: GKE_METADATA (Workload Identity) or GCE_METADATA.",
        ),
        project_attr(),
    ];
    attributes.extend(computed_attrs());
    ResourceSchema {
        type_name: "gcp_container_cluster",
        kind: SchemaKind::Resource,
        description: "A GKE cluster. Build a Kubernetes provider from it: host = \
                      \"https://${gcp_container_cluster.main.endpoint}\", ca = ca_certificate.",
        attributes,
    }
}

fn ids(g: &Gcp, config: &Value, identity: Option<&Value>) -> Option<(String, String, String)> {
    if let Some(i) = identity.and_then(Value::as_str) {
        let mut it = i.splitn(3, '/');
        if let (Some(p), Some(l), Some(n)) = (it.next(), it.next(), it.next()) {
            return Some((p.into(), l.into(), n.into()));
        }
    }
    Some((g.project_of(config), str_attr(config, "location")?, str_attr(config, "name")?))
}

/// The API path of a cluster.
pub fn path(project: &str, location: &str, name: &str) -> String {
    format!("v1/projects/{project}/locations/{location}/clusters/{name}")
}

/// The attributes of a cluster as the API returns it.
pub fn attrs_of(c: &Json, project: &str) -> BTreeMap<String, Value> {
    let pool0 = c["nodePools"].get(0).cloned().unwrap_or(Json::Null);
    let pool = c.pointer("/workloadIdentityConfig/workloadPool").and_then(Json::as_str).filter(|p| !p.is_empty());
    let ca = c
        .pointer("/masterAuth/clusterCaCertificate")
        .and_then(Json::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .map(Value::str)
        .unwrap_or(Value::Null);
    let machine = pool0.pointer("/config/machineType").or_else(|| c.pointer("/nodeConfig/machineType"));
    BTreeMap::from([
        ("name".to_string(), jstr(c, "/name")),
        ("location".to_string(), jstr(c, "/location")),
        ("project".to_string(), Value::str(project)),
        ("workload_identity".to_string(), Value::Bool(pool.is_some())),
        ("workload_pool".to_string(), pool.map(Value::str).unwrap_or(Value::Null)),
        ("initial_node_count".to_string(), pool0["initialNodeCount"].as_i64().map(Value::Int).unwrap_or(Value::Null)),
        ("machine_type".to_string(), machine.and_then(Json::as_str).map(Value::str).unwrap_or(Value::Null)),
        (
            "release_channel".to_string(),
            Value::str(c.pointer("/releaseChannel/channel").and_then(Json::as_str).unwrap_or("UNSPECIFIED")),
        ),
        ("workload_metadata_mode".to_string(), jstr(&pool0, "/config/workloadMetadataConfig/mode")),
        ("endpoint".to_string(), jstr(c, "/endpoint")),
        ("ca_certificate".to_string(), ca),
        ("self_link".to_string(), jstr(c, "/selfLink")),
        ("status".to_string(), jstr(c, "/status")),
    ])
}

fn record_seen(g: &Gcp, config: &Value) {
    let cfg = config.unmarked();
    if let Some(location) = str_attr(&cfg, "location") {
        let wi = cfg.get("workload_identity").and_then(Value::as_bool) == Some(true);
        g.seen.clusters.lock().expect("seen").push((g.project_of(&cfg), location, wi));
        g.seen.changed.notify_waiters();
    }
}

/// Reads the cluster (and remembers its location and workload pool for the
/// checks of Workload Identity bindings and SQL instances).
pub async fn read(g: &Gcp, req: &ReadRequest) -> Result<Option<LiveObject>, ProviderError> {
    record_seen(g, &req.config);
    let Some((project, location, name)) = ids(g, &req.config, req.identity.as_ref()) else { return Ok(None) };
    let Some(c) = g.client.get_opt(Api::Container, &path(&project, &location, &name)).await? else { return Ok(None) };
    let mut attrs = attrs_of(&c, &project);
    attrs.insert(
        "workload_identity_in_place".into(),
        req.config.get("workload_identity_in_place").cloned().unwrap_or(Value::Bool(false)),
    );
    let version = c["etag"].as_str().map(str::to_string);
    let mut l = live(Value::str(format!("{project}/{location}/{name}")), attrs, version);
    // Still being created: no endpoint or CA yet, so nothing may be built from it.
    l.in_progress = c["status"] == "PROVISIONING";
    Ok(Some(l))
}

/// Refuses enabling Workload Identity in place; warns about regions.
pub async fn plan(g: &Gcp, req: &PlanRequest) -> Result<PlanResponse, ProviderError> {
    let mut resp = PlanResponse::default();
    let cfg = req.config.unmarked();
    if let Some(l) = &req.live {
        let want = cfg.get("workload_identity").and_then(Value::as_bool) == Some(true);
        let have = l.attrs.get("workload_identity").and_then(Value::as_bool) == Some(true);
        let in_place = cfg.get("workload_identity_in_place").and_then(Value::as_bool) == Some(true);
        if want && !have && !in_place {
            resp.errors.push(
                "enabling Workload Identity on an existing cluster is refused: it needs every node pool migrated to \
                 GKE_METADATA and is not recommended. Recreate the cluster (skyform apply -replace=<this address>), \
                 or set workload_identity_in_place = true to do it in place."
                    .into(),
            );
        } else if want && !have {
            resp.notes.push("enables Workload Identity in place (node pools are updated)".into());
        }
    }
    let location = str_attr(&cfg, "location").unwrap_or_default();
    let project = g.project_of(&cfg);
    for ((p, name), (region, _)) in g.seen.instances.lock().expect("seen").iter() {
        if *p == project && !location.starts_with(region.as_str()) {
            resp.warnings.push(format!(
                "the cluster is in {location} but Cloud SQL instance {name:?} is in {region}: traffic crosses regions \
                 (the seed advises the same region)"
            ));
        }
    }
    Ok(resp)
}

fn busy(e: &ApiError) -> bool {
    (e.status == 400 && (e.message.contains("incompatible operation") || e.message.contains("not RUNNING")))
        || e.rpc == "FAILED_PRECONDITION" && e.message.contains("operation")
}

async fn mutate_and_wait(
    run: &Run<'_>,
    (project, location): (&str, &str),
    method: reqwest::Method,
    path: &str,
    body: Option<&Json>,
) -> Result<Json, ProviderError> {
    let (g, cp, id, dl) = (run.g, run.cp, run.id, run.deadline);
    let mut n = 0;
    let op = loop {
        match g.client.call(method.clone(), Api::Container, path, body).await {
            Err(e) if busy(&e) && Instant::now() < dl => {
                tokio::time::sleep(g.client.retry.backoff(n.min(5))).await;
                n += 1;
            }
            r => break r?,
        }
    };
    operation::track(&g.client, cp, id, &Op::container(project, location, &op), &op, dl).await
}

/// Creates, updates or deletes the cluster.
pub async fn apply(g: &Gcp, req: &ApplyRequest, cp: &dyn Checkpoint) -> Result<ApplyResponse, ProviderError> {
    let cfg = req.config.unmarked();
    let (project, location, name) = ids(g, &cfg, req.identity.as_ref())
        .ok_or_else(|| ProviderError::Permanent("name and location are required".into()))?;
    let id = Value::str(format!("{project}/{location}/{name}"));
    let p = path(&project, &location, &name);
    let dl = deadline(req);
    let pl = (project.as_str(), location.as_str());
    let run = Run { g, cp, id: &id, deadline: dl };
    let resumed = operation::resume(&g.client, &req.private, dl).await?;
    match req.action {
        ApplyAction::Delete => {
            match mutate_and_wait(&run, pl, reqwest::Method::DELETE, &p, None).await {
                Ok(_) => {}
                Err(ProviderError::Permanent(m)) if m.contains("Not found") || m.contains("not found") => {}
                Err(e) => return Err(e),
            }
            return Ok(ApplyResponse::default());
        }
        ApplyAction::Create => {
            let mut cluster = json!({"name": name});
            if let Some(n) = cfg.get("initial_node_count").and_then(Value::as_i64) {
                cluster["initialNodeCount"] = json!(n);
            }
            let mut node = json!({});
            if let Some(m) = str_attr(&cfg, "machine_type") {
                node["machineType"] = json!(m);
            }
            if let Some(m) = str_attr(&cfg, "workload_metadata_mode") {
                node["workloadMetadataConfig"] = json!({"mode": m});
            }
            if node.as_object().is_some_and(|o| !o.is_empty()) {
                cluster["nodeConfig"] = node;
            }
            if cfg.get("workload_identity").and_then(Value::as_bool) == Some(true) {
                cluster["workloadIdentityConfig"] = json!({"workloadPool": format!("{project}.svc.id.goog")});
            }
            if let Some(ch) = str_attr(&cfg, "release_channel") {
                cluster["releaseChannel"] = json!({"channel": ch});
            }
            let body = json!({"parent": format!("projects/{project}/locations/{location}"), "cluster": cluster});
            let create = format!("v1/projects/{project}/locations/{location}/clusters");
            let created = if resumed && g.client.get_opt(Api::Container, &p).await?.is_some() {
                // The interrupted create finished: converge, do not create again.
                Err(ApiError { status: 409, rpc: "ALREADY_EXISTS".into(), ..Default::default() })
            } else {
                g.client.post(Api::Container, &create, &body).await
            };
            match created {
                Ok(op) => {
                    operation::track(&g.client, cp, &id, &Op::container(&project, &location, &op), &op, dl).await?;
                }
                Err(e) if e.is_already_exists() => {
                    let c = wait_running(g, &p, dl).await?;
                    let live = attrs_of(&c, &project);
                    for k in ["initial_node_count", "machine_type"] {
                        if let Some(want) = cfg.get(k)
                            && live.get(k) != Some(want)
                        {
                            return Err(ProviderError::Permanent(format!(
                                "cluster {name:?} already exists with {k} = {} (the spec wants {want}), which cannot \
                                 be changed in place",
                                live[k]
                            )));
                        }
                    }
                    let changed: Vec<String> = ["release_channel", "workload_identity", "workload_metadata_mode"]
                        .iter()
                        .filter(|k| cfg.get(k).is_some_and(|v| live.get(**k) != Some(v)))
                        .map(|k| k.to_string())
                        .collect();
                    update(&run, pl, &p, &cfg, &changed).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        ApplyAction::Update => {
            update(&run, pl, &p, &cfg, &req.changed).await?;
        }
    }
    let c = g.client.get(Api::Container, &p).await?;
    let mut attrs = attrs_of(&c, &project);
    attrs.insert(
        "workload_identity_in_place".into(),
        cfg.get("workload_identity_in_place").cloned().unwrap_or(Value::Bool(false)),
    );
    Ok(g.response(&req.type_name, req, id, attrs))
}

async fn wait_running(g: &Gcp, p: &str, dl: Instant) -> Result<Json, ProviderError> {
    let mut n = 0;
    loop {
        let c = g.client.get(Api::Container, p).await?;
        if c["status"] != "PROVISIONING" || Instant::now() >= dl {
            return Ok(c);
        }
        tokio::time::sleep(g.client.retry.backoff(n.min(5))).await;
        n += 1;
    }
}

async fn update(
    run: &Run<'_>,
    pl: (&str, &str),
    p: &str,
    cfg: &Value,
    changed: &[String],
) -> Result<(), ProviderError> {
    let g = run.g;
    let has = |k: &str| changed.iter().any(|c| c == k);
    let project = pl.0;
    if has("workload_identity") {
        let on = cfg.get("workload_identity").and_then(Value::as_bool) == Some(true);
        let pool = if on { format!("{project}.svc.id.goog") } else { String::new() };
        let body = json!({"name": id_name(p), "update": {"desiredWorkloadIdentityConfig": {"workloadPool": pool}}});
        mutate_and_wait(run, pl, reqwest::Method::PUT, p, Some(&body)).await?;
    }
    if has("release_channel")
        && let Some(ch) = str_attr(cfg, "release_channel")
    {
        let body = json!({"name": id_name(p), "update": {"desiredReleaseChannel": {"channel": ch}}});
        mutate_and_wait(run, pl, reqwest::Method::PUT, p, Some(&body)).await?;
    }
    if has("workload_metadata_mode")
        && let Some(mode) = str_attr(cfg, "workload_metadata_mode")
    {
        let c = g.client.get(Api::Container, p).await?;
        let pool = c["nodePools"][0]["name"].as_str().unwrap_or("default-pool").to_string();
        let np = format!("{p}/nodePools/{pool}");
        let body = json!({"name": id_name(&np), "workloadMetadataConfig": {"mode": mode}});
        mutate_and_wait(run, pl, reqwest::Method::PUT, &np, Some(&body)).await?;
    }
    Ok(())
}

fn id_name(p: &str) -> &str {
    p.strip_prefix("v1/").unwrap_or(p)
}
