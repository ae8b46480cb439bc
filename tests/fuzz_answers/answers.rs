//! Answers as the APIs might send them, and worse: JSON built from the fields skyform reads (so
//! generated answers reach deep paths), hostile values, and realistic templates.

use proptest::prelude::*;
use serde_json::{Value as Json, json};

/// Field names of the answers skyform reads (GCP REST, Cloud Storage, Kubernetes, helm).
const KEYS: &[&str] = &[
    "error",
    "message",
    "details",
    "@type",
    "retryDelay",
    "status",
    "errors",
    "reason",
    "code",
    "name",
    "done",
    "statusMessage",
    "settings",
    "databaseFlags",
    "value",
    "ipConfiguration",
    "ipAddresses",
    "ipAddress",
    "type",
    "bindings",
    "members",
    "role",
    "condition",
    "etag",
    "version",
    "endpoint",
    "masterAuth",
    "clusterCaCertificate",
    "workloadIdentityConfig",
    "workloadPool",
    "location",
    "currentMasterVersion",
    "selfLink",
    "email",
    "uniqueId",
    "displayName",
    "description",
    "disabled",
    "projectId",
    "state",
    "databaseVersion",
    "region",
    "connectionName",
    "tier",
    "settingsVersion",
    "deletionProtectionEnabled",
    "generation",
    "metageneration",
    "updated",
    "metadata",
    "items",
    "nextPageToken",
    "skyform-write-id",
    "keys",
    "keyType",
    "validAfterTime",
    "privateKeyData",
    "kind",
    "apiVersion",
    "spec",
    "replicas",
    "observedGeneration",
    "updatedReplicas",
    "availableReplicas",
    "readyReplicas",
    "numberReady",
    "desiredNumberScheduled",
    "conditions",
    "phase",
    "containerStatuses",
    "initContainerStatuses",
    "waiting",
    "terminated",
    "running",
    "lastState",
    "exitCode",
    "restartCount",
    "ready",
    "namespace",
    "selector",
    "matchLabels",
    "manifest",
    "revision",
    "chart",
    "appVersion",
];

/// Values that have broken parsers elsewhere, and the ones these answers hold.
const STRINGS: &[&str] = &[
    "",
    "DONE",
    "RUNNING",
    "PENDING",
    "PROVISIONING",
    "RUNNABLE",
    "PENDING_CREATE",
    "ALREADY_EXISTS",
    "type.googleapis.com/google.rpc.RetryInfo",
    "1e20s",
    "-1s",
    "NaNs",
    "infs",
    "1.5s",
    "0.000000001s",
    "18446744073709551616s",
    "s",
    "2026-12-01T21:40:00.123+02:00",
    "2026-12-01T21:40:00Z",
    "99999999999999999-01-01T00:00:00Z",
    "-99999999999999999-01-01T00:00:00Z",
    "2026-12-01T99999999",
    "2026-12-01T21:40:00+99:99",
    "0-1-1T00:00:00Z",
    "9223372036854775807",
    "-9223372036854775808",
    "12345",
    "not a number",
    "roles/cloudsql.client",
    "serviceAccount:a@b.iam.gserviceaccount.com",
    "True",
    "False",
    "Running",
    "Bound",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "Service",
    "PersistentVolumeClaim",
    "Ready",
    "Available",
    "Complete",
    "PodScheduled",
    "CrashLoopBackOff",
    "operationInProgress",
    "instanceAlreadyExists",
    "pending-install",
    "deployed",
    "../..",
    "%2e%2e",
    "\u{0}",
    "\u{1b}[31m",
    "é日本",
    "{\"message\":\"x\"}",
];

fn leaf() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>().prop_map(Json::from),
        prop::sample::select(STRINGS).prop_map(Json::from),
        "\\PC{0,30}".prop_map(Json::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => prop::sample::select(KEYS).prop_map(String::from), 1 => "[a-zA-Z@$/.-]{0,8}"]
}

/// Any JSON, its object keys mostly the answers' own.
pub fn json() -> impl Strategy<Value = Json> {
    leaf().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((key(), inner), 0..8).prop_map(|kv| Json::Object(kv.into_iter().collect())),
        ]
    })
}

/// A duration as protobuf writes it, or not quite.
pub fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(STRINGS).prop_map(String::from),
        "[-+]?[0-9]{0,25}(\\.[0-9]{0,12})?([eE][-+]?[0-9]{0,4})?s?",
        any::<f64>().prop_map(|f| format!("{f}s")),
    ]
}

/// An RFC 3339 time, or something close to one.
pub fn time_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(STRINGS).prop_map(String::from),
        concat!(
            "-?[0-9]{1,20}-[0-9]{1,3}-[0-9]{1,3}T[0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3}",
            "(\\.[0-9]{0,12})?(Z|[-+][0-9]{2}:[0-9]{2})?"
        ),
        "\\PC{0,32}",
    ]
}

/// Realistic answers with generated parts: error envelopes, operations, k8s objects, policies.
pub fn answer() -> impl Strategy<Value = Json> {
    prop_oneof![
        2 => json(),
        1 => (any::<u16>(), duration_text(), json(), "\\PC{0,20}").prop_map(|(code, d, extra, reason)| json!({
            "error": {
                "code": code, "message": extra.clone(), "status": "RESOURCE_EXHAUSTED",
                "errors": [{"reason": reason}],
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": d}, extra],
            }
        })),
        1 => (prop::sample::select(STRINGS), json(), json()).prop_map(|(status, error, op)| json!({
            "name": op, "status": status, "done": status == "DONE", "error": error,
            "statusMessage": status, "operationType": "CREATE",
        })),
        1 => (prop::sample::select(STRINGS), json(), json(), time_text()).prop_map(|(kind, status, spec, t)| json!({
            "apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": "x", "generation": spec.clone(), "namespace": t},
            "spec": {"replicas": spec, "selector": {"matchLabels": {"app": "x"}}}, "status": status,
        })),
        1 => prop::collection::vec((prop::sample::select(STRINGS), json(), json()), 0..5).prop_map(|bs| json!({
            "etag": "BwX", "version": 3,
            "bindings": bs.into_iter().map(|(role, members, condition)| json!({
                "role": role, "members": members, "condition": condition,
            })).collect::<Vec<_>>(),
        })),
    ]
}
