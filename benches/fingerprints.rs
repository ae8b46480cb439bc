//! What a stolen state costs a password guesser, before and after Argon2id fingerprints, and
//! what the fingerprints add to a plan. `cargo bench --bench fingerprints` prints:
//! - guesses per second per core against an old `hmac-sha256:` fingerprint (the key was in the
//!   state beside it, so a guess is one HMAC of the candidate's canonical JSON);
//! - guesses per second per core against an `argon2id:` fingerprint with a new state's parameters
//!   (one Argon2id per guess);
//! - the time a plan spends fingerprinting 5 and 10 distinct secrets (the seed has about that
//!   many), the first time (one KDF each) and again in the same process (cached).
#![expect(clippy::print_stdout, reason = "a benchmark reports its figures on stdout")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use skyform::secrets::{FingerprintParams, Fingerprinter};
use skyform::value::Value;

/// Runs `f` over candidates until `budget` has passed; returns calls per second.
fn rate(budget: Duration, mut f: impl FnMut(u64)) -> (f64, u64) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..64 {
            f(n);
            n += 1;
        }
    }
    (n as f64 / start.elapsed().as_secs_f64(), n)
}

fn main() {
    let p = FingerprintParams::random();
    println!("skyform fingerprint benchmark (one core, one thread)");
    println!("  Argon2id parameters of a new state: m={} KiB, t={}, p={}", p.memory_kib, p.iterations, p.parallelism);

    // Before: HMAC-SHA256 with the key read from the state.
    let key = [0x5au8; 32];
    let (hmac_rate, _) = rate(Duration::from_secs(2), |i| {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key size");
        mac.update(format!("\"guess-{i:08}\"").as_bytes());
        black_box(mac.finalize());
    });
    println!("  before, hmac-sha256 (key in the state): {hmac_rate:>12.0} guesses/s/core");

    // After: one Argon2id per guess (the cache never hits: every guess is a new value).
    let salt = hex::decode(&p.salt).expect("hex salt");
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32)).expect("valid parameters");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let (kdf_rate, n) = rate(Duration::from_secs(3), |i| {
        let mut out = [0u8; 32];
        argon.hash_password_into(format!("\"guess-{i:08}\"").as_bytes(), &salt, &mut out).expect("valid lengths");
        black_box(out);
    });
    println!(
        "  after,  argon2id (salt and parameters in the state): {kdf_rate:>8.1} guesses/s/core ({:.1} ms each, {n} runs)",
        1000.0 / kdf_rate
    );
    println!("  a guess costs {:.0}x more", hmac_rate / kdf_rate);

    // A plan: each distinct secret is fingerprinted once per process, then served from the cache.
    for secrets in [5usize, 10] {
        let fp = Fingerprinter::new(&FingerprintParams::random());
        let values: Vec<Value> = (0..secrets).map(|i| Value::str(format!("secret-{i}-{}", p.salt))).collect();
        let start = Instant::now();
        for v in &values {
            black_box(fp.fingerprint(v));
        }
        let first = start.elapsed();
        let start = Instant::now();
        for _ in 0..10 {
            for v in &values {
                black_box(fp.fingerprint(v));
            }
        }
        let again = start.elapsed() / 10;
        println!(
            "  plan with {secrets:>2} secrets: +{:.3} s the first time, +{:.6} s each time after (cached)",
            first.as_secs_f64(),
            again.as_secs_f64()
        );
    }
}
