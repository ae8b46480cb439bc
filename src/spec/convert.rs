//! TOML values (with byte spans) → [`Expr`]s (with file positions).
//!
//! Strings are parsed for interpolations ([`super::expr`]). To point at the
//! exact character of an error inside a string, each byte of the *decoded*
//! string is mapped back to its byte in the TOML source, which differs when the
//! string has escapes (`\"`, `\u00e9`) or is a multi-line string.

use std::collections::BTreeMap;

use toml::Spanned as TSpanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostic, Pos, SourceFile};
use crate::value::Value;

use super::expr::parse_string;
use super::model::{Expr, Spanned};

/// Converts one TOML value into an expression, pushing diagnostics for bad
/// strings. The position of the result is `pos` (the key's position for a
/// table entry, the value's own position otherwise).
pub(crate) fn to_expr(
    src: &SourceFile,
    v: &TSpanned<DeValue<'_>>,
    pos: Pos,
    errors: &mut Vec<Diagnostic>,
) -> Spanned<Expr> {
    let node = match v.get_ref() {
        DeValue::String(s) => {
            let span = v.span();
            string_expr(src, s, span.start, span.end, errors)
        }
        DeValue::Array(items) => {
            Expr::List(items.iter().map(|i| to_expr(src, i, src.pos(i.span().start), errors)).collect())
        }
        DeValue::Table(t) => Expr::Map(table_exprs(src, t, errors)),
        other => match scalar(other) {
            Ok(v) => Expr::Literal(v),
            Err(msg) => {
                errors.push(Diagnostic::error(Some(src.pos(v.span().start)), msg));
                Expr::Literal(Value::Null)
            }
        },
    };
    Spanned { node, pos }
}

/// Converts each entry of a table; an entry's position is its key's.
pub(crate) fn table_exprs(
    src: &SourceFile,
    t: &DeTable<'_>,
    errors: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Spanned<Expr>> {
    t.iter()
        .map(|(k, v)| {
            let e = to_expr(src, v, src.pos(k.span().start), errors);
            (k.get_ref().to_string(), e)
        })
        .collect()
}

/// A TOML value converted without interpolation (variable defaults, var files).
pub(crate) fn plain_value(v: &DeValue<'_>) -> Result<Value, String> {
    match v {
        DeValue::String(s) => Ok(Value::String(s.to_string())),
        DeValue::Array(items) => {
            items.iter().map(|i| plain_value(i.get_ref())).collect::<Result<_, _>>().map(Value::List)
        }
        DeValue::Table(t) => t
            .iter()
            .map(|(k, v)| Ok((k.get_ref().to_string(), plain_value(v.get_ref())?)))
            .collect::<Result<_, _>>()
            .map(Value::Map),
        other => scalar(other),
    }
}

/// Numbers, bools and datetimes (as strings).
fn scalar(v: &DeValue<'_>) -> Result<Value, String> {
    match v {
        DeValue::Boolean(b) => Ok(Value::Bool(*b)),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map(Value::Int)
            .map_err(|_| format!("integer `{i}` is out of range (a 64-bit signed integer)")),
        DeValue::Float(f) => {
            let t = f.as_str();
            match t.trim_start_matches(['+', '-']) {
                "inf" | "nan" => Err(format!("`{t}` is not supported: numbers must be finite")),
                _ => t.parse::<f64>().map(Value::Float).map_err(|_| format!("`{t}` is not a valid number")),
            }
        }
        DeValue::Datetime(d) => Ok(Value::String(d.to_string())),
        DeValue::String(s) => Ok(Value::String(s.to_string())),
        DeValue::Array(_) | DeValue::Table(_) => Err("expected a scalar".into()),
    }
}

/// Parses the decoded string `s`, whose TOML source is `src.text[start..end]`.
pub(crate) fn string_expr(src: &SourceFile, s: &str, start: usize, end: usize, errors: &mut Vec<Diagnostic>) -> Expr {
    if !s.contains("${") {
        return Expr::Literal(Value::String(s.to_string()));
    }
    let raw = src.text.get(start..end).unwrap_or("");
    let map = decoded_offsets(raw, s);
    let pos_at = |i: usize| match &map {
        Some(m) => src.pos(start + m.get(i).copied().unwrap_or(0)),
        None => src.pos(start),
    };
    match parse_string(s, &pos_at) {
        Ok(e) => e,
        Err(ds) => {
            errors.extend(ds);
            Expr::Literal(Value::String(s.to_string()))
        }
    }
}

/// For each byte offset of `decoded` (and one past the end), the byte offset in
/// `raw` (the TOML string token, quotes included) it came from. `None` when the
/// token is not understood (then positions fall back to the token's start).
pub(crate) fn decoded_offsets(raw: &str, decoded: &str) -> Option<Vec<usize>> {
    let (body_start, literal, multiline) = if raw.starts_with("\"\"\"") {
        (3, false, true)
    } else if raw.starts_with("'''") {
        (3, true, true)
    } else if raw.starts_with('"') {
        (1, false, false)
    } else if raw.starts_with('\'') {
        (1, true, false)
    } else {
        return None;
    };
    let mut i = body_start;
    if multiline {
        if raw[i..].starts_with("\r\n") {
            i += 2;
        } else if raw[i..].starts_with('\n') {
            i += 1;
        }
    }
    let body_end = raw.len().checked_sub(body_start)?;
    if body_end < i {
        return None;
    }
    let mut out_text = String::new();
    let mut map = Vec::with_capacity(decoded.len() + 1);
    let push = |c: char, at: usize, out_text: &mut String, map: &mut Vec<usize>| {
        out_text.push(c);
        for _ in 0..c.len_utf8() {
            map.push(at);
        }
    };
    while i < body_end {
        let c = raw[i..].chars().next()?;
        if literal || c != '\\' {
            push(c, i, &mut out_text, &mut map);
            i += c.len_utf8();
            continue;
        }
        let at = i;
        let e = raw[i + 1..].chars().next()?;
        i += 1 + e.len_utf8();
        let ch = match e {
            'b' => '\u{8}',
            't' => '\t',
            'n' => '\n',
            'f' => '\u{c}',
            'r' => '\r',
            'e' => '\u{1b}',
            '"' => '"',
            '\\' => '\\',
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex = raw.get(i..i + n)?;
                i += n;
                char::from_u32(u32::from_str_radix(hex, 16).ok()?)?
            }
            c if multiline && c.is_whitespace() => {
                // Line-ending backslash: skip all whitespace and newlines.
                while let Some(w) = raw[i..].chars().next() {
                    if i < body_end && w.is_whitespace() {
                        i += w.len_utf8();
                    } else {
                        break;
                    }
                }
                continue;
            }
            _ => return None,
        };
        push(ch, at, &mut out_text, &mut map);
    }
    map.push(body_end);
    (out_text == decoded).then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_escapes() {
        let m = decoded_offsets(r#""a\"b${""#, "a\"b${").unwrap();
        assert_eq!(m, vec![1, 2, 4, 5, 6, 7]);
        let m = decoded_offsets("'a${'", "a${").unwrap();
        assert_eq!(m, vec![1, 2, 3, 4]);
        let m = decoded_offsets("\"\\u00e9x\"", "éx").unwrap();
        assert_eq!(m, vec![1, 1, 7, 8]);
        let m = decoded_offsets("\"\"\"\nab \\\n   c\"\"\"", "ab c").unwrap();
        assert_eq!(m, vec![4, 5, 6, 12, 13]);
        assert!(decoded_offsets("\"x\"", "y").is_none());
        assert!(decoded_offsets("", "y").is_none());
        let _ = decoded_offsets("\"\\", "");
    }

    #[test]
    fn interpolation_error_points_into_the_line() {
        let text = "x = \"a\\\"b ${var.}\"\n";
        let f = SourceFile::new("t.toml", text);
        let mut errs = vec![];
        let s = "a\"b ${var.}";
        let _ = string_expr(&f, s, 4, text.len() - 1, &mut errs);
        assert_eq!(errs.len(), 1);
        let p = errs[0].pos.clone().unwrap();
        assert_eq!((p.line, p.col), (1, 17), "{}", errs[0]);
    }
}
