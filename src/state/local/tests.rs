//! Tests of the local backend: round trips, journal replay and damage, compaction,
//! concurrency, locking, file modes, and secrets on disk.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::address::Address;
use crate::state::holder::hostname;
use crate::state::{ResourceState, ResourceStatus};
use crate::value::Value;

fn backend() -> (tempfile::TempDir, LocalBackend) {
    let dir = tempfile::tempdir().unwrap();
    let b = LocalBackend::new(dir.path(), "main");
    (dir, b)
}

fn addr(i: usize) -> Address {
    Address::managed("test_thing", format!("r{i}"))
}

fn res(i: usize) -> ResourceState {
    ResourceState {
        provider: "test".into(),
        identity: Value::str(format!("projects/p/things/r{i}")),
        attrs: BTreeMap::from([
            ("name".to_string(), Value::str(format!("r{i}"))),
            ("size".to_string(), Value::Int(i as i64)),
        ]),
        dependencies: if i > 0 { vec![addr(i - 1)] } else { vec![] },
        private: Value::Null,
        status: ResourceStatus::Ready,
    }
}

fn upsert(i: usize) -> StateRecord {
    StateRecord::Upsert { address: addr(i), resource: res(i) }
}

/// States have no `PartialEq`; compare their serialized form.
fn same(a: &State, b: &State) -> bool {
    serde_json::to_value(a).unwrap() == serde_json::to_value(b).unwrap()
}

#[test]
fn missing_state_loads_new_and_writes_nothing() {
    let (dir, b) = backend();
    let (s, report) = b.load_with_report().unwrap();
    assert_eq!(s.serial, 0);
    assert!(s.resources.is_empty());
    assert!(!report.snapshot);
    // Opening a writer is not a change either.
    let _w = b.open_writer(&s).unwrap();
    assert!(!dir.path().join(".skyform").exists());
}

#[test]
fn round_trip_keeps_everything() {
    let (_dir, b) = backend();
    let s0 = b.load().unwrap();
    let w = b.open_writer(&s0).unwrap();
    w.record(&StateRecord::Serial { serial: 1 }).unwrap();
    for i in 0..5 {
        w.record(&upsert(i)).unwrap();
    }
    w.record(&StateRecord::Remove { address: addr(2) }).unwrap();
    w.record(&StateRecord::Outputs { outputs: BTreeMap::from([("o".to_string(), Value::str("x"))]) }).unwrap();
    let (loaded, report) = b.load_with_report().unwrap();
    assert!(same(&loaded, &w.state()));
    assert_eq!(loaded.lineage, s0.lineage);
    assert_eq!(loaded.fingerprints, s0.fingerprints);
    assert!(loaded.hmac_key.is_empty(), "new states keep no key");
    assert_eq!(loaded.serial, 1);
    assert_eq!(loaded.resources.len(), 4);
    assert!(!loaded.resources.contains_key(&addr(2)));
    assert_eq!(report.replayed, 8);
    assert!(report.snapshot && !report.torn_tail);
}

#[test]
fn second_run_starts_from_a_snapshot_of_the_first() {
    let (_dir, b) = backend();
    let w = b.open_writer(&b.load().unwrap()).unwrap();
    for i in 0..3 {
        w.record(&upsert(i)).unwrap();
    }
    drop(w); // a crash: no compaction
    let s1 = b.load().unwrap();
    let w = b.open_writer(&s1).unwrap();
    w.record(&upsert(3)).unwrap();
    let (s2, report) = b.load_with_report().unwrap();
    assert_eq!(s2.resources.len(), 4);
    // The first run's records were folded into the new run's opening snapshot.
    assert_eq!(report.replayed, 1);
    assert_eq!(fs::read_to_string(b.journal_path()).unwrap().lines().count(), 1);
}

fn journal_with(b: &LocalBackend, n: usize) -> Vec<u8> {
    let w = b.open_writer(&b.load().unwrap()).unwrap();
    for i in 0..n {
        w.record(&upsert(i)).unwrap();
    }
    fs::read(b.journal_path()).unwrap()
}

#[test]
fn torn_last_line_is_ignored() {
    let (_dir, b) = backend();
    let bytes = journal_with(&b, 3);
    fs::write(b.journal_path(), &bytes[..bytes.len() - 10]).unwrap();
    let (s, report) = b.load_with_report().unwrap();
    assert_eq!(s.resources.len(), 2);
    assert!(report.torn_tail);
    assert_eq!(report.replayed, 2);

    // Damage with its newline intact, at the end, is also a torn tail.
    let mut damaged = bytes.clone();
    let n = damaged.len();
    damaged[n - 5] ^= 0x20;
    fs::write(b.journal_path(), &damaged).unwrap();
    let (s, report) = b.load_with_report().unwrap();
    assert_eq!(s.resources.len(), 2);
    assert!(report.torn_tail);
}

#[test]
fn corrupt_middle_line_is_an_error() {
    let (_dir, b) = backend();
    let mut bytes = journal_with(&b, 3);
    let second = bytes.iter().position(|&c| c == b'\n').unwrap() + 80;
    bytes[second] ^= 0x01;
    fs::write(b.journal_path(), &bytes).unwrap();
    match b.load() {
        Err(StateError::Corrupt { message, .. }) => assert!(message.contains("line 2"), "{message}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn compaction_folds_the_journal() {
    let (_dir, b) = backend();
    let w = b.open_writer(&b.load().unwrap()).unwrap();
    for i in 0..10 {
        w.record(&upsert(i)).unwrap();
    }
    w.compact().unwrap();
    assert_eq!(fs::metadata(b.journal_path()).unwrap().len(), 0);
    let (s, report) = b.load_with_report().unwrap();
    assert!(same(&s, &w.state()));
    assert_eq!(report.replayed, 0);
    // Records after a compaction go on top of the new snapshot.
    w.record(&StateRecord::Remove { address: addr(0) }).unwrap();
    let (s, report) = b.load_with_report().unwrap();
    assert_eq!(s.resources.len(), 9);
    assert_eq!(report.replayed, 1);
    // Compacting with nothing recorded yet writes the opening state.
    let (_dir2, b2) = backend();
    let s0 = b2.load().unwrap();
    b2.open_writer(&s0).unwrap().compact().unwrap();
    assert_eq!(b2.load().unwrap().lineage, s0.lineage);
}

#[test]
fn crash_between_snapshot_and_truncate_is_safe() {
    let (_dir, b) = backend();
    let w = b.open_writer(&b.load().unwrap()).unwrap();
    for i in 0..5 {
        w.record(&upsert(i)).unwrap();
    }
    w.record(&StateRecord::Remove { address: addr(1) }).unwrap();
    let old_journal = fs::read(b.journal_path()).unwrap();
    w.compact().unwrap();
    // As if the truncation never reached the disk.
    fs::write(b.journal_path(), &old_journal).unwrap();
    let (s, report) = b.load_with_report().unwrap();
    assert!(same(&s, &w.state()));
    assert_eq!(report.skipped_folded, 6);
    assert_eq!(report.replayed, 0);
}

#[test]
fn journal_without_its_snapshot_is_refused() {
    let (_dir, b) = backend();
    journal_with(&b, 2);
    fs::remove_file(b.state_path()).unwrap();
    assert!(matches!(b.load(), Err(StateError::Corrupt { .. })));
}

#[test]
fn unknown_format_is_refused_clearly() {
    let (_dir, b) = backend();
    journal_with(&b, 1);
    let text = fs::read_to_string(b.state_path()).unwrap();
    let mut j: serde_json::Value = serde_json::from_str(&text).unwrap();
    j["format"] = 99.into();
    fs::write(b.state_path(), j.to_string()).unwrap();
    match b.load() {
        Err(StateError::Corrupt { message, .. }) => {
            assert!(message.contains("format 99") && message.contains("newer skyform"), "{message}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn concurrent_writers_are_all_persisted() {
    let (_dir, b) = backend();
    let w: Arc<dyn StateWriter> = Arc::from(b.writer(&b.load().unwrap()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let w = Arc::clone(&w);
            std::thread::spawn(move || {
                for i in 0..150 {
                    w.record(&upsert(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (s, report) = b.load_with_report().unwrap();
    assert_eq!(s.resources.len(), 1200);
    assert_eq!(report.replayed, 1200);
    w.compact().unwrap();
    assert_eq!(b.load().unwrap().resources.len(), 1200);
}

#[test]
fn secrets_never_reach_the_disk_in_clear() {
    const CLEAR: &str = "hunter2-do-not-store";
    let (_dir, b) = backend();
    let secret = || Value::Sensitive(Box::new(Value::str(CLEAR)));
    let mut s0 = b.load().unwrap();
    let mut r = res(0);
    r.attrs.insert("password".into(), secret());
    r.attrs.insert("nested".into(), Value::map([("k", Value::List(vec![secret()]))]));
    s0.resources.insert(addr(0), r.clone());
    s0.outputs.insert("pw".into(), secret());
    let w = b.open_writer(&s0).unwrap();
    w.record(&StateRecord::Upsert { address: addr(1), resource: r }).unwrap();
    w.record(&StateRecord::Outputs { outputs: BTreeMap::from([("pw".to_string(), secret())]) }).unwrap();
    let check = || {
        for p in [b.state_path(), b.journal_path()] {
            let text = fs::read_to_string(p).unwrap();
            assert!(!text.contains(CLEAR), "clear secret in {}", p.display());
        }
    };
    check();
    w.compact().unwrap();
    check();
}

#[test]
fn files_are_private() {
    let (dir, b) = backend();
    let w = b.open_writer(&b.load().unwrap()).unwrap();
    w.record(&upsert(0)).unwrap();
    let _lock = b.acquire("apply", Duration::ZERO).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join(".skyform")), 0o700);
    for p in [b.state_path(), b.journal_path(), b.lock_path()] {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
}

#[test]
fn lock_is_exclusive_and_released_on_drop() {
    let (_dir, b) = backend();
    let guard = b.lock("apply", Duration::ZERO).unwrap();
    let info: LockInfo = serde_json::from_slice(&fs::read(b.lock_path()).unwrap()).unwrap();
    assert_eq!(info.pid, std::process::id());
    assert_eq!(info.operation, "apply");
    assert_eq!(info.host, hostname());
    assert!(info.since.ends_with('Z') && info.since.len() == 20, "{}", info.since);

    let start = Instant::now();
    match b.lock("plan", Duration::from_millis(200)) {
        Err(StateError::Locked { holder }) => assert_eq!(*holder, info),
        Err(e) => panic!("expected Locked, got {e:?}"),
        Ok(_) => panic!("expected Locked, got a second lock"),
    }
    assert!(start.elapsed() >= Duration::from_millis(200));
    drop(guard);
    assert!(!b.lock_path().exists());
    drop(b.lock("plan", Duration::ZERO).unwrap());
}

#[test]
fn waiting_lock_gets_it_when_released() {
    let (_dir, b) = backend();
    let guard = b.lock("apply", Duration::ZERO).unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        drop(guard);
    });
    let l = b.acquire("apply", Duration::from_secs(10)).unwrap();
    assert!(l.broke_stale().is_none());
    releaser.join().unwrap();
}

fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn plant_lock(b: &LocalBackend, pid: u32, host: &str) -> LockInfo {
    let info = LockInfo {
        id: "planted".into(),
        holder: "another-run".into(),
        lease_ms: None,
        pid,
        host: host.into(),
        since: "2026-01-01T00:00:00Z".into(),
        operation: "apply".into(),
    };
    fs::create_dir_all(b.lock_path().parent().unwrap()).unwrap();
    fs::write(b.lock_path(), serde_json::to_vec(&info).unwrap()).unwrap();
    info
}

#[test]
fn stale_lock_on_this_host_is_broken() {
    let (_dir, b) = backend();
    let stale = plant_lock(&b, dead_pid(), &hostname());
    let l = b.acquire("apply", Duration::ZERO).unwrap();
    assert_eq!(l.broke_stale(), Some(&stale));
    assert_eq!(l.info().pid, std::process::id());
}

#[test]
fn lock_of_another_host_is_never_broken() {
    let (_dir, b) = backend();
    let other = plant_lock(&b, dead_pid(), "some-other-host");
    match b.acquire("apply", Duration::from_millis(60)) {
        Err(StateError::Locked { holder }) => assert_eq!(*holder, other),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn force_unlock_removes_and_reports() {
    let (_dir, b) = backend();
    assert!(matches!(b.force_unlock(None), Err(StateError::NotLocked)));
    let guard = b.lock("apply", Duration::ZERO).unwrap();
    let holder = b.force_unlock(None).unwrap();
    assert_eq!(holder.pid, std::process::id());
    assert!(!b.lock_path().exists());
    // Someone else takes it; our old guard must not remove theirs.
    let theirs = plant_lock(&b, 1, "some-other-host");
    drop(guard);
    let still: LockInfo = serde_json::from_slice(&fs::read(b.lock_path()).unwrap()).unwrap();
    assert_eq!(still, theirs);
}

#[test]
fn a_failed_append_stops_the_writer() {
    let (_dir, b) = backend();
    let w = b.open_writer(&b.load().unwrap()).unwrap();
    // A directory where the journal should be: opening it for append fails.
    fs::create_dir_all(b.journal_path()).unwrap();
    let first = w.record(&upsert(0)).unwrap_err();
    assert!(matches!(first, StateError::Io { .. }), "{first:?}");
    // Nothing may be appended after a possibly torn line, even once it works.
    fs::remove_dir(b.journal_path()).unwrap();
    let again = w.record(&upsert(1)).unwrap_err();
    assert_eq!(again.to_string(), first.to_string());
    assert!(w.compact().is_err());
    assert!(b.describe().ends_with(".skyform/main.state.json"));
}

// --- fencing, the lost lock, files ----------------------------------------------------------

#[test]
fn a_run_that_lost_its_lock_stops_and_loses_nothing_acknowledged() {
    let (dir, a) = backend();
    // Run A: holds the lock, writes and is told its records are durable.
    let lock_a = a.acquire("apply", Duration::ZERO).unwrap();
    let s0 = a.load().unwrap();
    let wa = a.open_writer(&s0).unwrap();
    wa.record(&StateRecord::Serial { serial: 1 }).unwrap();
    wa.record(&upsert(0)).unwrap();
    wa.record(&upsert(1)).unwrap();
    // `state unlock` from elsewhere, then run B (another process: another backend) takes the lock.
    let b = LocalBackend::new(dir.path(), "main");
    let id = b.lock_holder().unwrap().unwrap().id;
    b.force_unlock(Some(&id)).unwrap();
    let _lock_b = b.acquire("apply", Duration::ZERO).unwrap();
    let sb = b.load().unwrap();
    assert_eq!(sb.resources.len(), 2, "B reads every record A was told was durable");
    let wb = b.open_writer(&sb).unwrap();
    wb.record(&StateRecord::Serial { serial: 2 }).unwrap();
    wb.record(&upsert(10)).unwrap();
    // A's next write and its compaction stop, clearly, and write nothing.
    let snapshot_before = fs::read(b.state_path()).unwrap();
    let journal_before = fs::read(b.journal_path()).unwrap();
    let err = wa.record(&upsert(2)).unwrap_err();
    assert!(matches!(err, StateError::LockLost { unconfirmed: false, .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("lost the state lock")
            && text.contains("state unlock")
            && text.contains("nothing more was written"),
        "{text}"
    );
    assert!(matches!(wa.compact(), Err(StateError::LockLost { .. })));
    assert!(matches!(wa.record(&upsert(3)), Err(StateError::LockLost { .. })));
    assert_eq!(fs::read(b.state_path()).unwrap(), snapshot_before, "A never replaces B's snapshot");
    assert_eq!(fs::read(b.journal_path()).unwrap(), journal_before);
    // B goes on; the state has A's acknowledged records and B's, and none of A's refused ones.
    wb.compact().unwrap();
    let s = b.load().unwrap();
    assert_eq!(s.serial, 2);
    let names: Vec<String> = s.resources.keys().map(|a| a.to_string()).collect();
    assert_eq!(names, ["test_thing.r0", "test_thing.r1", "test_thing.r10"]);
    // A's guard does not remove B's lock.
    drop(lock_a);
    assert!(b.lock_path().exists());
}

#[test]
fn a_lock_file_replaced_by_another_with_the_same_content_is_not_ours() {
    let (_dir, b) = backend();
    let _lock = b.acquire("apply", Duration::ZERO).unwrap();
    let w = b.open_writer(&b.load().unwrap()).unwrap();
    w.record(&upsert(0)).unwrap();
    // Same bytes, another inode (a copy put back by hand; the old one kept aside so that its
    // inode number cannot be reused): the fence sees it.
    let bytes = fs::read(b.lock_path()).unwrap();
    fs::rename(b.lock_path(), b.lock_path().with_extension("aside")).unwrap();
    fs::write(b.lock_path(), &bytes).unwrap();
    assert!(matches!(w.record(&upsert(1)), Err(StateError::LockLost { .. })));
}

#[test]
fn locks_carry_a_random_holder_id() {
    let (dir, a) = backend();
    let b = LocalBackend::new(dir.path(), "main");
    let la = a.acquire("apply", Duration::ZERO).unwrap();
    let ha = la.info().holder.clone();
    drop(la);
    let lb = b.acquire("apply", Duration::ZERO).unwrap();
    assert_eq!(ha.len(), 16);
    assert_ne!(lb.info().holder, ha, "two backends in one process are two holders");
    assert_eq!(lb.info().pid, std::process::id());
}

#[test]
fn state_files_are_never_written_through_a_link_and_are_0600() {
    let (dir, b) = backend();
    let w = b.open_writer(&b.load().unwrap()).unwrap();
    w.record(&upsert(0)).unwrap();
    // A snapshot made world-readable by hand gets 0600 back with the next write (a new file).
    fs::set_permissions(b.state_path(), fs::Permissions::from_mode(0o644)).unwrap();
    w.compact().unwrap();
    assert_eq!(fs::metadata(b.state_path()).unwrap().permissions().mode() & 0o777, 0o600);
    // A symbolic link planted as the snapshot is refused, and its target untouched.
    let victim = dir.path().join("victim");
    fs::write(&victim, "keep").unwrap();
    fs::remove_file(b.state_path()).unwrap();
    std::os::unix::fs::symlink(&victim, b.state_path()).unwrap();
    let err = w.compact().unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
}

#[test]
fn a_state_directory_others_may_write_is_refused_with_the_fix() {
    let (dir, b) = backend();
    let state_dir = dir.path().join(".skyform");
    fs::create_dir(&state_dir).unwrap();
    fs::set_permissions(&state_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let err = b.acquire("apply", Duration::ZERO).unwrap_err();
    assert!(matches!(err, StateError::InsecureDir { mode: 0o777, .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("chmod 700 {}", state_dir.display())), "{err}");
    let w = b.open_writer(&b.load().unwrap()).unwrap();
    assert!(matches!(w.record(&upsert(0)), Err(StateError::InsecureDir { .. })));
    fs::set_permissions(&state_dir, fs::Permissions::from_mode(0o700)).unwrap();
    drop(b.acquire("apply", Duration::ZERO).unwrap());
}

#[test]
fn old_hmac_states_load_compare_and_record_their_parameters() {
    use crate::secrets::legacy_fingerprint;
    let (_dir, b) = backend();
    // A format-1 state as an older skyform wrote it: an HMAC key and `hmac-sha256:` fingerprints.
    let key = [9u8; 32];
    let mut r = res(0);
    r.attrs.insert("password".into(), Value::Redacted(legacy_fingerprint(&key, &Value::str("pw1"))));
    let old = serde_json::json!({
        "format": 1, "lineage": "0123456789abcdef0123456789abcdef", "serial": 3,
        "hmac_key": hex::encode(key),
        "resources": { "test_thing.r0": r }, "outputs": {}, "journal_epoch": 1,
    });
    fs::create_dir_all(b.state_path().parent().unwrap()).unwrap();
    fs::set_permissions(b.state_path().parent().unwrap(), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(b.state_path(), old.to_string()).unwrap();
    let s = b.load().unwrap();
    assert_eq!(s.format, crate::state::model::STATE_FORMAT);
    let fp = s.fingerprinter();
    let stored = &s.resources[&addr(0)].attrs["password"];
    assert!(fp.same(stored, &Value::str("pw1")), "an old fingerprint still compares");
    assert!(!fp.same(stored, &Value::str("pw2")));
    // The next write records the parameters (salt derived from the lineage: stable until then)
    // and keeps the key while an old fingerprint is left.
    assert_eq!(b.load().unwrap().fingerprint_params(), s.fingerprint_params());
    let w = b.open_writer(&s).unwrap();
    w.compact().unwrap();
    let on_disk: serde_json::Value = serde_json::from_slice(&fs::read(b.state_path()).unwrap()).unwrap();
    assert_eq!(on_disk["format"], 2);
    assert_eq!(on_disk["fingerprints"]["algorithm"], "argon2id");
    assert_eq!(on_disk["fingerprints"]["memory_kib"], 19456);
    assert_eq!(on_disk["fingerprints"]["salt"].as_str().unwrap().len(), 32);
    assert_eq!(on_disk["hmac_key"], hex::encode(key));
    // Once the value is written again (with the new scheme), the key goes.
    let mut r2 = res(0);
    r2.attrs.insert("password".into(), fp.redact(&Value::str("pw1").sensitive()));
    w.record(&StateRecord::Upsert { address: addr(0), resource: r2 }).unwrap();
    w.compact().unwrap();
    let text = fs::read_to_string(b.state_path()).unwrap();
    assert!(!text.contains("hmac_key") && !text.contains("hmac-sha256"), "{text}");
    let s = b.load().unwrap();
    assert!(s.fingerprinter().same(&s.resources[&addr(0)].attrs["password"], &Value::str("pw1")));
}
