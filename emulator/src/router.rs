//! Routing by path across the five APIs on one port.
//!
//! The one clash (contract §7): IAM and Resource Manager v1 both live under `/v1/projects/{p}`.
//! Resource Manager owns the project itself (`/v1/projects/{p}` and `/v1/projects/{p}:verb`); IAM
//! owns everything under `/v1/projects/{p}/serviceAccounts`. Cloud SQL v1 owns `instances` and
//! `operations` under a project, GKE owns `locations` and `zones`, Service Usage owns `services` and
//! the top-level `/v1/operations`.

use std::sync::Arc;

use serde_json::Value;

use crate::app::App;
use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::sql::SqlRequest;

/// The API a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Api {
    /// Cloud SQL Admin.
    Sql,
    /// IAM.
    Iam,
    /// Cloud Resource Manager.
    Crm,
    /// Kubernetes Engine.
    Gke,
    /// Service Usage.
    ServiceUsage,
}

/// The API and method name (`sql.instances.get`) of a request, or `None` for a route the
/// emulator does not serve.
pub fn route(req: &ApiRequest) -> Option<(Api, &'static str)> {
    if let Some(r) = SqlRequest::parse(req) {
        return crate::sql::method(&r).map(|m| (Api::Sql, m));
    }
    let s = req.segs();
    match s.as_slice() {
        ["v1", "projects", _, "serviceAccounts", ..] => {
            crate::iam::method(req).map(|m| (Api::Iam, m))
        }
        ["v1" | "v3", "projects", _] => crate::crm::method(req).map(|m| (Api::Crm, m)),
        ["v1", "projects", _, "locations" | "zones", ..] => {
            crate::gke::method(req).map(|m| (Api::Gke, m))
        }
        ["v1", "projects", _, "services", ..] | ["v1", "operations", ..] => {
            crate::serviceusage::method(req).map(|m| (Api::ServiceUsage, m))
        }
        _ => None,
    }
}

/// Runs a routed request.
pub async fn dispatch(
    app: &Arc<App>,
    req: &ApiRequest,
    api: Api,
    method: &str,
) -> Result<Value, ApiError> {
    match api {
        Api::Sql => match SqlRequest::parse(req) {
            Some(r) => crate::sql::handle(app, &r, method).await,
            None => Err(ApiError::unimplemented(req.method.as_str(), &req.path)),
        },
        Api::Iam => crate::iam::handle(app, req, method).await,
        Api::Crm => crate::crm::handle(app, req, method),
        Api::Gke => crate::gke::handle(app, req, method),
        Api::ServiceUsage => crate::serviceusage::handle(app, req, method),
    }
}

/// Forgets everything (admin reset).
pub async fn reset(app: &Arc<App>) {
    app.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    *crate::app::lock(&app.state) = crate::state::State::default();
    app.storage_blobs.clear();
    app.connectors.stop_all();
    app.pg.destroy_all().await;
    app.persist(&crate::app::lock(&app.state));
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    fn name(method: Method, path: &str) -> Option<&'static str> {
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        route(&ApiRequest::parse(method, p, Some(q), b"").unwrap()).map(|r| r.1)
    }

    #[test]
    fn routes_every_api() {
        assert_eq!(
            name(Method::POST, "/sql/v1beta4/projects/p/instances"),
            Some("sql.instances.insert")
        );
        assert_eq!(
            name(Method::GET, "/v1/projects/p/instances/i1"),
            Some("sql.instances.get")
        );
        assert_eq!(
            name(
                Method::DELETE,
                "/v1/projects/p/instances/i1/users?name=a%40p.iam"
            ),
            Some("sql.users.delete")
        );
        assert_eq!(
            name(Method::GET, "/sql/v1beta4/projects/p/operations/x"),
            Some("sql.operations.get")
        );
        assert_eq!(
            name(Method::POST, "/v1/projects/p:getIamPolicy"),
            Some("cloudresourcemanager.v1.projects.getIamPolicy")
        );
        assert_eq!(
            name(Method::POST, "/v3/projects/p:setIamPolicy"),
            Some("cloudresourcemanager.v3.projects.setIamPolicy")
        );
        assert_eq!(
            name(
                Method::POST,
                "/v1/projects/-/serviceAccounts/a%40p.iam.gserviceaccount.com:getIamPolicy"
            ),
            Some("iam.serviceAccounts.getIamPolicy")
        );
        assert_eq!(
            name(
                Method::POST,
                "/v1/projects/-/serviceAccounts/a@p.iam.gserviceaccount.com/keys"
            ),
            Some("iam.serviceAccounts.keys.create")
        );
        assert_eq!(
            name(
                Method::POST,
                "/v1/projects/p/locations/us-central1/clusters"
            ),
            Some("container.clusters.create")
        );
        assert_eq!(
            name(
                Method::GET,
                "/v1/projects/p/zones/us-central1-a/operations/op-1"
            ),
            Some("container.operations.get")
        );
        assert_eq!(
            name(
                Method::POST,
                "/v1/projects/p/services/sqladmin.googleapis.com:enable"
            ),
            Some("serviceusage.services.enable")
        );
        assert_eq!(
            name(Method::POST, "/v1/projects/p/services:batchEnable"),
            Some("serviceusage.services.batchEnable")
        );
        assert_eq!(
            name(Method::GET, "/v1/operations/acf.p2-1"),
            Some("serviceusage.operations.get")
        );
    }

    #[test]
    fn unknown_routes_are_none() {
        assert_eq!(name(Method::GET, "/v1/projects/p/roles"), None);
        assert_eq!(
            name(Method::POST, "/sql/v1beta4/projects/p/instances/i/clone"),
            None
        );
        assert_eq!(name(Method::GET, "/compute/v1/projects/p/zones"), None);
    }
}
