//! Readiness: when an object counts as ready, and waiting for it.
//!
//! Only on request (`k8s_manifest.wait_for_ready`): a cluster without nodes, a
//! webhook or a controller cannot make some objects ready, and waiting for them
//! there would only time out.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::objects::{Cluster, ObjRef};
use crate::providers::ProviderError;

/// Whether `obj` is ready: workloads have rolled out (their controller saw the
/// current generation and the wanted replicas are updated and available); a
/// Job has completed; anything with a `Ready` or `Available` condition has it
/// `True`; anything else is ready once it exists. `Err` says why not.
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
    let start = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        let why = match cluster.get(r).await? {
            Some(obj) => match ready(&obj) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            },
            None => "it does not exist".into(),
        };
        if start.elapsed() >= limit {
            return Err(ProviderError::Permanent(format!(
                "{} not ready after {limit:?}: {why} (is there a node/controller that can make it ready? set wait_for_ready = false otherwise)",
                r.display()
            )));
        }
        tokio::time::sleep(delay.min(limit.saturating_sub(start.elapsed()))).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    }
}
