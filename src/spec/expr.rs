//! The interpolation language inside spec strings.
//!
//! A string containing `${` is a template: literal text and interpolations.
//! `$${` is an escape for a literal `${`. Inside `${ ... }` there is exactly one
//! *operand*:
//!
//! ```text
//! operand   = call | reference | string | number
//! call      = ident "(" [ operand { "," operand } [ "," ] ] ")"
//! reference = "var" "." ident
//!           | "local" "." ident { segment }
//!           | "each" "." ( "key" | "value" { segment } )
//!           | "count" "." "index"
//!           | "module" "." ident [ key ] "." ident { segment }
//!           | "data" "." ident "." ident [ key ] { segment }
//!           | ident "." ident [ key ] { segment }
//! key       = "[" ( digits | string ) "]"          (an instance of count / for_each)
//! segment   = "." ( ident | digits ) | "[" ( digits | string ) "]"
//! string    = '"' { char | '\"' | '\\' | '\n' | '\t' | '\r' } '"'
//! number    = [ "-" ] digits [ "." digits ] [ ( "e" | "E" ) [ "+" | "-" ] digits ]
//! ident     = ( letter | "_" ) { letter | digit | "_" | "-" }
//! ```
//!
//! Whitespace is allowed around tokens. Errors carry the position of the `${`
//! (for unterminated or empty interpolations) or of the offending character.
//! One bad interpolation does not hide the others: the parser skips to the next
//! `}` and goes on, so every error in a string is reported at once.

use crate::address::{Address, InstanceKey};
use crate::diag::{Diagnostic, Pos};
use crate::value::Value;

use super::model::{Expr, Operand, Reference, Spanned, TemplatePart};

/// One segment of a reference: `.name`, `[0]` or `["key"]`.
enum Seg {
    Name(String),
    Index(String),
    Key(String),
}

impl Seg {
    fn text(&self) -> String {
        match self {
            Seg::Name(s) | Seg::Index(s) | Seg::Key(s) => s.clone(),
        }
    }
}

/// Maps a byte offset in the decoded string to a position in the spec file.
pub type PosAt<'a> = &'a dyn Fn(usize) -> Pos;

/// Parses the decoded text of a spec string.
///
/// Returns [`Expr::Literal`] (a string, with `$${` unescaped) when the text has
/// no interpolation, and [`Expr::Template`] otherwise. `pos_at` maps byte
/// offsets of `text` to file positions.
///
/// ```
/// use skyform::spec::expr::parse_string;
/// use skyform::spec::model::{Expr, TemplatePart};
/// use skyform::diag::SourceFile;
/// let f = SourceFile::new("x.toml", "");
/// let e = parse_string("id-${var.project}", &|i| f.pos(i)).unwrap();
/// assert!(matches!(e, Expr::Template(ref parts) if parts.len() == 2));
/// ```
pub fn parse_string(text: &str, pos_at: PosAt<'_>) -> Result<Expr, Vec<Diagnostic>> {
    let mut parts: Vec<TemplatePart> = Vec::new();
    let mut errors = Vec::new();
    let mut lit = String::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with("$${") {
            lit.push_str("${");
            i += 3;
        } else if text[i..].starts_with("${") {
            if !lit.is_empty() {
                parts.push(TemplatePart::Text(std::mem::take(&mut lit)));
            }
            let mut p = Parser { text, i: i + 2, pos_at, open: i };
            match p.interpolation() {
                Ok(op) => {
                    parts.push(TemplatePart::Interp(op));
                    i = p.i;
                }
                Err(d) => {
                    errors.push(d);
                    // Recover: skip past the next `}` (or to the end).
                    i = match text[p.i.min(text.len())..].find('}') {
                        Some(off) => p.i + off + 1,
                        None => text.len(),
                    };
                }
            }
        } else {
            // Copy one whole character.
            let ch_len = utf8_len(bytes[i]);
            let end = (i + ch_len).min(text.len());
            lit.push_str(&text[i..end]);
            i = end;
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if parts.is_empty() {
        return Ok(Expr::Literal(Value::String(lit)));
    }
    if !lit.is_empty() {
        parts.push(TemplatePart::Text(lit));
    }
    Ok(Expr::Template(parts))
}

fn utf8_len(b: u8) -> usize {
    match b {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

const REF_HINT: &str = "references look like `var.<name>`, `<type>.<name>.<attr>` or `data.<type>.<name>.<attr>`";

struct Parser<'t, 'p> {
    text: &'t str,
    i: usize,
    pos_at: PosAt<'p>,
    /// Offset of the `${` being parsed.
    open: usize,
}

impl Parser<'_, '_> {
    fn pos(&self, at: usize) -> Pos {
        (self.pos_at)(at)
    }

    fn err(&self, at: usize, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::error(Some(self.pos(at)), msg)
    }

    fn peek(&self) -> Option<char> {
        self.text.get(self.i..).and_then(|s| s.chars().next())
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.i += c.len_utf8();
            } else {
                break;
            }
        }
    }

    fn unterminated(&self) -> Diagnostic {
        self.err(self.open, "unterminated interpolation: `${` has no closing `}`")
            .with_hint("close it with `}`, or write `$${` for a literal `${`")
    }

    fn unexpected(&self, what: &str) -> Diagnostic {
        match self.peek() {
            None => self.unterminated(),
            Some(c) => self.err(self.i, format!("unexpected `{c}` in interpolation: expected {what}")),
        }
    }

    /// After `${`: operand then `}`.
    fn interpolation(&mut self) -> Result<Spanned<Operand>, Diagnostic> {
        self.skip_ws();
        match self.peek() {
            None => return Err(self.unterminated()),
            Some('}') => {
                // Leave `}` for the caller's recovery to skip.
                return Err(self
                    .err(self.open, "empty interpolation `${}`")
                    .with_hint("put a reference inside, e.g. `${var.name}`, or write `$${}` for a literal `${}`"));
            }
            _ => {}
        }
        let op = self.operand()?;
        self.skip_ws();
        match self.peek() {
            Some('}') => {
                self.i += 1;
                Ok(op)
            }
            None => Err(self.unterminated()),
            Some(c) => {
                let open = self.pos(self.open);
                Err(self.err(self.i, format!("unexpected `{c}` in interpolation: expected `}}`")).with_hint(format!(
                    "the interpolation started at {}:{} holds exactly one reference, function call or literal",
                    open.line, open.col
                )))
            }
        }
    }

    fn operand(&mut self) -> Result<Spanned<Operand>, Diagnostic> {
        self.skip_ws();
        let start = self.i;
        let pos = self.pos(start);
        let node = match self.peek() {
            None => return Err(self.unterminated()),
            Some('"') => Operand::Str(self.string()?),
            Some(c) if c.is_ascii_digit() || c == '-' => Operand::Number(self.number()?),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let first = self.ident();
                let after_ident = self.i;
                self.skip_ws();
                if self.peek() == Some('(') {
                    self.i += 1;
                    let args = self.args()?;
                    Operand::Call(first, args)
                } else {
                    self.i = after_ident;
                    Operand::Ref(self.reference(first, start)?)
                }
            }
            Some(_) => {
                return Err(self.unexpected("a reference, function call, string or number").with_hint(REF_HINT));
            }
        };
        Ok(Spanned { node, pos })
    }

    fn args(&mut self) -> Result<Vec<Spanned<Operand>>, Diagnostic> {
        let mut args = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(')') {
                self.i += 1;
                return Ok(args);
            }
            args.push(self.operand()?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.i += 1,
                Some(')') => {
                    self.i += 1;
                    return Ok(args);
                }
                _ => return Err(self.unexpected("`,` or `)`")),
            }
        }
    }

    fn ident(&mut self) -> String {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                self.i += 1;
            } else {
                break;
            }
        }
        self.text[start..self.i].to_string()
    }

    fn digits(&mut self) -> &str {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        &self.text[start..self.i]
    }

    /// A path segment after `.`: an identifier or a list index.
    fn dot_segment(&mut self, after: &str) -> Result<String, Diagnostic> {
        match self.peek() {
            Some(c) if c.is_ascii_digit() => Ok(self.digits().to_string()),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => Ok(self.ident()),
            _ => Err(self.unexpected(&format!("a name or index after `{after}.`"))),
        }
    }

    /// A `[N]` or `["key"]` segment (the `[` already consumed).
    fn bracket_segment(&mut self) -> Result<Seg, Diagnostic> {
        self.skip_ws();
        let seg = match self.peek() {
            Some(c) if c.is_ascii_digit() => Seg::Index(self.digits().to_string()),
            Some('"') => Seg::Key(self.string()?),
            _ => return Err(self.unexpected("a list index or a quoted key inside `[...]`")),
        };
        self.skip_ws();
        if self.peek() != Some(']') {
            return Err(self.unexpected("`]`"));
        }
        self.i += 1;
        Ok(seg)
    }

    fn reference(&mut self, first: String, start: usize) -> Result<Reference, Diagnostic> {
        let mut segs = vec![Seg::Name(first)];
        loop {
            match self.peek() {
                Some('.') => {
                    self.i += 1;
                    let prev = self.text[start..self.i - 1].to_string();
                    segs.push(Seg::Name(self.dot_segment(&prev)?));
                }
                Some('[') => {
                    self.i += 1;
                    segs.push(self.bracket_segment()?);
                }
                _ => break,
            }
        }
        let text = self.text[start..self.i].to_string();
        let ident_at =
            |k: usize| -> bool { matches!(segs.get(k), Some(Seg::Name(s)) if crate::address::is_identifier(s)) };
        let name_at = |k: usize| -> String { segs.get(k).map(Seg::text).unwrap_or_default() };
        let path_from = |k: usize| -> Vec<String> { segs.iter().skip(k).map(Seg::text).collect() };
        // An instance key right after a name: `[0]` or `["key"]`.
        let key_at = |k: usize| -> Option<InstanceKey> {
            match segs.get(k) {
                Some(Seg::Index(d)) => d.parse().ok().map(InstanceKey::Int),
                Some(Seg::Key(s)) => Some(InstanceKey::Str(s.clone())),
                _ => None,
            }
        };
        match name_at(0).as_str() {
            "var" => {
                if segs.len() < 2 || !ident_at(1) {
                    return Err(self
                        .err(start, format!("`{text}` is not a variable reference"))
                        .with_hint("write `var.<name>`"));
                }
                if segs.len() > 2 {
                    return Err(self
                        .err(start, format!("`{text}`: a variable reference cannot have a path"))
                        .with_hint(format!(
                            "refer to the whole variable with `var.{}`; indexing into variables is not supported",
                            name_at(1)
                        )));
                }
                Ok(Reference::Var(name_at(1)))
            }
            "local" => {
                if segs.len() < 2 || !ident_at(1) {
                    return Err(self
                        .err(start, format!("`{text}` is not a local value reference"))
                        .with_hint("write `local.<name>`, for a name in `[locals]`"));
                }
                Ok(Reference::Local(name_at(1), path_from(2)))
            }
            "each" => match name_at(1).as_str() {
                "key" if segs.len() == 2 => Ok(Reference::Each { key: true, path: Vec::new() }),
                "value" => Ok(Reference::Each { key: false, path: path_from(2) }),
                _ => Err(self
                    .err(start, format!("`{text}` is not `each.key` or `each.value`"))
                    .with_hint("in a block with `for_each`, use `${each.key}` and `${each.value}`")),
            },
            "count" => {
                if segs.len() == 2 && name_at(1) == "index" {
                    Ok(Reference::CountIndex)
                } else {
                    Err(self
                        .err(start, format!("`{text}` is not `count.index`"))
                        .with_hint("in a block with `count`, use `${count.index}`"))
                }
            }
            "module" => {
                let key = key_at(2);
                let out = if key.is_some() { 3 } else { 2 };
                if !ident_at(1) || !ident_at(out) {
                    return Err(self
                        .err(start, format!("`{text}` is not a module output reference"))
                        .with_hint("write `module.<name>.<output>` (or `module.<name>[<key>].<output>`)"));
                }
                Ok(Reference::Module { name: name_at(1), key, output: name_at(out), path: path_from(out + 1) })
            }
            "data" => {
                if segs.len() < 3 || !ident_at(1) || !ident_at(2) {
                    return Err(self
                        .err(start, format!("`{text}` is not a data source reference"))
                        .with_hint("write `data.<type>.<name>.<attr>`"));
                }
                let key = key_at(3);
                let rest = if key.is_some() { 4 } else { 3 };
                Ok(Reference::Resource {
                    address: Address::data(name_at(1), name_at(2)).with_key(key),
                    path: path_from(rest),
                })
            }
            _ => {
                if segs.len() < 2 || !ident_at(0) || !ident_at(1) {
                    return Err(self.err(start, format!("`{text}` is not a reference")).with_hint(REF_HINT));
                }
                let key = key_at(2);
                let rest = if key.is_some() { 3 } else { 2 };
                Ok(Reference::Resource {
                    address: Address::managed(name_at(0), name_at(1)).with_key(key),
                    path: path_from(rest),
                })
            }
        }
    }

    /// A double-quoted string literal; `self.i` is at the `"`.
    fn string(&mut self) -> Result<String, Diagnostic> {
        let open = self.i;
        self.i += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self
                    .err(open, "unterminated string literal in interpolation")
                    .with_hint("close it with `\"`"));
            };
            self.i += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self
                            .err(open, "unterminated string literal in interpolation")
                            .with_hint("close it with `\"`"));
                    };
                    let at = self.i - 1;
                    self.i += e.len_utf8();
                    out.push(match e {
                        '"' => '"',
                        '\\' => '\\',
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => {
                            return Err(self
                                .err(at, format!("unknown escape `\\{other}` in string literal"))
                                .with_hint("the escapes are `\\\"`, `\\\\`, `\\n`, `\\t` and `\\r`"));
                        }
                    });
                }
                c => out.push(c),
            }
        }
    }

    fn number(&mut self) -> Result<f64, Diagnostic> {
        let start = self.i;
        if self.peek() == Some('-') {
            self.i += 1;
        }
        if self.digits().is_empty() {
            return Err(self.unexpected("a digit"));
        }
        if self.peek() == Some('.') {
            self.i += 1;
            if self.digits().is_empty() {
                return Err(self.unexpected("a digit after `.`"));
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.i += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.i += 1;
            }
            if self.digits().is_empty() {
                return Err(self.unexpected("a digit in the exponent"));
            }
        }
        let text = &self.text[start..self.i];
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(f),
            _ => Err(self.err(start, format!("`{text}` is not a valid number"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;

    fn parse(s: &str) -> Result<Expr, Vec<Diagnostic>> {
        let f = SourceFile::new("t.toml", s.to_string());
        parse_string(s, &|i| f.pos(i))
    }

    fn errs(s: &str) -> Vec<String> {
        parse(s).unwrap_err().iter().map(|d| d.to_string()).collect()
    }

    fn single(s: &str) -> Operand {
        match parse(s).unwrap() {
            Expr::Template(mut p) if p.len() == 1 => match p.remove(0) {
                TemplatePart::Interp(op) => op.node,
                t => panic!("{t:?}"),
            },
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn plain_and_escaped_strings_are_literals() {
        assert_eq!(parse("abc").unwrap(), Expr::Literal(Value::str("abc")));
        assert_eq!(parse("a$${b}").unwrap(), Expr::Literal(Value::str("a${b}")));
        assert_eq!(parse("$ {x} $").unwrap(), Expr::Literal(Value::str("$ {x} $")));
        assert_eq!(parse("é$${").unwrap(), Expr::Literal(Value::str("é${")));
    }

    #[test]
    fn references() {
        assert_eq!(single("${var.project}"), Operand::Ref(Reference::Var("project".into())));
        assert_eq!(
            single("${ gcp_sa.main.email }"),
            Operand::Ref(Reference::Resource {
                address: Address::managed("gcp_sa", "main"),
                path: vec!["email".into()]
            })
        );
        assert_eq!(
            single("${data.gke.c.endpoints.0.host}"),
            Operand::Ref(Reference::Resource {
                address: Address::data("gke", "c"),
                path: vec!["endpoints".into(), "0".into(), "host".into()]
            })
        );
        assert_eq!(
            single("${k.m.status[1][\"a.b\"]}"),
            Operand::Ref(Reference::Resource {
                address: Address::managed("k", "m"),
                path: vec!["status".into(), "1".into(), "a.b".into()]
            })
        );
        assert_eq!(
            single("${x.y}"),
            Operand::Ref(Reference::Resource { address: Address::managed("x", "y"), path: vec![] })
        );
    }

    #[test]
    fn calls_strings_numbers() {
        let op = single(r#"${join(",", var.l)}"#);
        let Operand::Call(name, args) = op else { panic!() };
        assert_eq!(name, "join");
        assert_eq!(args[0].node, Operand::Str(",".into()));
        assert_eq!(args[1].node, Operand::Ref(Reference::Var("l".into())));
        assert_eq!(args[1].pos.col, 13);
        assert_eq!(single("${f()}"), Operand::Call("f".into(), vec![]));
        assert_eq!(single("${-1.5e2}"), Operand::Number(-150.0));
        assert_eq!(single(r#"${"a\"}b"}"#), Operand::Str("a\"}b".into()));
        let Operand::Call(_, a) = single("${lower(trimsuffix(var.a, \".\"),)}") else { panic!() };
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn template_parts() {
        let Expr::Template(p) = parse("a ${var.x} b ${var.y}").unwrap() else { panic!() };
        assert_eq!(p.len(), 4);
        assert_eq!(p[0], TemplatePart::Text("a ".into()));
        assert_eq!(
            p[3],
            TemplatePart::Interp(Spanned {
                node: Operand::Ref(Reference::Var("y".into())),
                pos: SourceFile::new("t.toml", "").pos(0).clone_with_col(16),
            })
        );
    }

    trait ColExt {
        fn clone_with_col(&self, c: u32) -> Pos;
    }
    impl ColExt for Pos {
        fn clone_with_col(&self, c: u32) -> Pos {
            Pos { col: c, ..self.clone() }
        }
    }

    #[test]
    fn errors_are_positioned() {
        assert_eq!(
            errs("ab ${var.x"),
            [
                "t.toml:1:4: error: unterminated interpolation: `${` has no closing `}`\n  hint: close it with `}`, or write `$${` for a literal `${`"
            ]
        );
        assert_eq!(
            errs("${}")[0],
            "t.toml:1:1: error: empty interpolation `${}`\n  hint: put a reference inside, e.g. `${var.name}`, or write `$${}` for a literal `${}`"
        );
        assert_eq!(
            errs("${ var.x + 1 }")[0],
            "t.toml:1:10: error: unexpected `+` in interpolation: expected `}`\n  hint: the interpolation started at 1:1 holds exactly one reference, function call or literal"
        );
        assert_eq!(errs("${foo}")[0], format!("t.toml:1:3: error: `foo` is not a reference\n  hint: {REF_HINT}"));
        assert_eq!(
            errs("${var.}")[0],
            "t.toml:1:7: error: unexpected `}` in interpolation: expected a name or index after `var.`"
        );
        assert_eq!(
            errs("${var.a.b}")[0],
            "t.toml:1:3: error: `var.a.b`: a variable reference cannot have a path\n  hint: refer to the whole variable with `var.a`; indexing into variables is not supported"
        );
        assert_eq!(
            errs("${data.x}")[0],
            "t.toml:1:3: error: `data.x` is not a data source reference\n  hint: write `data.<type>.<name>.<attr>`"
        );
        assert_eq!(
            errs("${f(\"ab)}")[0],
            "t.toml:1:5: error: unterminated string literal in interpolation\n  hint: close it with `\"`"
        );
        assert_eq!(errs("${f(a.b c)}")[0], "t.toml:1:9: error: unexpected `c` in interpolation: expected `,` or `)`");
        assert_eq!(
            errs("${\"\\q\"}")[0],
            "t.toml:1:4: error: unknown escape `\\q` in string literal\n  hint: the escapes are `\\\"`, `\\\\`, `\\n`, `\\t` and `\\r`"
        );
        assert!(errs("${ @ }")[0].starts_with("t.toml:1:4: error: unexpected `@`"));
    }

    #[test]
    fn all_errors_in_one_string_are_reported() {
        assert_eq!(errs("${} and ${ foo } and ${var.ok} ${").len(), 3);
    }

    #[test]
    fn multibyte_text_never_panics() {
        for s in ["é${", "${é}", "${var.é}", "${\"é", "€${var.x}€", "${1.}", "${-}", "${x.1}", "${a(}"] {
            let _ = parse(s);
        }
    }
}
