//! The change model: a plan is data.
//!
//! A [`Plan`] lists one [`ResourceChange`] per resource in a deterministic order
//! (topological, ties by address). Each change is `{action, before, after,
//! changed, requires_replace, private}`. The [`Reason`] is for display only and
//! never drives a decision.
//!
//! In memory a plan may hold secrets (wrapped [`Value::Sensitive`]) so that apply
//! can use them; [`Plan::redacted`] replaces every one with its keyed fingerprint
//! before a plan is saved or printed as JSON.

pub mod file;
pub mod json;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::diag::Diagnostic;
use crate::secrets::Fingerprinter;
use crate::value::Value;

/// The version of the JSON plan format (`docs/plan-format.md`).
pub const PLAN_FORMAT: &str = "1";

/// What will happen to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Nothing to do.
    NoOp,
    /// Create a new object.
    Create,
    /// Change attributes in place.
    Update,
    /// Delete the old object, then create the new one.
    DeleteThenCreate,
    /// Create the new object, then delete the old one (`create_before_destroy`).
    CreateThenDelete,
    /// Delete (gone from the spec, or `destroy`).
    Delete,
    /// Read a data source during apply (its inputs are not known yet).
    Read,
    /// Take under management an object that exists live but is not in state.
    Adopt,
}

impl Action {
    /// Whether the object is replaced.
    pub fn is_replace(self) -> bool {
        matches!(self, Action::DeleteThenCreate | Action::CreateThenDelete)
    }
    /// Whether anything changes in the world or in state.
    pub fn is_change(self) -> bool {
        !matches!(self, Action::NoOp | Action::Read)
    }
    /// The Terraform-style symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Update => "~",
            Action::DeleteThenCreate => "-/+",
            Action::CreateThenDelete => "+/-",
            Action::Delete => "-",
            Action::Read => "<=",
            Action::Adopt => "=>",
        }
    }
    /// A past-tense verb for messages.
    pub fn done_verb(self) -> &'static str {
        match self {
            Action::NoOp => "unchanged",
            Action::Create => "created",
            Action::Update => "updated",
            Action::DeleteThenCreate | Action::CreateThenDelete => "replaced",
            Action::Delete => "destroyed",
            Action::Read => "read",
            Action::Adopt => "adopted",
        }
    }
    /// A present participle for progress lines ("Creating...").
    pub fn doing_verb(self) -> &'static str {
        match self {
            Action::NoOp => "Checking",
            Action::Create => "Creating",
            Action::Update => "Modifying",
            Action::DeleteThenCreate | Action::CreateThenDelete => "Replacing",
            Action::Delete => "Destroying",
            Action::Read => "Reading",
            Action::Adopt => "Adopting",
        }
    }
}

/// Why an action was chosen (display only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// Attributes that cannot be updated in place changed.
    ReplaceBecauseCannotUpdate {
        /// Which.
        attributes: Vec<String>,
    },
    /// `--replace ADDR`.
    ReplaceByRequest,
    /// A dependent needs a secret of this resource that exists only at creation
    /// (a private key) and is no longer held where it was put.
    ReplaceBecauseSecretUnavailable,
    /// In state but no longer in the spec.
    DeleteBecauseNoResourceConfig,
    /// `skyform destroy`.
    DeleteBecauseDestroy,
    /// In state, but the live object is gone.
    CreateBecauseDeletedOutside,
    /// Exists live with this identity but is not in state.
    AdoptBecauseExistsLive,
    /// An `[[import]]` block names it.
    ImportByRequest {
        /// The import id.
        id: String,
    },
    /// The provider's configuration depends on resources created in this run.
    ProviderConfiguredDuringApply {
        /// The provider.
        provider: String,
        /// What it waits for.
        waiting_for: Vec<String>,
    },
    /// A previous run started an operation that may still be running.
    ResumePendingOperation,
    /// The data source's inputs are not known until apply.
    ReadBecauseInputsUnknown,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::ReplaceBecauseCannotUpdate { attributes } => {
                write!(f, "{} cannot be changed in place", attributes.join(", "))
            }
            Reason::ReplaceByRequest => write!(f, "replacement requested with --replace"),
            Reason::ReplaceBecauseSecretUnavailable => {
                write!(f, "a dependent needs its secret again, which exists only at creation: a new one is made")
            }
            Reason::DeleteBecauseNoResourceConfig => write!(f, "it is no longer in the spec"),
            Reason::DeleteBecauseDestroy => write!(f, "destroy was requested"),
            Reason::CreateBecauseDeletedOutside => {
                write!(f, "it was deleted outside skyform")
            }
            Reason::ImportByRequest { id } => {
                write!(f, "an [[import]] block adopts the object with id {id:?}")
            }
            Reason::AdoptBecauseExistsLive => {
                write!(f, "it already exists and will be taken under management")
            }
            Reason::ProviderConfiguredDuringApply { provider, waiting_for } => write!(
                f,
                "provider.{provider} depends on {}, which is created in this run; its objects cannot be read yet",
                waiting_for.join(", ")
            ),
            Reason::ResumePendingOperation => {
                write!(
                    f,
                    "an operation started on it earlier (by an interrupted run) may still be running; apply waits for it and converges"
                )
            }
            Reason::ReadBecauseInputsUnknown => {
                write!(f, "its inputs are known only after apply")
            }
        }
    }
}

/// One planned change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceChange {
    /// Which resource.
    pub address: Address,
    /// Its provider.
    pub provider: String,
    /// What will happen.
    pub action: Action,
    /// Why (display only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Live (or last-applied, for deletes) attributes; `None` when creating.
    pub before: Option<BTreeMap<String, Value>>,
    /// Planned attributes; unknown where known only after apply. `None` for deletes.
    pub after: Option<BTreeMap<String, Value>>,
    /// The attributes that differ.
    pub changed: Vec<String>,
    /// The changed attributes that force replacement.
    pub requires_replace: Vec<String>,
    /// The identity of the live object, if any.
    pub identity: Option<Value>,
    /// The live object's version as read (stale-plan check).
    pub live_version: Option<String>,
    /// The resources it depends on.
    pub depends_on: Vec<Address>,
    /// Provider data for apply (no secrets).
    #[serde(default, skip_serializing_if = "is_null")]
    pub private: Value,
    /// Notes shown with the change ("restarts the instance").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Attribute names that are sensitive (masked when shown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive_attributes: Vec<String>,
}

fn is_null(v: &Value) -> bool {
    matches!(v, Value::Null)
}

impl ResourceChange {
    /// A change with nothing but its address, provider, action and
    /// dependencies set; the rest is filled in with struct-update syntax.
    pub fn new(address: Address, provider: String, action: Action, depends_on: Vec<Address>) -> Self {
        ResourceChange {
            address,
            provider,
            action,
            reason: None,
            before: None,
            after: None,
            changed: vec![],
            requires_replace: vec![],
            identity: None,
            live_version: None,
            depends_on,
            private: Value::Null,
            notes: vec![],
            sensitive_attributes: vec![],
        }
    }
}

/// A whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT`].
    pub format_version: String,
    /// The state lineage the plan was made against.
    pub lineage: String,
    /// The state serial the plan was made against.
    pub serial: u64,
    /// Digest of the spec files and variable values (secrets by fingerprint).
    pub spec_digest: String,
    /// Whether this is a destroy plan.
    pub destroy: bool,
    /// Every resource, in topological order (ties by address).
    pub changes: Vec<ResourceChange>,
    /// Outputs as planned.
    pub outputs: BTreeMap<String, Value>,
    /// Warnings from planning.
    pub warnings: Vec<Diagnostic>,
    /// `--target` addresses the plan was restricted to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Address>,
    /// `--replace` addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace: Vec<Address>,
    /// `--exclude` addresses: left out of the plan with everything that depends on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<Address>,
    /// State records that `[[moved]]` blocks move, `(from, to)`: the objects
    /// stay; only their addresses change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved: Vec<(Address, Address)>,
    /// State records that `[[removed]]` blocks with `destroy = false` drop:
    /// the objects stay, unmanaged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forget: Vec<Address>,
    /// Duplicate records a move interrupted half-way left (the same record at
    /// the old and the new address): the old ones are dropped before the moves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<Address>,
    /// The checks apply runs once their dependencies are applied (none in a destroy plan).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<PlannedCheck>,
    /// The variables' values, for policies (`docs/policy.md`); secrets redacted like every value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, Value>,
    /// Each provider block's configuration as far as the variables say (what comes from
    /// resources is unknown), without credentials: no sensitive attribute is kept.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<String, BTreeMap<String, Value>>,
    /// What the policies said about this plan (none when no policy is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::policy::Outcome>,
}

/// A check apply will run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedCheck {
    /// The check's name (`check.<name>`).
    pub name: String,
    /// What it requests, as far as known at plan time (`GET service skypilot/skypilot-api-service:80/api/health via kubernetes`).
    pub target: String,
    /// The resources it waits for.
    pub after: Vec<Address>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Creates and adopts.
    pub add: usize,
    /// Updates.
    pub change: usize,
    /// Replacements.
    pub replace: usize,
    /// Deletes.
    pub destroy: usize,
}

impl Summary {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.add + self.change + self.replace + self.destroy == 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Plan: {} to add, {} to change, {} to replace, {} to destroy.",
            self.add, self.change, self.replace, self.destroy
        )
    }
}

impl Plan {
    /// Counts by kind.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Adopt if !c.changed.is_empty() => s.change += 1,
                Action::Adopt => s.add += 1,
                Action::Update => s.change += 1,
                Action::DeleteThenCreate | Action::CreateThenDelete => s.replace += 1,
                Action::Delete => s.destroy += 1,
                Action::NoOp | Action::Read => {}
            }
        }
        s
    }

    /// Whether applying would change anything in the world or in state.
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action.is_change())
    }

    /// Whether applying would change the state: resource changes, moves,
    /// forgotten objects. A plan whose only effect is moves shows "no
    /// changes" (nothing happens to any object), yet apply records them.
    pub fn changes_state(&self) -> bool {
        self.has_changes() || !self.moved.is_empty() || !self.forget.is_empty() || !self.dropped.is_empty()
    }

    /// The change for `a`.
    pub fn get(&self, a: &Address) -> Option<&ResourceChange> {
        self.changes.iter().find(|c| &c.address == a)
    }

    /// A copy with every secret replaced by its keyed fingerprint.
    pub fn redacted(&self, fp: &Fingerprinter) -> Plan {
        let red = |m: &Option<BTreeMap<String, Value>>| {
            m.as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), fp.redact(v))).collect())
        };
        let mut p = self.clone();
        for c in &mut p.changes {
            c.before = red(&c.before);
            c.after = red(&c.after);
            c.identity = c.identity.as_ref().map(|v| fp.redact(v));
        }
        p.outputs = p.outputs.iter().map(|(k, v)| (k.clone(), fp.redact(v))).collect();
        p.variables = p.variables.iter().map(|(k, v)| (k.clone(), fp.redact(v))).collect();
        p
    }
}
