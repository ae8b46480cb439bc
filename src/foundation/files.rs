//! How every file skyform writes is written (plan files, state files, `drift --json-out`):
//! privately and atomically, never through a symbolic link; and the private temporary files
//! (helm's values, a kubeconfig holding a token), which are removed when dropped and, when a
//! signal ends the process, by [`remove_temporaries`].

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The temporary files this process holds now.
static TEMPORARIES: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// A new file in `$TMPDIR` readable only by this user (0600, `O_EXCL`), removed when dropped, and by
/// [`remove_temporaries`] if a signal ends the process first. Values (which may hold secrets) and a
/// kubeconfig holding a token go through these, never through a command line.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Writes `content` to a new private file named after `tag`.
    pub fn new(tag: &str, content: &[u8]) -> io::Result<TempFile> {
        let dir = std::env::temp_dir();
        for _ in 0..8 {
            let path = dir.join(format!("skyform-{tag}-{}-{:016x}.yaml", std::process::id(), rand::random::<u64>()));
            match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(mut f) => {
                    TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner()).insert(path.clone());
                    let file = TempFile { path };
                    f.write_all(content)?;
                    return Ok(file);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::AlreadyExists, "could not create a temporary file"))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.path);
    }
}

/// Removes every temporary file this process still holds (called when a signal ends it: drops do
/// not run then). Returns how many were removed.
pub fn remove_temporaries() -> usize {
    let mut live = TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner());
    let n = live.iter().filter(|p| fs::remove_file(p).is_ok()).count();
    live.clear();
    n
}

/// Writes `bytes` to `path` the way every file skyform writes is written: see
/// [`write_private_atomic`]. (Plan files, `drift --json-out FILE`.)
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_private_atomic(path, |w| w.write_all(bytes))
}

/// Replaces `path` with what `write` writes, atomically and privately:
/// - the bytes go to a new temporary file in the same directory (same file system, so the rename
///   is atomic), created with `O_EXCL` and mode 0600 (then set to exactly 0600 whatever the
///   umask), fsynced, and renamed over `path`; the directory is fsynced after. A crash leaves the
///   old file or the new one, whole (at worst a stray `.<name>.tmp.*` beside it);
/// - a `path` that is a symbolic link is refused (`InvalidInput`), never followed: a link planted
///   in a shared directory cannot redirect the write;
/// - the old file's mode, owner and links are not kept: the new file is a new inode.
pub fn write_private_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    refuse_symlink(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp.{}.{:016x}", std::process::id(), rand::random::<u64>()));
    let result = (|| {
        let file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        let mut buf = io::BufWriter::with_capacity(1 << 16, file);
        write(&mut buf)?;
        let file = buf.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        // Checked again just before the rename: a link planted meanwhile is refused too (the
        // rename itself would replace the link, not follow it, but refusing is clearer).
        refuse_symlink(path)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    fs::File::open(dir).and_then(|d| d.sync_all())
}

/// An error if `path` is a symbolic link.
fn refuse_symlink(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a symbolic link: refusing to write through it (remove the link, or write to another path)",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_are_private_and_removed_on_drop_or_on_demand() {
        let a = TempFile::new("test", b"secret").unwrap();
        let b = TempFile::new("test", b"secret").unwrap();
        assert_eq!(fs::metadata(a.path()).unwrap().permissions().mode() & 0o777, 0o600);
        let (pa, pb) = (a.path().to_path_buf(), b.path().to_path_buf());
        drop(a);
        assert!(!pa.exists());
        assert!(remove_temporaries() >= 1);
        assert!(!pb.exists());
        drop(b);
    }

    #[test]
    fn written_private_atomically_and_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.json");
        fs::write(&target, "old").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&target, b"new").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600, "the old mode is not kept");
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = write_private(&link, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        let leftovers: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(!leftovers.iter().any(|n| n.contains(".tmp.")), "{leftovers:?}");
    }
}
