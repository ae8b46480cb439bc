//! What an API gives the router (shared floor): each API folder implements [`JsonApi`] (or, with
//! binary bodies, [`RawApi`]) and the router registers it, so that adding an API touches its own
//! folder and the router's list, nothing below.
//!
//! The router's pipeline is the same for both kinds: authentication, routing to a method name,
//! counting, the IAM check ([`JsonApi::authorize`]), injected faults, then the handler.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::response::Response;
use serde_json::Value;

use crate::app::App;
use crate::error::ApiError;
use crate::http::{ApiRequest, RawRequest};

/// The future of a handler.
pub type Reply<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An API whose requests and answers are JSON: the router parses the body before routing.
pub trait JsonApi: Sync {
    /// Whether the request's path is this API's (the paths of different APIs never overlap).
    fn owns(&self, req: &ApiRequest) -> bool;

    /// The method name (`sql.instances.get`) of a request on one of this API's paths; `None`: a
    /// route the emulator does not serve.
    fn method(&self, req: &ApiRequest) -> Option<&'static str>;

    /// With IAM enforced, whether the caller holds what `method` needs on the resource: the 403
    /// in this API's shape otherwise ([`crate::access::check_api`]).
    fn authorize(&self, app: &App, req: &ApiRequest, method: &str) -> Result<(), ApiError>;

    /// Runs a request `method` recognised.
    fn handle<'a>(
        &'a self,
        app: &'a Arc<App>,
        req: &'a ApiRequest,
        method: &'a str,
    ) -> Reply<'a, Result<Value, ApiError>>;
}

/// An API whose bodies are binary (Cloud Storage): it routes the raw request, before anything is
/// parsed, and answers with any response.
pub trait RawApi: Sync {
    /// The method name of a request that is this API's; `None` when it is another's.
    fn method(&self, app: &App, req: &RawRequest<'_>) -> Option<&'static str>;

    /// With IAM enforced, whether the caller holds what `method` needs: the refusal otherwise.
    fn authorize(&self, app: &App, req: &RawRequest<'_>, method: &str) -> Result<(), Box<Response>>;

    /// Runs a request `method` recognised.
    fn handle<'a>(&'a self, app: &'a Arc<App>, req: &'a RawRequest<'a>, method: &'static str) -> Reply<'a, Response>;
}
