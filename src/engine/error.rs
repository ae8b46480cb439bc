//! The engine's errors: why a provider could not be configured, why a step of an apply failed,
//! why a check could not even be requested. Each is data (cloneable, comparable by variant) with
//! a message for people; none holds a secret.

use std::time::Duration;

use crate::providers::ProviderError;
use crate::state::StateError;

/// Why a provider could not be configured for this run.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigureError {
    /// The spec names a provider this build does not have.
    #[error("no provider named `{name}` in this build (known: {known})")]
    Unknown {
        /// The name in the spec.
        name: String,
        /// The providers this build has, comma-separated.
        known: String,
    },
    /// Its configuration could not be evaluated (the diagnostics' text).
    #[error("provider.{name}: {reason}")]
    Evaluation {
        /// The provider.
        name: String,
        /// What the evaluation said.
        reason: String,
    },
    /// Its `cluster` would send the GCP access token to an endpoint no GKE cluster of this run has.
    #[error(
        "provider.{name}: `cluster.endpoint` `{endpoint}` is not the endpoint of a GKE cluster read from Google in \
         this run, and would receive your GCP access token. Use `cluster = \"${{gcp_container_cluster.<name>}}\"` \
         (or the data source), give the provider a `token` of its own, or, if you trust this spec, set {env}=1",
        env = crate::foundation::trust::ALLOW_SPEC_ENDPOINTS_ENV
    )]
    UnvouchedCluster {
        /// The provider.
        name: String,
        /// The endpoint refused.
        endpoint: String,
    },
    /// The provider refused its configuration.
    #[error("provider.{name}: {error}")]
    Refused {
        /// The provider.
        name: String,
        /// What it said.
        error: ProviderError,
    },
}

/// Why one step of an apply failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The provider's call failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The provider could not be configured.
    #[error(transparent)]
    Configure(#[from] ConfigureError),
    /// The provider's configuration still holds values that are not known.
    #[error("provider.{provider} still depends on unknown values of {} at apply time", waiting.join(", "))]
    ProviderDeferred {
        /// The provider.
        provider: String,
        /// What it waits for.
        waiting: Vec<String>,
    },
    /// The resource's body could not be evaluated (the diagnostics' text).
    #[error("{0}")]
    Evaluation(String),
    /// The type has no schema in this build.
    #[error("unknown resource type `{0}`")]
    UnknownType(String),
    /// An attribute is still unknown when it is to be applied.
    #[error("attribute `{0}` is still unknown at apply time")]
    StillUnknown(String),
    /// A value the plan showed as known is different now.
    #[error(
        "the value of `{attribute}` changed since the plan was made (planned {planned}, now {now}); run plan again"
    )]
    ChangedSincePlan {
        /// The attribute.
        attribute: String,
        /// As planned (secrets masked).
        planned: String,
        /// As evaluated now (secrets masked).
        now: String,
    },
    /// The provider's result contradicts the plan (the object is recorded all the same).
    #[error("provider produced an inconsistent result: `{attribute}` was planned as {planned} but is {got}")]
    Inconsistent {
        /// The attribute.
        attribute: String,
        /// As planned (secrets masked).
        planned: String,
        /// As returned (secrets masked).
        got: String,
    },
    /// The operation outlived its timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Ctrl-C while the step's long operation ran.
    #[error(
        "interrupted while its operation runs; the operation is recorded as pending in state and the next apply \
         resumes it"
    )]
    Interrupted,
    /// Recording the step failed.
    #[error("writing state: {0}")]
    State(#[from] StateError),
}

/// Why a check's request could not be made (before any attempt).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CheckRequestError {
    /// The check's body could not be evaluated (the diagnostics' text).
    #[error("{0}")]
    Evaluation(String),
    /// A resource it needs has not been applied.
    #[error("what it requests is not known: a resource it needs has not been applied")]
    Unknown,
    /// A field that must be a string is not.
    #[error("`{0}` is not a string")]
    NotString(&'static str),
    /// `service` is not `namespace/name:port`.
    #[error("`service` {service:?} {why}")]
    Service {
        /// As written.
        service: String,
        /// What is wrong.
        why: String,
    },
}
