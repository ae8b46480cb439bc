//! The Cloud Storage backend (`[backend.gcs] bucket, prefix`): state a team shares, safe against
//! two runs at once, a crash, and a lost lock.
//!
//! Objects under `gs://<bucket>/<prefix>/`:
//! - `default.state.json` — the snapshot (the [`State`] plus its `journal_epoch`). It is only ever
//!   replaced with `ifGenerationMatch=<the generation read>` (or `0` when there is none): a run
//!   whose lock was broken can never overwrite a newer state, it fails instead.
//! - `default.journal/<epoch>/<seq>` — the records since that snapshot, one object per batch,
//!   each created with `ifGenerationMatch=0`. A step is durable once its batch is written. Batches
//!   are group commits: records that arrive while a batch is being written go out together in the
//!   next one, so an apply costs about one request per step at worst and far fewer when steps finish
//!   together, never a rewrite of the whole state per step. [`StateWriter::compact`] folds the
//!   journal into a new snapshot at the end.
//! - `default.lock` — the lock, a **lease** (see [`lease`]): created with `ifGenerationMatch=0`,
//!   holding who/where/what/when, a random holder ID and the lease's length; renewed by a
//!   heartbeat (a metadata patch at its generation) while held; broken by the next locker once it
//!   expired. Its ID is its generation (`skyform state unlock LOCK_ID` deletes it with
//!   `ifGenerationMatch=LOCK_ID`); a 412 then 404 while taking it (the holder just released it)
//!   is retried.
//!
//! **Fencing.** The lock's generation is the fencing token. A writer opened while this backend
//! holds the lock wraps every write (a journal batch; a snapshot and the deletes it folds in) in
//! two checks that the lock object is still at that generation (a metadata read with
//! `ifGenerationMatch`, which the store answers): one right before, and one right after. A batch
//! is acknowledged only after the second check: the lock was then ours without a break from the
//! moment it was taken until after the batch landed, so the next holder, which reads the state
//! only once it holds the lock, reads that batch (object writes and listings are strongly
//! consistent). A failed check stops the writer with [`StateError::LockLost`]: nothing more is
//! written. Cloud Storage has no transaction over two objects, so one window is left: the lock can
//! be broken *between* the first check and the write. Such a write is never acknowledged, and it
//! is harmless: a journal batch of the old epoch is either read by the next holder (if it landed
//! before that holder's read) or skipped as a leftover of an older epoch; a snapshot is written
//! with `ifGenerationMatch=<the generation read>`, so it can never overwrite a snapshot the next
//! holder wrote, and if it lands after the next holder's read but before its first write, that
//! holder's own compare-and-swap fails (`Overtaken`) instead of overwriting it. A batch costs three
//! requests (check, write, check); group commit keeps batches few.
//!
//! Epochs work as in the local backend: a writer's first batch is preceded by a snapshot at a
//! new epoch (then the old epoch's journal objects are deleted), so loading reads the snapshot and
//! replays only its epoch's journal; objects of older epochs are leftovers of a crash and are
//! skipped, objects of a newer epoch mean the snapshot was replaced behind the journal's back
//! ([`StateError::Corrupt`]).
//!
//! Reads take no lock: a load is the snapshot at one generation plus its journal, retried if a
//! writer folded the journal in between. Secrets never reach the bucket: state holds fingerprints.
//!
//! The HTTP calls run on a small runtime of their own, so the synchronous [`Backend`] and
//! [`StateWriter`] interfaces can be used from inside the engine's tasks.

mod lease;
mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::Serialize;

use self::lease::Lease;
pub use self::lease::LeaseTimes;
pub use self::store::StoreError;
use self::store::{Client, block, blocking};
use super::{Backend, LockGuard, LockInfo, State, StateError, StateRecord, StateWriter};
use crate::foundation::net::Net;

/// What went wrong with a state in a bucket.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// A Storage call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The snapshot was replaced since this run read it: its lock was broken, or another run
    /// wrote without one.
    #[error(
        "the state in the bucket changed since this run read it (was its lock broken?): refusing to overwrite \
         the newer state; run again"
    )]
    Overtaken,
    /// The state moved between this run's read and its first write.
    #[error("the state in the bucket changed since this run read it (serial {then} then, {now} now); run again")]
    Moved {
        /// The serial this run read.
        then: u64,
        /// The serial in the bucket now.
        now: u64,
    },
    /// A journal object this run was to create exists: another run writes this state.
    #[error("journal object {0} exists already: another run is writing this state")]
    JournalTaken(String),
    /// Writers kept folding the journal while this run read it.
    #[error("the state kept changing while it was read (10 attempts); try again")]
    Unsettled,
    /// The lock kept appearing and going (taken and released, or broken and taken again) while
    /// this run tried to take it, until its lock timeout.
    #[error(
        "the lock kept being taken and released while this run tried to take it, until its lock timeout; try \
         again"
    )]
    LockChurn,
}

/// Where a GCS state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsLocation {
    /// The bucket.
    pub bucket: String,
    /// The prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl GcsLocation {
    fn object(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}/{name}", self.prefix) }
    }
    fn url(&self, name: &str) -> String {
        format!("gs://{}/{}", self.bucket, self.object(name))
    }
}

/// State in a Cloud Storage bucket.
#[derive(Clone)]
pub struct GcsBackend {
    loc: GcsLocation,
    client: Arc<Client>,
    /// This backend's random holder ID (in its locks).
    holder: String,
    lease: LeaseTimes,
    /// The lock this backend holds now, if any: the fence its writers check.
    held: Arc<Mutex<Option<Arc<Lease>>>>,
}

/// The snapshot as stored.
#[derive(Serialize)]
struct SnapshotOut<'a> {
    #[serde(flatten)]
    state: &'a State,
    journal_epoch: u64,
}

/// What a load saw: the state, and what a writer needs to go on from it.
struct Loaded {
    state: State,
    /// The snapshot's generation (0: none).
    generation: i64,
    epoch: u64,
    /// Journal objects of that epoch, and of older epochs (leftovers to delete).
    journal: Vec<(String, i64)>,
}

const SNAPSHOT: &str = "default.state.json";
const JOURNAL: &str = "default.journal/";
const LOCK: &str = "default.lock";

impl GcsBackend {
    /// The state at `gs://bucket/prefix/`. `endpoint` is the Storage base URL (an emulator's);
    /// `None`: `SKYFORM_GCP_ENDPOINT`, else Google's. `token`: an access token; `None`: as for the
    /// GCP provider (`SKYFORM_GCP_ACCESS_TOKEN`, else Application Default Credentials).
    pub fn new(net: &Net, loc: GcsLocation, endpoint: Option<String>, token: Option<String>) -> Self {
        let endpoint = endpoint.or_else(|| std::env::var("SKYFORM_GCP_ENDPOINT").ok().filter(|e| !e.is_empty()));
        GcsBackend {
            loc,
            client: Arc::new(Client::new(net, endpoint, token)),
            holder: format!("{:016x}", rand::random::<u64>()),
            lease: LeaseTimes::default(),
            held: Arc::default(),
        }
    }

    /// With other lease timings (tests; a CI system that wants longer leases).
    pub fn with_lease(mut self, times: LeaseTimes) -> Self {
        self.lease = times;
        self
    }

    /// This backend's holder ID, as its locks show it.
    pub fn holder_id(&self) -> &str {
        &self.holder
    }

    /// Requests made so far (each retry counts).
    pub fn requests(&self) -> u64 {
        self.client.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn err(&self, name: &str, error: impl Into<RemoteError>) -> StateError {
        StateError::Remote { location: self.loc.url(name), error: error.into() }
    }

    fn corrupt(&self, name: &str, message: impl Into<String>) -> StateError {
        StateError::Corrupt { path: self.loc.url(name), message: message.into() }
    }

    /// One consistent load; retried when a writer folded the journal while it read.
    fn load_full(&self) -> Result<Loaded, StateError> {
        for _ in 0..10 {
            if let Some(l) = self.try_load()? {
                return Ok(l);
            }
        }
        Err(self.err(SNAPSHOT, RemoteError::Unsettled))
    }

    fn try_load(&self) -> Result<Option<Loaded>, StateError> {
        let (c, loc) = (self.client.clone(), self.loc.clone());
        let snapshot = block(async move {
            let Some(generation) = c.generation(&loc.bucket, &loc.object(SNAPSHOT)).await? else {
                return Ok::<_, StoreError>(Some((0, None)));
            };
            Ok(c.download(&loc.bucket, &loc.object(SNAPSHOT), generation).await?.map(|b| (generation, Some(b))))
        })
        .map_err(|m| self.err(SNAPSHOT, m))?;
        let Some((generation, bytes)) = snapshot else { return Ok(None) };
        let (state, epoch) = match bytes {
            None => (State::default(), 0),
            Some(b) => self.parse_snapshot(&b)?,
        };
        let (c, loc) = (self.client.clone(), self.loc.clone());
        let listed =
            block(async move { c.list(&loc.bucket, &loc.object(JOURNAL)).await }).map_err(|m| self.err(JOURNAL, m))?;
        let mut journal = Vec::new();
        let mut replay = Vec::new();
        for (name, g) in listed {
            let e = journal_epoch(&name).ok_or_else(|| self.corrupt(JOURNAL, format!("unexpected object {name}")))?;
            if e > epoch {
                // A writer may have replaced the snapshot since we read it: then read again.
                let (c, loc) = (self.client.clone(), self.loc.clone());
                let now = block(async move { c.generation(&loc.bucket, &loc.object(SNAPSHOT)).await })
                    .map_err(|m| self.err(SNAPSHOT, m))?;
                if now != Some(generation) {
                    return Ok(None);
                }
                return Err(self.corrupt(
                    JOURNAL,
                    format!("{name} belongs to snapshot epoch {e}, but the snapshot is at epoch {epoch}: it was lost or replaced"),
                ));
            }
            if e == epoch && epoch > 0 {
                replay.push((name.clone(), g));
            }
            journal.push((name, g));
        }
        let mut state = state;
        let prefix = self.loc.object("");
        for (name, g) in &replay {
            let (c, loc, n, g) = (self.client.clone(), self.loc.clone(), name.clone(), *g);
            // Listed names are whole object names; messages name them under the prefix once.
            let name = name.strip_prefix(&prefix).unwrap_or(name);
            let Some(bytes) =
                block(async move { c.download(&loc.bucket, &n, g).await }).map_err(|m| self.err(name, m))?
            else {
                // Folded into a new snapshot while we read: start again.
                return Ok(None);
            };
            let records: Vec<StateRecord> =
                serde_json::from_slice(&bytes).map_err(|e| self.corrupt(name, format!("not a journal batch: {e}")))?;
            for r in &records {
                state.apply_record(r);
            }
        }
        Ok(Some(Loaded { state, generation, epoch, journal }))
    }

    fn parse_snapshot(&self, bytes: &[u8]) -> Result<(State, u64), StateError> {
        super::snapshot::parse(bytes).map_err(|m| self.corrupt(SNAPSHOT, m.to_string()))
    }

    fn read_lock(&self) -> Result<Option<LockInfo>, StateError> {
        Ok(self.read_lock_meta()?.map(|(info, _)| info))
    }
}

/// `…default.journal/<epoch>/<seq>` → epoch.
fn journal_epoch(name: &str) -> Option<u64> {
    let rest = &name[name.find(JOURNAL)? + JOURNAL.len()..];
    rest.split('/').next()?.parse().ok()
}

impl Backend for GcsBackend {
    fn load(&self) -> Result<State, StateError> {
        self.load_full().map(|l| l.state)
    }

    fn exists(&self) -> Result<bool, StateError> {
        let (c, loc) = (self.client.clone(), self.loc.clone());
        block(async move { c.generation(&loc.bucket, &loc.object(SNAPSHOT)).await })
            .map(|g| g.is_some())
            .map_err(|m| self.err(SNAPSHOT, m))
    }

    fn lock(&self, operation: &str, timeout: Duration) -> Result<Box<dyn LockGuard>, StateError> {
        Ok(Box::new(self.take_lease(operation, timeout)?))
    }

    fn lock_holder(&self) -> Result<Option<LockInfo>, StateError> {
        self.read_lock()
    }

    fn force_unlock(&self, id: Option<&str>) -> Result<LockInfo, StateError> {
        let holder = self.read_lock()?.ok_or(StateError::NotLocked)?;
        let Some(id) = id else {
            return Err(StateError::LockIdRequired { holder: Box::new(holder) });
        };
        let Ok(g) = id.parse::<i64>() else {
            return Err(StateError::WrongLock { given: id.to_string(), holder: Box::new(holder) });
        };
        let (c, loc) = (self.client.clone(), self.loc.clone());
        let deleted = block(async move { c.delete(&loc.bucket, &loc.object(LOCK), Some(g), None).await })
            .map_err(|m| self.err(LOCK, m))?;
        if deleted {
            Ok(holder)
        } else {
            match self.read_lock()? {
                Some(now) => Err(StateError::WrongLock { given: id.to_string(), holder: Box::new(now) }),
                None => Err(StateError::NotLocked),
            }
        }
    }

    fn writer(&self, state: &State) -> Result<Box<dyn StateWriter>, StateError> {
        Ok(Box::new(self.open_writer(state)?))
    }

    fn replace(&self, state: &State) -> Result<(), StateError> {
        let l = self.load_full()?;
        self.writer_over(state, l).compact()
    }

    fn describe(&self) -> String {
        self.loc.url(SNAPSHOT)
    }
}

impl GcsBackend {
    /// A writer on top of `state` (as loaded now).
    pub fn open_writer(&self, state: &State) -> Result<GcsWriter, StateError> {
        let l = self.load_full()?;
        if l.generation != 0 && (l.state.lineage != state.lineage || l.state.serial != state.serial) {
            return Err(self.err(SNAPSHOT, RemoteError::Moved { then: state.serial, now: l.state.serial }));
        }
        Ok(self.writer_over(state, l))
    }

    /// A writer whose state is `state`, replacing the version `l` that is in the bucket.
    fn writer_over(&self, state: &State, l: Loaded) -> GcsWriter {
        GcsWriter {
            backend: self.clone(),
            fence: self.held.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            queue: Mutex::new(Queue {
                state: state.clone(),
                generation: l.generation,
                epoch: l.epoch,
                journal: l.journal,
                opened: false,
                seq: 0,
                pending: Vec::new(),
                next_ticket: 0,
                durable: 0,
                flushing: false,
                failed: None,
            }),
            done: Condvar::new(),
        }
    }
}

/// Writes records to the bucket in group commits, fenced by the lock (see the module docs).
pub struct GcsWriter {
    backend: GcsBackend,
    /// The lock held when the writer was opened. `None`: opened without the lock (tests, tools
    /// that hold no lock): its writes are not fenced. Every command that writes holds the lock.
    fence: Option<Arc<Lease>>,
    queue: Mutex<Queue>,
    done: Condvar,
}

/// Why a writer stopped.
#[derive(Debug, Clone)]
enum Failure {
    /// A request failed, or the state moved.
    Remote(RemoteError),
    /// The lock was lost (`unconfirmed`: after a write went out).
    Lost { unconfirmed: bool },
}

impl From<RemoteError> for Failure {
    fn from(e: RemoteError) -> Self {
        Failure::Remote(e)
    }
}

struct Queue {
    /// The state with every record so far applied.
    state: State,
    /// The snapshot's generation (0: none).
    generation: i64,
    epoch: u64,
    /// Journal objects to delete at the next snapshot.
    journal: Vec<(String, i64)>,
    /// Whether this writer has written its opening snapshot.
    opened: bool,
    /// The next journal object's number.
    seq: u64,
    /// Records waiting for the next batch.
    pending: Vec<StateRecord>,
    next_ticket: u64,
    /// Records `0..durable` are in the bucket.
    durable: u64,
    flushing: bool,
    /// A batch failed: this writer refuses everything after.
    failed: Option<Failure>,
}

impl GcsWriter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn error(&self, name: &str, f: &Failure) -> StateError {
        match f {
            Failure::Remote(m) => self.backend.err(name, m.clone()),
            Failure::Lost { unconfirmed } => {
                StateError::LockLost { location: self.backend.loc.url(LOCK), unconfirmed: *unconfirmed }
            }
        }
    }

    /// Whether the lock is still the one this writer was opened under.
    fn still_held(&self, lease: &Lease) -> Result<bool, RemoteError> {
        if lease.is_lost() {
            return Ok(false);
        }
        let (c, loc, g) = (self.backend.client.clone(), self.backend.loc.clone(), lease.generation);
        let at = block(async move { c.is_at(&loc.bucket, &loc.object(LOCK), g).await })?;
        if !at {
            lease.mark_lost();
        }
        Ok(at)
    }

    /// Runs `write` between two checks of the lock (see the module docs): not at all if the lock
    /// is gone; acknowledged only if it is still there after.
    fn fenced<T>(&self, write: impl FnOnce() -> Result<T, RemoteError>) -> Result<T, Failure> {
        let Some(lease) = &self.fence else { return Ok(write()?) };
        if !self.still_held(lease)? {
            return Err(Failure::Lost { unconfirmed: false });
        }
        let out = match write() {
            Ok(out) => out,
            // A write refused because the state moved: the lock was broken under it, most likely.
            Err(e) => {
                return Err(if self.still_held(lease)? { e.into() } else { Failure::Lost { unconfirmed: false } });
            }
        };
        if !self.still_held(lease)? {
            return Err(Failure::Lost { unconfirmed: true });
        }
        Ok(out)
    }

    /// Replaces the snapshot with `state` at a new epoch (CAS on the generation read), then
    /// deletes the journal objects it folds in.
    fn snapshot(
        &self,
        state: &State,
        generation: i64,
        epoch: u64,
        old: Vec<(String, i64)>,
    ) -> Result<i64, RemoteError> {
        let body = serde_json::to_vec_pretty(&SnapshotOut { state: &state.for_snapshot(), journal_epoch: epoch })
            .expect("state serializes");
        let (c, loc) = (self.backend.client.clone(), self.backend.loc.clone());
        block(async move {
            let Some(g) = c.upload(&loc.bucket, &loc.object(SNAPSHOT), body, generation).await? else {
                return Err(RemoteError::Overtaken);
            };
            // The folded journal objects go, 16 at a time (leftovers would only be skipped).
            let c = &c;
            let loc = &loc;
            for chunk in old.chunks(16) {
                let deletes = chunk.iter().map(|(name, og)| c.delete(&loc.bucket, name, Some(*og), None));
                for r in crate::join::join_all(deletes).await {
                    r?;
                }
            }
            Ok(g)
        })
    }

    /// Writes one batch (after the opening snapshot, the first time), fenced.
    fn flush(&self, batch: Vec<StateRecord>) -> Result<(), Failure> {
        let (opened, epoch, seq, state, generation, journal) = {
            let q = self.lock();
            // The state as read (records join `state` once durable), at a new epoch: the journal
            // restarts from it. (Only here is the whole state copied: once per writer.)
            let first = (!q.opened).then(|| (q.state.clone(), q.generation, q.journal.clone()));
            let (state, generation, journal) = first.map_or((None, 0, Vec::new()), |(s, g, j)| (Some(s), g, j));
            (q.opened, q.epoch, q.seq, state, generation, journal)
        };
        let (epoch, seq) = if opened { (epoch, seq) } else { (epoch + 1, 0) };
        let name = self.backend.loc.object(&format!("{JOURNAL}{epoch:08}/{seq:010}"));
        let body = serde_json::to_vec(&batch).expect("records serialize");
        let (snapshot_generation, g) = self.fenced(|| {
            let snapshot_generation = match &state {
                Some(state) => Some(self.snapshot(state, generation, epoch, journal)?),
                None => None,
            };
            let (c, loc, n) = (self.backend.client.clone(), self.backend.loc.clone(), name.clone());
            let g = block(async move { c.upload(&loc.bucket, &n, body, 0).await })?
                .ok_or(RemoteError::JournalTaken(name.clone()))?;
            Ok((snapshot_generation, g))
        })?;
        let mut q = self.lock();
        if let Some(sg) = snapshot_generation {
            q.generation = sg;
            q.epoch = epoch;
            q.journal.clear();
            q.opened = true;
        }
        q.seq = seq + 1;
        q.journal.push((name, g));
        for r in &batch {
            q.state.apply_record(r);
        }
        Ok(())
    }
}

impl StateWriter for GcsWriter {
    fn record(&self, rec: &StateRecord) -> Result<(), StateError> {
        let mut q = self.lock();
        let mine = q.next_ticket;
        q.next_ticket += 1;
        q.pending.push(rec.clone());
        loop {
            if q.durable > mine {
                return Ok(());
            }
            if let Some(f) = &q.failed {
                return Err(self.error(JOURNAL, f));
            }
            if !q.flushing {
                // Lead: write everything queued so far as one batch.
                q.flushing = true;
                let batch = std::mem::take(&mut q.pending);
                let upto = q.next_ticket;
                drop(q);
                let r = self.flush(batch);
                q = self.lock();
                q.flushing = false;
                match r {
                    Ok(()) => q.durable = upto,
                    Err(m) => q.failed = Some(m),
                }
                self.done.notify_all();
                continue;
            }
            q = blocking(|| self.done.wait(q).unwrap_or_else(|e| e.into_inner()));
        }
    }

    fn compact(&self) -> Result<(), StateError> {
        let (state, generation, epoch, journal) = {
            let q = self.lock();
            if let Some(f) = &q.failed {
                return Err(self.error(JOURNAL, f));
            }
            (q.state.clone(), q.generation, q.epoch, q.journal.clone())
        };
        let g = match self.fenced(|| self.snapshot(&state, generation, epoch + 1, journal)) {
            Ok(g) => g,
            Err(f) => {
                let e = self.error(SNAPSHOT, &f);
                if matches!(f, Failure::Lost { .. }) {
                    self.lock().failed = Some(f);
                }
                return Err(e);
            }
        };
        let mut q = self.lock();
        q.generation = g;
        q.epoch += 1;
        q.journal.clear();
        q.opened = true;
        q.seq = 0;
        Ok(())
    }
}

/// The objects of a state, for tests and `state migrate`: name → generation.
pub fn objects(backend: &GcsBackend) -> Result<BTreeMap<String, i64>, StateError> {
    let (c, loc) = (backend.client.clone(), backend.loc.clone());
    let prefix = loc.object("");
    block(async move { c.list(&loc.bucket, &prefix).await })
        .map(|v| v.into_iter().collect())
        .map_err(|m| backend.err("", m))
}
