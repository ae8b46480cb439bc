//! Small helpers shared by the API modules (bottom floor, imports nothing of the crate): time,
//! ids, etags, JSON merging.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use rand::Rng;
use serde_json::Value;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// RFC 3339 time with milliseconds, e.g. `2026-11-25T01:02:03.456Z`.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `n` random lowercase hex characters.
pub fn random_hex(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n).map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0')).collect()
}

/// A random numeric string of `n` digits, not starting with 0 (service-account unique ids).
pub fn random_digits(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|i| {
            let lo = if i == 0 { 1 } else { 0 };
            char::from_digit(rng.gen_range(lo..10), 10).unwrap_or('1')
        })
        .collect()
}

/// A UUID-shaped random id (Cloud SQL operation names look like this).
pub fn uuid_like() -> String {
    let h = random_hex(32);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The project number the emulator reports for a project id: stable (FNV-1a of the id), 12 digits.
/// A project given by number keeps that number.
pub fn project_number(project: &str) -> String {
    if !project.is_empty() && project.bytes().all(|b| b.is_ascii_digit()) {
        return project.to_string();
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in project.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (100_000_000_000 + h % 900_000_000_000).to_string()
}

/// A fresh IAM etag: 8 random bytes, base64 with padding. Its alphabet avoids `+` and `/` so that
/// gcloud's url-safe re-encoding (contract §0) gives back the same text.
pub fn new_etag() -> String {
    loop {
        let bytes: [u8; 8] = rand::thread_rng().r#gen();
        let s = STANDARD.encode(bytes);
        if !s.contains(['+', '/']) {
            return s;
        }
    }
}

/// Decodes an etag given in either base64 alphabet, so that etags are compared as bytes.
pub fn etag_bytes(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s).ok().or_else(|| URL_SAFE.decode(s).ok())
}

/// Base64 (standard alphabet, padded) of `data`.
pub fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Merges `patch` into `target` with PATCH semantics: objects merge recursively, anything else
/// (arrays included) replaces; `null` leaves the target unchanged.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    continue;
                }
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) if !p.is_null() => *t = p.clone(),
        _ => {}
    }
}

/// A string field of a JSON object, or "".
pub fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn project_numbers_are_stable_twelve_digits() {
        let n = project_number("my-proj");
        assert_eq!(n.len(), 12);
        assert_eq!(n, project_number("my-proj"));
        assert_ne!(n, project_number("other"));
        assert_eq!(project_number("123456"), "123456");
    }

    #[test]
    fn etags_compare_across_alphabets() {
        let e = new_etag();
        assert!(!e.contains(['+', '/']));
        assert_eq!(etag_bytes("BwX+ab/="), etag_bytes("BwX-ab_="));
        assert!(etag_bytes(&e).is_some());
    }

    #[test]
    fn merge_is_recursive_and_arrays_replace() {
        let mut t = json!({"a": {"b": 1, "c": [1, 2]}, "d": 1});
        merge(&mut t, &json!({"a": {"c": [3], "e": true}, "d": null}));
        assert_eq!(t, json!({"a": {"b": 1, "c": [3], "e": true}, "d": 1}));
    }

    #[test]
    fn rfc3339_formats_millis() {
        assert_eq!(rfc3339(1_000), "1970-01-01T00:00:01.000Z");
    }
}
