//! The bucket lock as a lease: taking it, renewing it, breaking an expired one, and the fence
//! the writers check.
//!
//! - The lock object `default.lock` is created with `ifGenerationMatch=0`; its content is the
//!   holder's [`LockInfo`] (host, pid, a random holder ID, operation, and `lease_ms`).
//! - Its **generation is the lock ID and the fencing token**: it never changes while the lock is
//!   held, because the heartbeat renews the lease with a metadata patch
//!   (`ifGenerationMatch=<ID>`), which raises only the metageneration and `updated`. A lock that
//!   was removed and taken again has another generation (generations are never reused), so "the
//!   lock object is at my generation" means "nobody else has held the lock since I took it".
//! - The holder renews every `heartbeat` ([`LeaseTimes`]); a lease not renewed for `lease_ms`
//!   (the holder's own figure, written in the lock) has expired. Its age is read on the server's
//!   clock: the answer's `Date` minus the object's `updated`, both the server's, so no clock of
//!   ours is compared with the server's (`Date` has whole seconds and is rounded down, so the age
//!   is never over-estimated). A waiting locker also counts, on its own monotonic clock, how long
//!   it has seen the same generation and metageneration.
//! - An expired lease is broken with a delete at the generation *and* metageneration seen, so a
//!   heartbeat that lands in between keeps the lease. A live lease is never broken, whatever its
//!   host name or pid: two CI runners or pods with the same host name are two holders.
//!   `skyform state unlock ID` stays the manual way.
//! - A heartbeat that finds the lock gone or replaced marks the lease lost; so does a run of
//!   failed renewals longer than the lease (someone may have broken it meanwhile). The writers
//!   check the generation themselves anyway (see [`super::GcsWriter`]): the heartbeat keeps the
//!   lease alive, the fence keeps the state safe.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::store::ObjectMeta;
use super::{GcsBackend, LOCK, RemoteError};
use crate::state::{LockGuard, LockInfo, StateError};

/// How often a lease is renewed, and when an unrenewed one expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimes {
    /// The interval between renewals.
    pub heartbeat: Duration,
    /// How long a lease lives without renewal (three heartbeats by default): what this holder
    /// writes in its lock as `lease_ms`.
    pub expiry: Duration,
}

impl Default for LeaseTimes {
    fn default() -> Self {
        LeaseTimes { heartbeat: Duration::from_secs(10), expiry: Duration::from_secs(30) }
    }
}

/// A lock this backend holds: the fencing token, and whether it is known lost.
#[derive(Debug)]
pub(super) struct Lease {
    /// The lock object's generation (the lock ID).
    pub(super) generation: i64,
    lost: AtomicBool,
}

impl Lease {
    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
    pub(super) fn mark_lost(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }
}

/// A held lock: renewed until dropped, then deleted (at its generation only).
pub(super) struct GcsLock {
    backend: GcsBackend,
    lease: Arc<Lease>,
    stop: Option<mpsc::Sender<()>>,
    heartbeat: Option<JoinHandle<()>>,
}

impl LockGuard for GcsLock {}

impl Drop for GcsLock {
    fn drop(&mut self) {
        // Stop renewing first (dropping the sender wakes the heartbeat at once).
        self.stop.take();
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        {
            let mut held = self.backend.held.lock().unwrap_or_else(|p| p.into_inner());
            if held.as_ref().is_some_and(|l| Arc::ptr_eq(l, &self.lease)) {
                *held = None;
            }
        }
        let (c, loc, g) = (self.backend.client.clone(), self.backend.loc.clone(), self.lease.generation);
        // Only our generation: after a `state unlock` the lock may be someone else's now.
        let _ = super::block(async move { c.delete(&loc.bucket, &loc.object(LOCK), Some(g), None).await });
    }
}

/// How many times in a row `lock` tries again at once when the lock it met has gone (released in
/// between, or expired and broken) before it waits between tries, within its timeout.
const QUICK_TRIES: u32 = 3;

/// Seconds (with fraction) since the epoch of an RFC 3339 time.
fn rfc3339_f64(s: &str) -> Option<f64> {
    let whole = crate::foundation::time::rfc3339_secs(s)? as f64;
    let frac = s
        .split_once('.')
        .map(|(_, f)| f.chars().take_while(char::is_ascii_digit).collect::<String>())
        .filter(|d| !d.is_empty())
        .and_then(|d| format!("0.{d}").parse::<f64>().ok())
        .unwrap_or(0.0);
    Some(whole + frac)
}

/// How long ago the lock was last written or renewed, on the server's clock (never more than
/// the truth: `Date` is rounded down to the second). `None` if the server did not say.
fn server_age(meta: &ObjectMeta) -> Option<Duration> {
    let now = meta.server_now?.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    let updated = rfc3339_f64(meta.updated.as_deref()?)?;
    Some(Duration::from_secs_f64((now - updated).max(0.0)))
}

impl GcsBackend {
    /// The lock's holder and its object's metadata, if there is a lock.
    pub(super) fn read_lock_meta(&self) -> Result<Option<(LockInfo, ObjectMeta)>, StateError> {
        let (c, loc) = (self.client.clone(), self.loc.clone());
        let got = super::block(async move {
            let Some(m) = c.meta(&loc.bucket, &loc.object(LOCK)).await? else {
                return Ok::<_, super::StoreError>(None);
            };
            Ok(c.download(&loc.bucket, &loc.object(LOCK), m.generation).await?.map(|b| (m, b)))
        })
        .map_err(|m| self.err(LOCK, m))?;
        Ok(got.map(|(meta, bytes)| {
            let mut info: LockInfo = serde_json::from_slice(&bytes).unwrap_or_else(|_| LockInfo {
                id: String::new(),
                holder: String::new(),
                pid: 0,
                host: "unknown".into(),
                since: "unknown".into(),
                operation: "unreadable lock object".into(),
                lease_ms: None,
            });
            info.id = meta.generation.to_string();
            (info, meta)
        }))
    }

    /// Takes the lock (see the module docs), waiting up to `timeout` for a live holder.
    pub(super) fn take_lease(&self, operation: &str, timeout: Duration) -> Result<GcsLock, StateError> {
        let info = LockInfo {
            id: String::new(),
            holder: self.holder.clone(),
            pid: std::process::id(),
            host: crate::state::holder::hostname(),
            since: crate::foundation::time::rfc3339_utc(SystemTime::now()),
            operation: operation.to_string(),
            lease_ms: Some(self.lease.expiry.as_millis() as u64),
        };
        let body = serde_json::to_vec_pretty(&info).expect("LockInfo serializes");
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_millis(100);
        // The (generation, metageneration) of the holder's lock as first seen, and when.
        let mut seen: Option<(i64, i64, Instant)> = None;
        // Tries made at once, in a row, because the lock had just gone (released, or broken here).
        let mut at_once = 0;
        loop {
            if at_once > QUICK_TRIES {
                // The lock keeps coming and going: wait like for a live holder, and no longer than
                // the timeout (a store that answers so for ever must not keep this run here).
                let now = Instant::now();
                if now >= deadline {
                    return Err(self.err(LOCK, RemoteError::LockChurn));
                }
                std::thread::sleep(delay.min(deadline - now));
                delay = (delay * 2).min(Duration::from_secs(5)).min(self.lease.heartbeat);
                at_once = 0;
            }
            let (c, loc, b) = (self.client.clone(), self.loc.clone(), body.clone());
            let created = super::block(async move { c.upload(&loc.bucket, &loc.object(LOCK), b, 0).await })
                .map_err(|m| self.err(LOCK, m))?;
            if let Some(g) = created {
                return Ok(self.start_lease(g));
            }
            let Some((holder, meta)) = self.read_lock_meta()? else {
                // 412, then 404: the holder released it in between. Try again at once.
                at_once += 1;
                continue;
            };
            let now = Instant::now();
            let same = seen.filter(|(g, m, _)| *g == meta.generation && *m == meta.metageneration);
            let watched = same.map(|(_, _, since)| now - since).unwrap_or_default();
            if same.is_none() {
                seen = Some((meta.generation, meta.metageneration, now));
            }
            let expired = holder
                .lease_ms
                .map(Duration::from_millis)
                .is_some_and(|lease| watched >= lease || server_age(&meta).is_some_and(|age| age >= lease));
            if expired {
                let (c, loc, g, m) = (self.client.clone(), self.loc.clone(), meta.generation, meta.metageneration);
                // False: renewed or released meanwhile; either way, look again.
                super::block(async move { c.delete(&loc.bucket, &loc.object(LOCK), Some(g), Some(m)).await })
                    .map_err(|m| self.err(LOCK, m))?;
                at_once += 1;
                continue;
            }
            at_once = 0;
            if now >= deadline {
                return Err(StateError::Locked { holder: Box::new(holder) });
            }
            std::thread::sleep(delay.min(deadline - now));
            delay = (delay * 2).min(Duration::from_secs(5)).min(self.lease.heartbeat);
        }
    }

    /// Registers lock `generation` as held (the writers' fence) and starts renewing it.
    fn start_lease(&self, generation: i64) -> GcsLock {
        let lease = Arc::new(Lease { generation, lost: AtomicBool::new(false) });
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(lease.clone());
        let (stop, stopped) = mpsc::channel::<()>();
        let (backend, l, times) = (self.clone(), lease.clone(), self.lease);
        let heartbeat = std::thread::Builder::new()
            .name("skyform-lease".into())
            .spawn(move || heartbeat(&backend, &l, times, &stopped))
            .ok();
        GcsLock { backend: self.clone(), lease, stop: Some(stop), heartbeat }
    }
}

/// Renews the lease every `times.heartbeat` until told to stop or the lease is lost.
fn heartbeat(backend: &GcsBackend, lease: &Lease, times: LeaseTimes, stop: &mpsc::Receiver<()>) {
    let mut renewed = Instant::now();
    let mut beat: u64 = 0;
    loop {
        match stop.recv_timeout(times.heartbeat) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        beat += 1;
        let (c, loc, g) = (backend.client.clone(), backend.loc.clone(), lease.generation);
        let meta = serde_json::json!({ "skyform-heartbeat": beat.to_string() });
        match super::block(async move { c.patch_metadata(&loc.bucket, &loc.object(LOCK), g, meta).await }) {
            Ok(true) => renewed = Instant::now(),
            // Removed or replaced: someone broke it (`state unlock`, or it was judged expired).
            Ok(false) => {
                lease.mark_lost();
                return;
            }
            // Unreachable for longer than the lease: another run may have broken it meanwhile.
            Err(_) if renewed.elapsed() >= times.expiry => {
                lease.mark_lost();
                return;
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_age_uses_fractions_and_never_overestimates() {
        let meta = |updated: &str, now_secs: u64| ObjectMeta {
            generation: 1,
            metageneration: 1,
            updated: Some(updated.into()),
            write_id: None,
            server_now: Some(UNIX_EPOCH + Duration::from_secs(now_secs)),
        };
        // 2026-01-01T00:00:00Z = 1767225600.
        let age = server_age(&meta("2026-01-01T00:00:00.250Z", 1_767_225_601)).unwrap();
        assert_eq!(age, Duration::from_millis(750));
        assert_eq!(server_age(&meta("2026-01-01T00:00:05Z", 1_767_225_601)).unwrap(), Duration::ZERO);
        assert!(server_age(&ObjectMeta { server_now: None, ..meta("2026-01-01T00:00:00Z", 0) }).is_none());
    }
}
