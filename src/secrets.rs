//! Keyed fingerprints of secrets, so that state and saved plans never hold one.
//!
//! A fingerprint is `hmac-sha256:<hex>` of the value's canonical JSON, keyed with
//! a random key kept in the state file. Without the key a fingerprint cannot be
//! used to test guesses offline, which a plain hash of a short password would allow.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::value::Value;

/// Computes fingerprints with one key.
#[derive(Clone)]
pub struct Fingerprinter {
    key: Vec<u8>,
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprinter { key: <hidden> }")
    }
}

const PREFIX: &str = "hmac-sha256:";

impl Fingerprinter {
    /// With a given key (hex in the state file).
    pub fn new(key: Vec<u8>) -> Self {
        Fingerprinter { key }
    }

    /// With a fresh random 32-byte key.
    pub fn random() -> Self {
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Fingerprinter { key }
    }

    /// The key, hex-encoded, for storing in state.
    pub fn key_hex(&self) -> String {
        hex::encode(&self.key)
    }

    /// The fingerprint of `v` (its clear content). A redacted value is already a
    /// fingerprint and is returned as is.
    pub fn fingerprint(&self, v: &Value) -> String {
        if let Value::Redacted(h) = v {
            return h.clone();
        }
        let canonical = serde_json::to_string(&v.unmarked().to_json_clear()).unwrap_or_default();
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("hmac takes any key size");
        mac.update(canonical.as_bytes());
        format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// `v` with every sensitive part replaced by its fingerprint.
    pub fn redact(&self, v: &Value) -> Value {
        match v {
            Value::Sensitive(_) => Value::Redacted(self.fingerprint(v)),
            Value::List(l) => Value::List(l.iter().map(|x| self.redact(x)).collect()),
            Value::Map(m) => Value::Map(m.iter().map(|(k, x)| (k.clone(), self.redact(x))).collect()),
            v => v.clone(),
        }
    }

    /// Whether two values are equal, comparing secrets through fingerprints when
    /// either side is only a fingerprint.
    pub fn same(&self, a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Redacted(x), other) | (other, Value::Redacted(x)) => {
                if matches!(other, Value::Unknown) {
                    return false;
                }
                *x == self.fingerprint(other)
            }
            (Value::Sensitive(x), y) | (y, Value::Sensitive(x)) => self.same(x, y),
            (Value::List(x), Value::List(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| self.same(a, b)),
            (Value::Map(x), Value::Map(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|((ka, a), (kb, b))| ka == kb && self.same(a, b))
            }
            (Value::Int(i), Value::Float(f)) | (Value::Float(f), Value::Int(i)) => *i as f64 == *f,
            (Value::Unknown, _) | (_, Value::Unknown) => false,
            (x, y) => x == y,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_and_still_compares() {
        let f = Fingerprinter::random();
        let secret = Value::str("hunter2").sensitive();
        let red = f.redact(&Value::map([("pw", secret.clone())]));
        let text = serde_json::to_string(&red).unwrap();
        assert!(!text.contains("hunter2"));
        assert!(f.same(&red, &Value::map([("pw", Value::str("hunter2"))])));
        assert!(!f.same(&red, &Value::map([("pw", Value::str("hunter3"))])));
    }

    #[test]
    fn different_keys_give_different_fingerprints() {
        let v = Value::str("x");
        assert_ne!(Fingerprinter::random().fingerprint(&v), Fingerprinter::random().fingerprint(&v));
    }
}
