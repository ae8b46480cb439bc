//! A JSON value against a discovery schema, in two modes:
//! - a request, as Google's JSON parser (proto3 JSON) reads it: an unknown field, a value of the
//!   wrong JSON type or a name outside an enum is refused, with Google's message; what proto3 JSON
//!   also accepts is accepted (`null` for any field, a number or a string for integers of any
//!   width and for floating point, an enum's number as well as its name);
//! - a response, as Google writes it: int64 as strings, int32 as numbers, enums by name, no
//!   `null`, no field the schema lacks.

use serde_json::Value;

use super::Document;

/// One value outside the contract: the field path Google names (`body.settings`, or empty for the
/// top level) and the description.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The path of the field, snake_case as Google's proto-backed messages say it.
    pub field: String,
    /// The message.
    pub description: String,
}

impl Violation {
    /// An unknown field `name` inside the object at `at`.
    pub fn unknown(name: &str, at: &str) -> Violation {
        let description = if at.is_empty() {
            format!("Invalid JSON payload received. Unknown name \"{name}\": Cannot find field.")
        } else {
            format!("Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field.")
        };
        Violation { field: at.to_string(), description }
    }

    fn invalid(at: &str, type_name: &str, value: &Value) -> Violation {
        Violation { field: at.to_string(), description: format!("Invalid value at '{at}' ({type_name}), {value}") }
    }
}

/// Where a value sits: its path, the path and schema of the object that holds it, its JSON name.
#[derive(Debug, Clone)]
struct Loc<'a> {
    path: String,
    parent: String,
    owner: &'a str,
    name: &'a str,
}

/// Checks values against one document's schemas.
pub(super) struct Checker<'a> {
    doc: &'a Document,
    response: bool,
}

impl<'a> Checker<'a> {
    /// As a request body.
    pub(super) fn request(doc: &'a Document) -> Self {
        Checker { doc, response: false }
    }

    /// As a response body.
    pub(super) fn response(doc: &'a Document) -> Self {
        Checker { doc, response: true }
    }

    /// The violations of `v` as schema `name`, at `path` (`body` for Cloud SQL's requests);
    /// `extra`: top-level fields also known (a request message's path-bound fields).
    pub(super) fn check_ref(&self, v: &Value, name: &str, path: &str, extra: &[String]) -> Vec<Violation> {
        let mut out = Vec::new();
        if !self.response && v.is_null() {
            return out;
        }
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.retain(|k, x| !(extra.contains(k) && x.is_string()));
        }
        let loc = Loc { path: path.to_string(), parent: String::new(), owner: "", name: path };
        self.check(&v, &serde_json::json!({"$ref": name}), &loc, &mut out);
        out
    }

    fn field(&self, json_name: &str) -> String {
        if self.response { json_name.to_string() } else { snake(json_name) }
    }

    fn child(&self, at: &str, json_name: &str) -> String {
        let f = self.field(json_name);
        if at.is_empty() { f } else { format!("{at}.{f}") }
    }

    fn check(&self, v: &Value, s: &Value, loc: &Loc<'_>, out: &mut Vec<Violation>) {
        if v.is_null() {
            if self.response {
                out.push(self.wrong(loc, "a value, not null", v));
            }
            return;
        }
        if let Some(r) = s["$ref"].as_str() {
            match self.doc.schemas.get(r) {
                Some(schema) => self.object(v, schema, r, loc, out),
                None => out.push(self.wrong(loc, &format!("schema {r}, which the document lacks"), v)),
            }
            return;
        }
        let format = s["format"].as_str().unwrap_or_default();
        match s["type"].as_str().unwrap_or_default() {
            "any" | "" => {}
            "object" => self.object(v, s, "", loc, out),
            "array" => match v.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let at = format!("{}[{i}]", loc.path);
                        let l = Loc { path: at, parent: loc.parent.clone(), owner: loc.owner, name: loc.name };
                        self.check(item, &s["items"], &l, out);
                    }
                }
                None => out.push(self.wrong(loc, "a list", v)),
            },
            "string" if s["enum"].is_array() => {
                let known = s["enum"].as_array().is_some_and(|e| e.iter().any(|x| x == v));
                let number = !self.response && v.is_i64();
                if !known && !number {
                    out.push(self.mismatch(loc, &enum_type(self.doc, loc), v, "a value of the enum"));
                }
            }
            "string" => {
                let ok = match format {
                    "int64" | "uint64" if self.response => v.as_str().is_some_and(|t| t.parse::<i128>().is_ok()),
                    "int64" | "uint64" => integral(v),
                    _ => v.is_string(),
                };
                if !ok {
                    out.push(self.mismatch(loc, &scalar_type("string", format), v, "a string"));
                }
            }
            "integer" => {
                let ok = if self.response { v.is_i64() || v.is_u64() } else { integral(v) };
                if !ok {
                    out.push(self.mismatch(loc, &scalar_type("integer", format), v, "an integer (a JSON number)"));
                }
            }
            "number" => {
                let special = v.as_str().is_some_and(|t| matches!(t, "NaN" | "Infinity" | "-Infinity"));
                let ok = v.is_number()
                    || special
                    || (!self.response && v.as_str().is_some_and(|t| t.parse::<f64>().is_ok()));
                if !ok {
                    out.push(self.mismatch(loc, &scalar_type("number", format), v, "a number"));
                }
            }
            "boolean" => {
                if !v.is_boolean() {
                    out.push(self.mismatch(loc, "TYPE_BOOL", v, "a boolean"));
                }
            }
            other => out.push(self.wrong(loc, &format!("type {other}, which this checker does not know"), v)),
        }
    }

    /// An object of `schema` (`name`: its schema name, empty for an inline object or a map).
    fn object(&self, v: &Value, schema: &Value, name: &str, loc: &Loc<'_>, out: &mut Vec<Violation>) {
        let Some(o) = v.as_object() else {
            let t = if name.is_empty() {
                "type.googleapis.com/google.protobuf.Struct".to_string()
            } else {
                format!("type.googleapis.com/{}.{name}", self.doc.package)
            };
            out.push(self.mismatch(loc, &t, v, "an object"));
            return;
        };
        let props = schema["properties"].as_object();
        let additional = &schema["additionalProperties"];
        for (k, val) in o {
            if let Some(p) = props.and_then(|p| p.get(k)) {
                let l = Loc { path: self.child(&loc.path, k), parent: loc.path.clone(), owner: name, name: k };
                self.check(val, p, &l, out);
            } else if !additional.is_null() {
                let l = Loc { path: format!("{}[{k}]", loc.path), parent: loc.path.clone(), owner: name, name: k };
                self.check(val, additional, &l, out);
            } else if self.response {
                let what = if name.is_empty() { "this object" } else { name };
                out.push(Violation {
                    field: loc.path.clone(),
                    description: format!("{}: \"{k}\" is not a field of {what}", display(&loc.path)),
                });
            } else {
                out.push(Violation::unknown(k, &loc.path));
            }
        }
    }

    /// A value of the wrong type: Google's message for a request, ours for a response.
    fn mismatch(&self, loc: &Loc<'_>, type_name: &str, v: &Value, expected: &str) -> Violation {
        if self.response {
            return self.wrong(loc, expected, v);
        }
        if v.is_array() {
            let at = &loc.parent;
            let description = if at.is_empty() {
                format!(
                    "Invalid JSON payload received. Unknown name \"{}\": Proto field is not repeating, cannot start list.",
                    loc.name
                )
            } else {
                format!(
                    "Invalid JSON payload received. Unknown name \"{}\" at '{at}': Proto field is not repeating, cannot start list.",
                    loc.name
                )
            };
            return Violation { field: at.clone(), description };
        }
        Violation::invalid(&loc.path, type_name, v)
    }

    fn wrong(&self, loc: &Loc<'_>, expected: &str, v: &Value) -> Violation {
        let shown = v.to_string();
        let shown = if shown.chars().count() > 80 {
            format!("{}...", shown.chars().take(77).collect::<String>())
        } else {
            shown
        };
        Violation { field: loc.path.clone(), description: format!("{}: {shown} is not {expected}", display(&loc.path)) }
    }
}

fn display(path: &str) -> &str {
    if path.is_empty() { "(top level)" } else { path }
}

/// Whether proto3 JSON reads `v` as an integer: a whole JSON number, or a string of one.
fn integral(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
        Value::String(s) => s.trim().parse::<i128>().is_ok(),
        _ => false,
    }
}

/// Google's name of a scalar type in its messages.
fn scalar_type(json_type: &str, format: &str) -> String {
    let t = match (json_type, format) {
        ("string", "int64") => "TYPE_INT64",
        ("string", "uint64") => "TYPE_UINT64",
        ("string", "byte") => "TYPE_BYTES",
        ("string", "google-datetime") => "type.googleapis.com/google.protobuf.Timestamp",
        ("string", "google-duration") => "type.googleapis.com/google.protobuf.Duration",
        ("string", "google-fieldmask") => "type.googleapis.com/google.protobuf.FieldMask",
        ("integer", "uint32") => "TYPE_UINT32",
        ("integer", _) => "TYPE_INT32",
        ("number", "float") => "TYPE_FLOAT",
        ("number", _) => "TYPE_DOUBLE",
        _ => "TYPE_STRING",
    };
    t.to_string()
}

/// The proto enum of a field, as Google names it: known for the fields where it matters, else
/// the owner's nested `<Field>` (a best guess: the discovery document does not name enums).
fn enum_type(doc: &Document, loc: &Loc<'_>) -> String {
    let known = match (doc.name, loc.name) {
        ("sqladmin.v1beta4" | "sqladmin.v1", "databaseVersion") => Some("SqlDatabaseVersion"),
        ("sqladmin.v1beta4" | "sqladmin.v1", "availabilityType") => Some("SqlAvailabilityType"),
        ("sqladmin.v1beta4" | "sqladmin.v1", "dataDiskType") => Some("SqlDataDiskType"),
        ("sqladmin.v1beta4" | "sqladmin.v1", "backendType") => Some("SqlBackendType"),
        ("sqladmin.v1beta4" | "sqladmin.v1", "instanceType") => Some("SqlInstanceType"),
        _ => None,
    };
    match known {
        Some(k) => format!("type.googleapis.com/{}.{k}", doc.package),
        None => {
            let mut field = loc.name.to_string();
            if let Some(first) = field.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            format!("type.googleapis.com/{}.{}.{field}", doc.package, loc.owner)
        }
    }
}

/// `databaseVersion` → `database_version`.
pub(super) fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The violation of query parameter `name`'s value `v` (described by discovery parameter `p`),
/// if any.
pub(super) fn query_value(p: &Value, name: &str, v: &str) -> Option<Violation> {
    let field = snake(name);
    let quoted = Value::String(v.to_string());
    let format = p["format"].as_str().unwrap_or_default();
    let ok = match p["type"].as_str().unwrap_or_default() {
        "boolean" => matches!(v, "true" | "false" | "True" | "False" | "1" | "0"),
        "integer" => v.trim().parse::<i64>().is_ok(),
        "number" => v.trim().parse::<f64>().is_ok(),
        "string" if format == "int64" || format == "uint64" => v.trim().parse::<i128>().is_ok(),
        "string" => match p["enum"].as_array() {
            Some(e) => e.iter().any(|x| x == v) || v.parse::<i64>().is_ok(),
            None => true,
        },
        _ => true,
    };
    if ok {
        return None;
    }
    let t = match p["type"].as_str().unwrap_or_default() {
        "boolean" => "TYPE_BOOL".to_string(),
        "string" if p["enum"].is_array() => "TYPE_ENUM".to_string(),
        t => scalar_type(t, format),
    };
    Some(Violation::invalid(&field, &t, &quoted))
}
