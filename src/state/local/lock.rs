//! The lock file: `.skyform/<spec>.lock`, holding the owner's [`LockInfo`].
//!
//! Taking the lock is one atomic step: the owner writes its `LockInfo` into a
//! private temporary file and then `link(2)`s it to the lock path, which fails
//! with `EEXIST` if the lock exists (the same exclusivity as `O_EXCL`, but the
//! lock file is never visible half-written). If the file system cannot link,
//! the lock file is created with `O_CREAT|O_EXCL` (`create_new`) and written.
//!
//! The file holds a random lock ID and a random holder ID besides pid and host; its inode and
//! lock ID are the fence the writers check (see [`super::fence`]). Removing it (`state unlock`,
//! breaking a stale lock) happens under the fence's directory `flock`.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::fence::{Held, lock_dir};
use super::fsio::{ensure_private_dir, io_err, private_options, sync_dir};
use crate::foundation::time::rfc3339_utc;
use crate::state::holder::{hostname, is_stale};
use crate::state::{LockGuard, LockInfo, StateError};

/// How often a waiting `lock` looks again.
const POLL: Duration = Duration::from_millis(50);

/// A held lock on a local state; the lock file is removed when it is dropped.
#[derive(Debug)]
pub struct LocalLock {
    path: PathBuf,
    info: LockInfo,
    broke_stale: Option<LockInfo>,
    /// The backend's record of the lock it holds (the writers' fence), cleared on drop.
    slot: Arc<Mutex<Option<Held>>>,
}

impl LocalLock {
    /// What this lock says about its owner (this process).
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// The lock that was found left behind by a dead process on this host and
    /// removed to take this one, if any (worth a warning to the user).
    pub fn broke_stale(&self) -> Option<&LockInfo> {
        self.broke_stale.as_ref()
    }
}

impl LockGuard for LocalLock {}

impl Drop for LocalLock {
    fn drop(&mut self) {
        {
            let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            if slot.as_ref().is_some_and(|h| h.id == self.info.id) {
                *slot = None;
            }
        }
        // Remove the file only if it is still ours: after a `state unlock` by
        // someone else it may belong to another process now. (Reading and then
        // removing is not atomic; the window is a few microseconds and needs a
        // forced unlock to open in the first place.)
        if read_info(&self.path).ok().flatten().as_ref() == Some(&self.info) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Takes the lock at `path` for holder `holder`, polling until `timeout`; records it in `slot`.
pub(super) fn acquire(
    path: &Path,
    operation: &str,
    timeout: Duration,
    holder: &str,
    slot: &Arc<Mutex<Option<Held>>>,
) -> Result<LocalLock, StateError> {
    let dir = path.parent().expect("lock lives in .skyform/");
    ensure_private_dir(dir)?;
    let info = LockInfo {
        id: format!("{:016x}", rand::random::<u64>()),
        holder: holder.to_string(),
        pid: std::process::id(),
        host: hostname(),
        since: rfc3339_utc(SystemTime::now()),
        operation: operation.to_string(),
        lease_ms: None,
    };
    let deadline = Instant::now() + timeout;
    let mut broke_stale = None;
    loop {
        if let Some((dev, ino)) = try_create(path, &info)? {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Held { id: info.id.clone(), dev, ino });
            return Ok(LocalLock { path: path.to_path_buf(), info, broke_stale, slot: slot.clone() });
        }
        match read_info(path)? {
            // Released between our attempt and the read: try again at once.
            None => continue,
            Some(holder) if is_stale(&holder) => {
                if break_stale(path, &holder)? {
                    broke_stale = Some(holder);
                }
                continue;
            }
            Some(holder) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(StateError::Locked { holder: Box::new(holder) });
                }
                std::thread::sleep(POLL.min(deadline - now));
            }
        }
    }
}

/// Removes the lock at `path` (only the one with ID `id`, when given); returns the holder.
pub(super) fn force_unlock(path: &Path, id: Option<&str>) -> Result<LockInfo, StateError> {
    let dir = path.parent().expect("lock lives in .skyform/");
    if !dir.is_dir() {
        return Err(StateError::NotLocked);
    }
    // Under the fence's lock: a writer's check-then-write never straddles the removal.
    let _fence = lock_dir(dir)?;
    let holder = read_info(path)?.ok_or(StateError::NotLocked)?;
    if let Some(id) = id
        && id != holder.id
    {
        return Err(StateError::WrongLock { given: id.to_string(), holder: Box::new(holder) });
    }
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StateError::NotLocked),
        Err(e) => return Err(io_err(path, e)),
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(holder)
}

/// One attempt at creating the lock file: its device and inode, or `None` if it exists.
fn try_create(path: &Path, info: &LockInfo) -> Result<Option<(u64, u64)>, StateError> {
    let body = serde_json::to_vec_pretty(info).expect("LockInfo serializes");
    let dir = path.parent().expect("lock lives in .skyform/");
    let tmp = dir.join(format!(".lock.tmp.{}.{:016x}", info.pid, rand::random::<u64>()));
    let write_tmp = || -> io::Result<(u64, u64)> {
        let mut f = private_options().write(true).create_new(true).open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        let m = f.metadata()?;
        Ok((m.dev(), m.ino()))
    };
    // The link is the same inode as the temporary file.
    let linked = write_tmp().and_then(|id| fs::hard_link(&tmp, path).map(|()| id));
    let _ = fs::remove_file(&tmp);
    let created = match linked {
        Ok(id) => Some(id),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
        // No hard links here (some FUSE or network file systems): O_EXCL instead.
        Err(_) => match private_options().write(true).create_new(true).open(path) {
            Ok(mut f) => {
                f.write_all(&body).and_then(|()| f.sync_all()).map_err(|e| io_err(path, e))?;
                let m = f.metadata().map_err(|e| io_err(path, e))?;
                Some((m.dev(), m.ino()))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
            Err(e) => return Err(io_err(path, e)),
        },
    };
    if created.is_some() {
        sync_dir(dir)?;
    }
    Ok(created)
}

/// Reads the lock file: `None` if there is none. A lock file that cannot be
/// parsed (written by hand, or by an O_EXCL fallback that crashed mid-write)
/// still counts as held, by an unknown owner, until `state unlock`.
pub(super) fn read_info(path: &Path) -> Result<Option<LockInfo>, StateError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| LockInfo {
            id: String::new(),
            holder: String::new(),
            lease_ms: None,
            pid: 0,
            host: "unknown".into(),
            since: "unknown".into(),
            operation: format!("unreadable lock file {}", path.display()),
        }))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Removes a stale lock without ever removing a live one: the file is first
/// renamed away (atomic), then checked to be the stale one we saw. If another
/// process replaced it meanwhile, it is put back. Returns whether we removed it.
fn break_stale(path: &Path, seen: &LockInfo) -> Result<bool, StateError> {
    let dir = path.parent().expect("lock lives in .skyform/");
    let _fence = lock_dir(dir)?;
    let aside = dir.join(format!(".lock.stale.{}.{:016x}", std::process::id(), rand::random::<u64>()));
    match fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(path, e)),
    }
    let moved = read_info(&aside)?;
    if moved.as_ref() == Some(seen) {
        let _ = fs::remove_file(&aside);
        sync_dir(dir)?;
        return Ok(true);
    }
    // We moved a fresh lock taken after our read: restore it. If yet another
    // process has taken the lock in between, the restored one cannot be linked
    // back and its owner will find its lock gone (three racing processes on one
    // state, one of them breaking a stale lock; not worth more machinery).
    let _ = fs::hard_link(&aside, path);
    let _ = fs::remove_file(&aside);
    Ok(false)
}
