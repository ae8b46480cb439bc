//! The `gcp` provider: service accounts, IAM members, keys, Cloud SQL, GKE and
//! project services, over the Google REST APIs (see `docs/providers-gcp.md`).
//!
//! Layout: [`client`] (HTTP, errors, retries), [`auth`] (tokens), [`operation`]
//! (long-running operations), [`policy`] (IAM policies read once per plan and
//! changed in coalesced read-modify-writes), then one module per resource type
//! and [`data`] for the data sources. [`Gcp`] is the state of one configured
//! provider instance (one per run and phase): the client, the per-instance Cloud
//! SQL locks, the policy cache and what the plan has seen of related resources
//! (for the cross-resource checks).

pub mod client;
pub mod container_cluster;
pub mod data;
pub mod iam_member;
pub mod operation;
pub mod policy;
pub mod project_service;
pub mod service_account;
pub mod service_account_key;
pub mod sql_database;
pub mod sql_instance;
pub mod sql_user;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use self::client::{Client, RetryPolicy};
use super::{
    ApplyRequest, ApplyResponse, Checkpoint, LiveObject, PlanRequest, PlanResponse, Provider, ProviderError,
    ProviderFactory, ReadRequest,
};
use crate::foundation::net::TokenSource;
use crate::foundation::schema::{AttrType, Attribute, ProviderSchema, ResourceSchema};
use crate::foundation::trust;
use crate::value::Value;

/// Region used when neither the resource nor the provider sets one.
pub const DEFAULT_REGION: &str = "us-central1";

/// Builds `gcp` providers.
pub struct GcpFactory {
    schema: ProviderSchema,
    retry: RetryPolicy,
}

impl Default for GcpFactory {
    fn default() -> Self {
        Self::new()
    }
}

impl GcpFactory {
    /// With the default retry policy.
    pub fn new() -> Self {
        GcpFactory { schema: schema(), retry: RetryPolicy::default() }
    }
    /// With another retry/polling policy (tests make it faster).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

fn schema() -> ProviderSchema {
    ProviderSchema {
        name: "gcp",
        type_prefix: "gcp_",
        config: vec![
            Attribute::required("project", AttrType::String, "Default project of every resource."),
            Attribute::optional(
                "region",
                AttrType::String,
                "Default region (Cloud SQL instances); us-central1 if unset.",
            ),
            Attribute::optional(
                "endpoint",
                AttrType::String,
                "One base URL for all APIs (an emulator), e.g. http://127.0.0.1:8080/. Better set with SKYFORM_GCP_ENDPOINT: written here it is refused when a credential would go there (unless `anonymous = true` or SKYFORM_ALLOW_SPEC_ENDPOINTS=1).",
            ),
            Attribute::optional(
                "anonymous",
                AttrType::Bool,
                "Send no credentials at all (an emulator that checks none). Default false.",
            ),
        ],
        reaches_services: false,
        types: vec![
            project_service::schema(),
            service_account::schema(),
            iam_member::project_schema(),
            iam_member::service_account_schema(),
            service_account_key::schema(),
            sql_instance::schema(),
            sql_database::schema(),
            sql_user::schema(),
            container_cluster::schema(),
            data::cluster_schema(),
            data::sql_instance_schema(),
            data::project_schema(),
            data::iam_policy_schema(),
        ],
    }
}

#[async_trait]
impl ProviderFactory for GcpFactory {
    fn schema(&self) -> &ProviderSchema {
        &self.schema
    }

    async fn configure(
        &self,
        config: &Value,
        net: &crate::foundation::net::Net,
    ) -> Result<Arc<dyn Provider>, ProviderError> {
        let config = config.unmarked();
        let project = config
            .get("project")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ProviderError::Config("`project` is required".into()))?
            .to_string();
        let region = config.get("region").and_then(Value::as_str).unwrap_or(DEFAULT_REGION).to_string();
        let in_spec = config.get("endpoint").and_then(Value::as_str).filter(|e| !e.is_empty()).map(str::to_string);
        let endpoint = in_spec.clone().or_else(|| std::env::var("SKYFORM_GCP_ENDPOINT").ok()).filter(|e| !e.is_empty());
        if let Some(e) = &endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(ProviderError::Config(format!("endpoint {e:?} must start with http:// or https://")));
        }
        let tokens = TokenSource::from_config(&config);
        if let Some(e) = &endpoint
            && !matches!(tokens, TokenSource::Anonymous)
        {
            // A spec is untrusted input: the operator's credentials go to an endpoint it names only
            // when the operator says so (foundation::trust). Checked before anything is sent.
            if in_spec.is_some() && !trust::spec_endpoints_allowed() {
                return Err(ProviderError::Config(format!(
                    "`endpoint` is set in the spec: it would receive your Google credentials. Set it with \
                     SKYFORM_GCP_ENDPOINT instead, or set `anonymous = true` for an emulator that checks no \
                     credentials, or, if you trust this spec, {}=1",
                    trust::ALLOW_SPEC_ENDPOINTS_ENV
                )));
            }
            trust::credential_may_go_to(e)?;
        }
        let client = Client::new(net.clone(), endpoint, tokens, self.retry);
        let schemas = self.schema.types.iter().map(|t| (t.type_name, t.clone())).collect();
        Ok(Arc::new(GcpProvider(Arc::new(Gcp {
            client,
            project,
            region,
            schemas,
            sql_locks: Mutex::new(HashMap::new()),
            policies: policy::Policies::default(),
            seen: Seen::default(),
        }))))
    }
}

/// A Cloud SQL instance's desired region and flags.
pub type SeenInstance = (String, BTreeMap<String, String>);

/// What planning has seen of resources other checks depend on (desired
/// configurations, recorded when the resource is read).
#[derive(Default)]
pub struct Seen {
    /// Cloud SQL instances: (project, name) → (region, flags).
    pub instances: Mutex<HashMap<(String, String), SeenInstance>>,
    /// Project IAM claims: (project, role, member).
    pub project_members: Mutex<HashSet<(String, String, String)>>,
    /// GKE clusters: (project, location, has a workload pool).
    pub clusters: Mutex<Vec<(String, String, bool)>>,
    /// Woken whenever one of the above grows.
    pub changed: tokio::sync::Notify,
}

/// One configured provider instance.
pub struct Gcp {
    /// HTTP.
    pub client: Client,
    /// Default project.
    pub project: String,
    /// Default region.
    pub region: String,
    schemas: HashMap<&'static str, ResourceSchema>,
    sql_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// IAM policies (cache and write coalescing).
    pub policies: policy::Policies,
    /// For cross-resource plan checks.
    pub seen: Seen,
}

impl Gcp {
    /// The resource's project: its `project` attribute or the provider's.
    pub fn project_of(&self, config: &Value) -> String {
        str_attr(config, "project").unwrap_or_else(|| self.project.clone())
    }

    /// The lock serializing mutations of one Cloud SQL instance in this process
    /// (Cloud SQL runs one operation per instance; other processes are handled
    /// by retrying 409 `operationInProgress`).
    pub fn sql_lock(&self, project: &str, instance: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.keyed_lock(project, instance)
    }

    /// A lock per `(scope, name)` in this process (Cloud SQL instances; key
    /// creates of one service account).
    pub fn keyed_lock(&self, scope: &str, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.sql_locks.lock().expect("sql locks").entry(format!("{scope}/{name}")).or_default().clone()
    }

    /// Builds the engine's attributes after an apply: the live attributes, with
    /// every input the spec set echoed as given (the live values are equal to
    /// them modulo normalization once the apply converged).
    pub fn response(
        &self,
        type_name: &str,
        req: &ApplyRequest,
        identity: Value,
        live: BTreeMap<String, Value>,
    ) -> ApplyResponse {
        let mut attrs = live;
        if let Some(s) = self.schemas.get(type_name) {
            for a in s.attributes.iter().filter(|a| a.settable() && !a.write_only) {
                if let Some(v) = req.config.get(a.name).filter(|v| !matches!(v, Value::Null)) {
                    attrs.insert(a.name.to_string(), v.clone());
                }
            }
        }
        ApplyResponse { identity, attrs, private: Value::Null }
    }
}

/// One resource's apply: where to record a pending operation, and until when
/// to wait.
pub struct Run<'a> {
    /// The provider instance.
    pub g: &'a Gcp,
    /// Records pending operations in state.
    pub cp: &'a dyn Checkpoint,
    /// The resource's identity.
    pub id: &'a Value,
    /// When to give up.
    pub deadline: tokio::time::Instant,
}

/// Whether a failed create says the object exists already: Cloud SQL answers
/// an insert of an existing database or user with an operation that fails with
/// the server's own message (`ERROR_RDBMS`: `database "x" already exists`).
/// A create that meets it adopts the object instead of failing.
pub fn exists_already(e: &ProviderError) -> bool {
    matches!(e, ProviderError::Permanent(m) if m.contains("already exists"))
}

/// A string attribute of a configuration, if set and non-empty.
pub fn str_attr(config: &Value, k: &str) -> Option<String> {
    config.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

/// The deadline of an apply request.
pub fn deadline(req: &ApplyRequest) -> tokio::time::Instant {
    tokio::time::Instant::now() + req.timeout.max(Duration::from_secs(1))
}

/// A live object whose version is a hash of its attributes.
pub fn live(identity: Value, attrs: BTreeMap<String, Value>, version: Option<String>) -> LiveObject {
    let version = version.unwrap_or_else(|| {
        use sha2::{Digest, Sha256};
        let text = serde_json::to_string(&Value::Map(attrs.clone()).to_json_clear()).unwrap_or_default();
        hex::encode(&Sha256::digest(text.as_bytes())[..8])
    });
    LiveObject { identity, attrs, version, in_progress: false }
}

/// A JSON string field as a value (`Null` when absent).
pub fn jstr(v: &serde_json::Value, path: &str) -> Value {
    match v.pointer(path).and_then(|x| x.as_str()) {
        Some(s) => Value::str(s),
        None => Value::Null,
    }
}

/// A configured `gcp` provider.
pub struct GcpProvider(pub Arc<Gcp>);

fn unknown_type(t: &str) -> ProviderError {
    ProviderError::Permanent(format!("the gcp provider has no resource type {t}"))
}

#[async_trait]
impl Provider for GcpProvider {
    async fn read(&self, req: &ReadRequest) -> Result<Option<LiveObject>, ProviderError> {
        let g = &self.0;
        match req.type_name.as_str() {
            "gcp_project_service" => project_service::read(g, req).await,
            "gcp_service_account" => service_account::read(g, req).await,
            "gcp_project_iam_member" | "gcp_service_account_iam_member" => iam_member::read(g, req).await,
            "gcp_service_account_key" => service_account_key::read(g, req).await,
            "gcp_sql_instance" => sql_instance::read(g, req).await,
            "gcp_sql_database" => sql_database::read(g, req).await,
            "gcp_sql_user" => sql_user::read(g, req).await,
            "gcp_container_cluster" => container_cluster::read(g, req).await,
            t => Err(unknown_type(t)),
        }
    }

    /// `project` and `region` left to the provider's configuration.
    fn config_defaults(&self, type_name: &str) -> BTreeMap<String, Value> {
        let g = &self.0;
        let schema = g.schemas.get(type_name);
        [("project", &g.project), ("region", &g.region)]
            .into_iter()
            .filter(|(attr, _)| schema.is_some_and(|s| s.attr(attr).is_some_and(|a| a.computed && a.optional)))
            .map(|(attr, v)| (attr.to_string(), Value::str(v)))
            .collect()
    }

    async fn plan(&self, req: &PlanRequest) -> Result<PlanResponse, ProviderError> {
        let g = &self.0;
        let mut resp = match req.type_name.as_str() {
            "gcp_sql_instance" => sql_instance::plan(g, req).await?,
            "gcp_sql_user" => sql_user::plan(g, req).await?,
            "gcp_service_account_iam_member" => iam_member::plan(g, req).await?,
            "gcp_container_cluster" => container_cluster::plan(g, req).await?,
            _ => PlanResponse::default(),
        };
        // A project or region left to the provider's configuration is known now.
        let schema = g.schemas.get(req.type_name.as_str());
        for (attr, default) in [("project", &g.project), ("region", &g.region)] {
            if req.config.get(attr).is_none() && schema.is_some_and(|s| s.attr(attr).is_some_and(|a| a.computed)) {
                resp.known.insert(attr.to_string(), Value::str(default));
            }
        }
        Ok(resp)
    }

    async fn apply(&self, req: &ApplyRequest, cp: &dyn Checkpoint) -> Result<ApplyResponse, ProviderError> {
        let g = &self.0;
        match req.type_name.as_str() {
            "gcp_project_service" => project_service::apply(g, req, cp).await,
            "gcp_service_account" => service_account::apply(g, req).await,
            "gcp_project_iam_member" | "gcp_service_account_iam_member" => iam_member::apply(g, req).await,
            "gcp_service_account_key" => service_account_key::apply(g, req, cp).await,
            "gcp_sql_instance" => sql_instance::apply(g, req, cp).await,
            "gcp_sql_database" => sql_database::apply(g, req, cp).await,
            "gcp_sql_user" => sql_user::apply(g, req, cp).await,
            "gcp_container_cluster" => container_cluster::apply(g, req, cp).await,
            t => Err(unknown_type(t)),
        }
    }

    async fn read_data(&self, type_name: &str, args: &Value) -> Result<Value, ProviderError> {
        data::read(&self.0, type_name, &args.unmarked()).await
    }

    fn import_identity(&self, type_name: &str, id: &str) -> Result<Value, ProviderError> {
        let _ = type_name;
        Ok(Value::str(id))
    }
}

/// The `project` attribute every resource takes.
pub fn project_attr() -> Attribute {
    Attribute::optional("project", AttrType::String, "Project; defaults to the provider's.").also_computed().force_new()
}
