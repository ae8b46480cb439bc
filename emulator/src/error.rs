//! Errors (bottom floor, imports nothing of the crate): [`ApiError`] is what a request answers
//! with (the google.rpc envelope, contract §6; `http` turns it into a response);
//! [`EmulatorError`] is what starting or running the emulator itself can fail with.

use serde_json::{Value, json};

/// An error answered to an API client, rendered as the google.rpc error envelope with both the
/// canonical `status` and the legacy `errors[].reason` (gcloud's SQL commands read the latter).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code (also the envelope's `code`).
    pub http: u16,
    /// Canonical google.rpc code name, e.g. `NOT_FOUND`.
    pub status: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Legacy camelCase reason, e.g. `notFound`, `instanceAlreadyExists`.
    pub reason: &'static str,
    /// Typed details (`@type` objects).
    pub details: Vec<Value>,
}

impl ApiError {
    fn new(http: u16, status: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { http, status, message: message.into(), reason, details: Vec::new() }
    }

    /// 400 INVALID_ARGUMENT.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_ARGUMENT", "badRequest", message)
    }

    /// 400 INVALID_ARGUMENT with a `BadRequest` field violation.
    pub fn field_violation(field: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        Self::invalid_argument(description.clone()).with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": field, "description": description}],
        }))
    }

    /// 400 FAILED_PRECONDITION.
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(400, "FAILED_PRECONDITION", "failedPrecondition", message)
    }

    /// 401 UNAUTHENTICATED.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(401, "UNAUTHENTICATED", "authError", message)
    }

    /// 403 PERMISSION_DENIED.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(403, "PERMISSION_DENIED", "forbidden", message)
    }

    /// 404 NOT_FOUND.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NOT_FOUND", "notFound", message)
    }

    /// 409 ALREADY_EXISTS.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(409, "ALREADY_EXISTS", "alreadyExists", message)
    }

    /// 409 ABORTED (concurrent modification, e.g. a stale IAM etag).
    pub fn aborted(message: impl Into<String>) -> Self {
        Self::new(409, "ABORTED", "aborted", message)
    }

    /// 409 with a Cloud SQL reason such as `operationInProgress`. The canonical status is ABORTED
    /// (the contract's sample says `CONFLICT`, which is no google.rpc code; clients that parse the
    /// status need a real one).
    pub fn new_conflict(message: impl Into<String>, reason: &'static str) -> Self {
        Self::new(409, "ABORTED", reason, message)
    }

    /// 412 FAILED_PRECONDITION (`conditionNotMet`), for a stale `settingsVersion`.
    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(412, "FAILED_PRECONDITION", "conditionNotMet", message)
    }

    /// 429 RESOURCE_EXHAUSTED with a `RetryInfo` detail.
    pub fn resource_exhausted(message: impl Into<String>, retry_delay: &str) -> Self {
        Self::new(429, "RESOURCE_EXHAUSTED", "rateLimitExceeded", message).with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": retry_delay,
        }))
    }

    /// 500 INTERNAL.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "INTERNAL", "backendError", message)
    }

    /// 501 UNIMPLEMENTED: a route this emulator does not serve (never a 404, which would look like a
    /// missing resource).
    pub fn unimplemented(method: &str, path: &str) -> Self {
        Self::new(501, "UNIMPLEMENTED", "notImplemented", format!("gcp-emulator does not implement {method} {path}"))
    }

    /// 503 UNAVAILABLE.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "UNAVAILABLE", "backendError", message)
    }

    /// Replaces the legacy reason (Cloud SQL uses its own, e.g. `operationInProgress`).
    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }

    /// Replaces the canonical status name while keeping the HTTP code.
    pub fn with_status(mut self, status: &'static str) -> Self {
        self.status = status;
        self
    }

    /// Adds a typed detail.
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.details.push(detail);
        self
    }

    /// The numeric google.rpc code of `status`, as used inside long-running operations.
    pub fn rpc_code(&self) -> i64 {
        rpc_code(self.status)
    }

    /// The JSON envelope.
    pub fn body(&self) -> Value {
        let mut error = json!({
            "code": self.http,
            "message": self.message,
            "status": self.status,
            "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
        });
        if !self.details.is_empty() {
            error["details"] = Value::Array(self.details.clone());
        }
        json!({ "error": error })
    }
}

/// The numeric google.rpc code for a canonical code name.
pub fn rpc_code(status: &str) -> i64 {
    match status {
        "OK" => 0,
        "CANCELLED" => 1,
        "UNKNOWN" => 2,
        "INVALID_ARGUMENT" => 3,
        "DEADLINE_EXCEEDED" => 4,
        "NOT_FOUND" => 5,
        "ALREADY_EXISTS" => 6,
        "PERMISSION_DENIED" => 7,
        "RESOURCE_EXHAUSTED" => 8,
        "FAILED_PRECONDITION" => 9,
        "ABORTED" => 10,
        "OUT_OF_RANGE" => 11,
        "UNIMPLEMENTED" => 12,
        "INTERNAL" => 13,
        "UNAVAILABLE" => 14,
        "DATA_LOSS" => 15,
        "UNAUTHENTICATED" => 16,
        _ => 2,
    }
}

/// What starting or running the emulator can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The state directory could not be read, written or created.
    #[error("state directory {path}")]
    StateDir {
        /// The path involved.
        path: std::path::PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The saved state file is not valid.
    #[error("state file {path} is not valid")]
    StateFile {
        /// The path of the file.
        path: std::path::PathBuf,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
    /// PostgreSQL could not be found or started.
    #[error("postgresql: {0}")]
    Postgres(String),
    /// Google's discovery documents (the contract requests and answers are held to) are missing
    /// or unreadable.
    #[error("discovery documents: {0}")]
    Discovery(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_status_reason_and_details() {
        let e = ApiError::resource_exhausted("slow down", "1s");
        let b = e.body();
        assert_eq!(b["error"]["code"], 429);
        assert_eq!(b["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(b["error"]["errors"][0]["reason"], "rateLimitExceeded");
        assert_eq!(b["error"]["details"][0]["retryDelay"], "1s");
        assert_eq!(e.rpc_code(), 8);
    }
}
