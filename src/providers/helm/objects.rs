//! The objects of a release compared with the live ones: each object of a
//! manifest is dry-run applied (server-side, field manager `skyform`, forced)
//! and the answer compared with the live object. Server defaults are in both,
//! so only a real difference shows: a field someone changed (`kubectl edit`),
//! or an object someone deleted.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::providers::ProviderError;
use crate::providers::kubernetes::compare::{at_path, differing_paths, strip_volatile};
use crate::providers::kubernetes::objects::{Cluster, ObjRef};
use crate::value::MASK;

use super::cli::mask;

/// The objects of a multi-document YAML manifest (empty documents skipped),
/// namespaced into `namespace` when they name none.
pub fn parse_manifest(manifest: &str) -> Result<Vec<Json>, ProviderError> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(manifest) {
        let j: Json = serde::Deserialize::deserialize(doc)
            .map_err(|e| ProviderError::Permanent(format!("the chart's manifest is not valid YAML: {e}")))?;
        if j.is_object() && j.get("kind").is_some() {
            out.push(j);
        }
    }
    Ok(out)
}

/// The objects of `manifest` whose readiness `wait` waits for: workloads and Jobs first (their pods
/// say the most about what is wrong), then claims, and Services that select pods (namespaced into
/// `namespace` when they name none).
pub fn awaited(manifest: &str, namespace: &str) -> Result<Vec<ObjRef>, ProviderError> {
    let mut out = Vec::new();
    for obj in parse_manifest(manifest)? {
        let kind = obj.get("kind").and_then(Json::as_str).unwrap_or_default();
        let selects = obj.pointer("/spec/selector").and_then(Json::as_object).is_some_and(|m| !m.is_empty());
        let waits = match kind {
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "PersistentVolumeClaim" => true,
            "Service" => selects,
            _ => false,
        };
        if waits {
            let mut r = ObjRef::of(&obj)?;
            if r.namespace.is_empty() {
                r.namespace = namespace.to_string();
            }
            out.push(r);
        }
    }
    out.sort_by_key(|r| match r.kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => 0,
        "PersistentVolumeClaim" => 1,
        _ => 2,
    });
    Ok(out)
}

/// Puts `namespace` into a namespaced object that names none (helm does the
/// same at install).
async fn settle(cluster: &Cluster, obj: &mut Json, namespace: &str) -> Result<ObjRef, ProviderError> {
    let mut r = ObjRef::of(obj)?;
    if r.namespace.is_empty() {
        r.namespace = namespace.to_string();
    }
    let r = cluster.settle(&r).await?;
    if !r.namespace.is_empty()
        && let Some(meta) = obj.get_mut("metadata").and_then(Json::as_object_mut)
    {
        meta.insert("namespace".into(), Json::String(r.namespace.clone()));
    }
    Ok(r)
}

/// The objects of `manifest` whose live content differs from it: object
/// (`Kind/namespace/name`) → what differs (`path: live → chart`, values of
/// Secrets and any secret of the release masked).
pub async fn drift(
    cluster: &Cluster,
    manifest: &str,
    namespace: &str,
    secrets: &[String],
) -> Result<BTreeMap<String, String>, ProviderError> {
    use futures_util::stream::{StreamExt as _, TryStreamExt as _};
    // Each object is a get and a dry-run: a few at a time, as kubectl's diff would not, so that a
    // chart of forty objects costs a few round trips, not eighty.
    let found: Vec<Option<(String, String)>> = futures_util::stream::iter(parse_manifest(manifest)?)
        .map(|obj| object_drift(cluster, obj, namespace, secrets))
        .buffer_unordered(OBJECTS_AT_ONCE)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// How many of a chart's objects are compared at once.
const OBJECTS_AT_ONCE: usize = 8;

/// One object's drift: its display name and what differs, `None` when nothing does.
async fn object_drift(
    cluster: &Cluster,
    mut obj: Json,
    namespace: &str,
    secrets: &[String],
) -> Result<Option<(String, String)>, ProviderError> {
    let r = settle(cluster, &mut obj, namespace).await?;
    let Some(live) = cluster.get(&r).await? else {
        return Ok(Some((r.display(), "deleted outside".to_string())));
    };
    let live = strip_volatile(&live);
    let dry = strip_volatile(&cluster.would_apply(&obj, &live).await?);
    let mut paths = Vec::new();
    differing_paths(Some(&live), Some(&dry), "", &mut paths);
    if paths.is_empty() {
        return Ok(None);
    }
    let secret = r.kind == "Secret";
    let show = |v: Option<&Json>| match v {
        _ if secret => MASK.to_string(),
        None => "(absent)".to_string(),
        Some(v) => mask(&v.to_string(), secrets),
    };
    let text: Vec<String> =
        paths.iter().map(|p| format!("{p}: {} (chart: {})", show(at_path(&live, p)), show(at_path(&dry, p)))).collect();
    Ok(Some((r.display(), text.join("; "))))
}

/// Re-applies (server-side, forced, as `skyform`) every object of `manifest`
/// that still differs from the live one after helm's upgrade. Idempotent: an
/// object already as the chart says is left alone.
pub async fn repair(cluster: &Cluster, manifest: &str, namespace: &str) -> Result<(), ProviderError> {
    for mut obj in parse_manifest(manifest)? {
        let r = settle(cluster, &mut obj, namespace).await?;
        let Some(live) = cluster.get(&r).await? else {
            cluster.apply(&obj, false).await?;
            continue;
        };
        let dry = strip_volatile(&cluster.apply(&obj, true).await?);
        if dry != strip_volatile(&live) {
            cluster.apply(&obj, false).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_split_into_objects() {
        let m = "---\n# Source: x\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: b\n";
        let objs = parse_manifest(m).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1]["kind"], "Secret");
    }
}
