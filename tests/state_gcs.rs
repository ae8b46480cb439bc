//! State in a Cloud Storage bucket (`[backend.gcs]`), on the GCP emulator's Storage API: the
//! backend's semantics through the library (load/record/compact, crash recovery from the journal,
//! group commit, the lock and its ID, leases: a live one kept whatever its host, an expired one
//! broken; fencing: a run that lost its lock stops and nothing acknowledged is lost; a conditional
//! write whose answer was lost recognised as the run's own, through a lossy proxy), then the `skyform` binary from two "machines" (two directories) sharing one
//! bucket: apply, plan and drift without the lock while an apply holds it, `state unlock LOCK_ID`,
//! `state migrate` both ways, validation of the block, and no secret in the bucket.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gcp_emulator::{Config, Emulator};
use skyform::address::Address;
use skyform::state::gcs::{GcsBackend, GcsLocation, LeaseTimes, objects};
use skyform::state::{Backend, ResourceState, ResourceStatus, StateError, StateRecord};
use skyform::value::Value;

const BUCKET: &str = "acme-skyform-state";
const TOKEN: &str = "gcs-test-token";

struct World {
    rt: tokio::runtime::Runtime,
    emu: Option<Emulator>,
}

impl World {
    fn new() -> World {
        skyform::foundation::net::install_crypto();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        gcp_emulator::contract::ensure_documents();
        let emu =
            rt.block_on(Emulator::start(Config { access_token: Some(TOKEN.into()), ..Config::default() })).unwrap();
        let w = World { rt, emu: Some(emu) };
        let url = format!("{}storage/v1/b?project=p", w.base());
        let status = w.rt.block_on(async {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({"name": BUCKET}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        assert_eq!(status.ok(), Some(200), "the bucket is created");
        w
    }
    fn base(&self) -> String {
        self.emu.as_ref().unwrap().base_url().to_string()
    }
    fn backend(&self, prefix: &str) -> GcsBackend {
        let loc = GcsLocation { bucket: BUCKET.into(), prefix: prefix.into() };
        GcsBackend::new(&skyform::foundation::net::Net::new(), loc, Some(self.base()), Some(TOKEN.into()))
    }
    fn stats(&self, method: &str) -> u64 {
        self.emu.as_ref().unwrap().stats().requests.get(method).copied().unwrap_or(0)
    }
}

impl Drop for World {
    /// Stops the emulator; when the test passed so far, nothing the state backend (or the CLI)
    /// sent, nor anything the emulator answered, was outside Google's published contract.
    fn drop(&mut self) {
        if let Some(e) = self.emu.take() {
            let contract = e.contract();
            self.rt.block_on(e.shutdown());
            if !std::thread::panicking() {
                assert!(contract.defects.is_empty() && contract.response_defects.is_empty(), "{contract:?}");
            }
        }
    }
}

fn rs(value: &str) -> ResourceState {
    ResourceState {
        provider: "test".into(),
        identity: Value::str(value),
        attrs: [("name".to_string(), Value::str(value))].into(),
        dependencies: vec![],
        private: Value::Null,
        status: ResourceStatus::Ready,
    }
}

fn upsert(name: &str) -> StateRecord {
    StateRecord::Upsert { address: Address::managed("test_object", name), resource: rs(name) }
}

#[test]
fn records_are_durable_before_compaction_and_a_crash_loses_none() {
    let w = World::new();
    let b = w.backend("crash/prod");
    assert!(!b.exists().unwrap());
    let state = b.load().unwrap();
    assert!(state.resources.is_empty());
    let _lock = b.lock("apply", Duration::ZERO).unwrap();
    let writer = b.writer(&state).unwrap();
    writer.record(&StateRecord::Serial { serial: 1 }).unwrap();
    writer.record(&upsert("a")).unwrap();
    writer.record(&upsert("b")).unwrap();
    // "Crash": the writer is dropped without compacting. Everything recorded is in the bucket.
    drop(writer);
    let names = objects(&b).unwrap();
    assert!(names.keys().any(|n| n == "crash/prod/default.state.json"), "{names:?}");
    assert!(names.keys().filter(|n| n.contains("default.journal/")).count() >= 1, "{names:?}");
    let again = b.load().unwrap();
    assert_eq!(again.serial, 1);
    assert_eq!(again.resources.len(), 2);
    assert_eq!(again.lineage, state.lineage);

    // The next run's writer folds them in; compaction leaves the snapshot and the lock only.
    let writer = b.writer(&again).unwrap();
    writer.record(&StateRecord::Remove { address: Address::managed("test_object", "a") }).unwrap();
    writer.compact().unwrap();
    let names = objects(&b).unwrap();
    assert_eq!(names.keys().cloned().collect::<Vec<_>>(), ["crash/prod/default.lock", "crash/prod/default.state.json"]);
    let last = b.load().unwrap();
    assert_eq!(last.resources.keys().map(|a| a.to_string()).collect::<Vec<_>>(), ["test_object.b"]);
}

#[test]
fn records_from_many_tasks_are_group_committed() {
    let w = World::new();
    let b = w.backend("group");
    let state = b.load().unwrap();
    let writer: Arc<dyn skyform::state::StateWriter> = Arc::from(b.writer(&state).unwrap());
    let before = w.stats("storage.objects.insert");
    std::thread::scope(|s| {
        for t in 0..8 {
            let writer = writer.clone();
            s.spawn(move || {
                for i in 0..25 {
                    writer.record(&upsert(&format!("t{t}-{i}"))).unwrap();
                }
            });
        }
    });
    let uploads = w.stats("storage.objects.insert") - before;
    // 200 records, one opening snapshot: far fewer uploads than records when they come together.
    assert!(uploads < 200, "{uploads} uploads for 200 records: no group commit");
    writer.compact().unwrap();
    assert_eq!(b.load().unwrap().resources.len(), 200);
    eprintln!("200 records from 8 threads: {uploads} uploads");
}

#[test]
fn the_lock_has_an_id_and_a_lost_lock_cannot_overwrite() {
    let w = World::new();
    let b = w.backend("lock");
    let guard = b.lock("apply", Duration::ZERO).unwrap();
    let Err(StateError::Locked { holder }) = b.lock("destroy", Duration::from_millis(300)).map(|_| ()) else {
        panic!("a second lock must fail")
    };
    assert!(holder.id.parse::<i64>().is_ok(), "the ID is the lock object's generation: {holder:?}");
    assert_eq!(holder.operation, "apply");
    assert_eq!(holder.holder, b.holder_id());
    assert_eq!(holder.lease_ms, Some(30_000));
    let message = StateError::Locked { holder: holder.clone() }.to_string();
    assert!(message.contains(&format!("lock ID {}", holder.id)) && message.contains("(apply)"), "{message}");
    assert_eq!(b.lock_holder().unwrap().as_ref(), Some(&*holder));

    // Unlocking needs the ID, and the right one.
    let no_id = b.force_unlock(None).unwrap_err().to_string();
    assert!(no_id.contains(&format!("skyform state unlock {}", holder.id)), "{no_id}");
    assert!(matches!(b.force_unlock(Some("12345")), Err(StateError::WrongLock { .. })));
    assert_eq!(b.force_unlock(Some(&holder.id)).unwrap().id, holder.id);
    drop(guard); // its generation is gone: dropping deletes nothing
    assert!(b.lock_holder().unwrap().is_none());

    // A lock of an older skyform (no lease) is never broken automatically, even on this host with
    // its process gone: only `state unlock` removes it.
    let dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    let mut dead = dead;
    dead.wait().unwrap();
    let stale =
        serde_json::json!({"pid": pid, "host": hostname(), "since": "2026-01-01T00:00:00Z", "operation": "apply"});
    plant(&w, "lock/default.lock", &stale);
    assert!(matches!(b.lock("apply", Duration::from_millis(300)).map(|_| ()), Err(StateError::Locked { .. })));
    let id = b.lock_holder().unwrap().unwrap().id;
    b.force_unlock(Some(&id)).unwrap();

    // A run whose lock was broken cannot overwrite what the next run wrote: it stops.
    let state = b.load().unwrap();
    let first = b.lock("apply", Duration::ZERO).unwrap();
    let stale_writer = b.writer(&state).unwrap();
    stale_writer.record(&upsert("old")).unwrap();
    let id = b.lock_holder().unwrap().unwrap().id;
    b.force_unlock(Some(&id)).unwrap();
    let _second = b.lock("apply", Duration::ZERO).unwrap();
    let fresh = b.load().unwrap();
    let writer = b.writer(&fresh).unwrap();
    writer.record(&upsert("new")).unwrap();
    writer.compact().unwrap();
    let err = stale_writer.compact().unwrap_err();
    assert!(matches!(err, StateError::LockLost { .. }), "{err:?}");
    let kept = b.load().unwrap();
    assert!(kept.resources.contains_key(&Address::managed("test_object", "new")), "the newer state stays");
    assert!(kept.resources.contains_key(&Address::managed("test_object", "old")), "the acknowledged record stays");
    drop(first);
}

/// Writes an object directly (a lock of another process, by hand).
fn plant(w: &World, name: &str, body: &serde_json::Value) -> i64 {
    let url = format!("{}upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={}", w.base(), name.replace('/', "%2F"));
    let v: serde_json::Value = w.rt.block_on(async {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(TOKEN)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    v["generation"].as_str().unwrap().parse().unwrap()
}

/// Renews a planted lock's lease as its holder would (a metadata patch at its generation).
fn renew(w: &World, name: &str, generation: i64) -> bool {
    let url =
        format!("{}storage/v1/b/{BUCKET}/o/{}?ifGenerationMatch={generation}", w.base(), name.replace('/', "%2F"));
    w.rt.block_on(async {
        reqwest::Client::new()
            .patch(url)
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"metadata": {"skyform-heartbeat": "x"}}))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    })
}

fn fast_lease() -> LeaseTimes {
    LeaseTimes { heartbeat: Duration::from_millis(150), expiry: Duration::from_millis(600) }
}

#[test]
fn a_live_lease_is_never_broken_whatever_its_host_and_an_expired_one_is() {
    let w = World::new();
    // Two runs in one process, on one host, with one pid: only their holder IDs differ (two CI
    // runners or pods with the same host name).
    let a = w.backend("lease").with_lease(fast_lease());
    let b = w.backend("lease").with_lease(fast_lease());
    assert_ne!(a.holder_id(), b.holder_id());
    let held = a.lock("apply", Duration::ZERO).unwrap();
    // B waits for several lease lengths: A's heartbeat keeps its lease alive.
    let started = std::time::Instant::now();
    let Err(StateError::Locked { holder }) = b.lock("apply", Duration::from_millis(2000)).map(|_| ()) else {
        panic!("a live lease must not be broken")
    };
    assert!(started.elapsed() >= Duration::from_millis(2000));
    assert_eq!(holder.holder, a.holder_id());
    drop(held);
    drop(b.lock("apply", Duration::ZERO).unwrap());

    // A lock of a process elsewhere with this host name and a pid that does not exist here: while
    // its holder renews it, it is kept; once the renewals stop, its lease expires and it is broken.
    let dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    let mut dead = dead;
    dead.wait().unwrap();
    let other = serde_json::json!({"pid": pid, "host": hostname(), "holder": "runner-2", "since": "2026-01-01T00:00:00Z",
        "operation": "apply", "lease_ms": 600});
    let g = plant(&w, "lease/default.lock", &other);
    let renewing = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|s| {
        s.spawn(|| {
            while renewing.load(std::sync::atomic::Ordering::SeqCst) {
                assert!(renew(&w, "lease/default.lock", g));
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        let got = b.lock("apply", Duration::from_millis(2500)).map(|_| ());
        renewing.store(false, std::sync::atomic::Ordering::SeqCst);
        let Err(StateError::Locked { holder }) = got else { panic!("a renewed lease must not be broken") };
        assert_eq!(holder.holder, "runner-2");
    });
    let started = std::time::Instant::now();
    let taken = b.lock("apply", Duration::from_secs(10)).expect("an expired lease is broken");
    assert!(started.elapsed() < Duration::from_secs(5), "broken once expired, not at the timeout");
    assert_eq!(b.lock_holder().unwrap().unwrap().holder, b.holder_id());
    drop(taken);
}

#[test]
fn unlock_then_a_second_run_loses_no_acknowledged_record_and_the_first_stops() {
    let w = World::new();
    let a = w.backend("fence").with_lease(fast_lease());
    let b = w.backend("fence").with_lease(fast_lease());
    let lock_a = a.lock("apply", Duration::ZERO).unwrap();
    let wa = a.writer(&a.load().unwrap()).unwrap();
    wa.record(&StateRecord::Serial { serial: 1 }).unwrap();
    wa.record(&upsert("a1")).unwrap();
    wa.record(&upsert("a2")).unwrap();
    // `skyform state unlock ID` from another machine, then run B.
    let id = b.lock_holder().unwrap().unwrap().id;
    b.force_unlock(Some(&id)).unwrap();
    let lock_b = b.lock("apply", Duration::ZERO).unwrap();
    let sb = b.load().unwrap();
    assert_eq!(sb.resources.len(), 2, "B reads what A was told was durable");
    let wb = b.writer(&sb).unwrap();
    wb.record(&StateRecord::Serial { serial: 2 }).unwrap();
    wb.record(&upsert("b1")).unwrap();
    let before = objects(&b).unwrap();
    // A stops before its next write, with the clear error, and writes nothing.
    let err = wa.record(&upsert("a3")).unwrap_err();
    assert!(matches!(err, StateError::LockLost { unconfirmed: false, .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("lost the state lock") && text.contains("nothing more was written"), "{text}");
    assert!(matches!(wa.compact(), Err(StateError::LockLost { .. })));
    assert_eq!(objects(&b).unwrap(), before, "A wrote nothing after losing its lock");
    wb.record(&upsert("b2")).unwrap();
    wb.compact().unwrap();
    let s = b.load().unwrap();
    let names: Vec<String> = s.resources.keys().map(|a| a.to_string()).collect();
    assert_eq!(names, ["test_object.a1", "test_object.a2", "test_object.b1", "test_object.b2"]);
    assert_eq!(s.serial, 2);
    drop(lock_a); // deletes nothing: its generation is gone
    assert_eq!(b.lock_holder().unwrap().unwrap().holder, b.holder_id());
    drop(lock_b);
}

// --- a lost answer: a test-only proxy that performs a request and loses its answer ----------

/// Forwards every request to `target`; the first upload whose body names an object in `lose`
/// is performed, and then answered 503 (as a proxy or load balancer may, after the write), once.
fn lossy_proxy(w: &World, lose: &[&str]) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::body::{Body, to_bytes};
    use axum::extract::{Request, State};
    use axum::response::Response;
    #[derive(Clone)]
    struct P {
        target: String,
        lose: Arc<std::sync::Mutex<Vec<String>>>,
        lost: Arc<std::sync::Mutex<Vec<String>>>,
    }
    async fn forward(State(p): State<P>, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let body = to_bytes(body, usize::MAX).await.unwrap();
        let url = format!("{}{}", p.target.trim_end_matches('/'), parts.uri.path_and_query().unwrap());
        let mut out = reqwest::Client::new().request(parts.method.clone(), url).body(body.to_vec());
        for h in [axum::http::header::AUTHORIZATION, axum::http::header::CONTENT_TYPE] {
            if let Some(v) = parts.headers.get(&h) {
                out = out.header(h.as_str(), v.to_str().unwrap());
            }
        }
        let resp = out.send().await.unwrap();
        let status = resp.status().as_u16();
        let date = resp.headers().get("date").map(|d| d.to_str().unwrap().to_string());
        let bytes = resp.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&body);
        let victim = {
            let mut lose = p.lose.lock().unwrap();
            let hit = (parts.uri.path().contains("/upload/") && status == 200)
                .then(|| lose.iter().position(|n| text.contains(n.as_str())))
                .flatten();
            hit.map(|i| lose.remove(i))
        };
        if let Some(name) = victim {
            p.lost.lock().unwrap().push(name);
            return Response::builder().status(503).body(Body::from("{\"error\":{\"message\":\"lost\"}}")).unwrap();
        }
        let mut r = Response::builder().status(status).header("content-type", "application/json");
        if let Some(d) = date {
            r = r.header("date", d);
        }
        r.body(Body::from(bytes)).unwrap()
    }
    let lost = Arc::new(std::sync::Mutex::new(Vec::new()));
    let p = P {
        target: w.base(),
        lose: Arc::new(std::sync::Mutex::new(lose.iter().map(|s| s.to_string()).collect())),
        lost: lost.clone(),
    };
    let listener = w.rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(forward).with_state(p);
    w.rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/"), lost)
}

#[test]
fn a_conditional_write_whose_answer_was_lost_is_recognised_as_our_own() {
    let w = World::new();
    let (proxy, lost) = lossy_proxy(&w, &["loss/default.lock", "loss/default.journal/00000001/0000000000"]);
    let loc = GcsLocation { bucket: BUCKET.into(), prefix: "loss".into() };
    let b = GcsBackend::new(&skyform::foundation::net::Net::new(), loc, Some(proxy), Some(TOKEN.into()));
    // The lock's create (ifGenerationMatch=0) is performed, its answer lost, the retry gets 412:
    // it is this run's own lock, not a conflict.
    let lock = b.lock("apply", Duration::ZERO).expect("our own lock, not someone else's");
    assert_eq!(b.lock_holder().unwrap().unwrap().holder, b.holder_id());
    // The same for a journal batch: acknowledged, and there.
    let wr = b.writer(&b.load().unwrap()).unwrap();
    wr.record(&upsert("x")).expect("our own batch, not a conflict");
    wr.record(&upsert("y")).unwrap();
    assert_eq!(lost.lock().unwrap().len(), 2, "both answers were lost: {:?}", lost.lock().unwrap());
    assert_eq!(b.load().unwrap().resources.len(), 2);
    wr.compact().unwrap();
    drop(lock);
    assert!(b.lock_holder().unwrap().is_none());
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

// --- the binary, from two directories sharing the bucket ------------------------------------

const SECRET: &str = "pw-5c1b8e7f0a";

fn spec(prefix: &str) -> String {
    format!(
        r#"
[variable.env]
type = "string"
default = "{prefix}"

[variable.password]
type = "string"
sensitive = true

[backend.gcs]
bucket = "{BUCKET}"
prefix = "skypilot/${{var.env}}"

[resource.test_object.app]
name = "app"
value = "v1"
password = "${{var.password}}"

[resource.test_object.slow]
name = "slow"
value = "${{test_object.app.id}}"
delay_ms = 0
"#
    )
}

fn run(w: &World, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skyform"))
        .args(args)
        .args(["-f", "main.toml"])
        .current_dir(dir)
        .env("SKYFORM_ENABLE_TEST_PROVIDER", "1")
        .env("SKYFORM_TEST_STORE", dir.parent().unwrap().join("cloud.json"))
        .env("SKYFORM_GCP_ENDPOINT", w.base())
        .env("SKYFORM_GCP_ACCESS_TOKEN", TOKEN)
        .env("SKYFORM_VAR_password", SECRET)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn bucket_contents(w: &World) -> String {
    let url = format!("{}storage/v1/b/{BUCKET}/o", w.base());
    let names: Vec<String> = w.rt.block_on(async {
        let v: serde_json::Value =
            reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
        v["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    });
    let mut all = String::new();
    for n in names {
        let url = format!("{}storage/v1/b/{BUCKET}/o/{}?alt=media", w.base(), n.replace('/', "%2F"));
        let body = w.rt.block_on(async {
            reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap()
        });
        all.push_str(&format!("== {n}\n{body}\n"));
    }
    all
}

#[test]
fn two_machines_share_the_state_reads_take_no_lock_and_migration_goes_both_ways() {
    let w = World::new();
    let root = tempfile::tempdir().unwrap();
    let (laptop, ci) = (root.path().join("laptop"), root.path().join("ci"));
    for d in [&laptop, &ci] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("main.toml"), spec("prod")).unwrap();
    }
    let out = run(&w, &laptop, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!laptop.join(".skyform/main.state.json").exists(), "no local state with a backend");
    // The other machine sees what was applied.
    let out = run(&w, &ci, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(&w, &ci, &["state", "list"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "test_object.app\ntest_object.slow\n");
    let contents = bucket_contents(&w);
    assert!(contents.contains("skypilot/prod/default.state.json"), "{contents}");
    assert!(!contents.contains(SECRET), "a secret reached the bucket:\n{contents}");

    // While an apply holds the lock: a second apply waits then fails naming the holder and the
    // lock's ID; plan and drift go on, saying the state may be changing.
    std::fs::write(laptop.join("main.toml"), spec("prod").replace("delay_ms = 0", "delay_ms = 4000")).unwrap();
    let mut slow = Command::new(env!("CARGO_BIN_EXE_skyform"))
        .args(["apply", "--auto-approve", "-f", "main.toml"])
        .current_dir(&laptop)
        .env("SKYFORM_ENABLE_TEST_PROVIDER", "1")
        .env("SKYFORM_TEST_STORE", root.path().join("cloud.json"))
        .env("SKYFORM_GCP_ENDPOINT", w.base())
        .env("SKYFORM_GCP_ACCESS_TOKEN", TOKEN)
        .env("SKYFORM_VAR_password", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut holder = None;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        let out = run(&w, &ci, &["apply", "--auto-approve"]);
        let t = text(&out);
        if t.contains("state is locked by") {
            assert_eq!(out.status.code(), Some(1));
            holder = Some(t);
            break;
        }
    }
    let holder = holder.expect("the second apply saw the lock");
    assert!(holder.contains("(apply), lock ID "), "{holder}");
    let out = run(&w, &ci, &["plan"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("note: applied state may be changing: locked by pid "), "{t}");
    assert!(slow.wait().unwrap().success());
    let out = run(&w, &ci, &["drift"]);
    assert!(!text(&out).contains("may be changing"), "{}", text(&out));

    // A lock left behind: unlock needs its ID.
    let b = w.backend("skypilot/prod");
    let left = b.lock("apply", Duration::ZERO).unwrap();
    std::mem::forget(left);
    let out = run(&w, &ci, &["state", "unlock"]);
    assert_eq!(out.status.code(), Some(1));
    let id = b.lock_holder().unwrap().unwrap().id;
    assert!(text(&out).contains(&format!("skyform state unlock {id}")), "{}", text(&out));
    let out = run(&w, &ci, &["state", "unlock", &id]);
    assert!(out.status.success(), "{}", text(&out));

    // Migration: a local state goes into the bucket (another prefix), and back.
    let local = root.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let plain =
        spec("x").replace(&format!("[backend.gcs]\nbucket = \"{BUCKET}\"\nprefix = \"skypilot/${{var.env}}\"\n"), "");
    std::fs::write(
        local.join("main.toml"),
        plain.replace("name = \"app\"", "name = \"app2\"").replace("name = \"slow\"", "name = \"slow2\""),
    )
    .unwrap();
    let out = run(&w, &local, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    let with_backend =
        spec("staging").replace("name = \"app\"", "name = \"app2\"").replace("name = \"slow\"", "name = \"slow2\"");
    std::fs::write(local.join("main.toml"), &with_backend).unwrap();
    let out = run(&w, &local, &["state", "migrate"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out)
            .contains("Copied the state (serial 1) to gs://acme-skyform-state/skypilot/staging/default.state.json"),
        "{}",
        text(&out)
    );
    let out = run(&w, &local, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "the migrated state matches: {}", text(&out));
    // Into a prefix holding another lineage: refused.
    std::fs::write(local.join("main.toml"), with_backend.replace("default = \"staging\"", "default = \"prod\""))
        .unwrap();
    let out = run(&w, &local, &["state", "migrate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("already holds another state"), "{}", text(&out));
    // And back to local files.
    std::fs::write(local.join("main.toml"), &with_backend).unwrap();
    std::fs::remove_dir_all(local.join(".skyform")).unwrap();
    let out = run(&w, &local, &["state", "migrate", "--to-local"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(local.join(".skyform/main.state.json").exists());
}

#[test]
fn a_bad_backend_block_is_refused_with_positions() {
    let w = World::new();
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("[backend.s3]\nbucket = \"b\"\n", "main.toml:1:10: error: unknown backend `s3`"),
        ("[backend.gcs]\nbucket = \"abc\"\nprefx = \"p\"\n", "unknown key `prefx` in `[backend.gcs]`"),
        ("[backend.gcs]\nprefix = \"p\"\n", "`[backend.gcs]` needs `bucket`"),
        (
            "[resource.test_object.a]\nname = \"a\"\n[backend.gcs]\nbucket = \"${test_object.a.id}\"\n",
            "`bucket` of `[backend.gcs]` may use only variables",
        ),
        ("[backend.gcs]\nbucket = \"Not_A_Bucket!\"\n", "\"Not_A_Bucket!\" is not a valid bucket name"),
    ];
    for (body, want) in cases {
        std::fs::write(dir.path().join("main.toml"), body).unwrap();
        let out = run(&w, dir.path(), &["plan"]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{body}\n{t}");
        assert!(t.contains(want), "{body}\nwant {want:?} in:\n{t}");
    }
}
