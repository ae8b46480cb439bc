//! The append-only journal and its group-committing writer.
//!
//! One record per line: `<sha256 hex of the JSON> <JSON>\n`, the JSON being
//! `{"epoch": E, "record": <StateRecord>}`. The checksum makes every line
//! self-checking, so a line torn by a crash is recognised and ignored. The epoch
//! ties each record to the snapshot it applies on top of (see [`super`]).

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Condvar, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::fence::{DirLock, Held, check, lock_dir};
use super::fsio::{io_err, private_options, sync_dir};
use super::{Paths, write_snapshot};
use crate::state::{State, StateError, StateRecord, StateWriter};

/// The JSON of one journal line.
#[derive(Serialize, Deserialize)]
pub(super) struct Entry<R> {
    /// The snapshot epoch this record applies on top of.
    pub epoch: u64,
    /// The change.
    pub record: R,
}

/// Builds one journal line from a record's JSON.
fn encode_line(epoch: u64, record_json: &str) -> Vec<u8> {
    let json = format!("{{\"epoch\":{epoch},\"record\":{record_json}}}");
    let sum = hex::encode(Sha256::digest(json.as_bytes()));
    let mut line = Vec::with_capacity(sum.len() + json.len() + 2);
    line.extend_from_slice(sum.as_bytes());
    line.push(b' ');
    line.extend_from_slice(json.as_bytes());
    line.push(b'\n');
    line
}

/// Checks one line (without its newline); `None` if the checksum does not match
/// (torn or damaged), else the JSON text.
pub(super) fn check_line(line: &[u8]) -> Option<&str> {
    if line.len() < 66 || line[64] != b' ' {
        return None;
    }
    let (sum, json) = (&line[..64], &line[65..]);
    let want = hex::encode(Sha256::digest(json));
    if want.as_bytes() != sum {
        return None;
    }
    std::str::from_utf8(json).ok()
}

/// Writes [`StateRecord`]s to the journal of a [`super::LocalBackend`], each
/// durable before [`StateWriter::record`] returns.
///
/// Group commit: callers append their encoded line to a shared buffer under a
/// mutex; the first caller to find no write in progress becomes the *leader*,
/// takes the whole buffer, writes it with one `write` and one `fdatasync`, and
/// wakes everyone whose line it covered. Callers that arrived meanwhile wait
/// and form the next batch, so `n` concurrent callers share one fsync instead of
/// queueing for `n`. Every caller still returns only after its own line is
/// durable.
///
/// The first batch is preceded by a snapshot of the state the writer was
/// opened with (at a new epoch) and a truncation of the journal; see
/// [`super`] for why that is crash-safe.
///
/// Fenced: when opened under the backend's lock, every batch and compaction runs
/// under the directory `flock` after checking the lock file is still that lock
/// (see [`super::fence`]); a lost lock stops the writer with
/// [`StateError::LockLost`] before it writes anything more.
pub struct LocalWriter {
    paths: Paths,
    /// The lock held when the writer was opened; `None`: not fenced (opened
    /// without the lock: tests and tools; every command that writes holds it).
    fence: Option<Held>,
    inner: Mutex<Inner>,
    done: Condvar,
}

struct Inner {
    /// Epoch stamped on lines encoded now; the snapshot on disk has it (or will,
    /// before any of those lines is written).
    epoch: u64,
    /// The state the writer was opened with, until the first batch writes it as
    /// the snapshot.
    base: Option<State>,
    /// The state with every accepted record applied, in journal order (for
    /// [`StateWriter::compact`]).
    mirror: State,
    /// Lines waiting for the next batch.
    pending: Vec<u8>,
    /// Sequence number of the next record accepted.
    next_seq: u64,
    /// Every record with a lower sequence number is durable.
    durable_seq: u64,
    /// A leader (or `compact`) is writing; it holds `file`.
    busy: bool,
    /// The open journal, once the first batch has opened it.
    file: Option<File>,
    /// Set when a write failed: the journal may end in a torn line, so nothing
    /// more may be appended after it; or the lock was lost. Every later call
    /// fails with this.
    failed: Option<Failure>,
}

/// Why a writer stopped, kept to repeat it.
#[derive(Debug, Clone)]
enum Failure {
    /// A write failed (file, kind, message).
    Io(String, io::ErrorKind, String),
    /// The lock was lost (the lock file).
    Lost(String),
}

impl Failure {
    fn of(e: &StateError, journal: &str) -> Failure {
        match e {
            StateError::Io { path, error } => Failure::Io(path.clone(), error.kind(), error.to_string()),
            StateError::LockLost { location, .. } => Failure::Lost(location.clone()),
            other => Failure::Io(journal.to_string(), io::ErrorKind::Other, other.to_string()),
        }
    }

    fn error(&self) -> StateError {
        match self {
            Failure::Io(path, kind, message) => {
                StateError::Io { path: path.clone(), error: io::Error::new(*kind, message.clone()) }
            }
            Failure::Lost(location) => StateError::LockLost { location: location.clone(), unconfirmed: false },
        }
    }
}

impl LocalWriter {
    /// A writer for the files in `paths` on top of `state`, whose snapshot on
    /// disk has epoch `disk_epoch`.
    pub(super) fn new(paths: Paths, state: &State, disk_epoch: u64, fence: Option<Held>) -> Self {
        LocalWriter {
            paths,
            fence,
            inner: Mutex::new(Inner {
                epoch: disk_epoch + 1,
                base: Some(state.clone()),
                mirror: state.clone(),
                pending: Vec::new(),
                next_seq: 0,
                durable_seq: 0,
                busy: false,
                file: None,
                failed: None,
            }),
            done: Condvar::new(),
        }
    }

    /// The state as written so far (the opening state plus every record).
    pub fn state(&self) -> State {
        self.lock().mirror.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Only in-memory bookkeeping happens under the mutex (serde and I/O
        // failures are values, not panics), so poisoning would mean a bug in
        // `apply_record`; the fields stay consistent with each other anyway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failure(&self, f: &Failure) -> StateError {
        f.error()
    }

    /// The fence: the directory locked, and the lock checked to be still ours
    /// (`None` for an unfenced writer). Hold it across the write.
    fn fence(&self) -> Result<Option<DirLock>, StateError> {
        let Some(held) = &self.fence else { return Ok(None) };
        let dir = lock_dir(&self.paths.dir)?;
        check(&self.paths.lock, held)?;
        Ok(Some(dir))
    }

    /// Leader work, without the mutex: writes the snapshot first if this is the
    /// first batch, then appends `batch` and makes it durable.
    fn flush(&self, base: Option<State>, epoch: u64, file: Option<File>, batch: &[u8]) -> Result<File, StateError> {
        let _fence = self.fence()?;
        let mut file = match file {
            Some(f) => f,
            None => {
                // First batch: the snapshot of the opening state (new epoch)
                // must be durable before any line stamped with that epoch. Then
                // the journal is emptied; lines of older epochs left by a crash
                // before the truncation are skipped on load, so the order
                // snapshot -> truncate -> append is safe at every point.
                if let Some(base) = base {
                    write_snapshot(&self.paths, &base, epoch)?;
                }
                self.open_journal()?
            }
        };
        file.write_all(batch).map_err(|e| io_err(&self.paths.journal, e))?;
        // fdatasync also persists the new file length, so the appended lines
        // are readable after a crash.
        file.sync_data().map_err(|e| io_err(&self.paths.journal, e))?;
        Ok(file)
    }

    /// Opens the journal for appending, emptied.
    fn open_journal(&self) -> Result<File, StateError> {
        let file = private_options()
            .create(true)
            .append(true)
            .open(&self.paths.journal)
            .and_then(|f| f.set_len(0).map(|()| f))
            .map_err(|e| io_err(&self.paths.journal, e))?;
        // The directory entry of a newly created journal must be durable too.
        sync_dir(&self.paths.dir)?;
        Ok(file)
    }
}

impl StateWriter for LocalWriter {
    fn record(&self, rec: &StateRecord) -> Result<(), StateError> {
        let json = serde_json::to_string(rec).map_err(|e| io_err(&self.paths.journal, e.into()))?;
        let mut g = self.lock();
        if let Some(f) = &g.failed {
            return Err(self.failure(f));
        }
        let line = encode_line(g.epoch, &json);
        g.pending.extend_from_slice(&line);
        g.mirror.apply_record(rec);
        let my_seq = g.next_seq;
        g.next_seq += 1;
        loop {
            if g.durable_seq > my_seq {
                return Ok(());
            }
            if let Some(f) = &g.failed {
                return Err(self.failure(f));
            }
            if g.busy {
                g = self.done.wait(g).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Become the leader for everything pending now.
            g.busy = true;
            let batch = std::mem::take(&mut g.pending);
            let batch_end = g.next_seq;
            let (base, epoch, file) = (g.base.take(), g.epoch, g.file.take());
            drop(g);
            let result = self.flush(base, epoch, file, &batch);
            g = self.lock();
            g.busy = false;
            match result {
                Ok(file) => {
                    g.file = Some(file);
                    g.durable_seq = batch_end;
                }
                Err(e) => {
                    g.failed = Some(Failure::of(&e, &self.paths.journal.display().to_string()));
                    self.done.notify_all();
                    return Err(e);
                }
            }
            self.done.notify_all();
        }
    }

    fn compact(&self) -> Result<(), StateError> {
        let mut g = self.lock();
        // Wait until every accepted record is durable and no leader is writing.
        // (Pending records always have a caller that will lead their batch.)
        while (g.busy || g.durable_seq < g.next_seq) && g.failed.is_none() {
            g = self.done.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(f) = &g.failed {
            return Err(self.failure(f));
        }
        // Holding the mutex for the whole compaction: new records wait, and get
        // the new epoch. Crash safety: the new snapshot (epoch + 1) is durable
        // before the journal is emptied; a crash in between leaves journal
        // lines of the old epoch, which load skips as already folded (and which
        // would be idempotent to replay anyway: upserts, removes, whole outputs,
        // serial).
        let epoch = g.epoch + 1;
        let _fence = match self.fence() {
            Ok(f) => f,
            Err(e) => {
                if matches!(e, StateError::LockLost { .. }) {
                    g.failed = Some(Failure::of(&e, ""));
                }
                return Err(e);
            }
        };
        write_snapshot(&self.paths, &g.mirror, epoch)?;
        g.base = None;
        g.epoch = epoch;
        let file = match g.file.take() {
            Some(f) => {
                f.set_len(0).and_then(|()| f.sync_all()).map_err(|e| io_err(&self.paths.journal, e))?;
                f
            }
            None => self.open_journal()?,
        };
        g.file = Some(file);
        Ok(())
    }
}

// Shows the journal path only: the state may be large.
impl std::fmt::Debug for LocalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalWriter").field("journal", &self.paths.journal).finish_non_exhaustive()
    }
}
