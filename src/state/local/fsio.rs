//! Small file-system helpers shared by the snapshot, journal and lock code:
//! private modes, atomic replacement, directory fsync, and UTC timestamps.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::state::StateError;

/// Mode of the `.skyform/` directory: only the owner may list or enter it.
pub(super) const DIR_MODE: u32 = 0o700;
/// Mode of every file in it: only the owner may read or write.
pub(super) const FILE_MODE: u32 = 0o600;

/// Wraps an I/O error with the path it concerns.
pub(super) fn io_err(path: &Path, source: io::Error) -> StateError {
    StateError::Io { path: path.display().to_string(), source }
}

/// Creates `dir` (and its parents) with mode 0700 if missing. When this call
/// creates it, the parent directory is fsynced so the new entry survives a crash.
pub(super) fn ensure_private_dir(dir: &Path) -> Result<(), StateError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(|e| io_err(dir, e))?;
    // The umask may have narrowed the mode further, never widened it; setting it
    // explicitly also covers a umask of 0 with an unusual DirBuilder default.
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(|e| io_err(dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Opening options for a private (0600) file.
pub(super) fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Makes the directory entries of `dir` (creations, renames, removals) durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err(dir, e))
}

/// Replaces `path` with `bytes` atomically and durably.
///
/// Crash safety: the bytes go to a fresh temporary file in the same directory
/// (same file system, so `rename` is atomic), which is fsynced before the
/// rename; the directory is fsynced after it. A crash at any point leaves either
/// the old file or the new one, complete, at `path` (plus at worst a stray
/// temporary file, which is never read).
pub(super) fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), StateError> {
    let dir = path.parent().expect("state files live in .skyform/");
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{name}.tmp.{}.{:016x}", std::process::id(), rand::random::<u64>()));
    let result = (|| {
        let file = private_options().write(true).create_new(true).open(&tmp)?;
        let mut buf = io::BufWriter::with_capacity(1 << 16, file);
        write(&mut buf)?;
        let file = buf.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path, e));
    }
    sync_dir(dir)
}

/// `t` as RFC 3339 in UTC with second precision, e.g. `2026-11-25T01:24:21Z`.
pub(crate) fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2000-02-29 (leap day in a century leap year) 12:34:56.
        assert_eq!(rfc3339_utc(UNIX_EPOCH + Duration::from_secs(951_827_696)), "2000-02-29T12:34:56Z");
        assert_eq!(rfc3339_utc(UNIX_EPOCH + Duration::from_secs(1_795_566_261)), "2026-11-25T00:24:21Z");
    }
}
