//! Everything the emulator remembers, as serde data (shared floor): resources as the JSON the APIs
//! return (links are added when rendering), operations, policies, Cloud Storage's bucket and
//! object metadata. Saved as one JSON file with `--state-dir`. The APIs' runtime parts that are
//! not saved (PostgreSQL servers, object data, upload sessions) are the `App`'s extensions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::EmulatorError;

/// The whole state.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// Cloud SQL.
    pub sql: SqlState,
    /// IAM service accounts.
    pub iam: IamState,
    /// Project IAM policies, by project id.
    pub crm_policies: BTreeMap<String, Policy>,
    /// GKE clusters by `project/location/name`.
    pub gke_clusters: BTreeMap<String, Value>,
    /// Service Usage: per project, service name → enabled.
    pub services: BTreeMap<String, BTreeMap<String, bool>>,
    /// Long-running operations of all APIs, by name.
    pub ops: BTreeMap<String, Operation>,
    /// Project ids seen, by project number (so that APIs addressed by number find the id).
    pub project_ids: BTreeMap<String, String>,
    /// Cloud Storage buckets and object metadata (object data is in `storage::Blobs`, an extension
    /// of the `App`).
    pub storage: StorageState,
}

/// Cloud SQL state.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SqlState {
    /// Instances by `project/name`.
    pub instances: BTreeMap<String, SqlInstance>,
    /// Deletion time (ms) of deleted instances by `project/name`, for the name-reuse window.
    pub deleted: BTreeMap<String, u64>,
}

/// One Cloud SQL instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SqlInstance {
    /// The `DatabaseInstance` JSON without links.
    pub resource: Value,
    /// `User` JSON by name (passwords are never kept).
    #[serde(default)]
    pub users: BTreeMap<String, Value>,
    /// `Database` JSON by name.
    #[serde(default)]
    pub databases: BTreeMap<String, Value>,
    /// Directory holding this instance's PostgreSQL data, once created.
    #[serde(default)]
    pub pg_dir: Option<PathBuf>,
    /// TCP port of its PostgreSQL server, once created (5432).
    #[serde(default)]
    pub pg_port: Option<u16>,
    /// The instance's own address (its `PRIMARY` IP), where PostgreSQL and the connector
    /// port listen; state written before addresses existed has none (127.0.0.1 then).
    #[serde(default)]
    pub pg_host: Option<std::net::Ipv4Addr>,
}

/// IAM state.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IamState {
    /// Service accounts by email.
    pub accounts: BTreeMap<String, ServiceAccount>,
}

/// One service account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceAccount {
    /// The `ServiceAccount` JSON.
    pub resource: Value,
    /// Creation time (ms), for eventual consistency.
    pub created_ms: u64,
    /// The policy on the account itself (who may act as it).
    #[serde(default)]
    pub policy: Policy,
    /// `ServiceAccountKey` JSON (public parts only) by key id.
    #[serde(default)]
    pub keys: BTreeMap<String, Value>,
}

impl ServiceAccount {
    /// Whether the account is visible yet, `delay_ms` after its creation (eventual consistency).
    pub fn visible(&self, delay_ms: u64) -> bool {
        crate::util::now_ms() >= self.created_ms + delay_ms
    }
}

/// An IAM policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Policy {
    /// Bindings `{role, members[], condition?}`; never one without members.
    pub bindings: Vec<Value>,
    /// Audit configs, kept verbatim.
    #[serde(default)]
    pub audit_configs: Vec<Value>,
    /// Current etag (base64).
    pub etag: String,
}

impl Default for Policy {
    fn default() -> Self {
        // "ACAB" is the etag real IAM reports for a policy that was never written.
        Policy { bindings: Vec::new(), audit_configs: Vec::new(), etag: "ACAB".to_string() }
    }
}

/// Cloud Storage: buckets by name (one global namespace, as in Cloud Storage).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageState {
    /// The buckets.
    pub buckets: BTreeMap<String, Bucket>,
    /// The last generation handed out (generations are unique across the emulator).
    pub last_generation: i64,
}

/// One bucket and the live version of each of its objects.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bucket {
    /// Its name.
    pub name: String,
    /// The project id that owns it.
    pub project: String,
    /// `location` (upper case).
    pub location: String,
    /// `storageClass`.
    pub storage_class: String,
    /// Creation time, ms.
    pub created_ms: u64,
    /// Objects by name.
    pub objects: BTreeMap<String, Object>,
}

/// One object's metadata (its data is in the blob store).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Object {
    /// Changes with every new content.
    pub generation: i64,
    /// Changes with every metadata update of this generation.
    pub metageneration: i64,
    /// Bytes.
    pub size: u64,
    /// `contentType`.
    pub content_type: String,
    /// `md5Hash` (base64).
    pub md5: String,
    /// `crc32c` (base64).
    pub crc32c: String,
    /// Creation time of this generation, ms.
    pub created_ms: u64,
    /// Last metadata update, ms.
    pub updated_ms: u64,
    /// Custom metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Which API an operation belongs to (they render differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum OpApi {
    /// Cloud SQL `sql#operation`.
    Sql,
    /// GKE `Operation`.
    Container,
    /// Service Usage `google.longrunning.Operation`.
    ServiceUsage,
}

impl OpApi {
    /// The key used for operation durations (`sql`, `container`, `serviceusage`).
    pub fn key(self) -> &'static str {
        match self {
            OpApi::Sql => "sql",
            OpApi::Container => "container",
            OpApi::ServiceUsage => "serviceusage",
        }
    }
}

/// Progress of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum OpStatus {
    /// Accepted, not started.
    Pending,
    /// Doing the work.
    Running,
    /// Finished, with or without an error.
    Done,
}

impl OpStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OpStatus::Pending => "PENDING",
            OpStatus::Running => "RUNNING",
            OpStatus::Done => "DONE",
        }
    }
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpError {
    /// Cloud SQL: a code string such as `INTERNAL_ERROR`; others: a google.rpc code name.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// A long-running operation of any API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Operation {
    /// API it belongs to.
    pub api: OpApi,
    /// Name (no `/`).
    pub name: String,
    /// Project id.
    pub project: String,
    /// Operation type, e.g. `CREATE`, `CREATE_CLUSTER`, `ENABLE`.
    pub op_type: String,
    /// Target resource: SQL instance, GKE cluster (or `cluster/nodePool`), or service names.
    pub target: String,
    /// GKE location; empty elsewhere.
    #[serde(default)]
    pub location: String,
    /// Progress.
    pub status: OpStatus,
    /// Creation time (ms).
    pub insert_ms: u64,
    /// Start time (ms).
    #[serde(default)]
    pub start_ms: Option<u64>,
    /// End time (ms).
    #[serde(default)]
    pub end_ms: Option<u64>,
    /// Failure, set only when `status` is `Done`.
    #[serde(default)]
    pub error: Option<OpError>,
    /// Result payload (Service Usage `response`).
    #[serde(default)]
    pub response: Option<Value>,
}

impl Operation {
    /// A new pending operation.
    pub fn new(api: OpApi, name: String, project: &str, op_type: &str, target: &str) -> Self {
        Operation {
            api,
            name,
            project: project.to_string(),
            op_type: op_type.to_string(),
            target: target.to_string(),
            location: String::new(),
            status: OpStatus::Pending,
            insert_ms: crate::util::now_ms(),
            start_ms: None,
            end_ms: None,
            error: None,
            response: None,
        }
    }
}

impl State {
    /// The project id for `p` (an id or a number), remembering ids as they are seen.
    pub fn project_id(&mut self, p: &str) -> String {
        let number = crate::util::project_number(p);
        if number == p {
            self.project_ids.get(p).cloned().unwrap_or_else(|| p.to_string())
        } else {
            self.project_ids.entry(number).or_insert_with(|| p.to_string()).clone()
        }
    }

    /// Reads the state file; a missing file is an empty state. Operations that were not finished
    /// when the emulator stopped cannot be resumed: they are marked done with an error, and
    /// instances or clusters still being created are marked failed.
    pub fn load(path: &Path) -> Result<State, EmulatorError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(source) => {
                return Err(EmulatorError::StateDir { path: path.to_path_buf(), source });
            }
        };
        let mut state: State = serde_json::from_str(&text)
            .map_err(|source| EmulatorError::StateFile { path: path.to_path_buf(), source })?;
        let now = crate::util::now_ms();
        for op in state.ops.values_mut() {
            if op.status != OpStatus::Done {
                op.status = OpStatus::Done;
                op.end_ms = Some(now);
                op.error = Some(OpError {
                    code: "INTERNAL_ERROR".into(),
                    message: "the emulator was restarted while this operation ran".into(),
                });
            }
        }
        for inst in state.sql.instances.values_mut() {
            if inst.resource["state"] == "PENDING_CREATE" {
                inst.resource["state"] = "FAILED".into();
            }
        }
        for c in state.gke_clusters.values_mut() {
            if c["status"] == "PROVISIONING" {
                c["status"] = "ERROR".into();
            }
        }
        Ok(state)
    }

    /// Writes the state file atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), EmulatorError> {
        let err = |source| EmulatorError::StateDir { path: path.to_path_buf(), source };
        let text = serde_json::to_string_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// Whether any operation on `target` in `project` of `api` is not done yet.
    pub fn op_in_progress(&self, api: OpApi, project: &str, target: &str) -> bool {
        self.ops.values().any(|o| {
            o.api == api
                && o.project == project
                && o.status != OpStatus::Done
                && (o.target == target || o.target.starts_with(&format!("{target}/")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unfinished_operations_fail_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = State::default();
        s.ops.insert("op1".into(), Operation::new(OpApi::Sql, "op1".into(), "p", "CREATE", "i1"));
        s.sql.instances.insert(
            "p/i1".into(),
            SqlInstance {
                resource: json!({"state": "PENDING_CREATE"}),
                users: BTreeMap::new(),
                databases: BTreeMap::new(),
                pg_dir: None,
                pg_port: None,
                pg_host: None,
            },
        );
        s.save(&path).unwrap();
        let loaded = State::load(&path).unwrap();
        assert_eq!(loaded.ops["op1"].status, OpStatus::Done);
        assert!(loaded.ops["op1"].error.is_some());
        assert_eq!(loaded.sql.instances["p/i1"].resource["state"], "FAILED");
        assert!(State::load(&dir.path().join("none.json")).unwrap().ops.is_empty());
    }
}
