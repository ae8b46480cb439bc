//! State persistence benchmark: every finished step of an apply written at once.
//!
//! - 10,000 `record` calls from 10 threads (as the apply walker does with
//!   parallelism 10) through the local backend's journal, then a final compact
//!   and a load;
//! - the same 10,000 records from one thread (no group commit possible);
//! - for comparison, rewriting the whole snapshot after every step (what
//!   Terraform does), for 2,000 records: quadratic, so 10,000 would take about
//!   25 times as long.
//!
//! Run with `cargo bench --bench state_journal`. Files go to a temporary
//! directory (set `TMPDIR` to measure another disk); every write is fsynced.
#![expect(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skyform::address::Address;
use skyform::state::local::LocalBackend;
use skyform::state::{Backend, ResourceState, ResourceStatus, State, StateRecord, StateWriter};
use skyform::value::Value;

const RECORDS: usize = 10_000;
const THREADS: usize = 10;
const REWRITE_RECORDS: usize = 2_000;

fn record(i: usize) -> StateRecord {
    let name = format!("r{i:05}");
    let attrs: BTreeMap<String, Value> = [
        ("name", Value::str(&name)),
        ("project", Value::str("bench-project")),
        ("region", Value::str("europe-west1")),
        ("self_link", Value::str(format!("https://example.invalid/projects/bench-project/things/{name}"))),
        ("labels", Value::map([("team", Value::str("infra")), ("env", Value::str("bench"))])),
        ("size", Value::Int(i as i64)),
        ("enabled", Value::Bool(true)),
        ("password", Value::Redacted(format!("hmac-sha256:{:064x}", i))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    StateRecord::Upsert {
        address: Address::managed("bench_thing", &name),
        resource: ResourceState {
            provider: "bench".into(),
            identity: Value::str(format!("projects/bench-project/things/{name}")),
            attrs,
            dependencies: if i > 0 { vec![Address::managed("bench_thing", format!("r{:05}", i - 1))] } else { vec![] },
            private: Value::Null,
            status: ResourceStatus::Ready,
        },
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn journal_concurrent(records: &[StateRecord]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = LocalBackend::new(dir.path(), "bench");
    let writer: Arc<dyn StateWriter> = Arc::from(backend.writer(&backend.load().unwrap()).unwrap());
    let records = Arc::new(records.to_vec());
    let start = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (writer, records) = (Arc::clone(&writer), Arc::clone(&records));
            std::thread::spawn(move || {
                for rec in records.iter().skip(t).step_by(THREADS) {
                    writer.record(rec).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let recorded = start.elapsed();
    let journal_bytes = fs::metadata(backend.journal_path()).unwrap().len();
    let c = Instant::now();
    writer.compact().unwrap();
    let compact = c.elapsed();
    let total = start.elapsed();
    let l = Instant::now();
    let loaded = backend.load().unwrap();
    let load = l.elapsed();
    assert_eq!(loaded.resources.len(), records.len());
    let snapshot_bytes = fs::metadata(backend.state_path()).unwrap().len();
    println!("journal, {} records from {THREADS} threads + final compact:", records.len());
    println!(
        "  records: {:.3} s ({:.0} records/s), journal {:.1} MB",
        secs(recorded),
        records.len() as f64 / secs(recorded),
        journal_bytes as f64 / 1e6
    );
    println!("  compact: {:.3} s (snapshot {:.1} MB)", secs(compact), snapshot_bytes as f64 / 1e6);
    println!("  total:   {:.3} s ({:.0} records/s)", secs(total), records.len() as f64 / secs(total));
    println!("  load after compact: {:.3} s", secs(load));
}

fn journal_sequential(records: &[StateRecord]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = LocalBackend::new(dir.path(), "bench");
    let writer = backend.writer(&backend.load().unwrap()).unwrap();
    let start = Instant::now();
    for rec in records {
        writer.record(rec).unwrap();
    }
    let recorded = start.elapsed();
    let l = Instant::now();
    let loaded = backend.load().unwrap();
    let load = l.elapsed();
    assert_eq!(loaded.resources.len(), records.len());
    writer.compact().unwrap();
    let total = start.elapsed();
    println!("journal, {} records from 1 thread (one fsync each) + final compact:", records.len());
    println!(
        "  records: {:.3} s ({:.0} records/s); total {:.3} s; load with {} journal records: {:.3} s",
        secs(recorded),
        records.len() as f64 / secs(recorded),
        secs(total),
        records.len(),
        secs(load)
    );
}

/// Rewrites the whole state atomically (temp file, fsync, rename, directory
/// fsync) after every record, as a state without a journal must.
fn rewrite_per_step(records: &[StateRecord]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.state.json");
    let tmp = dir.path().join("bench.state.json.tmp");
    let mut state = State::new();
    let start = Instant::now();
    for rec in records {
        state.apply_record(rec);
        let mut f = fs::File::create(&tmp).unwrap();
        f.write_all(&serde_json::to_vec_pretty(&state).unwrap()).unwrap();
        f.sync_all().unwrap();
        fs::rename(&tmp, &path).unwrap();
        fs::File::open(dir.path()).unwrap().sync_all().unwrap();
    }
    let total = start.elapsed();
    println!("snapshot rewrite per step, {} records (for comparison):", records.len());
    println!(
        "  total: {:.3} s ({:.0} records/s); quadratic, so {} records would take about {:.0} s",
        secs(total),
        records.len() as f64 / secs(total),
        RECORDS,
        secs(total) * (RECORDS as f64 / records.len() as f64).powi(2)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let records: Vec<StateRecord> = (0..RECORDS).map(record).collect();
    println!("state persistence benchmark (temp dir: {})", std::env::temp_dir().display());
    journal_concurrent(&records);
    journal_sequential(&records);
    rewrite_per_step(&records[..REWRITE_RECORDS]);
}
