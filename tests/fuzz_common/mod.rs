//! Shared by the fuzz targets (`spec_fuzz`, `fuzz_state`, `fuzz_plan`, `fuzz_answers`): how many
//! cases a run tries, and mutations of a valid input (text or bytes).
//!
//! `cargo test` runs each property with its short count (the fast lane); the long campaign sets
//! `PROPTEST_CASES` (docs/testbed.md#fuzzing), which replaces every property's count.
#![allow(dead_code)]

use proptest::prelude::*;

/// The configuration of a property: `short` cases, or `PROPTEST_CASES` when set. No failure
/// files: a failure found is written down as a regression test beside the property.
pub fn config(short: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(short);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// One edit of an input.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Inserts a fragment at an offset.
    Insert(usize, String),
    /// Deletes up to `n` bytes (characters' worth, in text) at an offset.
    Delete(usize, usize),
    /// Replaces the byte at an offset (in text: the character there, by an ASCII one).
    Flip(usize, u8),
    /// Cuts everything from an offset on.
    Truncate(usize),
    /// Repeats a line.
    DuplicateLine(usize),
    /// Swaps two lines.
    SwapLines(usize, usize),
}

/// JSON pieces that reach deep into a deserializer: structure, numbers at and past the edges of
/// the integer types, escapes, the special forms of `Value`, address forms.
pub fn json_fragment() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("\"".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("-1".to_string()),
        Just("1e999".to_string()),
        Just("0.5".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        // Fits a u32 when put before a digit: Argon2's passes in a state.
        Just("429496729".to_string()),
        Just("\"argon2id:m=1048576,t=429496729,p=1:00\"".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("{\"$unknown\":true}".to_string()),
        Just("{\"$redacted\":\"argon2id:m=8,t=1,p=1:00\"}".to_string()),
        Just("{\"$redacted\":1}".to_string()),
        Just("{\"$map\":{\"$x\":1}}".to_string()),
        Just("\"module.m[\\\"k\\\"].x.y[0]\"".to_string()),
        Just("\"data.x.y\"".to_string()),
        Just("\"x.y[99999999999999999999]\"".to_string()),
        Just("[".repeat(200)),
        Just("\u{feff}".to_string()),
        Just("\n".to_string()),
        Just("\0".to_string()),
        "[a-z_\"]{1,8}",
        any::<char>().prop_map(|c| c.to_string()),
    ]
}

/// A mutation whose insertions come from `fragment`.
pub fn mutation(fragment: impl Strategy<Value = String> + Clone) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), fragment).prop_map(|(i, s)| Mutation::Insert(i, s)),
        2 => (any::<usize>(), 1usize..12).prop_map(|(i, n)| Mutation::Delete(i, n)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => any::<usize>().prop_map(Mutation::DuplicateLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn boundary(s: &str, i: usize) -> usize {
    let mut i = i % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn edit_lines<T: Clone>(lines: &mut Vec<T>, m: &Mutation) {
    if lines.is_empty() {
        return;
    }
    match m {
        Mutation::DuplicateLine(i) => {
            let k = i % lines.len();
            let line = lines[k].clone();
            lines.insert(k, line);
        }
        Mutation::SwapLines(a, b) => {
            let (a, b) = (a % lines.len(), b % lines.len());
            lines.swap(a, b);
        }
        _ => {}
    }
}

/// `text` with `muts` applied, staying valid UTF-8.
pub fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut s = text.to_string();
    for m in muts {
        match m {
            Mutation::Insert(i, frag) => {
                let at = boundary(&s, *i);
                s.insert_str(at, frag);
            }
            Mutation::Delete(i, n) => {
                let a = boundary(&s, *i);
                let b = boundary(&s, a + n);
                if b > a {
                    s.replace_range(a..b, "");
                }
            }
            Mutation::Flip(i, b) => {
                let a = boundary(&s, *i);
                if let Some(c) = s[a..].chars().next() {
                    s.replace_range(a..a + c.len_utf8(), &char::from(b & 0x7f).to_string());
                }
            }
            Mutation::Truncate(i) => {
                let a = boundary(&s, *i);
                s.truncate(a);
            }
            Mutation::DuplicateLine(_) | Mutation::SwapLines(..) => {
                let mut lines: Vec<&str> = s.lines().collect();
                edit_lines(&mut lines, m);
                s = lines.join("\n");
            }
        }
    }
    s
}

/// `bytes` with `muts` applied (the result need not be UTF-8).
pub fn apply_bytes(bytes: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for m in muts {
        let at = |i: usize, len: usize| i % (len + 1);
        match m {
            Mutation::Insert(i, frag) => {
                let a = at(*i, b.len());
                b.splice(a..a, frag.bytes());
            }
            Mutation::Delete(i, n) => {
                let a = at(*i, b.len());
                let e = (a + n).min(b.len());
                b.drain(a..e);
            }
            Mutation::Flip(i, v) => {
                if !b.is_empty() {
                    let a = i % b.len();
                    b[a] = *v;
                }
            }
            Mutation::Truncate(i) => {
                let a = at(*i, b.len());
                b.truncate(a);
            }
            Mutation::DuplicateLine(_) | Mutation::SwapLines(..) => {
                let mut lines: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
                edit_lines(&mut lines, m);
                b = lines.join(&b'\n');
            }
        }
    }
    b
}

/// Whether a serde_json message says where: `line L column C` (every syntax and data error has
/// it, when it was read from text).
pub fn json_located(message: &str) -> bool {
    message.contains(" line ") && message.contains(" column ")
}
