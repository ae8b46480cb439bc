//! Readiness: when an object counts as ready, waiting for it, and saying why it
//! is not.
//!
//! Only on request (`k8s_manifest.wait_for_ready`, `helm_release.wait`): a
//! cluster without nodes, a webhook or a controller cannot make some objects
//! ready, and waiting for them there would only time out. When the wait ends
//! without them, the error names each object that is not ready with its
//! conditions, its pods' waiting and terminated reasons (CrashLoopBackOff,
//! ImagePullBackOff, Unschedulable and why), restart counts and the latest
//! Warning events: what `kubectl describe` would have shown.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::objects::{Cluster, ObjRef};
use crate::providers::ProviderError;

/// Whether `obj` is ready: workloads have rolled out (their controller saw the
/// current generation and the wanted replicas are updated and available); a
/// Job has completed; a claim is bound; anything with a `Ready` or `Available`
/// condition has it `True`; anything else is ready once it exists (a Service's
/// endpoints are checked by [`wait_all`]). `Err` says why not.
pub fn ready(obj: &Json) -> Result<(), String> {
    let kind = obj.get("kind").and_then(Json::as_str).unwrap_or_default();
    let status = obj.get("status").cloned().unwrap_or(Json::Null);
    let num = |v: &Json, k: &str| v.get(k).and_then(Json::as_i64).unwrap_or(0);
    let generation = obj.pointer("/metadata/generation").and_then(Json::as_i64).unwrap_or(0);
    let observed = num(&status, "observedGeneration");
    let wanted = obj.pointer("/spec/replicas").and_then(Json::as_i64).unwrap_or(1);
    let check = |ok: bool, why: String| if ok { Ok(()) } else { Err(why) };
    match kind {
        "Deployment" | "StatefulSet" | "ReplicaSet" if observed < generation => {
            Err(format!("its controller has not seen generation {generation} yet"))
        }
        "Deployment" => {
            let (updated, available) = (num(&status, "updatedReplicas"), num(&status, "availableReplicas"));
            check(
                updated >= wanted && available >= wanted,
                format!("{available}/{wanted} replicas available, {updated} updated"),
            )
        }
        "StatefulSet" | "ReplicaSet" => {
            let r = num(&status, "readyReplicas");
            check(r >= wanted, format!("{r}/{wanted} replicas ready"))
        }
        "DaemonSet" => {
            let (ready, want) = (num(&status, "numberReady"), num(&status, "desiredNumberScheduled"));
            check(observed >= generation && ready >= want, format!("{ready}/{want} pods ready"))
        }
        "Job" => check(condition(&status, "Complete") == Some(true), "not complete".into()),
        "PersistentVolumeClaim" => {
            let phase = status.get("phase").and_then(Json::as_str).unwrap_or("Pending");
            check(phase == "Bound", format!("{phase}, not Bound"))
        }
        _ => match condition(&status, "Ready").or_else(|| condition(&status, "Available")) {
            Some(false) => Err("its Ready/Available condition is not True".into()),
            _ => Ok(()),
        },
    }
}

fn condition(status: &Json, kind: &str) -> Option<bool> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Json::as_str) == Some(kind))
        .map(|c| c.get("status").and_then(Json::as_str) == Some("True"))
}

/// Polls `r` until [`ready`] or `limit`; the timeout error says what was missing.
pub async fn wait(cluster: &Cluster, r: &ObjRef, limit: Duration) -> Result<(), ProviderError> {
    wait_all(cluster, std::slice::from_ref(r), limit, &|_| {}).await.map_err(|e| match e {
        ProviderError::Permanent(m) => ProviderError::Permanent(format!(
            "{m}\n(is there a node/controller that can make it ready? set wait_for_ready = false otherwise)"
        )),
        e => e,
    })
}

/// Polls every object of `refs` until all are ready or `limit` passes, telling `progress` how the
/// first one not ready is doing (`1/1 pods Running, 0/1 Ready`). The timeout error names each object
/// not ready, why, and what its pods and their events say.
pub async fn wait_all(
    cluster: &Cluster,
    refs: &[ObjRef],
    limit: Duration,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), ProviderError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(200);
    let mut pending: Vec<ObjRef> = refs.to_vec();
    loop {
        let still = unready(cluster, &pending).await?;
        if still.is_empty() {
            return Ok(());
        }
        // How the first object not ready is doing: its pods' counts when it has pods.
        if let Some((r, Some(obj), why)) = still.first() {
            let pods = pods_of(cluster, obj).await.unwrap_or_default();
            progress(&format!("{}: {}", short(r), if pods.is_empty() { why.clone() } else { pod_counts(&pods) }));
        }
        if start.elapsed() >= limit {
            let msg = format!("not ready after {}:{}", human(limit), describe(cluster, &still).await);
            return Err(ProviderError::Permanent(msg));
        }
        pending = still.into_iter().map(|(r, _, _)| r).collect();
        tokio::time::sleep(delay.min(limit.saturating_sub(start.elapsed()))).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// One look at `refs`: `None` when every object is ready; otherwise each one that is not, why, and
/// what its pods and their events say (the text of a readiness timeout, without the timeout).
pub async fn not_ready(cluster: &Cluster, refs: &[ObjRef]) -> Result<Option<String>, ProviderError> {
    let still = unready(cluster, refs).await?;
    Ok(if still.is_empty() { None } else { Some(describe(cluster, &still).await) })
}

/// The objects of `refs` not ready now: each with its live object (if any) and why.
async fn unready(cluster: &Cluster, refs: &[ObjRef]) -> Result<Vec<(ObjRef, Option<Json>, String)>, ProviderError> {
    let mut still = Vec::new();
    for r in refs {
        match cluster.get(r).await? {
            Some(obj) => {
                if let Err(why) = live_ready(cluster, &obj).await? {
                    still.push((r.clone(), Some(obj), why));
                }
            }
            None => still.push((r.clone(), None, "it does not exist".into())),
        }
    }
    Ok(still)
}

/// A line per object not ready (`\n  Kind/ns/name: why`), each followed by what [`explain`] says.
async fn describe(cluster: &Cluster, still: &[(ObjRef, Option<Json>, String)]) -> String {
    let mut msg = String::new();
    for (r, obj, why) in still {
        msg.push_str(&format!("\n  {}: {why}", r.display()));
        if let Some(obj) = obj {
            msg.push_str(&explain(cluster, obj).await);
        }
    }
    msg
}

/// [`ready`], and for a Service with a selector, at least one ready endpoint.
async fn live_ready(cluster: &Cluster, obj: &Json) -> Result<Result<(), String>, ProviderError> {
    if let Err(why) = ready(obj) {
        return Ok(Err(why));
    }
    let kind = obj.get("kind").and_then(Json::as_str).unwrap_or_default();
    let has_selector = obj.pointer("/spec/selector").and_then(Json::as_object).is_some_and(|m| !m.is_empty());
    if kind != "Service" || !has_selector {
        return Ok(Ok(()));
    }
    let ns = obj.pointer("/metadata/namespace").and_then(Json::as_str).unwrap_or("default");
    let name = obj.pointer("/metadata/name").and_then(Json::as_str).unwrap_or_default();
    let slices = cluster
        .list("discovery.k8s.io/v1", "EndpointSlice", ns, &format!("kubernetes.io/service-name={name}"), "")
        .await?;
    let ready = slices
        .iter()
        .flat_map(|s| s.get("endpoints").and_then(Json::as_array).cloned().unwrap_or_default())
        .any(|e| e.pointer("/conditions/ready").and_then(Json::as_bool) != Some(false));
    Ok(if ready { Ok(()) } else { Err("no ready endpoint".into()) })
}

/// The pods of a workload (its `spec.selector.matchLabels`); none for other kinds.
async fn pods_of(cluster: &Cluster, obj: &Json) -> Result<Vec<Json>, ProviderError> {
    let kind = obj.get("kind").and_then(Json::as_str).unwrap_or_default();
    if !matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job") {
        return Ok(Vec::new());
    }
    let Some(labels) = obj.pointer("/spec/selector/matchLabels").and_then(Json::as_object) else {
        return Ok(Vec::new());
    };
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
    let ns = obj.pointer("/metadata/namespace").and_then(Json::as_str).unwrap_or("default");
    cluster.list("v1", "Pod", ns, &selector.join(","), "").await
}

/// `2/2 pods Running, 1/2 Ready`.
fn pod_counts(pods: &[Json]) -> String {
    let running = pods.iter().filter(|p| p.pointer("/status/phase").and_then(Json::as_str) == Some("Running")).count();
    let ready =
        pods.iter().filter(|p| condition(p.get("status").unwrap_or(&Json::Null), "Ready") == Some(true)).count();
    format!("{running}/{n} pods Running, {ready}/{n} Ready", n = pods.len())
}

/// What `kubectl describe` would show about why `obj` is not ready: its false conditions, and for a
/// workload each pod's state, its containers' reasons and restarts, and its latest Warning events.
async fn explain(cluster: &Cluster, obj: &Json) -> String {
    let mut out = String::new();
    let status = obj.get("status").cloned().unwrap_or(Json::Null);
    for c in status.get("conditions").and_then(Json::as_array).into_iter().flatten() {
        if c.get("status").and_then(Json::as_str) == Some("False") {
            out.push_str(&format!(
                "\n    condition {}=False: {} {}",
                text(c, "type"),
                text(c, "reason"),
                clip(&text(c, "message"), 200)
            ));
        }
    }
    let Ok(pods) = pods_of(cluster, obj).await else { return out };
    if !pods.is_empty() {
        out.push_str(&format!("\n    {}", pod_counts(&pods)));
    }
    for pod in pods.iter().take(5) {
        let name = pod.pointer("/metadata/name").and_then(Json::as_str).unwrap_or_default();
        let ns = pod.pointer("/metadata/namespace").and_then(Json::as_str).unwrap_or("default");
        out.push_str(&format!("\n    pod {name}: {}", pod_state(pod)));
        for (container, previous, only_errors) in log_sources(pod) {
            if let Ok(log) = cluster.log_tail(ns, name, &container, previous, 40).await {
                let lines = telling_lines(&log, if only_errors { 2 } else { 3 });
                if only_errors && !lines.iter().any(|l| telling(l)) {
                    continue;
                }
                for line in lines {
                    out.push_str(&format!("\n      log {container}: {}", log_line(&line)));
                }
            }
        }
        let fields = format!("involvedObject.name={name},type=Warning");
        if let Ok(mut events) = cluster.list("v1", "Event", ns, "", &fields).await {
            events.sort_by_key(event_time);
            for e in events.iter().rev().take(3).rev() {
                out.push_str(&format!("\n      event {}: {}", text(e, "reason"), clip(&text(e, "message"), 300)));
            }
        }
    }
    out
}

/// Whose logs say why a pod is not ready: `(container, previous, only_errors)`. A container that
/// exited with an error now (`previous` false) or before its last restart (`previous` true: its
/// previous instance's log); and, from a pod that is not ready, every running container's errors
/// only (a sidecar that cannot get a token keeps running while the server behind it fails).
fn log_sources(pod: &Json) -> Vec<(String, bool, bool)> {
    let status = pod.get("status").cloned().unwrap_or(Json::Null);
    let pod_ready = condition(&status, "Ready") == Some(true);
    let failed = |t: Option<&Json>| t.and_then(|t| t.get("exitCode")).and_then(Json::as_i64).is_some_and(|c| c != 0);
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|k| status.get(*k).and_then(Json::as_array).cloned().unwrap_or_default())
        .filter_map(|cs| {
            let name = text(&cs, "name");
            if failed(cs.pointer("/state/terminated")) {
                Some((name, false, false))
            } else if failed(cs.pointer("/lastState/terminated")) {
                Some((name, true, false))
            } else if !pod_ready && cs.pointer("/state/running").is_some() {
                Some((name, false, true))
            } else {
                None
            }
        })
        .collect()
}

/// A log line for a message: a structured (JSON) line as its severity and message, and a long one
/// cut in the middle, since its end usually holds the cause (`…: 403 Forbidden`).
fn log_line(line: &str) -> String {
    let text = match serde_json::from_str::<Json>(line) {
        Ok(j) if j.get("message").and_then(Json::as_str).is_some() => {
            let sev = ["severity", "level"].iter().find_map(|k| j.get(*k).and_then(Json::as_str)).unwrap_or("");
            format!("{sev} {}", text(&j, "message")).trim().to_string()
        }
        _ => line.to_string(),
    };
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let n = one.chars().count();
    if n <= 420 {
        return one;
    }
    let head: String = one.chars().take(160).collect();
    let tail: String = one.chars().skip(n - 240).collect();
    format!("{head} … {tail}")
}

/// Whether a log line says something went wrong.
fn telling(line: &str) -> bool {
    let l = line.to_lowercase();
    ["error", "exception", "denied", "fatal", "failed", "refused", "invalid", "forbidden"].iter().any(|w| l.contains(w))
}

/// The last `n` lines of a log that say what went wrong (errors, exceptions, refusals), else its
/// last `n` lines.
fn telling_lines(log: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let telling: Vec<&str> = lines.iter().copied().filter(|l| telling(l)).collect();
    let pick = if telling.is_empty() { &lines } else { &telling };
    pick[pick.len().saturating_sub(n)..].iter().map(|l| l.to_string()).collect()
}

/// A pod's phase, scheduling and containers, in one line.
pub fn pod_state(pod: &Json) -> String {
    let status = pod.get("status").cloned().unwrap_or(Json::Null);
    let mut parts = vec![status.get("phase").and_then(Json::as_str).unwrap_or("Pending").to_string()];
    for c in status.get("conditions").and_then(Json::as_array).into_iter().flatten() {
        if text(c, "type") == "PodScheduled" && text(c, "status") == "False" {
            parts.push(format!("{}: {}", text(c, "reason"), clip(&text(c, "message"), 200)));
        }
    }
    let statuses = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|k| status.get(*k).and_then(Json::as_array).cloned().unwrap_or_default());
    for cs in statuses {
        let mut bits = Vec::new();
        if let Some(w) = cs.pointer("/state/waiting") {
            bits.push(format!("{} {}", text(w, "reason"), clip(&text(w, "message"), 200)).trim().to_string());
        } else if let Some(t) = cs.pointer("/state/terminated") {
            bits.push(format!(
                "terminated {} (exit {})",
                text(t, "reason"),
                t.get("exitCode").and_then(Json::as_i64).unwrap_or(0)
            ));
        } else if cs.get("ready").and_then(Json::as_bool) == Some(false) && cs.pointer("/state/running").is_some() {
            bits.push("running, not ready".into());
        }
        let restarts = cs.get("restartCount").and_then(Json::as_i64).unwrap_or(0);
        if restarts > 0 {
            let last = cs
                .pointer("/lastState/terminated")
                .map(|t| {
                    format!(
                        " (last: {}, exit {})",
                        text(t, "reason"),
                        t.get("exitCode").and_then(Json::as_i64).unwrap_or(0)
                    )
                })
                .unwrap_or_default();
            bits.push(format!("restarted {restarts} times{last}"));
        }
        if !bits.is_empty() {
            parts.push(format!("{}: {}", text(&cs, "name"), bits.join(", ")));
        }
    }
    parts.join("; ")
}

fn event_time(e: &Json) -> String {
    ["lastTimestamp", "eventTime", "firstTimestamp"]
        .iter()
        .find_map(|k| e.get(*k).and_then(Json::as_str))
        .unwrap_or_default()
        .to_string()
}

fn text(v: &Json, key: &str) -> String {
    v.get(key).and_then(Json::as_str).unwrap_or_default().to_string()
}

/// At most `n` characters, on one line.
fn clip(s: &str, n: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= n { one } else { format!("{}...", one.chars().take(n).collect::<String>()) }
}

/// `Deployment/name`, for progress lines.
fn short(r: &ObjRef) -> String {
    format!("{}/{}", r.kind, r.name)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 { format!("{}m{}s", s / 60, s % 60) } else { format!("{s}s") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_telling_lines_of_a_crash_log() {
        let log = "starting\nmigrating\nTraceback (most recent call last):\n  File x\npsycopg2.errors.InsufficientPrivilege: permission denied for schema public\n(Background on this error at: https://sqlalche.me/e/20/f405)\n";
        assert_eq!(
            telling_lines(log, 3),
            vec![
                "psycopg2.errors.InsufficientPrivilege: permission denied for schema public".to_string(),
                "(Background on this error at: https://sqlalche.me/e/20/f405)".to_string()
            ]
        );
        assert_eq!(telling_lines("a\nb\nc\n", 2), vec!["b".to_string(), "c".to_string()]);
        let structured = format!(
            "{{\"severity\":\"ERROR\",\"message\":\"failed to connect: {}: 403 Forbidden: missing roles/iam.workloadIdentityUser\"}}",
            "x".repeat(600)
        );
        let shown = log_line(&structured);
        assert!(
            shown.starts_with("ERROR failed to connect: xxx")
                && shown.ends_with("403 Forbidden: missing roles/iam.workloadIdentityUser"),
            "{shown}"
        );
        assert!(shown.chars().count() < 420, "{shown}");
        let pod = json!({"status": {"containerStatuses": [
            {"name": "api", "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}},
            {"name": "ok", "state": {"running": {}}},
        ], "initContainerStatuses": [{"name": "init", "state": {"terminated": {"exitCode": 2}}}]}});
        assert_eq!(
            log_sources(&pod),
            vec![("init".to_string(), false, false), ("api".to_string(), true, false), ("ok".to_string(), false, true)]
        );
        let mut ready = pod.clone();
        ready["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(log_sources(&ready).len(), 2, "a ready pod's running containers are not asked");
    }

    #[test]
    fn readiness_by_kind() {
        let dep = |g: i64, obs: i64, avail: i64| json!({"kind": "Deployment", "metadata": {"generation": g}, "spec": {"replicas": 2}, "status": {"observedGeneration": obs, "updatedReplicas": avail, "availableReplicas": avail}});
        assert!(ready(&dep(2, 1, 2)).is_err());
        assert!(ready(&dep(2, 2, 1)).unwrap_err().contains("1/2"));
        assert!(ready(&dep(2, 2, 2)).is_ok());
        assert!(ready(&json!({"kind": "ConfigMap"})).is_ok());
        assert!(
            ready(&json!({"kind": "Foo", "status": {"conditions": [{"type": "Ready", "status": "False"}]}})).is_err()
        );
        assert!(
            ready(&json!({"kind": "Job", "status": {"conditions": [{"type": "Complete", "status": "True"}]}})).is_ok()
        );
        assert!(
            ready(&json!({"kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}}))
                .unwrap_err()
                .contains("Pending")
        );
        assert!(ready(&json!({"kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}})).is_ok());
    }

    #[test]
    fn a_pod_says_why_it_is_not_ready() {
        let pod = json!({"status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "initContainerStatuses": [{"name": "cloud-sql-proxy", "ready": true, "restartCount": 0,
                "state": {"running": {}}}],
            "containerStatuses": [{"name": "skypilot-api", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
                "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]
        }});
        let s = pod_state(&pod);
        assert!(s.starts_with("Running"), "{s}");
        assert!(s.contains("skypilot-api: CrashLoopBackOff back-off 40s restarting failed container, restarted 3 times (last: Error, exit 1)"), "{s}");
        assert!(!s.contains("cloud-sql-proxy"), "a running, ready container is not news: {s}");
        let pending = json!({"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu."}]}});
        assert_eq!(pod_state(&pending), "Pending; Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.");
        assert_eq!(pod_counts(&[pod, pending]), "1/2 pods Running, 0/2 Ready");
        assert_eq!(clip("a\n  b   c", 3), "a b...");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Pod logs are the remote text read here (tests/fuzz_answers.rs fuzzes the JSON): any log
        /// gives lines that are one line each, at most as many as asked, and cut to a bounded
        /// length, multi-byte characters and JSON lines included.
        #[test]
        fn any_log_gives_bounded_lines(
            log in "(\\PC{0,80}|\\{\"message\":\"[^\"]{0,600}\",\"severity\":\"E\"\\}|\n|error ){0,12}",
            n in 0usize..5,
        ) {
            let lines = telling_lines(&log, n);
            proptest::prop_assert!(lines.len() <= n);
            for l in &lines {
                let shown = log_line(l);
                proptest::prop_assert!(!shown.contains('\n'));
                proptest::prop_assert!(shown.chars().count() <= 420, "{}", shown);
            }
        }
    }
}
