//! `drift --notify URL`: posts the drift report where a team watches (a Slack-compatible
//! incoming webhook, or any receiver of JSON).
//!
//! The message is `{"text": <one-line summary>, "skyform_report": <the drift JSON report>}`:
//! Slack shows `text` and ignores the rest; other receivers get the whole report. Values in the
//! report are masked as in `--json`, so no secret is sent. The URL itself may hold a token (Slack's
//! do): it is never printed, only its host.

use std::time::Duration;

use serde_json::{Value, json};

use super::drift::DriftReport;

/// When to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NotifyOn {
    /// Every run.
    Always,
    /// Findings, or an error (the default).
    Findings,
    /// Only when drift itself fails (cannot read the state or an API).
    Errors,
}

/// Attempts per message (transient failures: no answer, 429, 5xx).
const ATTEMPTS: u32 = 3;

/// The message for a report (`Ok`) or a failed run (`Err`, already phrased, secret-free).
pub fn message(spec: &str, outcome: &Result<DriftReport, String>) -> Value {
    match outcome {
        Ok(r) if r.converged() => json!({
            "text": format!("skyform drift: {spec}: no drift{}", checks_passed(r)),
            "skyform_report": r,
        }),
        Ok(r) => {
            let c = &r.counts;
            let mut items: Vec<String> =
                r.findings.iter().take(10).map(|f| format!("{} ({})", f.address, f.class.as_str())).collect();
            if r.findings.len() > 10 {
                items.push(format!("and {} more", r.findings.len() - 10));
            }
            json!({
                "text": format!(
                    "skyform drift: {spec}: {} findings ({} changed_outside, {} deleted_outside, {} pending_spec_change, {} check_failed): {}",
                    r.findings.len(), c.changed_outside, c.deleted_outside, c.pending_spec_change, c.check_failed, items.join(", ")
                ),
                "skyform_report": r,
            })
        }
        Err(e) => json!({
            "text": format!("skyform drift: {spec}: the drift run failed: {e}"),
            "skyform_error": e,
        }),
    }
}

fn checks_passed(r: &DriftReport) -> String {
    if r.checks.is_empty() { String::new() } else { format!("; {} checks passed", r.checks.len()) }
}

/// Whether `on` asks for a message about this outcome.
pub fn wanted(on: NotifyOn, outcome: &Result<DriftReport, String>) -> bool {
    match (on, outcome) {
        (NotifyOn::Always, _) => true,
        (_, Err(_)) => true,
        (NotifyOn::Findings, Ok(r)) => !r.converged(),
        (NotifyOn::Errors, Ok(_)) => false,
    }
}

/// Posts `body` to `url`, retrying transient failures. The error names only the URL's host.
pub async fn post(url: &str, body: &Value) -> Result<(), String> {
    crate::providers::gcp::auth::install_crypto();
    let host = reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_else(|| "?".into());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .user_agent(concat!("skyform/", env!("CARGO_PKG_VERSION"), " drift"))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut last = String::new();
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        match client.post(url).json(body).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => last = format!("HTTP {}", r.status().as_u16()),
            Ok(r) => return Err(format!("the receiver at {host} refused the message: HTTP {}", r.status().as_u16())),
            Err(e) => last = e.without_url().to_string(),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    Err(format!("the message did not reach {host} after {ATTEMPTS} attempts: {last}"))
}
