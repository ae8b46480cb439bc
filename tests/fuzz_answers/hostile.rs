//! The real GCP provider and the real Cloud Storage state backend, talking to a server that
//! answers a generated script of statuses and bodies, round and round (`http_common::Server::cycle`):
//! a server that keeps changing its mind. Every case must end (a thread that does not within
//! [`LIMIT`] is a hang) without a panic; the backend's errors name the object.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value as Json, json};
use skyform::address::Address;
use skyform::foundation::net::Net;
use skyform::providers::gcp::GcpFactory;
use skyform::providers::gcp::client::RetryPolicy;
use skyform::providers::{
    ApplyAction, ApplyRequest, Checkpoint, PlanRequest, ProviderError, ProviderFactory, ReadRequest,
};
use skyform::state::gcs::{GcsBackend, GcsLocation, LeaseTimes};
use skyform::state::{Backend, State, StateError, StateRecord};
use skyform::value::Value;

use super::answers;
use crate::http_common::Server;

/// How long one case may take before it counts as a hang.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Runs `f` on its own thread; a panic or a hang fails the case.
pub fn bounded(f: impl FnOnce() -> Result<(), String> + Send + 'static) -> Result<(), TestCaseError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(LIMIT) {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(m))) => Err(TestCaseError::fail(m)),
        Ok(Err(p)) => Err(TestCaseError::fail(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        ))),
        Err(_) => Err(TestCaseError::fail(format!("no end after {LIMIT:?}: a loop the answers keep going"))),
    }
}

fn net() -> &'static Net {
    static NET: OnceLock<Net> = OnceLock::new();
    NET.get_or_init(Net::new)
}

/// A server per property (they run in parallel; the cases of one run in turn).
pub fn server(slot: &'static OnceLock<Server>) -> &'static Server {
    slot.get_or_init(|| Server::start(&[(200, "{}")]))
}

/// A script step: a status (mostly what the code branches on) and a body.
fn step(body: impl Strategy<Value = String>) -> impl Strategy<Value = (u16, String)> {
    let status = prop_oneof![
        8 => Just(200u16),
        3 => Just(404),
        2 => Just(409),
        2 => Just(412),
        1 => Just(400),
        1 => Just(403),
        1 => Just(204),
    ];
    (status, body)
}

// ---- GCP -------------------------------------------------------------------------------------

/// Fast retries, short windows: a case costs milliseconds, not minutes.
fn fast() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(2),
        attempts: 3,
        poll_initial: Duration::from_millis(1),
        poll_cap: Duration::from_millis(2),
        consistency_window: Duration::from_millis(20),
    }
}

/// One configuration of each resource type (the seed's shape).
fn resources() -> Vec<(&'static str, Value)> {
    let email = "sa@p.iam.gserviceaccount.com";
    vec![
        ("gcp_project_service", Value::map([("service", Value::str("sqladmin.googleapis.com"))])),
        ("gcp_service_account", Value::map([("account_id", Value::str("sa")), ("display_name", Value::str("d"))])),
        (
            "gcp_project_iam_member",
            Value::map([
                ("role", Value::str("roles/cloudsql.client")),
                ("member", Value::str(format!("serviceAccount:{email}"))),
            ]),
        ),
        (
            "gcp_service_account_iam_member",
            Value::map([
                ("service_account", Value::str(email)),
                ("role", Value::str("roles/iam.workloadIdentityUser")),
                ("member", Value::str("serviceAccount:p.svc.id.goog[ns/ksa]")),
            ]),
        ),
        (
            "gcp_container_cluster",
            Value::map([
                ("name", Value::str("sky")),
                ("location", Value::str("us-central1")),
                ("workload_identity", Value::Bool(true)),
                ("initial_node_count", Value::Int(1)),
            ]),
        ),
        ("gcp_service_account_key", Value::map([("service_account", Value::str(email))])),
        (
            "gcp_sql_instance",
            Value::map([
                ("name", Value::str("db")),
                ("database_version", Value::str("POSTGRES_15")),
                ("tier", Value::str("db-f1-micro")),
                ("database_flags", Value::map([("cloudsql.iam_authentication", Value::str("on"))])),
                ("deletion_protection", Value::Bool(false)),
                ("root_password", Value::str("root-Secret-9").sensitive()),
            ]),
        ),
        ("gcp_sql_database", Value::map([("instance", Value::str("db")), ("name", Value::str("app"))])),
        (
            "gcp_sql_user",
            Value::map([
                ("instance", Value::str("db")),
                ("name", Value::str("app")),
                ("password", Value::str("user-Secret-9").sensitive()),
            ]),
        ),
    ]
}

const DATA: [(&str, &[(&str, &str)]); 4] = [
    ("gcp_container_cluster", &[("name", "sky"), ("location", "us-central1")]),
    ("gcp_sql_instance", &[("name", "db")]),
    ("gcp_project", &[]),
    ("gcp_iam_policy", &[("role", "roles/cloudsql.client")]),
];

struct Nop;
impl Checkpoint for Nop {
    fn pending(&self, _: &Value, _: &Value) {}
}

fn gcp_body() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => answers::answer().prop_map(|j| j.to_string()),
        1 => Just(String::new()),
        1 => "\\PC{0,40}",
        // Cut off half-way.
        1 => answers::answer().prop_map(|j| {
            let t = j.to_string();
            t.chars().take(t.chars().count() / 2).collect::<String>()
        }),
    ]
}

/// A script for the GCP server.
pub fn gcp_script() -> impl Strategy<Value = Vec<(u16, String)>> {
    prop::collection::vec(step(gcp_body()), 1..10)
}

/// Reads, plans, applies (create, update or delete) one resource of type `pick`, and reads every
/// data source, against the server.
pub fn gcp_case(
    server: &'static Server,
    script: Vec<(u16, String)>,
    pick: usize,
    action: u8,
) -> Result<(), TestCaseError> {
    server.cycle(&script);
    let endpoint = server.url("/");
    bounded(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let factory = GcpFactory::new().with_retry(fast());
            let config = Value::map([
                ("project", Value::str("p")),
                ("endpoint", Value::str(endpoint)),
                ("anonymous", Value::Bool(true)),
            ]);
            let p = factory.configure(&config, net()).await.map_err(|e| format!("configure: {e}"))?;
            let all = resources();
            let (type_name, config) = all[pick % all.len()].clone();
            let address: Address = format!("{type_name}.x").parse().unwrap();
            let read = ReadRequest {
                address: address.clone(),
                type_name: type_name.into(),
                identity: None,
                config: config.clone(),
                private: Value::Null,
            };
            let live = p.read(&read).await.ok().flatten();
            let action = [ApplyAction::Create, ApplyAction::Update, ApplyAction::Delete][usize::from(action) % 3];
            let plan = PlanRequest {
                address: address.clone(),
                type_name: type_name.into(),
                config: config.clone(),
                live: live.clone(),
                prior: None,
                changed: vec![],
                action,
            };
            let _ = p.plan(&plan).await;
            let apply = ApplyRequest {
                address,
                type_name: type_name.into(),
                action,
                identity: live.map(|l| l.identity),
                config,
                prior: None,
                changed: vec!["display_name".into(), "tier".into(), "password".into()],
                private: Value::Null,
                timeout: Duration::from_millis(150),
            };
            let r: Result<_, ProviderError> = p.apply(&apply, &Nop).await;
            drop(r);
            for (data, args) in DATA {
                let args = Value::map(args.iter().map(|(k, v)| (*k, Value::str(*v))));
                let _ = p.read_data(data, &args).await;
            }
            Ok(())
        })
    })
}

// ---- Cloud Storage ---------------------------------------------------------------------------

/// A snapshot as the bucket holds it.
fn snapshot_text() -> String {
    let mut state = State::new();
    state.serial = 2;
    state.resources.insert(
        "x.a".parse().unwrap(),
        skyform::state::ResourceState {
            provider: "memory".into(),
            identity: Value::str("a"),
            attrs: BTreeMap::from([("k".to_string(), Value::Redacted("argon2id:m=8,t=1,p=1:00".into()))]),
            dependencies: vec![],
            private: Value::Null,
            status: Default::default(),
        },
    );
    let mut j = serde_json::to_value(&state).unwrap();
    j["journal_epoch"] = json!(1);
    serde_json::to_string_pretty(&j).unwrap()
}

fn generation() -> impl Strategy<Value = Json> {
    prop_oneof![
        (1i64..5).prop_map(|g| json!(g.to_string())),
        (1i64..5).prop_map(|g| json!(g)),
        Just(json!("9223372036854775808")),
        Just(json!("-1")),
        Just(json!("x")),
        Just(json!(1e30)),
        Just(Json::Null),
    ]
}

/// What the backend is answered: object metadata, listings, snapshots, journal batches, locks.
fn gcs_body() -> impl Strategy<Value = String> {
    let names = prop_oneof![
        Just("p/default.journal/00000001/0000000000".to_string()),
        Just("p/default.journal/00000002/0000000000".to_string()),
        Just("p/default.journal/00000000/0000000001".to_string()),
        Just("p/default.journal/x/y".to_string()),
        Just("p/default.journal/".to_string()),
        Just("p/default.journal/99999999999999999999999/0".to_string()),
        Just("elsewhere".to_string()),
        "\\PC{0,12}",
    ];
    let record = json!([{"op": "serial", "serial": 3}, {"op": "remove", "address": "x.a"}]).to_string();
    prop_oneof![
        3 => (generation(), generation(), answers::time_text(), prop::option::of("[0-9a-f]{0,32}"))
            .prop_map(|(g, m, t, w)| json!({
            "name": "p/default.lock", "generation": g, "metageneration": m, "updated": t,
            "metadata": {"skyform-write-id": w},
        }).to_string()),
        3 => (
            prop::collection::vec((names, generation()), 0..4),
            prop::option::of(prop_oneof![Just("t".to_string()), Just(String::new()), "[a-z]{1,3}"]),
        )
            .prop_map(|(items, next)| json!({
                "items": items.into_iter().map(|(n, g)| json!({"name": n, "generation": g})).collect::<Vec<_>>(),
                "nextPageToken": next,
            }).to_string()),
        2 => prop::collection::vec(crate::fuzz_common::mutation(crate::fuzz_common::json_fragment()), 0..4)
            .prop_map(|m| crate::fuzz_common::apply(&snapshot_text(), &m)),
        2 => prop::collection::vec(crate::fuzz_common::mutation(crate::fuzz_common::json_fragment()), 0..3)
            .prop_map(move |m| crate::fuzz_common::apply(&record, &m)),
        1 => (any::<u32>(), "\\PC{0,10}", prop::option::of(any::<u64>())).prop_map(|(pid, host, lease)| json!({
            "id": "", "holder": "h", "pid": pid, "host": host, "since": "2026-01-01T00:00:00Z",
            "operation": "apply", "lease_ms": lease,
        }).to_string()),
        1 => answers::json().prop_map(|j| j.to_string()),
    ]
}

/// A script for the Storage server.
pub fn gcs_script() -> impl Strategy<Value = Vec<(u16, String)>> {
    prop::collection::vec(step(gcs_body()), 1..12)
}

/// Says whether `e` names the object it is about.
fn located(e: &StateError) -> Result<(), String> {
    let (StateError::Remote { location, .. } | StateError::Corrupt { path: location, .. }) = e else {
        return Ok(()); // Locked, NotLocked, WrongLock, LockLost: about the lock, which they name.
    };
    if !location.starts_with("gs://b/p/") || location.starts_with("gs://b/p/p/") {
        return Err(format!("an error that does not say which object: {e}"));
    }
    if let StateError::Corrupt { message, .. } = e
        && location.ends_with("default.state.json")
        && !(crate::fuzz_common::json_located(message)
            || ["JSON object", "`format`", "state format", "journal_epoch"].iter().any(|w| message.contains(w)))
    {
        return Err(format!("a snapshot error without its place: {e}"));
    }
    Ok(())
}

/// Every backend call, against the server: exists, the listing, load, the lock holder, unlock, lock,
/// write.
pub fn gcs_case(server: &'static Server, script: Vec<(u16, String)>) -> Result<(), TestCaseError> {
    server.cycle(&script);
    let endpoint = server.url("/");
    bounded(move || {
        let loc = GcsLocation { bucket: "b".into(), prefix: "p".into() };
        let b = GcsBackend::new(net(), loc, Some(endpoint), Some("t".into()))
            .with_lease(LeaseTimes { heartbeat: Duration::from_millis(20), expiry: Duration::from_millis(60) });
        let check = |r: Result<(), StateError>| r.or_else(|e| located(&e));
        check(b.exists().map(drop))?;
        check(skyform::state::gcs::objects(&b).map(drop))?;
        check(b.load().map(drop))?;
        check(b.lock_holder().map(drop))?;
        check(b.force_unlock(Some("1")).map(drop))?;
        let guard = b.lock("apply", Duration::ZERO);
        if let Err(e) = &guard {
            located(e)?;
        }
        let state = b.load().unwrap_or_default();
        match b.writer(&state) {
            Ok(w) => {
                check(w.record(&StateRecord::Serial { serial: state.serial + 1 }))?;
                check(w.compact())?;
            }
            Err(e) => located(&e)?,
        }
        drop(guard);
        Ok(())
    })
}
