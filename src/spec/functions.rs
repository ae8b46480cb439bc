//! The closed set of functions usable inside `${ ... }`.
//!
//! | function | result |
//! |---|---|
//! | `urlencode(s)` | `s` percent-encoded as a URL *component* (see [`urlencode`]) |
//! | `base64encode(s)` | standard base64 (with padding) of the UTF-8 bytes of `s` |
//! | `base64decode(s)` | the UTF-8 text whose standard base64 is `s` |
//! | `trimsuffix(s, suffix)` | `s` without `suffix` at its end (once), if present |
//! | `lower(s)` | `s` in lower case |
//! | `join(sep, list)` | the items of `list` joined with `sep` |
//! | `file(path)` | the text of a file, `path` relative to the spec's directory |
//! | `htpasswd(user, password)` | `user:<bcrypt hash of password>` (see [`htpasswd::verifies`]) |
//!
//! Every function propagates *unknown* (an unknown or redacted argument gives an
//! unknown result: the function cannot run before the value exists) and
//! *sensitivity* (a secret argument gives a secret result). Numbers and bools
//! are accepted where a string is expected and rendered as text.

use std::path::Path;

use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::diag::{Diagnostic, Pos, did_you_mean};
use crate::foundation::{htpasswd, trust};
use crate::value::Value;

/// The names and arities of the functions.
pub const FUNCTIONS: [(&str, usize); 8] = [
    ("urlencode", 1),
    ("base64encode", 1),
    ("base64decode", 1),
    ("trimsuffix", 2),
    ("lower", 1),
    ("join", 2),
    ("file", 1),
    ("htpasswd", 2),
];

/// The bcrypt cost used by `htpasswd`.
pub const HTPASSWD_COST: u32 = 10;

/// Checks that `name` is a function and takes `nargs` arguments.
pub fn check_call(name: &str, nargs: usize, pos: &Pos) -> Result<(), Diagnostic> {
    let Some((_, arity)) = FUNCTIONS.iter().find(|(n, _)| *n == name) else {
        let d = Diagnostic::error(Some(pos.clone()), format!("unknown function `{name}`"));
        return Err(match did_you_mean(name, FUNCTIONS.iter().map(|(n, _)| *n)) {
            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
            None => d.with_hint(format!(
                "the functions are {}",
                FUNCTIONS.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            )),
        });
    };
    if nargs != *arity {
        let plural = if *arity == 1 { "" } else { "s" };
        return Err(Diagnostic::error(
            Some(pos.clone()),
            format!("`{name}` takes {arity} argument{plural}, got {nargs}"),
        )
        .with_hint(format!("call it as `{}`", signature(name))));
    }
    Ok(())
}

fn signature(name: &str) -> &'static str {
    match name {
        "urlencode" => "urlencode(string)",
        "base64encode" => "base64encode(string)",
        "base64decode" => "base64decode(string)",
        "trimsuffix" => "trimsuffix(string, suffix)",
        "lower" => "lower(string)",
        "join" => "join(separator, list)",
        "file" => "file(path)",
        "htpasswd" => "htpasswd(user, password)",
        _ => "",
    }
}

/// Calls function `name` with evaluated `args`. `base_dir` is where `file()`
/// paths start; `pos` is the call's position, for errors.
pub fn call(name: &str, args: Vec<Value>, base_dir: &Path, pos: &Pos) -> Result<Value, Diagnostic> {
    check_call(name, args.len(), pos)?;
    // The clear text of an unknown or redacted value does not exist yet.
    if args.iter().any(|a| a.has_unknown() || has_redacted(a)) {
        return Ok(Value::Unknown);
    }
    let sensitive = args.iter().any(Value::has_sensitive);
    let err = |msg: String| Diagnostic::error(Some(pos.clone()), msg);
    let s = |i: usize| -> Result<String, Diagnostic> {
        args[i].to_template_string().filter(|_| !matches!(args[i].unmarked(), Value::Null)).ok_or_else(|| {
            err(format!("argument {} of `{name}` must be a string, got a {}", i + 1, args[i].type_name()))
        })
    };
    let out = match name {
        "urlencode" => Value::String(urlencode(&s(0)?)),
        "base64encode" => Value::String(base64::engine::general_purpose::STANDARD.encode(s(0)?)),
        "base64decode" => {
            let text = s(0)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| err(format!("`base64decode`: the argument is not valid base64 ({e})")))?;
            Value::String(
                String::from_utf8(bytes)
                    .map_err(|_| err("`base64decode`: the decoded bytes are not UTF-8 text".to_string()))?,
            )
        }
        "trimsuffix" => {
            let (a, b) = (s(0)?, s(1)?);
            Value::String(a.strip_suffix(b.as_str()).unwrap_or(&a).to_string())
        }
        "lower" => Value::String(s(0)?.to_lowercase()),
        "join" => {
            let sep = s(0)?;
            let Some(items) = args[1].as_list() else {
                return Err(err(format!("argument 2 of `join` must be a list, got a {}", args[1].type_name())));
            };
            let mut parts = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.to_template_string() {
                    Some(t) if !matches!(item, Value::List(_) | Value::Map(_)) => parts.push(t),
                    _ => {
                        return Err(err(format!(
                            "`join`: item {i} of the list is a {}, not a string",
                            item.type_name()
                        )));
                    }
                }
            }
            Value::String(parts.join(&sep))
        }
        "file" => {
            let rel = s(0)?;
            let path = base_dir.join(&rel);
            // Only regular files: a FIFO or a device such as `/dev/zero` would
            // block or never end.
            if !path.is_file() {
                let why = if path.exists() { "not a regular file" } else { "no such file" };
                return Err(err(format!("`file`: cannot read `{}`: {why}", path.display())));
            }
            // Inside the spec's directory only (symbolic links followed), unless the operator
            // allows more: a spec is untrusted input (foundation::trust).
            let path = trust::confine(base_dir, &path)
                .map_err(|e| err(format!("`file`: {e}")).with_hint(trust::OutsideRoot::hint()))?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| err(format!("`file`: cannot read `{}`: {e}", path.display())))?;
            Value::String(text)
        }
        "htpasswd" => {
            let (user, password) = (s(0)?, s(1)?);
            if user.contains(':') {
                return Err(err("`htpasswd`: the user name cannot contain `:`".into()));
            }
            // One line per user and password in a process: the plan and the
            // apply of one run see the same value (the apply checks that the
            // plan's known values did not change).
            if let Some(line) = htpasswd::made_for(&user, &password) {
                return Ok(Value::String(line).sensitive());
            }
            // The salt is derived from the user and password, so the same inputs
            // give the same line in every process: a plan saved by one process
            // and applied by another agrees, and state fingerprints stay stable.
            // bcrypt's cost still protects the password; only the per-hash
            // randomness is traded for reproducibility (a line made elsewhere
            // that verifies is kept by the Helm provider all the same).
            let salt = htpasswd::salt(&user, &password);
            let hash = bcrypt::non_truncating_hash_with_salt(password.as_bytes(), HTPASSWD_COST, salt)
                .map(|h| h.format_for_version(bcrypt::Version::TwoB))
                .map_err(|e| err(format!("`htpasswd`: cannot hash the password: {e}")))?;
            // Another evaluation may have made one meanwhile: the first one wins.
            let line = htpasswd::remember(&format!("{user}:{hash}"), &user, &password);
            // A password hash is always treated as a secret.
            return Ok(Value::String(line).sensitive());
        }
        _ => return Err(err(format!("unknown function `{name}`"))),
    };
    Ok(if sensitive { out.sensitive() } else { out })
}

fn has_redacted(v: &Value) -> bool {
    match v {
        Value::Redacted(_) => true,
        Value::Sensitive(i) => has_redacted(i),
        Value::List(l) => l.iter().any(has_redacted),
        Value::Map(m) => m.values().any(has_redacted),
        _ => false,
    }
}

/// The characters `urlencode` leaves as they are: ASCII letters, digits and
/// `-`, `_`, `.`, `~` (RFC 3986 "unreserved").
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes `s` as one URL component (a user name or password in a
/// connection URL, a query value): everything but RFC 3986 unreserved
/// characters is encoded, so `@` → `%40`, `/` → `%2F`, `:` → `%3A` and space →
/// `%20` (not `+`: the result is valid in a path or userinfo as well as in a
/// query, which Go's `QueryEscape` form encoding is not).
///
/// ```
/// assert_eq!(skyform::spec::functions::urlencode("a@b c/d"), "a%40b%20c%2Fd");
/// ```
pub fn urlencode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;

    fn pos() -> Pos {
        SourceFile::new("t.toml", "").pos(0)
    }

    fn f(name: &str, args: Vec<Value>) -> Result<Value, String> {
        call(name, args, Path::new("/nonexistent"), &pos()).map_err(|d| d.to_string())
    }

    #[test]
    fn string_functions() {
        assert_eq!(f("urlencode", vec!["p@ss w/rd:é~".into()]).unwrap(), Value::str("p%40ss%20w%2Frd%3A%C3%A9~"));
        assert_eq!(f("base64encode", vec!["hello".into()]).unwrap(), Value::str("aGVsbG8="));
        assert_eq!(f("base64decode", vec!["aGVsbG8=".into()]).unwrap(), Value::str("hello"));
        assert_eq!(f("trimsuffix", vec!["a.b.".into(), ".".into()]).unwrap(), Value::str("a.b"));
        assert_eq!(f("trimsuffix", vec!["ab".into(), "x".into()]).unwrap(), Value::str("ab"));
        assert_eq!(f("lower", vec!["AbC".into()]).unwrap(), Value::str("abc"));
        assert_eq!(f("lower", vec![Value::Int(3)]).unwrap(), Value::str("3"));
        let l = Value::List(vec!["a".into(), Value::Int(1), Value::Bool(true)]);
        assert_eq!(f("join", vec![",".into(), l]).unwrap(), Value::str("a,1,true"));
    }

    #[test]
    fn unknown_and_sensitive_propagate() {
        assert_eq!(f("lower", vec![Value::Unknown]).unwrap(), Value::Unknown);
        assert_eq!(f("lower", vec![Value::Redacted("h".into())]).unwrap(), Value::Unknown);
        let l = Value::List(vec!["a".into(), Value::Unknown]);
        assert_eq!(f("join", vec![",".into(), l]).unwrap(), Value::Unknown);
        let r = f("base64encode", vec![Value::str("pw").sensitive()]).unwrap();
        assert_eq!(r, Value::str("cHc=").sensitive());
        let l = Value::List(vec!["a".into(), Value::str("s").sensitive()]);
        assert_eq!(f("join", vec!["-".into(), l]).unwrap(), Value::str("a-s").sensitive());
    }

    #[test]
    fn errors() {
        assert_eq!(
            f("lowr", vec![]).unwrap_err(),
            "t.toml:1:1: error: unknown function `lowr`\n  hint: did you mean `lower`?"
        );
        assert_eq!(
            f("join", vec![",".into()]).unwrap_err(),
            "t.toml:1:1: error: `join` takes 2 arguments, got 1\n  hint: call it as `join(separator, list)`"
        );
        assert_eq!(
            f("lower", vec![Value::List(vec![])]).unwrap_err(),
            "t.toml:1:1: error: argument 1 of `lower` must be a string, got a list"
        );
        assert!(f("base64decode", vec!["***".into()]).unwrap_err().contains("not valid base64"));
        assert!(f("base64decode", vec!["/w==".into()]).unwrap_err().contains("not UTF-8"));
        assert!(f("join", vec![",".into(), "x".into()]).unwrap_err().contains("must be a list"));
        assert!(f("join", vec![",".into(), Value::List(vec![Value::List(vec![])])]).unwrap_err().contains("item 0"));
        let e = f("file", vec!["missing.txt".into()]).unwrap_err();
        assert!(e.contains("cannot read `/nonexistent/missing.txt`"), "{e}");
    }

    #[test]
    fn file_reads_relative_to_base_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("v.yaml"), "a: 1\n").unwrap();
        let v = call("file", vec!["v.yaml".into()], dir.path(), &pos()).unwrap();
        assert_eq!(v, Value::str("a: 1\n"));
    }

    #[test]
    fn htpasswd_is_sensitive_and_verifies() {
        let v = f("htpasswd", vec!["admin".into(), "s3cret".into()]).unwrap();
        assert!(v.is_sensitive());
        let line = v.as_str().unwrap().to_string();
        assert!(line.starts_with("admin:$2"), "{line}");
        assert!(htpasswd::verifies(&line, "admin", "s3cret"));
        assert!(!htpasswd::verifies(&line, "admin", "other"));
        assert!(!htpasswd::verifies(&line, "root", "s3cret"));
        assert!(!htpasswd::verifies("garbage", "admin", "s3cret"));
        let again = f("htpasswd", vec!["admin".into(), "s3cret".into()]).unwrap().unmarked();
        let other = f("htpasswd", vec!["admin".into(), "changed".into()]).unwrap().unmarked();
        assert!(htpasswd::equivalent(again.as_str().unwrap(), &line));
        assert!(!htpasswd::equivalent(other.as_str().unwrap(), &line));
        // Not only within this process: any process makes the same line.
        let salt = htpasswd::salt("admin", "s3cret");
        let direct = bcrypt::non_truncating_hash_with_salt("s3cret", HTPASSWD_COST, salt)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB);
        assert_eq!(line, format!("admin:{direct}"));
        assert!(f("htpasswd", vec!["a:b".into(), "x".into()]).unwrap_err().contains("cannot contain `:`"));
    }
}
