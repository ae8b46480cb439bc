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

/// The address of a resource or data source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// Managed or data.
    pub mode: Mode,
    /// Its type, e.g. `gcp_service_account`.
    pub type_name: String,
    /// Its name, e.g. `sql_access`.
    pub name: String,
}

impl Address {
    /// A managed resource address.
    pub fn managed(type_name: impl Into<String>, name: impl Into<String>) -> Self {
        Address { mode: Mode::Managed, type_name: type_name.into(), name: name.into() }
    }
    /// A data source address.
    pub fn data(type_name: impl Into<String>, name: impl Into<String>) -> Self {
        Address { mode: Mode::Data, type_name: type_name.into(), name: name.into() }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            Mode::Managed => write!(f, "{}.{}", self.type_name, self.name),
            Mode::Data => write!(f, "data.{}.{}", self.type_name, self.name),
        }
    }
}

/// Why a string is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a resource address (expected `<type>.<name>` or `data.<type>.<name>`)")]
pub struct BadAddress(pub String);

impl FromStr for Address {
    type Err = BadAddress;
    fn from_str(s: &str) -> Result<Self, BadAddress> {
        let parts: Vec<&str> = s.split('.').collect();
        let ok = |p: &str| is_identifier(p);
        match parts.as_slice() {
            ["data", t, n] if ok(t) && ok(n) => Ok(Address::data(*t, *n)),
            [t, n] if ok(t) && ok(n) && *t != "data" => Ok(Address::managed(*t, *n)),
            _ => Err(BadAddress(s.to_string())),
        }
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
        assert!("nodot".parse::<Address>().is_err());
        assert!("data.x".parse::<Address>().is_err());
        assert!("a.b.c".parse::<Address>().is_err());
    }
}
