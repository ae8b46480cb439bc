//! Resource addresses: `gcp_service_account.sql_access`, `data.gcp_project.this`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Managed resource or data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// `[resource.<type>.<name>]`.
    Managed,
    /// `[data.<type>.<name>]`.
    Data,
}

/// The key of one instance of a repeated block: `[0]` (`count`) or
/// `["key"]` (`for_each`). A closed type, compared and ordered as data.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InstanceKey {
    /// `count`: `[0]`, `[1]`...
    Int(i64),
    /// `for_each`: `["roles/cloudsql.client"]`.
    Str(String),
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceKey::Int(i) => write!(f, "[{i}]"),
            InstanceKey::Str(s) => write!(f, "[{}]", quote(s)),
        }
    }
}

impl InstanceKey {
    /// The key as a value (`each.key`, `count.index`).
    pub fn to_value(&self) -> crate::value::Value {
        match self {
            InstanceKey::Int(i) => crate::value::Value::Int(*i),
            InstanceKey::Str(s) => crate::value::Value::str(s),
        }
    }
}

/// A double-quoted string with `"` and `\` escaped (as in references).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One step of a module path: `module.<name>` with its instance key, if any.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleStep {
    /// The module block's name.
    pub name: String,
    /// Its instance key (a module with `count` or `for_each`).
    pub key: Option<InstanceKey>,
}

impl fmt::Display for ModuleStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "module.{}", self.name)?;
        if let Some(k) = &self.key {
            write!(f, "{k}")?;
        }
        Ok(())
    }
}

/// The address of a resource or data source, or of one instance of it:
/// `test_object.replica[0]`, `module.team["ml"].helm_release.skypilot`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// Managed or data.
    pub mode: Mode,
    /// The module instances it lives in, outermost first (empty: the root).
    pub module: Vec<ModuleStep>,
    /// Its type, e.g. `gcp_service_account`.
    pub type_name: String,
    /// Its name, e.g. `sql_access`.
    pub name: String,
    /// Its instance key, when its block has `count` or `for_each`.
    pub key: Option<InstanceKey>,
}

impl Address {
    /// A managed resource address.
    pub fn managed(type_name: impl Into<String>, name: impl Into<String>) -> Self {
        Address { mode: Mode::Managed, module: Vec::new(), type_name: type_name.into(), name: name.into(), key: None }
    }
    /// A data source address.
    pub fn data(type_name: impl Into<String>, name: impl Into<String>) -> Self {
        Address { mode: Mode::Data, module: Vec::new(), type_name: type_name.into(), name: name.into(), key: None }
    }
    /// This address with instance key `key`.
    pub fn with_key(mut self, key: Option<InstanceKey>) -> Self {
        self.key = key;
        self
    }
    /// This address inside the module instance `path` (prepended).
    pub fn in_module(mut self, path: &[ModuleStep]) -> Self {
        let mut m = path.to_vec();
        m.extend(self.module);
        self.module = m;
        self
    }
    /// The block this is an instance of: the same address without any key.
    pub fn config(&self) -> Address {
        Address {
            mode: self.mode,
            module: self.module.iter().map(|m| ModuleStep { name: m.name.clone(), key: None }).collect(),
            type_name: self.type_name.clone(),
            name: self.name.clone(),
            key: None,
        }
    }
    /// Whether this address lies under the module path `prefix` (a step
    /// without a key matches every instance of that module).
    pub fn is_under(&self, prefix: &[ModuleStep]) -> bool {
        prefix.len() <= self.module.len()
            && prefix.iter().zip(&self.module).all(|(p, m)| p.name == m.name && (p.key.is_none() || p.key == m.key))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.module {
            write!(f, "{m}.")?;
        }
        if self.mode == Mode::Data {
            write!(f, "data.")?;
        }
        write!(f, "{}.{}", self.type_name, self.name)?;
        if let Some(k) = &self.key {
            write!(f, "{k}")?;
        }
        Ok(())
    }
}

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a resource address (expected `<type>.<name>`, `data.<type>.<name>`, with an optional \
     instance key `[0]` or `[\"key\"]` and `module.<name>[<key>].` steps before it)"
)]
pub struct BadAddress(pub String);

/// One token of an address: a name, or a bracketed key.
#[derive(Debug, PartialEq)]
enum Tok {
    Name(String),
    Key(InstanceKey),
}

fn tokens(s: &str) -> Option<Vec<Tok>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut expect_name = true;
    while i < b.len() {
        match b[i] {
            b'.' if !expect_name => {
                i += 1;
                expect_name = true;
            }
            b'[' if !expect_name => {
                let (key, next) = bracket(s, i + 1)?;
                out.push(Tok::Key(key));
                i = next;
            }
            _ if expect_name => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-') {
                    i += 1;
                }
                let name = &s[start..i];
                if !is_identifier(name) {
                    return None;
                }
                out.push(Tok::Name(name.to_string()));
                expect_name = false;
            }
            _ => return None,
        }
    }
    (!expect_name).then_some(out)
}

/// A key after `[`: digits or a quoted string, then `]`. Returns the index after `]`.
fn bracket(s: &str, mut i: usize) -> Option<(InstanceKey, usize)> {
    let b = s.as_bytes();
    if b.get(i) == Some(&b'"') {
        i += 1;
        let mut out = String::new();
        let mut chars = s[i..].char_indices();
        loop {
            let (off, c) = chars.next()?;
            match c {
                '"' => {
                    let end = i + off + 1;
                    return (b.get(end) == Some(&b']')).then_some((InstanceKey::Str(out), end + 1));
                }
                '\\' => {
                    let (_, e) = chars.next()?;
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
    }
    let start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let n: i64 = s.get(start..i)?.parse().ok()?;
    (b.get(i) == Some(&b']')).then_some((InstanceKey::Int(n), i + 1))
}

/// Parses module steps (`module.<name>[<key>]`...) from the front of `toks`.
fn module_steps(toks: &mut std::iter::Peekable<std::vec::IntoIter<Tok>>) -> Option<Vec<ModuleStep>> {
    let mut steps = Vec::new();
    while toks.peek() == Some(&Tok::Name("module".into())) {
        toks.next();
        let Some(Tok::Name(name)) = toks.next() else {
            return None;
        };
        let key = match toks.peek() {
            Some(Tok::Key(_)) => match toks.next() {
                Some(Tok::Key(k)) => Some(k),
                _ => None,
            },
            _ => None,
        };
        steps.push(ModuleStep { name, key });
    }
    Some(steps)
}

/// Parses a module address (`module.a`, `module.a["x"].module.b`): the steps.
fn parse_module_path(s: &str) -> Option<Vec<ModuleStep>> {
    let mut toks = tokens(s)?.into_iter().peekable();
    let steps = module_steps(&mut toks)?;
    (toks.next().is_none() && !steps.is_empty()).then_some(steps)
}

/// What a person names when they mean "this and what is in it": a resource (every instance of
/// it when written without a key), one instance, or a module path (everything under it; a step
/// without a key means every instance of that module). `[[moved]]` and `[[removed]]` endpoints,
/// `--target`, `--replace` and `--exclude`, and `state list`/`state rm` take one; it is parsed
/// here, once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// A resource or data source, or one instance of it.
    Resource(Address),
    /// A module instance, or every instance of a module.
    Module(Vec<ModuleStep>),
}

/// Why a string names neither a resource nor a module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a resource, instance or module address")]
pub struct BadTarget(pub String);

impl Target {
    /// Whether the instance `a` is named by this target.
    pub fn matches(&self, a: &Address) -> bool {
        match self {
            Target::Resource(f) => {
                a == f
                    || (f.key.is_none()
                        && a.mode == f.mode
                        && a.type_name == f.type_name
                        && a.name == f.name
                        && a.module.len() == f.module.len()
                        && a.is_under(&f.module))
            }
            Target::Module(path) => a.is_under(path),
        }
    }

    /// The resource, when this names one.
    pub fn as_resource(&self) -> Option<&Address> {
        match self {
            Target::Resource(a) => Some(a),
            Target::Module(_) => None,
        }
    }
}

impl FromStr for Target {
    type Err = BadTarget;
    fn from_str(s: &str) -> Result<Self, BadTarget> {
        match s.parse::<Address>() {
            Ok(a) => Ok(Target::Resource(a)),
            Err(_) => parse_module_path(s).map(Target::Module).ok_or_else(|| BadTarget(s.to_string())),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Resource(a) => a.fmt(f),
            Target::Module(steps) => {
                for (i, step) in steps.iter().enumerate() {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    step.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for Address {
    type Err = BadAddress;
    fn from_str(s: &str) -> Result<Self, BadAddress> {
        let bad = || BadAddress(s.to_string());
        let mut toks = tokens(s).ok_or_else(bad)?.into_iter().peekable();
        let module = module_steps(&mut toks).ok_or_else(bad)?;
        let mode = if toks.peek() == Some(&Tok::Name("data".into())) {
            toks.next();
            Mode::Data
        } else {
            Mode::Managed
        };
        let (Some(Tok::Name(t)), Some(Tok::Name(n))) = (toks.next(), toks.next()) else {
            return Err(bad());
        };
        let key = match toks.next() {
            None => None,
            Some(Tok::Key(k)) => Some(k),
            Some(Tok::Name(_)) => return Err(bad()),
        };
        if toks.next().is_some() || (mode == Mode::Managed && (t == "data" || t == "module")) {
            return Err(bad());
        }
        Ok(Address { mode, module, type_name: t, name: n, key })
    }
}

/// Whether `s` is a valid identifier for types, names and variables:
/// a letter or `_`, then letters, digits, `_` or `-`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for s in ["gcp_service_account.sql_access", "data.gcp_project.this"] {
            assert_eq!(s.parse::<Address>().unwrap().to_string(), s);
        }
        for s in [
            "test_object.replica[0]",
            "gcp_project_iam_member.role[\"roles/cloudsql.client\"]",
            "module.team_ml.k8s_namespace.ns",
            "module.team[\"ml\"].helm_release.skypilot",
            "module.a[2].module.b.data.gcp_project.this",
            "x.y[\"with \\\"quote\\\" and ]\"]",
        ] {
            let a: Address = s.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(a.to_string(), s);
        }
        let a: Address = "module.team[\"ml\"].helm_release.skypilot".parse().unwrap();
        assert_eq!(a.config().to_string(), "module.team.helm_release.skypilot");
        assert!(a.is_under(&parse_module_path("module.team").unwrap()));
        assert!(!a.is_under(&parse_module_path("module.team[\"ops\"]").unwrap()));
        assert!(Target::Module(parse_module_path("module.team").unwrap()).matches(&a));
        for bad in ["x.y[", "x.y[a]", "x.y[0]z", "module.m", "x.y.z", "x..y", "data.x.y.z", "module.x.y"] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
        assert!("nodot".parse::<Address>().is_err());
        assert!("data.x".parse::<Address>().is_err());
        assert!("a.b.c".parse::<Address>().is_err());
    }
}

#[cfg(test)]
mod target_tests {
    use super::*;

    fn t(s: &str) -> Target {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }
    fn a(s: &str) -> Address {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn targets_parse_once_and_print_as_written() {
        for s in ["x.y", "x.y[0]", "data.x.y", "module.m", "module.m[\"k\"].module.n", "module.m[1].x.y[\"a\"]"] {
            assert_eq!(t(s).to_string(), s);
        }
        assert!(matches!(t("module.m"), Target::Module(_)));
        assert!(matches!(t("module.m.x.y"), Target::Resource(_)));
        for bad in ["", "x", "x.y.z", "module", "module.m.x", "x.y[", "../etc"] {
            let e = bad.parse::<Target>().unwrap_err();
            assert!(e.to_string().contains("is not a resource, instance or module address"), "{e}");
        }
    }

    #[test]
    fn a_target_names_its_instances_and_what_is_under_it() {
        assert!(t("x.y").matches(&a("x.y")));
        assert!(t("x.y").matches(&a("x.y[3]")));
        assert!(!t("x.y[1]").matches(&a("x.y[3]")));
        assert!(!t("x.y").matches(&a("data.x.y")));
        assert!(!t("x.y").matches(&a("module.m.x.y")), "a root resource is not the module's");
        assert!(t("module.m.x.y").matches(&a("module.m[\"a\"].x.y[0]")), "every instance of the module");
        assert!(!t("module.m[\"b\"].x.y").matches(&a("module.m[\"a\"].x.y")));
        assert!(t("module.m").matches(&a("module.m[2].module.n.x.y")));
        assert!(!t("module.m").matches(&a("module.mm.x.y")));
    }
}
