//! What skyform manages: the state model. Never a secret in clear text: every
//! sensitive or write-only value is a [`Value::Redacted`] fingerprint made with
//! the key in [`State::hmac_key`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::secrets::Fingerprinter;
use crate::value::Value;

/// The version of the state file format.
pub const STATE_FORMAT: u32 = 1;

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
    /// Hex key for secret fingerprints (see [`crate::secrets`]).
    pub hmac_key: String,
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
            hmac_key: Fingerprinter::random().key_hex(),
            resources: BTreeMap::new(),
            outputs: BTreeMap::new(),
        }
    }

    /// The fingerprinter for this state's key.
    pub fn fingerprinter(&self) -> Fingerprinter {
        Fingerprinter::new(hex::decode(&self.hmac_key).unwrap_or_default())
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
