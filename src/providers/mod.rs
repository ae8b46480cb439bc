//! The provider contract every provider implements, and the registry.
//!
//! A provider is configured lazily: the engine holds a [`ProviderFactory`] per
//! provider and calls [`ProviderFactory::configure`] only once the provider's
//! configuration is fully known. A configuration that references a resource
//! created in the same run (a Kubernetes provider built from a GKE cluster) is
//! configured during apply, right after that resource exists.
//!
//! Providers never import the engine or the CLI.

pub mod gcp;
pub mod helm;
pub mod kubernetes;
pub mod memory;
pub mod postgres;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::address::Address;
use crate::foundation::net::Net;
pub use crate::foundation::schema::{AttrType, Attribute, ProviderSchema, ResourceSchema, SchemaKind};
use crate::value::Value;

/// Why a provider call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The configuration is unusable (bad endpoint, missing credentials).
    #[error("provider configuration: {0}")]
    Config(String),
    /// The API refused the request for good (400, 403, 404 on update, 409 conflicts
    /// that retrying cannot fix). The message is the API's, without secrets.
    #[error("{0}")]
    Permanent(String),
    /// A transient failure that survived the provider's own retries.
    #[error("{0} (transient; retries exhausted)")]
    Transient(String),
    /// The operation took longer than its timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The operation was cancelled (Ctrl-C).
    #[error("cancelled")]
    Cancelled,
}

impl From<crate::foundation::trust::CredentialRefused> for ProviderError {
    fn from(e: crate::foundation::trust::CredentialRefused) -> Self {
        ProviderError::Config(e.to_string())
    }
}

impl From<crate::foundation::net::NetError> for ProviderError {
    fn from(e: crate::foundation::net::NetError) -> Self {
        ProviderError::Config(e.to_string())
    }
}

/// What the engine asks a provider to read.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    /// The resource's address (for messages).
    pub address: Address,
    /// Its type.
    pub type_name: String,
    /// The identity recorded in state, if the resource is managed already.
    pub identity: Option<Value>,
    /// The desired configuration, evaluated as far as possible (may contain
    /// unknowns; sensitive values wrapped). Used to find an object that is not in
    /// state yet (adoption) and to derive the identity.
    pub config: Value,
    /// The provider's private data recorded in state (e.g. a pending operation).
    pub private: Value,
}

/// A live object as read.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveObject {
    /// The identity that finds this object again (a name, a self link...).
    pub identity: Value,
    /// Its attributes, in the schema's terms, normalized. Write-only attributes are
    /// absent.
    pub attrs: BTreeMap<String, Value>,
    /// A version of the object for stale-plan checks: an etag, a
    /// `settingsVersion`, a `resourceVersion`, or a hash of the read.
    pub version: String,
    /// The object exists but is still being created or changed by an operation
    /// (a GKE cluster `PROVISIONING`, a Cloud SQL instance `PENDING_CREATE`): its
    /// computed attributes are not final. The planner then plans a step that
    /// waits for the operation, and whatever depends on the object (provider
    /// configurations included) is known only after apply.
    pub in_progress: bool,
}

/// Planned action on one resource, as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyAction {
    /// Create a new object.
    Create,
    /// Update in place.
    Update,
    /// Delete.
    Delete,
}

/// The engine's proposal, handed to the provider's plan hook for refinement.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// Address.
    pub address: Address,
    /// Type.
    pub type_name: String,
    /// The desired configuration (evaluated; may contain unknowns).
    pub config: Value,
    /// What is live now, if anything.
    pub live: Option<LiveObject>,
    /// Last-applied attributes from state (secrets redacted).
    pub prior: Option<BTreeMap<String, Value>>,
    /// The attribute names the engine found different.
    pub changed: Vec<String>,
    /// Whether the engine will create (no live object), update, or replace.
    pub action: ApplyAction,
}

/// The provider's refinement of a plan.
#[derive(Debug, Clone, Default)]
pub struct PlanResponse {
    /// Additional attributes (by name) that force replacement.
    pub requires_replace: Vec<String>,
    /// Warnings shown with the plan (e.g. "this update restarts the instance").
    pub warnings: Vec<String>,
    /// Errors that block the plan (cross-resource checks).
    pub errors: Vec<String>,
    /// Short notes shown next to the action ("restarts the instance").
    pub notes: Vec<String>,
    /// Opaque data carried from plan to apply (no secrets).
    pub private: Value,
    /// Computed attributes the provider knows already (a `project` left to the provider's
    /// configuration): shown, and given to references, as known values rather than "known after apply".
    pub known: BTreeMap<String, Value>,
}

/// What the engine asks a provider to do.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    /// Address.
    pub address: Address,
    /// Type.
    pub type_name: String,
    /// Create, update or delete.
    pub action: ApplyAction,
    /// Identity from state (update, delete) or from a previous pending create.
    pub identity: Option<Value>,
    /// Desired configuration, fully known, secrets wrapped as sensitive. For a
    /// delete, the last-applied attributes.
    pub config: Value,
    /// Last-applied attributes (secrets redacted).
    pub prior: Option<BTreeMap<String, Value>>,
    /// The attribute names that changed (update).
    pub changed: Vec<String>,
    /// From the plan hook, or from state.
    pub private: Value,
    /// Timeout for this operation.
    pub timeout: Duration,
}

/// What a provider reports after applying.
#[derive(Debug, Clone, Default)]
pub struct ApplyResponse {
    /// The identity of the object (`Null` after a delete).
    pub identity: Value,
    /// All attributes after the change (inputs and computed). Secrets may be in
    /// clear here: the engine passes them in memory to dependents and redacts
    /// them before anything is written.
    pub attrs: BTreeMap<String, Value>,
    /// Private data to keep in state (no secrets).
    pub private: Value,
}

/// Lets a provider record progress that must survive a crash, such as the name
/// of a long-running operation, before it waits on it.
pub trait Checkpoint: Send + Sync {
    /// Writes `private` into the resource's state record now (durably).
    fn pending(&self, identity: &Value, private: &Value);

    /// Says how a long operation is doing (`1/1 pods Running, 0/1 Ready`), for the next progress
    /// line. Never a secret.
    fn progress(&self, _status: &str) {}
}

/// A configured provider.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Reads one object. Absent is `Ok(None)`, never an error.
    async fn read(&self, req: &ReadRequest) -> Result<Option<LiveObject>, ProviderError>;

    /// The values this provider's configuration gives the attributes of `type_name` that a spec
    /// leaves unset (a GCP resource's `project` and `region`). An object's identity depends on
    /// them, so when one changes under a resource already applied, the engine plans what a
    /// change of the attribute itself would (a replacement, for a force-new attribute).
    fn config_defaults(&self, type_name: &str) -> BTreeMap<String, Value> {
        let _ = type_name;
        BTreeMap::new()
    }

    /// Refines the engine's plan for one resource (read-only I/O allowed).
    async fn plan(&self, _req: &PlanRequest) -> Result<PlanResponse, ProviderError> {
        Ok(PlanResponse::default())
    }

    /// Creates, updates or deletes one object. Must be idempotent: a retry after a
    /// crash must converge rather than duplicate.
    async fn apply(&self, req: &ApplyRequest, checkpoint: &dyn Checkpoint) -> Result<ApplyResponse, ProviderError>;

    /// Reads a data source.
    async fn read_data(&self, type_name: &str, args: &Value) -> Result<Value, ProviderError>;

    /// The identity for `skyform import ADDR ID`.
    fn import_identity(&self, type_name: &str, id: &str) -> Result<Value, ProviderError> {
        let _ = type_name;
        Ok(Value::str(id))
    }

    /// Sends a GET to a Service through this provider's API server (a check's `via`). Only
    /// providers whose schema says [`ProviderSchema::reaches_services`] implement it.
    async fn service_get(&self, req: &ServiceRequest) -> Result<HttpReply, ProviderError> {
        let _ = req;
        Err(ProviderError::Permanent("this provider cannot reach Services".into()))
    }

    /// Why the object with these attributes may not be working, for the message of a failing
    /// check that depends on it (a release's objects not ready, with their pods' reasons).
    /// `None` when the provider has nothing to say about this type. Never a secret.
    async fn diagnose(&self, type_name: &str, attrs: &Value) -> Option<String> {
        let _ = (type_name, attrs);
        None
    }
}

/// A GET to a Kubernetes Service through the API server's service proxy
/// (`/api/v1/namespaces/{namespace}/services/{name}:{port}/proxy{path}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRequest {
    /// The Service's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The port: a number or a port name.
    pub port: String,
    /// The path (and query) on the Service, starting with `/`.
    pub path: String,
    /// Extra request headers (values may be secrets: never log them).
    pub headers: Vec<(String, String)>,
    /// How long one request may take.
    pub timeout: Duration,
}

/// An HTTP response, as a check judges it.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The body (the first megabyte at most).
    pub body: Vec<u8>,
}

/// Builds configured providers.
#[async_trait]
pub trait ProviderFactory: Send + Sync {
    /// What the provider declares.
    fn schema(&self) -> &ProviderSchema;
    /// Configures an instance from its evaluated configuration (fully known); its network calls
    /// go through `net`, the process's shared client.
    async fn configure(&self, config: &Value, net: &Net) -> Result<Arc<dyn Provider>, ProviderError>;
}

/// All provider factories known to this build, and the network client they configure providers
/// with (the one the rest of the run uses too: see [`Registry::net`]).
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, Arc<dyn ProviderFactory>>,
    net: Net,
}

impl Registry {
    /// An empty registry with a network client of its own.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry whose providers send through `net`.
    pub fn with_net(net: Net) -> Self {
        Registry { factories: BTreeMap::new(), net }
    }

    /// The registry of the `skyform` binary. The in-memory `test` provider is
    /// included only when `SKYFORM_ENABLE_TEST_PROVIDER=1`.
    pub fn builtin() -> Self {
        Self::builtin_with(Net::new())
    }

    /// [`Registry::builtin`] over a given network client.
    pub fn builtin_with(net: Net) -> Self {
        let mut r = Registry::with_net(net);
        r.register(Arc::new(gcp::GcpFactory::new()));
        r.register(Arc::new(kubernetes::KubernetesFactory::default()));
        r.register(Arc::new(postgres::PostgresFactory::default()));
        r.register(Arc::new(helm::HelmFactory::default()));
        if std::env::var("SKYFORM_ENABLE_TEST_PROVIDER").as_deref() == Ok("1") {
            r.register(Arc::new(memory::MemoryFactory::from_env()));
        }
        r
    }

    /// The network client: providers configured from this registry, the state backend, checks
    /// and notifications all send through it.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// Adds a factory (replacing one with the same name).
    pub fn register(&mut self, f: Arc<dyn ProviderFactory>) {
        self.factories.insert(f.schema().name.to_string(), f);
    }

    /// The factory named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn ProviderFactory>> {
        self.factories.get(name)
    }

    /// The provider that owns `type_name` (by prefix).
    pub fn provider_for_type(&self, type_name: &str) -> Option<&Arc<dyn ProviderFactory>> {
        self.factories.values().find(|f| type_name.starts_with(f.schema().type_prefix))
    }

    /// The schema of a type.
    pub fn type_schema(&self, kind: SchemaKind, type_name: &str) -> Option<&ResourceSchema> {
        self.provider_for_type(type_name).and_then(|f| f.schema().get(kind, type_name))
    }

    /// All provider schemas.
    pub fn schemas(&self) -> impl Iterator<Item = &ProviderSchema> {
        self.factories.values().map(|f| f.schema())
    }

    /// All provider names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }
}
