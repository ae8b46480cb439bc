//! What skyform manages: the state model. Never a secret in clear text: every
//! sensitive or write-only value is a [`Value::Redacted`] fingerprint, made with
//! Argon2id and the parameters in [`State::fingerprints`] (see [`crate::secrets`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::secrets::{FingerprintParams, Fingerprinter, has_legacy_fingerprint};
use crate::value::Value;

/// The version of the state file format: 2 since fingerprints are Argon2id (`fingerprints`).
/// Format 1 (HMAC fingerprints and their key) is still read, and written back as 2.
pub const STATE_FORMAT: u32 = 2;
/// The oldest format this build reads.
pub const OLDEST_STATE_FORMAT: u32 = 1;

/// The whole state of one spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Format version ([`STATE_FORMAT`]).
    pub format: u32,
    /// A random id given when the state is first created; a plan made against
    /// another lineage is refused.
    pub lineage: String,
    /// Goes up by one on every run that changes the state.
    pub serial: u64,
    /// The HMAC key of the `hmac-sha256:` fingerprints a format-1 state holds; empty in new
    /// states, and dropped once no such fingerprint is left ([`State::prune_legacy_key`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hmac_key: String,
    /// How fingerprints are made: Argon2id's parameters and this state's salt. `None` only in a
    /// format-1 state until it is next written (its salt is then derived from the lineage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<FingerprintParams>,
    /// Managed resources (data sources are not kept).
    pub resources: BTreeMap<Address, ResourceState>,
    /// Last outputs (secrets redacted).
    pub outputs: BTreeMap<String, Value>,
}

impl State {
    /// A new, empty state with a fresh lineage and key.
    pub fn new() -> Self {
        State {
            format: STATE_FORMAT,
            lineage: new_lineage(),
            serial: 0,
            hmac_key: String::new(),
            fingerprints: Some(FingerprintParams::random()),
            resources: BTreeMap::new(),
            outputs: BTreeMap::new(),
        }
    }

    /// The fingerprinter of this state (with its legacy key, if it still has one).
    pub fn fingerprinter(&self) -> Fingerprinter {
        Fingerprinter::new(&self.fingerprint_params()).with_legacy_key(&self.hmac_key)
    }

    /// The fingerprint parameters, derived from the lineage for a format-1 state.
    pub fn fingerprint_params(&self) -> FingerprintParams {
        self.fingerprints.clone().unwrap_or_else(|| FingerprintParams::derived(&self.lineage))
    }

    /// Brings a state read from an older format up to this one, in memory: records the
    /// fingerprint parameters and the format. Called on every load; the next write persists it.
    pub fn upgrade(&mut self) {
        if self.fingerprints.is_none() {
            self.fingerprints = Some(FingerprintParams::derived(&self.lineage));
        }
        self.format = STATE_FORMAT;
    }

    /// The state as a snapshot records it: without the legacy key once it is no longer needed.
    pub fn for_snapshot(&self) -> std::borrow::Cow<'_, State> {
        if self.hmac_key.is_empty() {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut s = self.clone();
        s.prune_legacy_key();
        std::borrow::Cow::Owned(s)
    }

    /// Drops the legacy HMAC key once no `hmac-sha256:` fingerprint is left (called before each
    /// snapshot is written): from then on the state holds nothing that makes a guess cheap.
    pub fn prune_legacy_key(&mut self) {
        if self.hmac_key.is_empty() {
            return;
        }
        let legacy = self.outputs.values().any(has_legacy_fingerprint)
            || self.resources.values().any(|r| {
                has_legacy_fingerprint(&r.identity)
                    || has_legacy_fingerprint(&r.private)
                    || r.attrs.values().any(has_legacy_fingerprint)
            });
        if !legacy {
            self.hmac_key.clear();
        }
    }

    /// Applies one journal record.
    pub fn apply_record(&mut self, rec: &StateRecord) {
        match rec {
            StateRecord::Upsert { address, resource } => {
                self.resources.insert(address.clone(), resource.clone());
            }
            StateRecord::Remove { address } => {
                self.resources.remove(address);
            }
            StateRecord::Outputs { outputs } => self.outputs = outputs.clone(),
            StateRecord::Serial { serial } => self.serial = *serial,
        }
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

fn new_lineage() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Whether the resource's last operation finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResourceStatus {
    /// Created or updated successfully.
    #[default]
    Ready,
    /// An operation was started and may still be running (its name is in
    /// `private`); the next run resumes it instead of starting again.
    Pending,
    /// A create or update failed part-way: the object may exist in an unknown
    /// state; the next plan reads it and converges.
    Tainted,
}

/// One managed resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    /// The provider that manages it.
    pub provider: String,
    /// What finds the object again (a name, a self link...).
    pub identity: Value,
    /// Last-applied attributes (inputs and computed), secrets redacted.
    pub attrs: BTreeMap<String, Value>,
    /// The resources it depended on when last applied (for delete ordering once it
    /// is gone from the spec).
    pub dependencies: Vec<Address>,
    /// Provider-private data (no secrets), e.g. a pending operation name.
    #[serde(default, skip_serializing_if = "is_null")]
    pub private: Value,
    /// Ready, pending or tainted.
    #[serde(default)]
    pub status: ResourceStatus,
}

fn is_null(v: &Value) -> bool {
    matches!(v, Value::Null)
}

/// One change to the state, as appended to the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StateRecord {
    /// A resource was created, updated, adopted or marked pending.
    Upsert {
        /// Which.
        address: Address,
        /// Its new record.
        resource: ResourceState,
    },
    /// A resource was deleted or forgotten.
    Remove {
        /// Which.
        address: Address,
    },
    /// Outputs were recomputed.
    Outputs {
        /// All outputs (secrets redacted).
        outputs: BTreeMap<String, Value>,
    },
    /// A run started changing the state.
    Serial {
        /// The new serial.
        serial: u64,
    },
}
