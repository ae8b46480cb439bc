//! The one mask every text from outside passes through (API errors, pod logs, helm's output,
//! events, check bodies) before it reaches the terminal, `--json`, a drift report or a webhook:
//! the run's secrets replaced by [`MASK`], and terminal control characters removed.
//!
//! A secret is masked in every form it travels in: as is, percent-encoded (a password in a
//! connection URL), base64-encoded (Basic credentials, Kubernetes Secret data), and, for a
//! multi-line secret (a PEM key, a JSON key file), line by line. Secrets shorter than
//! [`MIN_SECRET_LEN`] cannot be masked without masking ordinary text, so sensitive variables
//! refuse them (`spec::vars`).

use std::sync::Arc;

use crate::value::{MASK, Value};

/// The shortest secret the mask can hide without hiding ordinary words.
pub const MIN_SECRET_LEN: usize = 4;

/// The forms of a run's secrets, longest first.
#[derive(Debug, Clone, Default)]
pub struct Mask {
    forms: Arc<Vec<String>>,
}

impl Mask {
    /// A mask of the clear text of every sensitive value in `values` (nested ones included).
    pub fn of<'a>(values: impl IntoIterator<Item = &'a Value>) -> Mask {
        let mut secrets = Vec::new();
        for v in values {
            collect(v, false, &mut secrets);
        }
        Mask::of_secrets(secrets)
    }

    /// A mask of these secrets.
    pub fn of_secrets(secrets: impl IntoIterator<Item = String>) -> Mask {
        use base64::Engine;
        let mut forms = Vec::new();
        for s in secrets {
            let mut add = |f: String| {
                if f.chars().count() >= MIN_SECRET_LEN {
                    forms.push(f);
                }
            };
            add(percent_encoding::utf8_percent_encode(&s, percent_encoding::NON_ALPHANUMERIC).to_string());
            add(base64::engine::general_purpose::STANDARD.encode(&s));
            add(base64::engine::general_purpose::STANDARD_NO_PAD.encode(&s));
            if s.contains('\n') {
                for line in s.lines() {
                    add(line.trim().to_string());
                }
            }
            add(s);
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        Mask { forms: Arc::new(forms) }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// `text` with every secret masked and control characters (other than newline and tab)
    /// removed, so that remote text can neither leak a secret nor drive the terminal.
    pub fn apply(&self, text: &str) -> String {
        let mut out = clean(text);
        for f in self.forms.iter() {
            if out.contains(f.as_str()) {
                out = out.replace(f.as_str(), MASK);
            }
        }
        out
    }
}

/// `text` without control characters other than newline and tab (escape sequences, bells,
/// carriage returns that would rewrite a line).
pub fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect()
}

fn collect(v: &Value, inside: bool, out: &mut Vec<String>) {
    match v {
        Value::Sensitive(x) => collect(x, true, out),
        Value::String(s) if inside && !s.is_empty() => out.push(s.clone()),
        Value::List(l) => l.iter().for_each(|x| collect(x, inside, out)),
        Value::Map(m) => m.values().for_each(|x| collect(x, inside, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_every_form_they_travel_in() {
        // A key made here, never one kept in the repository.
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rand08::thread_rng(), 1024).unwrap();
        let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap().to_string();
        let key_line = pem.lines().nth(1).unwrap().to_string();
        let m = Mask::of([&Value::str("p@ss w/rd").sensitive(), &Value::str(&pem).sensitive(), &Value::str("public")]);
        let url = "postgresql://postgres:p%40ss%20w%2Frd@10.64.0.3:5432/db";
        assert_eq!(m.apply(url), format!("postgresql://postgres:{MASK}@10.64.0.3:5432/db"));
        assert_eq!(m.apply("password p@ss w/rd"), format!("password {MASK}"));
        // A log line with one line of the key.
        let masked = m.apply(&format!("loaded {key_line} from the key"));
        assert!(!masked.contains(&key_line), "{masked}");
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode("p@ss w/rd");
        assert!(!m.apply(&format!("Authorization: Basic {b64}")).contains(&b64));
        assert_eq!(m.apply("public"), "public", "only sensitive values are secrets");
    }

    #[test]
    fn control_characters_are_removed() {
        let m = Mask::default();
        assert_eq!(m.apply("red \u{1b}[31mtext\u{7} and\r line\nnext\tcol"), "red [31mtext and line\nnext\tcol");
    }
}
