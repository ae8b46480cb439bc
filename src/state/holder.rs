//! Who holds a lock: this host's name, and whether a holder on this host is still alive. The local
//! backend judges staleness by pid; bucket locks are leases and are judged by their renewals only
//! (see `gcs::lease`), never by host name, which two machines may share.

use std::fs;
use std::path::Path;

use super::LockInfo;

/// A lock is stale when its owner ran on this host and is no longer alive.
/// Locks from other hosts are never judged: we cannot see their processes.
pub fn is_stale(holder: &LockInfo) -> bool {
    holder.pid != 0 && holder.host == hostname() && !pid_alive(holder.pid)
}

/// Whether a process with this pid exists on this host (Linux `/proc`).
fn pid_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        // No procfs: we cannot tell, so never call a lock stale.
        return true;
    }
    proc.join(pid.to_string()).exists()
}

/// This host's name, without libc: the kernel's, `/etc/hostname`, `$HOSTNAME`.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
