//! The emulator holds requests to Google's published contract (the discovery documents): what
//! Google refuses, it refuses, in Google's shape (400 INVALID_ARGUMENT, a `BadRequest` detail, the
//! legacy `errors` list Cloud SQL keeps), and records as the client's defect on the admin API.

mod common;

use common::call;
use gcp_emulator::{Config, Emulator};
use serde_json::{Value, json};

const P: &str = "contract-proj";

async fn start() -> Emulator {
    gcp_emulator::contract::ensure_documents();
    Emulator::start(Config::default()).await.expect("emulator starts")
}

/// The refusal's message, after checking its shape.
fn refusal(code: u16, body: &Value, field: Option<&str>) -> String {
    assert_eq!(code, 400, "{body}");
    let e = &body["error"];
    assert_eq!(e["code"], 400);
    assert_eq!(e["status"], "INVALID_ARGUMENT");
    let message = e["message"].as_str().expect("message").to_string();
    assert_eq!(e["errors"][0]["message"], message.as_str(), "the legacy list carries the same message");
    assert_eq!(e["errors"][0]["reason"], "invalid");
    let detail = &e["details"][0];
    assert_eq!(detail["@type"], "type.googleapis.com/google.rpc.BadRequest");
    assert_eq!(detail["fieldViolations"][0]["description"], message.as_str());
    assert_eq!(detail["fieldViolations"][0]["field"].as_str(), field);
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_body_field_is_refused_as_google_does() {
    let emu = start().await;
    let body = json!({"name": "db1", "databaseVersion": "POSTGRES_15", "settings": {"tier": "db-f1-micro", "bogusField": true}});
    let (code, resp) =
        call(emu.base_url(), "POST", &format!("/sql/v1beta4/projects/{P}/instances?alt=json"), Some(&body)).await;
    let message = refusal(code, &resp, Some("body.settings"));
    assert_eq!(
        message,
        "Invalid JSON payload received. Unknown name \"bogusField\" at 'body.settings': Cannot find field."
    );
    // Nothing was created.
    let (code, _) = call(emu.base_url(), "GET", &format!("/sql/v1beta4/projects/{P}/instances/db1"), None).await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_outside_an_enum_is_refused() {
    let emu = start().await;
    let body = json!({"name": "db1", "databaseVersion": "POSTGRES_99", "settings": {"tier": "db-f1-micro"}});
    let (code, resp) = call(emu.base_url(), "POST", &format!("/v1/projects/{P}/instances"), Some(&body)).await;
    let message = refusal(code, &resp, Some("body.database_version"));
    assert_eq!(
        message,
        "Invalid value at 'body.database_version' (type.googleapis.com/google.cloud.sql.v1.SqlDatabaseVersion), \"POSTGRES_99\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_query_parameter_is_refused_and_every_refusal_is_recorded() {
    let emu = start().await;
    let base = emu.base_url();
    let (code, resp) =
        call(base, "GET", &format!("/sql/v1beta4/projects/{P}/instances?alt=json&bogusParam=1"), None).await;
    let message = refusal(code, &resp, None);
    assert_eq!(
        message,
        "Invalid JSON payload received. Unknown name \"bogusParam\": Cannot bind query parameter. Field 'bogusParam' could not be found in request message."
    );
    // Resource Manager v1's getIamPolicy takes its options in the body, not the query.
    let path = format!("/v1/projects/{P}:getIamPolicy?options.requestedPolicyVersion=3");
    assert_eq!(call(base, "POST", &path, Some(&json!({}))).await.0, 400);
    let (code, _) = call(
        base,
        "POST",
        &format!("/v1/projects/{P}:getIamPolicy"),
        Some(&json!({"options": {"requestedPolicyVersion": 3}})),
    )
    .await;
    assert_eq!(code, 200);
    // Standard and `$` system parameters are every method's.
    let (code, _) = call(
        base,
        "GET",
        &format!("/v1/projects/{P}/instances?alt=json&prettyPrint=false&%24.xgafv=2&location="),
        None,
    )
    .await;
    assert_eq!(code, 200);

    // The record, on the admin API, and cleared there.
    let (_, record) = call(base, "GET", "/_emulator/contract", None).await;
    let defects = record["defects"].as_array().expect("defects");
    assert_eq!(defects.len(), 2, "{record}");
    assert_eq!(defects[0]["method"], "sql.instances.list");
    assert_eq!(defects[0]["api"], "sqladmin.v1beta4");
    assert_eq!(defects[1]["method"], "cloudresourcemanager.projects.getIamPolicy");
    assert_eq!(record["responseDefects"], json!([]));
    assert_eq!(call(base, "DELETE", "/_emulator/contract", None).await.0, 200);
    assert_eq!(emu.contract().defects, vec![]);
}
