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
use crate::foundation::net::{Net, NetError, error_chain};

/// What a drift run came to, as the message reports it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The run finished: a report (converged or not).
    Report(DriftReport),
    /// The run failed; the text is already phrased for the user and free of secrets.
    Failed(String),
}

/// Why a message was not delivered. The receiver's URL may hold a token: errors name its host only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The receiver answered with a status that retrying cannot change.
    #[error("the receiver at {host} refused the message: HTTP {status}")]
    Refused {
        /// The URL's host.
        host: String,
        /// Its answer.
        status: u16,
    },
    /// Every attempt failed for a transient reason.
    #[error("the message did not reach {host} after {attempts} attempts: {last}")]
    Unreachable {
        /// The URL's host.
        host: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's failure.
        last: String,
    },
    /// Nothing could be sent.
    #[error(transparent)]
    Net(#[from] NetError),
}

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

/// The message for a report or a failed run.
pub fn message(spec: &str, outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Report(r) if r.converged() => json!({
            "text": format!("skyform drift: {spec}: no drift{}", checks_passed(r)),
            "skyform_report": r,
        }),
        Outcome::Report(r) => {
            let c = &r.counts;
            let mut items: Vec<String> =
                r.findings.iter().take(10).map(|f| format!("{} ({})", f.address, f.class.as_str())).collect();
            if r.findings.len() > 10 {
                items.push(format!("and {} more", r.findings.len() - 10));
            }
            let policy =
                if r.policy.is_some() { format!(", {} policy_failed", c.policy_failed) } else { String::new() };
            json!({
                "text": format!(
                    "skyform drift: {spec}: {} findings ({} changed_outside, {} deleted_outside, {} pending_spec_change, {} check_failed{policy}): {}",
                    r.findings.len(), c.changed_outside, c.deleted_outside, c.pending_spec_change, c.check_failed, items.join(", ")
                ),
                "skyform_report": r,
            })
        }
        Outcome::Failed(e) => json!({
            "text": format!("skyform drift: {spec}: the drift run failed: {e}"),
            "skyform_error": e,
        }),
    }
}

fn checks_passed(r: &DriftReport) -> String {
    if r.checks.is_empty() { String::new() } else { format!("; {} checks passed", r.checks.len()) }
}

/// Whether `on` asks for a message about this outcome.
pub fn wanted(on: NotifyOn, outcome: &Outcome) -> bool {
    match (on, outcome) {
        (NotifyOn::Always, _) => true,
        (_, Outcome::Failed(_)) => true,
        (NotifyOn::Findings, Outcome::Report(r)) => !r.converged(),
        (NotifyOn::Errors, Outcome::Report(_)) => false,
    }
}

/// Posts `body` to `url` through `net`, retrying transient failures.
pub async fn post(net: &Net, url: &str, body: &Value) -> Result<(), NotifyError> {
    let host =
        reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_else(|| "?".into());
    let mut last = String::new();
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        let req = net.request(reqwest::Method::POST, url, Duration::from_secs(20), "drift")?;
        match req.json(body).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                last = format!("HTTP {}", r.status().as_u16())
            }
            Ok(r) => return Err(NotifyError::Refused { host, status: r.status().as_u16() }),
            Err(e) => last = error_chain(&e),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    Err(NotifyError::Unreachable { host, attempts: ATTEMPTS, last })
}
