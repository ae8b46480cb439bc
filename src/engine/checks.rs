//! Checks: the HTTP probes of `[check.<name>]` blocks, which say whether what was applied works.
//!
//! A check is evaluated with the values of its dependencies (real results during apply, live
//! values during `drift` and `skyform check`), then requested — a plain URL from where skyform
//! runs, or a Kubernetes Service through the API server's service proxy of its `via` provider —
//! until the status (and JSON body subset) is the expected one or its attempts run out. A failure
//! says what the last attempt saw, with a short excerpt of the body in which every secret the
//! spec knows is masked, and what the providers of its dependencies say about them (a release's
//! objects not ready, with their pods' reasons).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value as Json;

use super::Context;
use super::error::CheckRequestError;
use super::events::{Event, PROGRESS_INTERVAL};
use super::providers::{ProviderSet, Slot};
use super::scope::{EvalScope, Values};
use crate::address::Address;
use crate::foundation::net::{Net, NetError, error_chain, read_limited};
use crate::graph::{SpecGraph, provider_of};
use crate::mask::Mask;
use crate::plan::PlannedCheck;
use crate::providers::{HttpReply, ServiceRequest};
use crate::spec::checks::parse_service;
use crate::spec::eval::eval;
use crate::spec::model::{CheckBlock, Spec};
use crate::timings;
use crate::value::{MASK, UNKNOWN_TEXT, Value};

/// How long one request may take at most.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a body a check reads (it looks at the start only).
const CHECK_BODY_LIMIT: usize = 1 << 20;
/// How many characters of a body a message quotes.
const EXCERPT: usize = 240;
/// Attempts `drift` and `skyform check` make before a check counts as failing: one dropped
/// request is not a finding.
pub const SURVEY_ATTEMPTS: u32 = 3;

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Requests made.
    pub attempts: u32,
    /// How long it took, in milliseconds.
    pub elapsed_ms: u64,
    /// The status of the last response, if any came.
    pub status: Option<u16>,
    /// What was requested (`GET https://…`, `GET service ns/name:port/path via kubernetes`).
    pub target: String,
    /// Why it failed (the last status or error, a secret-free excerpt of the body, and what its
    /// dependencies' providers say); empty when it passed.
    pub message: String,
}

impl CheckResult {
    /// A check that was not run (or could not be), and why.
    pub fn not_run(name: &str, target: &str, message: impl Into<String>) -> CheckResult {
        CheckResult {
            name: name.to_string(),
            passed: false,
            attempts: 0,
            elapsed_ms: 0,
            status: None,
            target: target.to_string(),
            message: message.into(),
        }
    }
}

/// How many times to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempts {
    /// Until it passes or its `timeout` ends (apply).
    UntilTimeout,
    /// At most this many, `interval` apart, within its `timeout` (drift, `skyform check`).
    AtMost(u32),
}

/// The resources a check waits for: those its values reference, its `depends_on`, and those the
/// configuration of its `via` provider references (so that the provider can be configured).
pub fn dependencies(spec: &Spec, graph: &SpecGraph, c: &CheckBlock) -> Vec<Address> {
    let mut out: Vec<Address> = c.body.node.references().iter().filter_map(|r| r.node.address().cloned()).collect();
    out.extend(c.depends_on.iter().map(|d| d.node.clone()));
    if let Some(via) = &c.via {
        let mut stack = graph.dependencies(&crate::graph::Node::Provider(via.node.clone()));
        while let Some(n) = stack.pop() {
            match n {
                crate::graph::Node::Resource(a) => out.push(a),
                p @ crate::graph::Node::Provider(_) => stack.extend(graph.dependencies(&p)),
            }
        }
    }
    out.retain(|a| spec.resources.contains_key(a));
    out.sort();
    out.dedup();
    out
}

/// The checks a plan lists (with the planned `values`): every check whose dependencies are all
/// part of the plan (`in_plan`: everything, unless the plan is restricted with `--target`).
pub fn planned(ctx: &Context, values: &Values, in_plan: &dyn Fn(&Address) -> bool) -> Vec<PlannedCheck> {
    ctx.spec
        .checks
        .values()
        .filter_map(|c| {
            let after = dependencies(&ctx.spec, &ctx.graph, c);
            if !after.iter().all(in_plan) {
                return None;
            }
            let target = match request(ctx, values, c) {
                Ok(r) => r.target,
                Err(_) => match &c.via {
                    Some(via) => format!("GET service {UNKNOWN_TEXT} via {}", via.node),
                    None => format!("GET {UNKNOWN_TEXT}"),
                },
            };
            Some(PlannedCheck { name: c.name.clone(), target, after })
        })
        .collect()
}

/// What a check requests, evaluated.
struct Request {
    /// For people and messages (no header values).
    target: String,
    kind: Target,
    headers: Vec<(String, String)>,
    expect_json: Option<Json>,
}

enum Target {
    Url(String),
    Service { via: String, req: ServiceRequest },
}

/// Evaluates what `c` requests; an error says why it cannot be requested (a value not known).
fn request(ctx: &Context, values: &Values, c: &CheckBlock) -> Result<Request, CheckRequestError> {
    let scope = EvalScope { vars: &ctx.vars, values, dir: ctx.spec.dir.clone() };
    let body = eval(&c.body, &scope).map_err(|d| CheckRequestError::Evaluation(d.to_string().trim().to_string()))?;
    if body.has_unknown() {
        return Err(CheckRequestError::Unknown);
    }
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let headers: Vec<(String, String)> = body
        .get("headers")
        .and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.unmarked().to_string())))
                .collect()
        })
        .unwrap_or_default();
    let expect_json = body.get("expect_json").map(Value::to_json_clear);
    let (target, kind) = match (&c.via, text("url")) {
        (None, Some(url)) => {
            // A URL built from a secret is requested but never shown.
            let shown = if body.get("url").is_some_and(Value::has_sensitive) { MASK.to_string() } else { url.clone() };
            (format!("GET {shown}"), Target::Url(url))
        }
        (Some(via), _) => {
            let service = text("service").ok_or(CheckRequestError::NotString("service"))?;
            let (namespace, name, port) = parse_service(&service)
                .map_err(|why| CheckRequestError::Service { service: service.clone(), why: why.to_string() })?;
            let mut path = text("path").unwrap_or_else(|| "/".into());
            if !path.starts_with('/') {
                path.insert(0, '/');
            }
            // A path built from a secret (a token in the query) is requested but never shown.
            let shown =
                if body.get("path").is_some_and(Value::has_sensitive) { format!("/{MASK}") } else { path.clone() };
            let target = format!("GET service {namespace}/{name}:{port}{shown} via {}", via.node);
            let req =
                ServiceRequest { namespace, name, port, path, headers: headers.clone(), timeout: REQUEST_TIMEOUT };
            (target, Target::Service { via: via.node.clone(), req })
        }
        (None, None) => return Err(CheckRequestError::NotString("url")),
    };
    Ok(Request { target, kind, headers, expect_json })
}

/// The mask of every secret the spec knows here (variables, and the check's own values), so that
/// an excerpt of a body never shows one.
fn secrets(ctx: &Context, values: &Values, c: &CheckBlock) -> Mask {
    let scope = EvalScope { vars: &ctx.vars, values, dir: ctx.spec.dir.clone() };
    let own = eval(&c.body, &scope).ok();
    Mask::of(ctx.vars.values().chain(own.as_ref()))
}

/// One line of at most [`EXCERPT`] characters of `body`, with every secret masked.
pub fn excerpt(body: &[u8], secrets: &Mask) -> String {
    let one: String = String::from_utf8_lossy(body).split_whitespace().collect::<Vec<_>>().join(" ");
    let text = secrets.apply(&one);
    let cut: String = text.chars().take(EXCERPT).collect();
    if cut.len() < text.len() { format!("{cut}…") } else { cut }
}

/// Whether `actual` contains `expected`: every key of an expected object with a value that
/// contains the expected one, every element of an expected list in the actual list, scalars
/// equal (numbers by value).
pub fn json_contains(actual: &Json, expected: &Json) -> bool {
    match (actual, expected) {
        (Json::Object(a), Json::Object(e)) => e.iter().all(|(k, ev)| a.get(k).is_some_and(|av| json_contains(av, ev))),
        (Json::Array(a), Json::Array(e)) => e.iter().all(|ev| a.iter().any(|av| json_contains(av, ev))),
        (Json::Number(a), Json::Number(e)) => a.as_f64() == e.as_f64(),
        (a, e) => a == e,
    }
}

/// What one attempt saw: `Ok(status)` when it passed, else why not (secret-free) and the status.
async fn attempt(
    ctx: &Context,
    providers: &ProviderSet,
    values: &Values,
    c: &CheckBlock,
    r: &Request,
    secrets: &Mask,
) -> Result<u16, (String, Option<u16>)> {
    let reply: HttpReply = match &r.kind {
        Target::Url(url) => {
            http_get(ctx.registry.net(), url, &r.headers).await.map_err(|e| (mask(&e.to_string(), secrets), None))?
        }
        Target::Service { via, req } => {
            let p = match providers.get(ctx, values, via).await {
                Slot::Configured(p) => p,
                Slot::Failed(e) => return Err((e.to_string(), None)),
                Slot::Deferred(w) => {
                    return Err((format!("provider.{via} is not configured: it needs {}", w.join(", ")), None));
                }
            };
            p.service_get(req).await.map_err(|e| (mask(&e.to_string(), secrets), None))?
        }
    };
    let status = reply.status;
    if status != c.expect_status {
        let body = excerpt(&reply.body, secrets);
        let body = if body.is_empty() { String::new() } else { format!(": {body}") };
        return Err((format!("status {status} (expected {}){body}", c.expect_status), Some(status)));
    }
    if let Some(expected) = &r.expect_json {
        let ok = serde_json::from_slice::<Json>(&reply.body).is_ok_and(|got| json_contains(&got, expected));
        if !ok {
            // The expected subset may hold a secret too: shown masked like the body.
            let want = excerpt(expected.to_string().as_bytes(), secrets);
            return Err((
                format!("status {status}, but the body does not contain {want}: {}", excerpt(&reply.body, secrets)),
                Some(status),
            ));
        }
    }
    Ok(status)
}

fn mask(text: &str, secrets: &Mask) -> String {
    excerpt(text.as_bytes(), secrets)
}

/// A GET through the run's shared client. The error is the transport's, without the URL (a check's
/// URL may hold a credential); the caller masks secrets in it.
async fn http_get(net: &Net, url: &str, headers: &[(String, String)]) -> Result<HttpReply, NetError> {
    let mut req = net.request(reqwest::Method::GET, url, REQUEST_TIMEOUT, "check")?;
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await.map_err(|e| NetError::Transport(error_chain(&e)))?;
    let status = resp.status().as_u16();
    // A check looks at the start of the body; a longer one is cut, not read to its end.
    let body = match read_limited(resp, CHECK_BODY_LIMIT).await {
        Err(NetError::TooLarge { .. }) => b"(the body is longer than 1 MiB)".to_vec(),
        other => other?,
    };
    Ok(HttpReply { status, body })
}

/// Runs check `c`: evaluates it with `values`, then requests until it passes or `attempts` run
/// out, reporting progress through `ctx.hook`. `deps` are its dependencies (for the diagnosis
/// of a failure).
pub async fn run(
    ctx: &Context,
    providers: &ProviderSet,
    values: &Values,
    c: &CheckBlock,
    deps: &[Address],
    attempts: Attempts,
) -> CheckResult {
    let start = Instant::now();
    let _t = timings::span_for("check", &format_args!("check.{}", c.name), String::new);
    ctx.hook.event(&Event::CheckStarted { name: c.name.clone() });
    let mut result = CheckResult::not_run(&c.name, "", "");
    let secrets = secrets(ctx, values, c);
    let r = match request(ctx, values, c) {
        Ok(r) => r,
        Err(why) => {
            result.message = why.to_string();
            return finish(ctx, providers, values, deps, &secrets, result, start).await;
        }
    };
    result.target = r.target.clone();
    let timeout = Duration::from_secs(c.timeout);
    let interval = Duration::from_secs(c.interval);
    let mut last_progress = Instant::now();
    loop {
        result.attempts += 1;
        match attempt(ctx, providers, values, c, &r, &secrets).await {
            Ok(status) => {
                result.passed = true;
                result.status = Some(status);
                break;
            }
            Err((why, status)) => {
                result.status = status;
                result.message = why;
            }
        }
        let more = match attempts {
            Attempts::UntilTimeout => true,
            Attempts::AtMost(n) => result.attempts < n,
        };
        if !more || start.elapsed() + interval > timeout || ctx.cancel.is_cancelled() {
            break;
        }
        if last_progress.elapsed() >= PROGRESS_INTERVAL {
            last_progress = Instant::now();
            ctx.hook.event(&Event::CheckProgress {
                name: c.name.clone(),
                elapsed_secs: start.elapsed().as_secs(),
                detail: result.message.clone(),
            });
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = ctx.cancel.cancelled() => break,
        }
    }
    if result.passed {
        result.message.clear();
    } else {
        let tries =
            if result.attempts == 1 { "1 attempt".to_string() } else { format!("{} attempts", result.attempts) };
        result.message =
            format!("{}: failing after {tries} ({}s): {}", r.target, start.elapsed().as_secs(), result.message);
    }
    finish(ctx, providers, values, deps, &secrets, result, start).await
}

/// Adds what the dependencies' providers say to a failure, and reports the end.
async fn finish(
    ctx: &Context,
    providers: &ProviderSet,
    values: &Values,
    deps: &[Address],
    secrets: &Mask,
    mut result: CheckResult,
    start: Instant,
) -> CheckResult {
    result.elapsed_ms = start.elapsed().as_millis() as u64;
    if result.passed {
        ctx.hook.event(&Event::CheckPassed {
            name: result.name.clone(),
            elapsed_ms: result.elapsed_ms,
            status: result.status.unwrap_or_default(),
        });
        return result;
    }
    let mut notes: BTreeMap<&Address, String> = BTreeMap::new();
    for a in deps {
        // A value partly unknown (a release whose values wait on a new key) still names its
        // object: the provider takes what it needs.
        let Some(v) = values.get(a).filter(|v| !matches!(v, Value::Unknown)) else { continue };
        let provider = provider_of(&ctx.spec, &ctx.registry, a);
        if let Slot::Configured(p) = providers.get(ctx, values, &provider).await
            && let Some(note) = p.diagnose(&a.type_name, &v).await
        {
            notes.insert(a, note);
        }
    }
    for (a, note) in notes {
        // What a provider says quotes logs and events: mask what the spec knows to be secret.
        result.message.push_str(&format!("\n  {a}: {}", secrets.apply(&note).replace('\n', "\n  ")));
    }
    ctx.hook.event(&Event::CheckFailed { name: result.name.clone(), message: result.message.clone() });
    result
}

/// Runs every check of the spec (at most [`SURVEY_ATTEMPTS`] attempts each), all at once, with the
/// values of a plan (`drift`, `skyform check`).
pub async fn survey(ctx: &Context, values: &Values) -> Vec<CheckResult> {
    let providers = ProviderSet::default();
    let runs = ctx.spec.checks.values().map(|c| {
        let deps = dependencies(&ctx.spec, &ctx.graph, c);
        let providers = &providers;
        async move { run(ctx, providers, values, c, &deps, Attempts::AtMost(SURVEY_ATTEMPTS)).await }
    });
    crate::join::join_all(runs).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_subsets() {
        let body = json!({"status": "healthy", "version": "1.0", "n": 3, "tags": ["a", "b"], "x": {"y": 1, "z": 2}});
        assert!(json_contains(&body, &json!({"status": "healthy"})));
        assert!(json_contains(&body, &json!({"n": 3.0, "tags": ["b"], "x": {"z": 2}})));
        assert!(!json_contains(&body, &json!({"status": "unhealthy"})));
        assert!(!json_contains(&body, &json!({"missing": null})));
        assert!(!json_contains(&body, &json!({"tags": ["c"]})));
        assert!(!json_contains(&json!("text"), &json!({"status": "healthy"})));
    }

    #[test]
    fn excerpts_are_one_short_line_without_secrets() {
        let secrets = Mask::of_secrets(["hunter22".to_string()]);
        let e = excerpt(b"{\n  \"error\": \"bad password hunter22\"\n}", &secrets);
        assert_eq!(e, "{ \"error\": \"bad password (sensitive value)\" }");
        let long = "x".repeat(1000);
        let e = excerpt(long.as_bytes(), &Mask::default());
        assert_eq!(e.chars().count(), EXCERPT + 1, "{e}");
    }
}
