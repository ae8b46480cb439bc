//! The admin API under `/_emulator/` (documented in docs/emulator.md), on the top floor beside the
//! server (which hands it the requests), above the router (whose reset it calls). It needs no
//! access token.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::{App, lock};
use crate::config::OpDurations;
use crate::faults::FaultSpec;
use crate::http::{json_response, parse_query};

fn bad(message: impl Into<String>) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({"error": message.into()}))
}

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, &v)
}

/// Partial update of the runtime settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsPatch {
    op_durations: Option<OpDurations>,
    name_reuse_window_s: Option<u64>,
    sa_visibility_delay_ms: Option<u64>,
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    let body = if body.is_empty() { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| format!("invalid body: {e}"))
}

/// Handles one admin request.
pub async fn handle(app: &Arc<App>, method: &Method, path: &str, query: Option<&str>, body: &[u8]) -> Response {
    let route = path.trim_start_matches("/_emulator").trim_matches('/');
    match (method, route) {
        (&Method::GET, "health") => ok(json!({"status": "ok", "baseUrl": app.base_url})),
        (&Method::GET, "stats") => ok(serde_json::to_value(&*lock(&app.stats)).unwrap_or_default()),
        (&Method::DELETE, "stats") => {
            *lock(&app.stats) = Default::default();
            ok(json!({}))
        }
        (&Method::GET, "faults") => ok(serde_json::to_value(lock(&app.faults).spec()).unwrap_or_default()),
        (&Method::PUT, "faults") => match parse::<FaultSpec>(body) {
            Ok(spec) => match lock(&app.faults).set(spec) {
                Ok(()) => ok(json!({})),
                Err(e) => bad(e),
            },
            Err(e) => bad(e),
        },
        (&Method::DELETE, "faults") => {
            let _ = lock(&app.faults).set(FaultSpec::default());
            ok(json!({}))
        }
        (&Method::GET, "settings") => ok(serde_json::to_value(app.settings()).unwrap_or_default()),
        (&Method::PATCH, "settings") => match parse::<SettingsPatch>(body) {
            Ok(p) => {
                let mut s = lock(&app.settings);
                if let Some(d) = p.op_durations {
                    s.op_durations = d;
                }
                if let Some(w) = p.name_reuse_window_s {
                    s.name_reuse_window_s = w;
                }
                if let Some(d) = p.sa_visibility_delay_ms {
                    s.sa_visibility_delay_ms = d;
                }
                ok(serde_json::to_value(&*s).unwrap_or_default())
            }
            Err(e) => bad(e),
        },
        (&Method::PUT, "op-durations") => match parse::<OpDurations>(body) {
            Ok(d) => {
                lock(&app.settings).op_durations = d;
                ok(json!({}))
            }
            Err(e) => bad(e),
        },
        (&Method::POST, "reset") => {
            crate::router::reset(app).await;
            ok(json!({}))
        }
        (&Method::POST, "settle") => {
            let q = query.map(parse_query).unwrap_or_default();
            let ms = q.iter().find(|(k, _)| k == "timeout_ms").and_then(|(_, v)| v.parse().ok()).unwrap_or(60_000);
            if app.settle(Duration::from_millis(ms)).await {
                ok(json!({}))
            } else {
                json_response(StatusCode::GATEWAY_TIMEOUT, &json!({"error": "operations still running"}))
            }
        }
        (&Method::GET, "contract") => ok(serde_json::to_value(app.contract.recorded()).unwrap_or_default()),
        (&Method::DELETE, "contract") => {
            app.contract.clear();
            ok(json!({}))
        }
        (&Method::GET, "state") => ok(serde_json::to_value(&*lock(&app.state)).unwrap_or_default()),
        _ => json_response(
            StatusCode::NOT_IMPLEMENTED,
            &json!({"error": format!("unknown admin endpoint {method} {path}; see docs/emulator.md")}),
        ),
    }
}
