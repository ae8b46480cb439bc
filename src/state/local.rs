//! The local file backend: state beside the spec, in `.skyform/`.
//!
//! Files (directory mode 0700, files 0600):
//! - `<spec>.state.json` — the snapshot: the [`State`] as JSON plus a
//!   `journal_epoch` field. Always replaced atomically (temporary file, fsync,
//!   rename, directory fsync), never edited in place.
//! - `<spec>.journal` — append-only, one self-checking line per
//!   [`StateRecord`] (see [`LocalWriter`]), each durable before `record`
//!   returns. Writing stays linear in the number of steps: a step costs one
//!   short append, not a rewrite of the whole state.
//! - `<spec>.lock` — present while a process holds the lock (see [`LocalLock`]).
//!
//! Loading reads the snapshot, then replays the journal lines of the snapshot's
//! epoch in order. Epochs make every crash point safe:
//! - A writer's first record, and every [`StateWriter::compact`], first writes a
//!   snapshot with a new, higher epoch and only then empties the journal. A
//!   crash in between leaves lines of an older epoch; they are already in the
//!   snapshot, so load skips them.
//! - A line with a *newer* epoch than the snapshot means the snapshot is not the
//!   one the journal was written against (lost or replaced by hand): load
//!   refuses it as [`StateError::Corrupt`] rather than guess.
//! - A crash mid-append leaves at most one torn line, at the end: its checksum
//!   fails and load ignores it (it was never acknowledged). A damaged line
//!   *followed* by valid ones is not a crash artefact and is `Corrupt`; nor is a
//!   last line that holds a whole record and more (two records whose newline was
//!   damaged: a cut-off append is a prefix of one line).
//!
//! A state that was never written loads as [`State::new`]; nothing is written
//! until the first record.
//!
//! Fencing: a writer opened while this backend holds the lock checks, under a
//! `flock` of `.skyform/` that `state unlock` also takes, that the lock file is
//! still its lock (inode and random lock ID) before every snapshot and journal
//! write (see [`fence`]). So after an unlock, the run that lost its lock stops
//! before its next write ([`StateError::LockLost`]) and never replaces the new
//! holder's snapshot, and the new holder (which reads only once it holds the
//! lock) reads every record the old one was told was durable: they were all
//! written before the unlock, at the epoch of the snapshot it reads.
//!
//! `.skyform/` is created 0700 and refused when group or others may write it
//! ([`StateError::InsecureDir`]); files are written 0600, never through a
//! symbolic link.

mod fence;
mod fsio;
mod journal;
mod lock;
#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::fsio::{ensure_private_dir, io_err};
pub use self::journal::LocalWriter;
use self::journal::{Entry, check_line};
pub use self::lock::LocalLock;
use super::{Backend, LockGuard, LockInfo, State, StateError, StateRecord, StateWriter};

/// State kept in files beside the spec (the default backend).
#[derive(Debug, Clone)]
pub struct LocalBackend {
    paths: Paths,
    /// A random ID of this backend (its locks' holder).
    holder: String,
    /// The lock this backend holds now, if any: the fence its writers check.
    held: Arc<Mutex<Option<fence::Held>>>,
}

/// The files of one spec's state.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    /// `.skyform/`.
    dir: PathBuf,
    /// The snapshot.
    snapshot: PathBuf,
    /// The journal.
    journal: PathBuf,
    /// The lock file.
    lock: PathBuf,
}

/// What [`LocalBackend::load_with_report`] found besides the state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadReport {
    /// Whether a snapshot file existed.
    pub snapshot: bool,
    /// Journal records applied on top of the snapshot.
    pub replayed: usize,
    /// Journal records of an older epoch, skipped because the snapshot already
    /// holds them (left by a crash during compaction).
    pub skipped_folded: usize,
    /// A torn or damaged last line was ignored (a crash during an append; that
    /// record was never acknowledged). Worth a warning.
    pub torn_tail: bool,
}

impl LocalBackend {
    /// The state of spec `spec_name` whose files live in `dir/.skyform/`
    /// (`dir` is the spec's directory). Touches no file.
    pub fn new(dir: &Path, spec_name: &str) -> Self {
        let state_dir = dir.join(".skyform");
        let file = |ext: &str| state_dir.join(format!("{spec_name}.{ext}"));
        LocalBackend {
            paths: Paths { snapshot: file("state.json"), journal: file("journal"), lock: file("lock"), dir: state_dir },
            holder: format!("{:016x}", rand::random::<u64>()),
            held: Arc::default(),
        }
    }

    /// The snapshot file, `<dir>/.skyform/<spec>.state.json`.
    pub fn state_path(&self) -> &Path {
        &self.paths.snapshot
    }

    /// The journal file, `<dir>/.skyform/<spec>.journal`.
    pub fn journal_path(&self) -> &Path {
        &self.paths.journal
    }

    /// The lock file, `<dir>/.skyform/<spec>.lock`.
    pub fn lock_path(&self) -> &Path {
        &self.paths.lock
    }

    /// Like [`Backend::load`], also saying what was replayed or ignored.
    pub fn load_with_report(&self) -> Result<(State, LoadReport), StateError> {
        let (state, epoch) = match read_snapshot(&self.paths.snapshot)? {
            Some((state, epoch)) => (Some(state), epoch),
            None => (None, 0),
        };
        let mut report = LoadReport { snapshot: state.is_some(), ..LoadReport::default() };
        let records = read_journal(&self.paths.journal, epoch, &mut report)?;
        // Records are only ever written after a snapshot (epoch >= 1), so a
        // journal with live records but no snapshot was refused above.
        let mut state: State = state.unwrap_or_default();
        for rec in &records {
            state.apply_record(rec);
        }
        report.replayed = records.len();
        Ok((state, report))
    }

    /// Like [`Backend::lock`], returning the concrete guard, which tells
    /// whether a stale lock was broken ([`LocalLock::broke_stale`]).
    ///
    /// A lock held by a process on this host that no longer exists (no
    /// `/proc/<pid>`) is removed and taken over without waiting. Locks from other
    /// hosts are never broken; `state unlock` removes them.
    pub fn acquire(&self, operation: &str, timeout: Duration) -> Result<LocalLock, StateError> {
        lock::acquire(&self.paths.lock, operation, timeout, &self.holder, &self.held)
    }

    /// Like [`Backend::writer`], returning the concrete writer.
    pub fn open_writer(&self, state: &State) -> Result<LocalWriter, StateError> {
        let epoch = read_epoch(&self.paths.snapshot)?;
        let fence = self.held.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(LocalWriter::new(self.paths.clone(), state, epoch, fence))
    }
}

impl Backend for LocalBackend {
    fn load(&self) -> Result<State, StateError> {
        self.load_with_report().map(|(s, _)| s)
    }

    fn exists(&self) -> Result<bool, StateError> {
        Ok(self.paths.snapshot.exists())
    }

    fn lock(&self, operation: &str, timeout: Duration) -> Result<Box<dyn LockGuard>, StateError> {
        Ok(Box::new(self.acquire(operation, timeout)?))
    }

    fn lock_holder(&self) -> Result<Option<LockInfo>, StateError> {
        lock::read_info(&self.paths.lock)
    }

    fn force_unlock(&self, id: Option<&str>) -> Result<LockInfo, StateError> {
        lock::force_unlock(&self.paths.lock, id)
    }

    fn writer(&self, state: &State) -> Result<Box<dyn StateWriter>, StateError> {
        Ok(Box::new(self.open_writer(state)?))
    }

    fn describe(&self) -> String {
        self.paths.snapshot.display().to_string()
    }
}

/// The snapshot as written: the state's fields plus the journal epoch.
#[derive(Serialize)]
struct SnapshotOut<'a> {
    #[serde(flatten)]
    state: &'a State,
    journal_epoch: u64,
}

/// Replaces the snapshot with `state` at `epoch`, atomically and durably (see
/// [`fsio::write_atomic`]): readers see the old snapshot or the new one, whole.
pub(crate) fn write_snapshot(paths: &Paths, state: &State, epoch: u64) -> Result<(), StateError> {
    ensure_private_dir(&paths.dir)?;
    fsio::write_atomic(&paths.snapshot, |w| {
        serde_json::to_writer_pretty(&mut *w, &SnapshotOut { state: &state.for_snapshot(), journal_epoch: epoch })?;
        w.write_all(b"\n")
    })
}

fn corrupt(path: &Path, message: impl Into<String>) -> StateError {
    StateError::Corrupt { path: path.display().to_string(), message: message.into() }
}

/// Reads the snapshot and its epoch; `None` if there is none.
fn read_snapshot(path: &Path) -> Result<Option<(State, u64)>, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    super::snapshot::parse(&bytes).map(Some).map_err(|m| corrupt(path, m.to_string()))
}

/// The snapshot's epoch only (0 if there is no snapshot), for opening a writer.
fn read_epoch(path: &Path) -> Result<u64, StateError> {
    #[derive(Deserialize)]
    struct Header {
        #[serde(default)]
        journal_epoch: u64,
    }
    match fs::read(path) {
        Ok(b) => serde_json::from_slice::<Header>(&b)
            .map(|h| h.journal_epoch)
            .map_err(|e| corrupt(path, format!("not valid JSON: {e}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Whether `line`, which fails its checksum, begins with a whole, valid record directly followed
/// by the start of another (`<64 hex digits> {`): two records whose newline was damaged.
fn holds_a_record(line: &[u8]) -> bool {
    let starts_line =
        |rest: &[u8]| rest.len() > 66 && rest[..64].iter().all(u8::is_ascii_hexdigit) && rest[64..66] == *b" {";
    (66..line.len()).any(|p| starts_line(&line[p + 1..]) && check_line(&line[..p]).is_some())
}

/// Reads the journal lines of `epoch`, in order (see the module docs for the
/// rules on torn, damaged, older and newer lines).
fn read_journal(path: &Path, epoch: u64, report: &mut LoadReport) -> Result<Vec<StateRecord>, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path, e)),
    };
    // A complete journal ends with '\n', so splitting leaves an empty last part.
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let last = lines.len() - 1;
    let mut records = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(json) = check_line(line) else {
            if holds_a_record(line) {
                // Not a crash artefact: an append that was cut off is a prefix of one line, never
                // a whole record and more. Its newline was damaged after it was acknowledged.
                return Err(corrupt(
                    path,
                    format!("journal line {} fails its checksum: a whole record is followed by more text", i + 1),
                ));
            }
            if i == last || (i + 1 == last && lines[last].is_empty()) {
                // The final line is torn (or a crash left zeros after it): it
                // was never acknowledged, so dropping it loses nothing.
                report.torn_tail |= !line.is_empty();
                continue;
            }
            return Err(corrupt(path, format!("journal line {} fails its checksum, and valid lines follow it", i + 1)));
        };
        let entry: Entry<StateRecord> =
            serde_json::from_str(json).map_err(|e| corrupt(path, format!("journal line {}: {e}", i + 1)))?;
        if entry.epoch < epoch {
            report.skipped_folded += 1;
        } else if entry.epoch == epoch && epoch > 0 {
            records.push(entry.record);
        } else {
            return Err(corrupt(
                path,
                format!(
                    "journal line {} belongs to snapshot epoch {} but the snapshot {}: it was lost or replaced",
                    i + 1,
                    entry.epoch,
                    if epoch == 0 { "is missing".to_string() } else { format!("is at epoch {epoch}") }
                ),
            ));
        }
    }
    Ok(records)
}
