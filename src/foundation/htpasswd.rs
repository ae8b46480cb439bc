//! htpasswd lines (`user:<bcrypt hash>`): made by the spec function `htpasswd()`, compared by the
//! Helm provider. Both sides need the same memory of the lines this process made, so it lives on the
//! floor below them.

/// The lines `htpasswd()` made in this process, with what they hash. Held in
/// memory only (never written), so that a provider can tell whether a live
/// line hashes the same user and password as a freshly made one.
static HTPASSWD_MADE: std::sync::Mutex<Vec<(String, String, String)>> = std::sync::Mutex::new(Vec::new());

/// Records `line` for `user` and `password`, or returns the line already
/// recorded for them.
pub fn remember(line: &str, user: &str, password: &str) -> String {
    let mut made = HTPASSWD_MADE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((l, _, _)) = made.iter().find(|(_, u, p)| u == user && p == password) {
        return l.clone();
    }
    if made.len() >= 1024 {
        made.remove(0);
    }
    made.push((line.to_string(), user.to_string(), password.to_string()));
    line.to_string()
}

pub fn made_for(user: &str, password: &str) -> Option<String> {
    let made = HTPASSWD_MADE.lock().unwrap_or_else(|e| e.into_inner());
    made.iter().find(|(_, u, p)| u == user && p == password).map(|(line, _, _)| line.clone())
}

/// Whether `live` (an htpasswd line read back from an API) hashes the same user
/// and password as `desired`, a line `htpasswd()` made in this process. Each
/// call salts afresh, so the two texts differ; providers use this to treat a
/// live hash that verifies against the desired password as unchanged.
pub fn equivalent(desired: &str, live: &str) -> bool {
    if desired == live {
        return true;
    }
    let made = HTPASSWD_MADE.lock().unwrap_or_else(|e| e.into_inner());
    made.iter().any(|(line, user, password)| line == desired && verifies(live, user, password))
}

pub fn salt(user: &str, password: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"skyform htpasswd salt v1\0");
    h.update(user.as_bytes());
    h.update([0]);
    h.update(password.as_bytes());
    let d = h.finalize();
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&d[..16]);
    salt
}

/// Whether an htpasswd `line` (`user:<bcrypt hash>`) is for `user` and
/// `password`. Each `htpasswd()` call salts afresh, so two hashes of the same
/// password differ; providers compare a live line with the desired password
/// through this function rather than by text.
pub fn verifies(line: &str, user: &str, password: &str) -> bool {
    let Some((u, hash)) = line.trim_end().split_once(':') else {
        return false;
    };
    u == user && bcrypt::verify(password.as_bytes(), hash).unwrap_or(false)
}
