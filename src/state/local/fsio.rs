//! Small file-system helpers shared by the snapshot, journal and lock code:
//! private modes, atomic replacement, directory fsync, and UTC timestamps.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::state::StateError;

/// Mode of the `.skyform/` directory: only the owner may list or enter it.
pub(super) const DIR_MODE: u32 = 0o700;
/// Mode of every file in it: only the owner may read or write.
pub(super) const FILE_MODE: u32 = 0o600;

/// Wraps an I/O error with the path it concerns.
pub(super) fn io_err(path: &Path, source: io::Error) -> StateError {
    StateError::Io { path: path.display().to_string(), error: source }
}

/// Creates `dir` (and its parents) with mode 0700 if missing. When this call
/// creates it, the parent directory is fsynced so the new entry survives a crash.
/// An existing `dir` that group or others may write is refused ([`StateError::InsecureDir`]):
/// they could replace the state, or remove the lock under a running apply.
pub(super) fn ensure_private_dir(dir: &Path) -> Result<(), StateError> {
    if let Ok(m) = fs::metadata(dir)
        && m.is_dir()
    {
        let mode = m.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(StateError::InsecureDir { path: dir.display().to_string(), mode });
        }
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

/// Replaces `path` with what `write` writes, atomically and durably, with mode 0600, never
/// through a symbolic link (see [`crate::foundation::files::write_private_atomic`], shared with plan
/// files): readers see the old file or the new one, whole.
pub(super) fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), StateError> {
    crate::foundation::files::write_private_atomic(path, write).map_err(|e| io_err(path, e))
}
