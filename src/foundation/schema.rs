//! Schemas: what attributes a resource type, data source or provider
//! configuration has, and how each one behaves in a plan.

use super::names::NameRule;
use crate::value::Value;

/// The type of an attribute's value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AttrType {
    /// A string.
    String,
    /// A number (integer or float).
    Number,
    /// A boolean.
    Bool,
    /// A list whose items have the given type.
    List(Box<AttrType>),
    /// A table whose values have the given type.
    Map(Box<AttrType>),
    /// Anything (free-form tables such as Helm values or Kubernetes manifests).
    Any,
}

impl AttrType {
    /// Whether `v` fits this type. Unknown and redacted values fit any type
    /// (they are checked once known).
    pub fn accepts(&self, v: &Value) -> bool {
        match (self, v) {
            (_, Value::Unknown | Value::Redacted(_) | Value::Null) => true,
            (t, Value::Sensitive(inner)) => t.accepts(inner),
            (AttrType::Any, _) => true,
            (AttrType::String, Value::String(_)) => true,
            (AttrType::Number, Value::Int(_) | Value::Float(_)) => true,
            (AttrType::Bool, Value::Bool(_)) => true,
            (AttrType::List(t), Value::List(items)) => items.iter().all(|i| t.accepts(i)),
            (AttrType::Map(t), Value::Map(m)) => m.values().all(|i| t.accepts(i)),
            _ => false,
        }
    }

    /// The name used in messages and docs.
    pub fn name(&self) -> String {
        match self {
            AttrType::String => "string".into(),
            AttrType::Number => "number".into(),
            AttrType::Bool => "bool".into(),
            AttrType::List(t) => format!("list of {}", t.name()),
            AttrType::Map(t) => format!("map of {}", t.name()),
            AttrType::Any => "any".into(),
        }
    }
}

/// Rewrites a value the way the API would, so that a plan compares like with like.
pub type Normalizer = fn(&Value) -> Value;

/// One attribute of a schema.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// Its name in the spec.
    pub name: &'static str,
    /// Its value type.
    pub ty: AttrType,
    /// Must be set in the spec.
    pub required: bool,
    /// Used when the spec does not set it.
    pub default: Option<Value>,
    /// Set by the provider (known only after apply). A computed attribute that is
    /// not also optional cannot be set in the spec.
    pub computed: bool,
    /// Settable in the spec even though it is computed.
    pub optional: bool,
    /// A change replaces the resource.
    pub force_new: bool,
    /// Masked everywhere; kept in state only as a keyed fingerprint.
    pub sensitive: bool,
    /// For a table: every *value* is a secret, the keys are not (a Kubernetes
    /// Secret's `data`: plans show which keys change, never their values).
    pub sensitive_values: bool,
    /// Never readable back from the API (passwords): compared through the
    /// fingerprint kept in state.
    pub write_only: bool,
    /// Applied to both the desired and the live value before comparing.
    pub normalize: Option<Normalizer>,
    /// One line for the spec reference.
    pub description: &'static str,
    /// The naming rule of the API, checked wherever the value is known
    /// (`validate`, then plan), after normalization.
    pub rule: Option<NameRule>,
    /// Values that are allowed but unwise, each with the warning `validate` and `plan` give
    /// (a plaintext `sslmode = "disable"`).
    pub warn_on: &'static [(&'static str, &'static str)],
}

impl Attribute {
    fn base(name: &'static str, ty: AttrType, description: &'static str) -> Self {
        Attribute {
            name,
            ty,
            required: false,
            default: None,
            computed: false,
            optional: true,
            force_new: false,
            sensitive: false,
            sensitive_values: false,
            write_only: false,
            normalize: None,
            description,
            rule: None,
            warn_on: &[],
        }
    }
    /// Warns whenever the value is one of `values` (value, warning).
    pub fn warn_on(mut self, values: &'static [(&'static str, &'static str)]) -> Self {
        self.warn_on = values;
        self
    }
    /// Names something the API constrains (see [`NameRule`]).
    pub fn rule(mut self, r: NameRule) -> Self {
        self.rule = Some(r);
        self
    }
    /// A required input.
    pub fn required(name: &'static str, ty: AttrType, description: &'static str) -> Self {
        Attribute { required: true, optional: false, ..Self::base(name, ty, description) }
    }
    /// An optional input.
    pub fn optional(name: &'static str, ty: AttrType, description: &'static str) -> Self {
        Self::base(name, ty, description)
    }
    /// An output only the provider sets.
    pub fn computed(name: &'static str, ty: AttrType, description: &'static str) -> Self {
        Attribute { computed: true, optional: false, ..Self::base(name, ty, description) }
    }
    /// Marks it force-new.
    pub fn force_new(mut self) -> Self {
        self.force_new = true;
        self
    }
    /// Marks it sensitive.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
    /// Marks the values of a table attribute sensitive (keys stay visible).
    pub fn sensitive_values(mut self) -> Self {
        self.sensitive_values = true;
        self
    }
    /// Marks it write-only (and so sensitive).
    pub fn write_only(mut self) -> Self {
        self.write_only = true;
        self.sensitive = true;
        self
    }
    /// Gives it a default.
    pub fn default(mut self, v: impl Into<Value>) -> Self {
        self.default = Some(v.into());
        self
    }
    /// Also computed: the provider fills it in when the spec does not set it.
    pub fn also_computed(mut self) -> Self {
        self.computed = true;
        self
    }
    /// Gives it a normalizer.
    pub fn normalize(mut self, f: Normalizer) -> Self {
        self.normalize = Some(f);
        self
    }
    /// Applies this attribute's sensitivity to a value: the whole value, or each
    /// value of a table.
    pub fn mark(&self, v: Value) -> Value {
        if self.sensitive {
            return v.sensitive();
        }
        if !self.sensitive_values {
            return v;
        }
        match v {
            Value::Sensitive(inner) if matches!(*inner, Value::Map(_)) => self.mark(*inner),
            Value::Map(m) => Value::Map(m.into_iter().map(|(k, x)| (k, x.sensitive())).collect()),
            v => v.sensitive(),
        }
    }
    /// Whether the spec may set it.
    pub fn settable(&self) -> bool {
        self.required || self.optional
    }
}

/// Whether a schema describes a managed resource or a read-only data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    /// `[resource.<type>.<name>]`.
    Resource,
    /// `[data.<type>.<name>]`.
    Data,
}

/// The schema of one resource type or data source.
#[derive(Debug, Clone)]
pub struct ResourceSchema {
    /// The type name, e.g. `gcp_service_account`.
    pub type_name: &'static str,
    /// Resource or data source.
    pub kind: SchemaKind,
    /// One paragraph for the spec reference.
    pub description: &'static str,
    /// Its attributes.
    pub attributes: Vec<Attribute>,
}

impl ResourceSchema {
    /// Looks up an attribute.
    pub fn attr(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }
    /// Names of the attributes that can be set in the spec.
    pub fn settable_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.attributes.iter().filter(|a| a.settable()).map(|a| a.name)
    }
    /// Names of all attributes.
    pub fn all_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.attributes.iter().map(|a| a.name)
    }
}

/// Everything a provider declares.
#[derive(Debug, Clone)]
pub struct ProviderSchema {
    /// The provider's name in `[provider.<name>]`.
    pub name: &'static str,
    /// The prefix of every type it owns, e.g. `gcp_`.
    pub type_prefix: &'static str,
    /// Its configuration block.
    pub config: Vec<Attribute>,
    /// Its resource types and data sources.
    pub types: Vec<ResourceSchema>,
    /// Whether a check may reach Services through it (`via`): it implements
    /// [`super::Provider::service_get`].
    pub reaches_services: bool,
}

impl ProviderSchema {
    /// Looks up a resource or data source type.
    pub fn get(&self, kind: SchemaKind, type_name: &str) -> Option<&ResourceSchema> {
        self.types.iter().find(|t| t.kind == kind && t.type_name == type_name)
    }
    /// Looks up a configuration attribute.
    pub fn config_attr(&self, name: &str) -> Option<&Attribute> {
        self.config.iter().find(|a| a.name == name)
    }
}
