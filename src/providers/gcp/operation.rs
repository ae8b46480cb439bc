//! Long-running operations (Cloud SQL, GKE, Service Usage): polling with capped
//! exponential backoff up to a deadline, and the private record that lets a
//! later run resume an operation a crash interrupted.

use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::time::Instant;

use super::client::{Api, Client, seg};
use crate::providers::{Checkpoint, ProviderError};
use crate::value::Value;

/// A long-running operation we started (or found in state).
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// `sql`, `container` or `serviceusage`.
    pub api: String,
    /// The operation's name as the API gave it.
    pub name: String,
    /// Project (sql, container).
    pub project: String,
    /// Location (container).
    pub location: String,
}

impl Op {
    /// A Cloud SQL operation.
    pub fn sql(project: &str, resp: &Json) -> Op {
        Op { api: "sql".into(), name: str_of(resp, "name"), project: project.into(), location: String::new() }
    }
    /// A GKE operation.
    pub fn container(project: &str, location: &str, resp: &Json) -> Op {
        Op { api: "container".into(), name: str_of(resp, "name"), project: project.into(), location: location.into() }
    }
    /// A Service Usage operation (`operations/…`).
    pub fn service_usage(resp: &Json) -> Op {
        Op { api: "serviceusage".into(), name: str_of(resp, "name"), project: String::new(), location: String::new() }
    }

    /// The private data recorded in state while it runs (no secrets).
    pub fn to_private(&self) -> Value {
        Value::map([(
            "operation",
            Value::map([
                ("api", Value::str(&self.api)),
                ("name", Value::str(&self.name)),
                ("project", Value::str(&self.project)),
                ("location", Value::str(&self.location)),
            ]),
        )])
    }

    /// The operation recorded in `private`, if any.
    pub fn from_private(private: &Value) -> Option<Op> {
        let o = private.get("operation")?;
        let s = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let op = Op { api: s("api"), name: s("name"), project: s("project"), location: s("location") };
        (!op.name.is_empty()).then_some(op)
    }

    /// The operation's URL path. The name comes from an API answer or from the state's private
    /// data: every segment is percent-encoded, as resource names are, so that no name (`..`,
    /// `a/b`, `x?y`) can make the poll reach another URL.
    fn path(&self) -> (Api, String) {
        match self.api.as_str() {
            "sql" => (Api::Sql, format!("v1/projects/{}/operations/{}", seg(&self.project), seg(&self.name))),
            "container" => (
                Api::Container,
                format!(
                    "v1/projects/{}/locations/{}/operations/{}",
                    seg(&self.project),
                    seg(&self.location),
                    seg(&self.name)
                ),
            ),
            // `operations/<id>`: the collection stays, the rest is one segment.
            _ => {
                let id = self.name.strip_prefix("operations/").unwrap_or(&self.name);
                (Api::ServiceUsage, format!("v1/operations/{}", seg(id)))
            }
        }
    }
}

fn str_of(v: &Json, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

/// Whether `op` (a body of any of the three APIs) is finished, and its error.
pub fn status(api: &str, op: &Json) -> (bool, Option<String>) {
    match api {
        "sql" => {
            let done = op["status"] == "DONE";
            let err = op["error"]["errors"].as_array().and_then(|es| es.first()).map(|e| {
                format!(
                    "{} [{}]",
                    e["message"].as_str().unwrap_or("operation failed"),
                    e["code"].as_str().unwrap_or("")
                )
            });
            (done, if done { err } else { None })
        }
        "container" => {
            let done = op["status"] == "DONE";
            let err = op["error"]["message"]
                .as_str()
                .or_else(|| op["statusMessage"].as_str())
                .filter(|m| !m.is_empty())
                .map(str::to_string);
            (done, if done { err } else { None })
        }
        _ => {
            let done = op["done"] == json!(true);
            (done, op["error"]["message"].as_str().map(str::to_string))
        }
    }
}

/// Records `op` as pending (so a crash resumes it), then waits for it.
pub async fn track(
    c: &Client,
    cp: &dyn Checkpoint,
    identity: &Value,
    op: &Op,
    first: &Json,
    deadline: Instant,
) -> Result<Json, ProviderError> {
    let (done, err) = status(&op.api, first);
    if done {
        return match err {
            Some(e) => Err(ProviderError::Permanent(e)),
            None => Ok(first.clone()),
        };
    }
    cp.pending(identity, &op.to_private());
    wait(c, op, deadline).await
}

/// Polls `op` until it is done or `deadline` passes. Poll errors are retried by
/// the client; a failed operation is a permanent error with the API's message.
pub async fn wait(c: &Client, op: &Op, deadline: Instant) -> Result<Json, ProviderError> {
    let (api, path) = op.path();
    let mut interval = c.retry.poll_initial;
    let started = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(ProviderError::Timeout(started.elapsed()));
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        let body = c.get(api, &path).await?;
        let (done, err) = status(&op.api, &body);
        if done {
            return match err {
                Some(e) => Err(ProviderError::Permanent(e)),
                None => Ok(body),
            };
        }
        // Capped exponential backoff, but never more than an eighth of the time
        // waited so far: the overshoot past the operation's end stays ~12%.
        interval = Duration::from_secs_f64(interval.as_secs_f64() * 1.5)
            .min(c.retry.poll_cap)
            .min((started.elapsed() / 8).max(c.retry.poll_initial));
    }
}

/// Waits for the operation recorded in `private` by an interrupted run, if any.
/// `Ok(true)`: it finished well (or is gone: nothing left to wait for);
/// `Ok(false)`: there was none, or it failed (the caller starts afresh rather
/// than being stuck on an operation that will never succeed); an error: it is
/// still running at the deadline, or could not be polled.
pub async fn resume(c: &Client, private: &Value, deadline: Instant) -> Result<bool, ProviderError> {
    let Some(op) = Op::from_private(private) else { return Ok(false) };
    match wait(c, &op, deadline).await {
        Ok(_) => Ok(true),
        Err(ProviderError::Permanent(m)) if m.contains("not found") || m.contains("does not exist") => Ok(true),
        Err(ProviderError::Permanent(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn operation_names_cannot_leave_their_collection() {
        let op = |api: &str, name: &str| Op {
            api: api.into(),
            name: name.into(),
            project: "p".into(),
            location: "l".into(),
        };
        for (api, name) in
            [("sql", "../../instances/x"), ("container", "a/b?c#d"), ("serviceusage", "operations/../../x")]
        {
            let (_, path) = op(api, name).path();
            assert!(!path.contains("/../") && !path.contains('?') && !path.contains('#'), "{api}: {path}");
            assert_eq!(
                path.matches('/').count(),
                if api == "sql" {
                    4
                } else if api == "container" {
                    6
                } else {
                    2
                },
                "{path}"
            );
        }
        assert_eq!(op("serviceusage", "operations/acat.p2-123").path().1, "v1/operations/acat.p2-123");
        assert_eq!(op("sql", "2f0c-4b").path().1, "v1/projects/p/operations/2f0c-4b");
    }

    use super::*;

    #[test]
    fn private_round_trip_and_status() {
        let op = Op::sql("p", &json!({"name": "op-1"}));
        assert_eq!(Op::from_private(&op.to_private()), Some(op));
        assert_eq!(Op::from_private(&Value::Null), None);
        let failed = json!({"status": "DONE", "error": {"errors": [{"code": "INTERNAL_ERROR", "message": "boom"}]}});
        assert_eq!(status("sql", &failed), (true, Some("boom [INTERNAL_ERROR]".into())));
        assert_eq!(status("serviceusage", &json!({"done": true})), (true, None));
        assert_eq!(status("container", &json!({"status": "RUNNING"})), (false, None));
    }
}
