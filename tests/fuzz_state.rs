//! Fuzzing the local state backend's loaders (`src/state/local.rs`, `local/journal.rs`,
//! `state/snapshot.rs`): snapshots, journals and lock files that are torn, truncated, corrupted or
//! hostile. Nothing panics; every error names the file, and the line (the journal's record, the
//! snapshot's JSON line and column); a torn last journal record is dropped as the backend
//! documents (it was never acknowledged) and nothing before it is lost.
//!
//! The short run is part of `cargo test`; the long one is `PROPTEST_CASES=… cargo test --release
//! --test fuzz_state` (docs/testbed.md#fuzzing).

mod fuzz_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use fuzz_common::{apply_bytes, json_fragment, json_located, mutation};
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use skyform::address::Address;
use skyform::state::local::LocalBackend;
use skyform::state::{Backend, ResourceState, ResourceStatus, State, StateError, StateRecord, StateWriter};
use skyform::value::Value;

/// Messages of the snapshot errors that are about the whole file (its kind, its `format`).
const WHOLE_FILE: [&str; 4] =
    ["not a JSON object", "`format` field", "unsupported state format", "`journal_epoch` is not a number"];

fn addr(s: &str) -> Address {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn resource(i: usize) -> ResourceState {
    ResourceState {
        provider: "memory".into(),
        identity: Value::map([("name", Value::str(format!("obj-{i}")))]),
        attrs: BTreeMap::from([
            ("name".to_string(), Value::str(format!("obj-{i}"))),
            ("password".to_string(), Value::Redacted("argon2id:m=19456,t=2,p=1:00ff".into())),
            ("later".to_string(), Value::Unknown),
            ("dollar".to_string(), Value::map([("$unknown", Value::Int(1))])),
            ("list".to_string(), Value::List(vec![Value::Int(i as i64), Value::Bool(true), Value::Null])),
        ]),
        dependencies: vec![addr("x.base")],
        private: Value::map([("operation", Value::map([("name", Value::str("op-1"))]))]),
        status: if i % 3 == 0 { ResourceStatus::Pending } else { ResourceStatus::Ready },
    }
}

/// The records the fixture's journal holds, in order.
fn records() -> Vec<StateRecord> {
    let addrs = ["x.a", "x.b[0]", "module.m[\"k\"].x.c", "data.d.e", "x.b[1]", "module.n.x.f[\"é\"]"];
    let mut out = vec![StateRecord::Serial { serial: 7 }];
    for (i, a) in addrs.iter().enumerate() {
        out.push(StateRecord::Upsert { address: addr(a), resource: resource(i) });
    }
    out.push(StateRecord::Remove { address: addr("x.b[0]") });
    out.push(StateRecord::Outputs {
        outputs: BTreeMap::from([("o".to_string(), Value::str("v")), ("s".to_string(), Value::Redacted("fp".into()))]),
    });
    out
}

/// A valid state as the real writer leaves it after a crash before compaction: the snapshot,
/// the journal, and the state after each prefix of the journal.
struct Fixture {
    snapshot: Vec<u8>,
    journal: Vec<u8>,
    /// `after[k]`: the state once the first `k` records are applied.
    after: Vec<serde_json::Value>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path(), "main");
        let mut state = State::new();
        state.resources.insert(addr("x.base"), resource(99));
        let w = b.open_writer(&state).unwrap();
        let mut after = vec![comparable(&state)];
        for r in records() {
            w.record(&r).unwrap();
            state.apply_record(&r);
            after.push(comparable(&state));
        }
        drop(w);
        Fixture {
            snapshot: std::fs::read(b.state_path()).unwrap(),
            journal: std::fs::read(b.journal_path()).unwrap(),
            after,
        }
    })
}

/// What a load must reproduce of a state.
fn comparable(s: &State) -> serde_json::Value {
    serde_json::json!({
        "lineage": s.lineage,
        "serial": s.serial,
        "resources": serde_json::to_value(&s.resources).unwrap(),
        "outputs": serde_json::to_value(&s.outputs).unwrap(),
    })
}

/// A backend over these file contents (`None`: no such file).
fn backend(dir: &Path, snapshot: Option<&[u8]>, journal: Option<&[u8]>, lock: Option<&[u8]>) -> LocalBackend {
    let b = LocalBackend::new(dir, "main");
    std::fs::create_dir_all(dir.join(".skyform")).unwrap();
    for (path, bytes) in [(b.state_path(), snapshot), (b.journal_path(), journal), (b.lock_path(), lock)] {
        if let Some(bytes) = bytes {
            std::fs::write(path, bytes).unwrap();
        }
    }
    b
}

/// Checks that `e` names the file it is about, and the place in it.
fn located(e: &StateError, b: &LocalBackend) -> Result<(), TestCaseError> {
    let StateError::Corrupt { path, message } = e else {
        return Err(TestCaseError::fail(format!("not a corrupt-state error: {e}")));
    };
    if Path::new(path) == b.state_path() {
        prop_assert!(
            json_located(message) || WHOLE_FILE.iter().any(|w| message.contains(w)),
            "a snapshot error without its place: {e}"
        );
    } else if Path::new(path) == b.journal_path() {
        prop_assert!(message.contains("journal line "), "a journal error without its line: {e}");
    } else {
        prop_assert!(false, "an error about another file: {e}");
    }
    Ok(())
}

/// Loads, reads the lock, opens a writer: no panic, every error located.
fn exercise(b: &LocalBackend) -> Result<Option<State>, TestCaseError> {
    let _ = b.lock_holder();
    if let Err(e) = b.open_writer(&State::new()) {
        located(&e, b)?;
    }
    match b.load_with_report() {
        Ok((s, report)) => {
            // What consumers do with a loaded state first: fingerprints with the state's
            // parameters (a state read from a file: a new one has fresh random ones), and with
            // each stored fingerprint's own.
            let fp = s.fingerprinter();
            if report.snapshot {
                let _ = fp.fingerprint(&Value::str("x"));
            }
            for r in s.resources.values() {
                for v in r.attrs.values().filter(|v| matches!(v, Value::Redacted(_))) {
                    let _ = fp.same(&Value::str("x"), v);
                }
            }
            let _ = s.for_snapshot();
            Ok(Some(s))
        }
        Err(e) => {
            located(&e, b)?;
            Ok(None)
        }
    }
}

/// One journal line, checksummed as the writer does, around any JSON text.
fn line(json: &[u8]) -> Vec<u8> {
    let mut l = hex::encode(Sha256::digest(json)).into_bytes();
    l.push(b' ');
    l.extend_from_slice(json);
    l.push(b'\n');
    l
}

/// The fixture journal's lines, each with its newline.
fn journal_lines() -> Vec<Vec<u8>> {
    fixture().journal.split_inclusive(|&c| c == b'\n').map(<[u8]>::to_vec).collect()
}

proptest! {
    #![proptest_config(fuzz_common::config(256))]

    /// A mutated snapshot (beside the valid journal): loads, or is refused at a line and column.
    #[test]
    fn mutated_snapshot(muts in prop::collection::vec(mutation(json_fragment()), 1..6), journal in any::<bool>()) {
        let f = fixture();
        let dir = tempfile::tempdir().unwrap();
        let snapshot = apply_bytes(&f.snapshot, &muts);
        let b = backend(dir.path(), Some(&snapshot), journal.then_some(&f.journal[..]), None);
        exercise(&b)?;
    }

    /// The journal cut at any byte (a crash mid-append): the records before the cut are all
    /// there, the one cut is dropped and reported as a torn tail (a record whose text is whole
    /// but whose newline is missing is kept).
    #[test]
    fn torn_journal(cut in any::<prop::sample::Index>()) {
        let f = fixture();
        let cut = cut.index(f.journal.len() + 1);
        let dir = tempfile::tempdir().unwrap();
        let b = backend(dir.path(), Some(&f.snapshot), Some(&f.journal[..cut]), None);
        let (state, report) = b.load_with_report().map_err(|e| TestCaseError::fail(e.to_string()))?;
        // A record is whole once its text is (its newline may be missing); the one the cut is
        // inside of is torn.
        let mut start = 0;
        let (mut whole, mut torn) = (0, false);
        for l in journal_lines() {
            let end = start + l.len() - 1;
            whole += usize::from(end <= cut);
            torn |= start < cut && cut < end;
            start += l.len();
        }
        prop_assert_eq!(report.replayed, whole);
        prop_assert_eq!(report.torn_tail, torn);
        prop_assert_eq!(comparable(&state), f.after[whole].clone());
    }

    /// One byte of one journal record damaged: a record before the last is refused by its line
    /// number (valid records follow it, so it is not a crash's torn tail); the last one is a torn
    /// tail, dropped, or refused by its number.
    #[test]
    fn damaged_journal_record(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let f = fixture();
        let lines = journal_lines();
        let at = at.index(f.journal.len());
        prop_assume!(f.journal[at] != byte);
        let mut journal = f.journal.clone();
        journal[at] = byte;
        // The damaged record: the line holding byte `at`.
        let k = f.journal[..at].iter().filter(|&&c| c == b'\n').count();
        let dir = tempfile::tempdir().unwrap();
        let b = backend(dir.path(), Some(&f.snapshot), Some(&journal), None);
        match b.load_with_report() {
            Ok((state, report)) => {
                let n = lines.len();
                prop_assert_eq!(k, n - 1, "record {} of {} damaged, and the load went on", k + 1, n);
                prop_assert!(report.torn_tail);
                prop_assert_eq!(report.replayed, k);
                prop_assert_eq!(comparable(&state), f.after[k].clone());
            }
            Err(e) => {
                located(&e, &b)?;
                prop_assert!(e.to_string().contains(&format!("journal line {} ", k + 1)), "{e}");
            }
        }
    }

    /// Hostile JSON in a record whose checksum is right (so it reaches the deserializer): loads,
    /// or is refused by its line number.
    #[test]
    fn hostile_journal_record(
        k in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(json_fragment()), 1..6),
    ) {
        let f = fixture();
        let mut lines = journal_lines();
        let k = k.index(lines.len());
        let json = &lines[k][65..lines[k].len() - 1];
        // One line still: a newline would make two (the damaged-line properties cover that).
        let hostile: Vec<u8> =
            apply_bytes(json, &muts).into_iter().map(|c| if c == b'\n' { b' ' } else { c }).collect();
        lines[k] = line(&hostile);
        let dir = tempfile::tempdir().unwrap();
        let b = backend(dir.path(), Some(&f.snapshot), Some(&lines.concat()), None);
        if exercise(&b)?.is_none() {
            let e = b.load().unwrap_err();
            prop_assert!(e.to_string().contains(&format!("journal line {}", k + 1)), "{e}");
        }
    }

    /// Anything at all in the three files.
    #[test]
    fn random_files(
        snapshot in prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
        journal in prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
        lock in prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(dir.path(), snapshot.as_deref(), journal.as_deref(), lock.as_deref());
        exercise(&b)?;
    }
}

proptest! {
    #![proptest_config(fuzz_common::config(32))]

    /// A hostile snapshot that loads is written back (the writer's snapshot) and reads the same.
    #[test]
    fn loaded_hostile_state_round_trips(muts in prop::collection::vec(mutation(json_fragment()), 1..4)) {
        let f = fixture();
        let dir = tempfile::tempdir().unwrap();
        let snapshot = apply_bytes(&f.snapshot, &muts);
        let b = backend(dir.path(), Some(&snapshot), None, None);
        let Ok(state) = b.load() else { return Ok(()) };
        let w = b.open_writer(&state).map_err(|e| TestCaseError::fail(e.to_string()))?;
        w.compact().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = b.load().map_err(|e| TestCaseError::fail(format!("written back, then refused: {e}")))?;
        prop_assert_eq!(comparable(&again), comparable(&state));
    }
}

/// The fixture is what the properties assume: a snapshot and a journal of every record.
#[test]
fn the_fixture_loads_whole() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), Some(&f.snapshot), Some(&f.journal), None);
    let (state, report) = b.load_with_report().unwrap();
    assert_eq!(report.replayed, records().len());
    assert!(!report.torn_tail);
    assert_eq!(comparable(&state), *f.after.last().unwrap());
    assert_eq!(journal_lines().len(), records().len());
}

/// A damaged newline joins the last two records into one line that fails its checksum: that is
/// not a crash's torn tail (a crash cannot damage an acknowledged record), so it is refused,
/// naming the first of the two, rather than both being dropped.
#[test]
fn a_damaged_newline_before_the_last_record_is_refused() {
    let f = fixture();
    let lines = journal_lines();
    let mut journal = f.journal.clone();
    let at = f.journal.len() - lines[lines.len() - 1].len() - 1;
    assert_eq!(journal[at], b'\n');
    journal[at] = b'x';
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), Some(&f.snapshot), Some(&journal), None);
    let e = b.load().expect_err("two records dropped without a word");
    assert!(e.to_string().contains(&format!("journal line {} ", lines.len() - 1)), "{e}");
}

/// Found by `mutated_snapshot`: a snapshot whose fields do not make a state (here an unknown
/// `status`) was refused without a line or column (the fields were read from a parsed value).
#[test]
fn a_snapshot_with_a_bad_field_is_refused_at_its_line() {
    let f = fixture();
    let text = String::from_utf8(f.snapshot.clone()).unwrap().replacen("\"pending\"", "\",pending\"", 1);
    let dir = tempfile::tempdir().unwrap();
    let b = backend(dir.path(), Some(text.as_bytes()), None, None);
    let e = b.load().unwrap_err().to_string();
    let line = text.lines().position(|l| l.contains(",pending")).unwrap() + 1;
    assert!(e.contains("main.state.json") && e.contains(&format!("at line {line} column")), "{e}");
}
