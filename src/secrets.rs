//! Fingerprints of secrets, so that state and saved plans never hold one.
//!
//! A fingerprint is `argon2id:m=<KiB>,t=<passes>,p=<lanes>:<hex>`: 32 bytes of Argon2id (RFC 9106,
//! version 0x13) over the value's canonical JSON, salted with the state's random salt
//! ([`FingerprintParams::salt`]). Argon2id is memory-hard: whoever reads a state pays, for every
//! guess of a password, what a password hash costs (tens of milliseconds and 19 MiB per guess per
//! core with [`FingerprintParams::DEFAULT_MEMORY_KIB`]; `cargo bench --bench fingerprints` measures
//! it). The parameters are written in each fingerprint, so a state whose parameters are raised
//! still compares the fingerprints made before. The salt is per state (not per value) so that a
//! process computes one KDF per distinct secret ([`Fingerprinter`] caches by salt, parameters and
//! value), and no precomputed table serves two states.
//!
//! States written before held `hmac-sha256:<hex>` fingerprints keyed with a key kept *beside* them
//! in the state (so a guess cost one HMAC: millions per second). Those still compare, with that key
//! ([`Fingerprinter::with_legacy_key`]), and each is replaced by an Argon2id one the next time its
//! value is written (a changed resource, every apply's outputs); the state drops the key once no
//! such fingerprint is left in it (see `State::prune_legacy_key`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::value::Value;

/// The scheme of new fingerprints.
pub const SCHEME: &str = "argon2id";
/// The scheme of fingerprints written by older states (keyed HMAC-SHA256).
pub const LEGACY_SCHEME: &str = "hmac-sha256";

/// The largest memory cost a fingerprint or state may ask for (1 GiB): a hand-edited state cannot
/// make skyform allocate more.
const MAX_MEMORY_KIB: u32 = 1 << 20;

/// The most work a fingerprint or state may ask for: memory times passes, in KiB (4 GiB·passes,
/// a hundred times the default's 19 MiB × 2, a few seconds): a hand-edited `t=4294967295` cannot
/// keep skyform hashing for days.
const MAX_WORK_KIB: u64 = 4 << 20;

/// How a state makes fingerprints: Argon2id's parameters and the state's salt (recorded in the
/// state, `fingerprints`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FingerprintParams {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Memory cost in KiB (`m`).
    pub memory_kib: u32,
    /// Passes over the memory (`t`).
    pub iterations: u32,
    /// Lanes (`p`).
    pub parallelism: u32,
    /// The state's salt, hex (16 random bytes).
    pub salt: String,
}

impl FingerprintParams {
    /// Memory cost of new states: 19 MiB (OWASP's first Argon2id configuration).
    pub const DEFAULT_MEMORY_KIB: u32 = 19 * 1024;
    /// Passes of new states.
    pub const DEFAULT_ITERATIONS: u32 = 2;
    /// Lanes of new states (one: a plan's few secrets are hashed on the engine's threads).
    pub const DEFAULT_PARALLELISM: u32 = 1;

    /// The default parameters with a fresh random salt.
    pub fn random() -> Self {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        Self::with_salt(&salt)
    }

    /// The default parameters for a state written before fingerprints were Argon2id: the salt is
    /// derived from the state's (random) lineage, so it is the same at every load until the next
    /// write records it.
    pub fn derived(lineage: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"skyform fingerprint salt\0");
        h.update(lineage.as_bytes());
        Self::with_salt(&h.finalize()[..16])
    }

    fn with_salt(salt: &[u8]) -> Self {
        FingerprintParams {
            algorithm: SCHEME.into(),
            memory_kib: Self::DEFAULT_MEMORY_KIB,
            iterations: Self::DEFAULT_ITERATIONS,
            parallelism: Self::DEFAULT_PARALLELISM,
            salt: hex::encode(salt),
        }
    }
}

/// Argon2id's cost parameters, as written in a fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Cost {
    m: u32,
    t: u32,
    p: u32,
}

impl Cost {
    /// `m=…,t=…,p=…`.
    fn parse(s: &str) -> Option<Cost> {
        let mut it = s.split(',');
        let mut field = |name: &str| it.next()?.strip_prefix(name)?.strip_prefix('=')?.parse::<u32>().ok();
        let cost = Cost { m: field("m")?, t: field("t")?, p: field("p")? };
        cost.argon2().map(|_| cost)
    }

    fn argon2(self) -> Option<argon2::Argon2<'static>> {
        if self.m > MAX_MEMORY_KIB || u64::from(self.m) * u64::from(self.t) > MAX_WORK_KIB {
            return None;
        }
        // argon2 0.5 computes `8 * p` before it checks p's range, which overflows for a hostile p.
        if !(argon2::Params::MIN_P_COST..=argon2::Params::MAX_P_COST).contains(&self.p) {
            return None;
        }
        let params = argon2::Params::new(self.m, self.t, self.p, Some(32)).ok()?;
        Some(argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params))
    }
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "m={},t={},p={}", self.m, self.t, self.p)
    }
}

/// Computes and compares fingerprints for one state.
#[derive(Clone)]
pub struct Fingerprinter {
    salt: Vec<u8>,
    cost: Cost,
    /// The HMAC key of an older state, to compare its `hmac-sha256:` fingerprints.
    legacy_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fingerprinter")
            .field("cost", &self.cost.to_string())
            .field("legacy_key", &self.legacy_key.as_ref().map(|_| "<hidden>"))
            .finish_non_exhaustive()
    }
}

impl Fingerprinter {
    /// With a state's parameters. Parameters Argon2 refuses (a hand-edited state) fall back to
    /// the defaults, with the same salt; a salt that is not hex of at least 8 bytes is derived
    /// from its text.
    pub fn new(params: &FingerprintParams) -> Self {
        let salt = hex::decode(&params.salt)
            .ok()
            .filter(|s| s.len() >= 8)
            .unwrap_or_else(|| Sha256::digest(params.salt.as_bytes())[..16].to_vec());
        let cost = Cost { m: params.memory_kib, t: params.iterations, p: params.parallelism };
        let cost = if cost.argon2().is_some() {
            cost
        } else {
            Cost {
                m: FingerprintParams::DEFAULT_MEMORY_KIB,
                t: FingerprintParams::DEFAULT_ITERATIONS,
                p: FingerprintParams::DEFAULT_PARALLELISM,
            }
        };
        Fingerprinter { salt, cost, legacy_key: None }
    }

    /// With fresh random parameters (a new state's, or a test's).
    pub fn random() -> Self {
        Self::new(&FingerprintParams::random())
    }

    /// Also compares `hmac-sha256:` fingerprints, with the key an older state kept (hex; an empty
    /// key means none).
    pub fn with_legacy_key(mut self, key_hex: &str) -> Self {
        self.legacy_key = hex::decode(key_hex).ok().filter(|k| !k.is_empty());
        self
    }

    /// The fingerprint of `v` (its clear content). A redacted value is already a
    /// fingerprint and is returned as is.
    pub fn fingerprint(&self, v: &Value) -> String {
        if let Value::Redacted(h) = v {
            return h.clone();
        }
        self.argon2_fingerprint(self.cost, &canonical(v))
    }

    fn argon2_fingerprint(&self, cost: Cost, canonical: &str) -> String {
        // The cache holds a SHA-256 of (salt, cost, value), never the value: one KDF per distinct
        // secret per process, whichever Fingerprinter of the state asks.
        static CACHE: OnceLock<Mutex<HashMap<[u8; 32], String>>> = OnceLock::new();
        let mut h = Sha256::new();
        h.update(&self.salt);
        h.update(cost.to_string().as_bytes());
        h.update([0]);
        h.update(canonical.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(hit) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return hit.clone();
        }
        let mut out = [0u8; 32];
        let argon2 = cost.argon2().expect("the cost was checked");
        argon2
            .hash_password_into(canonical.as_bytes(), &self.salt, &mut out)
            .expect("the salt and output lengths are valid");
        let fp = format!("{SCHEME}:{cost}:{}", hex::encode(out));
        cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, fp.clone());
        fp
    }

    /// Whether fingerprint `fp` is of `v`: an Argon2id one with its own parameters, an
    /// `hmac-sha256:` one with the legacy key (never equal without it, so the value is written
    /// again, with the new scheme).
    fn matches(&self, fp: &str, v: &Value) -> bool {
        if let Some(rest) = fp.strip_prefix(SCHEME).and_then(|r| r.strip_prefix(':')) {
            let Some((cost, _)) = rest.split_once(':') else { return false };
            let Some(cost) = Cost::parse(cost) else { return false };
            return self.argon2_fingerprint(cost, &canonical(v)) == fp;
        }
        if let Some(hex_mac) = fp.strip_prefix(LEGACY_SCHEME).and_then(|r| r.strip_prefix(':')) {
            let Some(key) = &self.legacy_key else { return false };
            let Ok(want) = hex::decode(hex_mac) else { return false };
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key size");
            mac.update(canonical(v).as_bytes());
            return mac.verify_slice(&want).is_ok();
        }
        false
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
            (Value::Redacted(x), Value::Redacted(y)) => x == y,
            (Value::Redacted(x), other) | (other, Value::Redacted(x)) => {
                if matches!(other, Value::Unknown) {
                    return false;
                }
                self.matches(x, other)
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

/// The canonical JSON of a value's clear content: what is fingerprinted.
fn canonical(v: &Value) -> String {
    serde_json::to_string(&v.unmarked().to_json_clear()).unwrap_or_default()
}

/// Whether `v` holds a fingerprint of the legacy scheme anywhere.
pub fn has_legacy_fingerprint(v: &Value) -> bool {
    match v {
        Value::Redacted(h) => h.starts_with(LEGACY_SCHEME),
        Value::Sensitive(x) => has_legacy_fingerprint(x),
        Value::List(l) => l.iter().any(has_legacy_fingerprint),
        Value::Map(m) => m.values().any(has_legacy_fingerprint),
        _ => false,
    }
}

/// The legacy scheme (for the benchmark and tests): `hmac-sha256:<hex>` of `v` with `key`.
pub fn legacy_fingerprint(key: &[u8], v: &Value) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key size");
    mac.update(canonical(v).as_bytes());
    format!("{LEGACY_SCHEME}:{}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `tests/fuzz_state.rs`: a parallelism argon2 would overflow on is refused, not a panic.
    #[test]
    fn a_hostile_parallelism_is_refused() {
        for p in [0, 0x1000_0000, u32::MAX] {
            assert_eq!(Cost::parse(&format!("m=19456,t=2,p={p}")), None, "p={p}");
        }
        assert!(Cost::parse("m=19456,t=2,p=1").is_some());
    }

    #[test]
    fn redaction_hides_and_still_compares() {
        let f = Fingerprinter::random();
        let secret = Value::str("hunter2").sensitive();
        let red = f.redact(&Value::map([("pw", secret.clone())]));
        let text = serde_json::to_string(&red).unwrap();
        assert!(!text.contains("hunter2"));
        assert!(text.contains("argon2id:m=19456,t=2,p=1:"), "{text}");
        assert!(f.same(&red, &Value::map([("pw", Value::str("hunter2"))])));
        assert!(!f.same(&red, &Value::map([("pw", Value::str("hunter3"))])));
    }

    #[test]
    fn different_salts_give_different_fingerprints() {
        let v = Value::str("x");
        assert_ne!(Fingerprinter::random().fingerprint(&v), Fingerprinter::random().fingerprint(&v));
        // The same salt and value: the same fingerprint (from the cache the second time).
        let p = FingerprintParams::random();
        assert_eq!(Fingerprinter::new(&p).fingerprint(&v), Fingerprinter::new(&p).fingerprint(&v));
    }

    #[test]
    fn old_hmac_fingerprints_still_compare_with_their_key() {
        let key = [7u8; 32];
        let old = Value::Redacted(legacy_fingerprint(&key, &Value::str("pw1")));
        let f = Fingerprinter::new(&FingerprintParams::derived("lineage")).with_legacy_key(&hex::encode(key));
        assert!(f.same(&old, &Value::str("pw1")));
        assert!(!f.same(&old, &Value::str("pw2")));
        // Without the key an old fingerprint never matches: the value is written again.
        assert!(!Fingerprinter::new(&FingerprintParams::derived("lineage")).same(&old, &Value::str("pw1")));
        assert!(has_legacy_fingerprint(&Value::map([("a", Value::List(vec![old]))])));
    }

    #[test]
    fn fingerprints_made_with_other_parameters_still_compare() {
        let mut p = FingerprintParams::random();
        p.memory_kib = 64;
        p.iterations = 1;
        let cheap = Fingerprinter::new(&p).fingerprint(&Value::str("pw"));
        assert!(cheap.starts_with("argon2id:m=64,t=1,p=1:"), "{cheap}");
        p.memory_kib = 128;
        let raised = Fingerprinter::new(&p);
        assert!(raised.same(&Value::Redacted(cheap.clone()), &Value::str("pw")));
        assert_ne!(raised.fingerprint(&Value::str("pw")), cheap);
        // Parameters Argon2 refuses, or too much memory, never match (and never allocate).
        assert!(!raised.same(&Value::Redacted("argon2id:m=4294967295,t=1,p=1:00".into()), &Value::str("pw")));
        assert!(!raised.same(&Value::Redacted("argon2id:m=1,t=0,p=1:00".into()), &Value::str("pw")));
    }

    /// Found while fuzzing the state loader (tests/fuzz_state.rs): a state (or a fingerprint in it)
    /// asking for `t=4294967295` passes was accepted, and the next fingerprint took days.
    #[test]
    fn endless_work_is_refused_like_too_much_memory() {
        let started = std::time::Instant::now();
        let mut p = FingerprintParams::random();
        p.iterations = u32::MAX;
        let f = Fingerprinter::new(&p);
        assert!(f.fingerprint(&Value::str("pw")).starts_with("argon2id:m=19456,t=2,p=1:"), "the defaults instead");
        assert!(!f.same(&Value::Redacted("argon2id:m=19456,t=4294967295,p=1:00".into()), &Value::str("pw")));
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }
}
