//! The in-memory `test` provider: a recording fake cloud for engine and CLI tests.
//!
//! Not registered in the `skyform` binary unless `SKYFORM_ENABLE_TEST_PROVIDER=1`.
//! Its objects live in memory, or in a JSON file (`store = "path"` in
//! `[provider.test]`, or `SKYFORM_TEST_STORE`) so that several CLI invocations see
//! the same "cloud" and tests can change it out of band.
//!
//! Types:
//! - `test_object`: `name` (force-new), `value`, `tags`, `size` (default 1),
//!   `password` (write-only), `fail` (apply fails when true), `delay_ms` (apply
//!   takes that long); computed `id`, `token` (sensitive) and `once` (sensitive,
//!   returned by create only, like a service-account private key).
//! - data `test_lookup`: `name` → the object's `value` and `id`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{
    ApplyAction, ApplyRequest, ApplyResponse, Checkpoint, LiveObject, Provider, ProviderError, ProviderFactory,
    ReadRequest,
};
use crate::foundation::schema::{AttrType, Attribute, ProviderSchema, ResourceSchema, SchemaKind};
use crate::value::Value;

/// One recorded provider call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `read`, `create`, `update`, `delete`, `read_data`, `configure`.
    pub op: &'static str,
    /// The object's name.
    pub name: String,
    /// When it started, relative to the recorder's creation.
    pub start: Duration,
    /// When it ended.
    pub end: Duration,
}

/// Records calls and concurrency.
#[derive(Debug)]
pub struct Recorder {
    epoch: Instant,
    calls: Mutex<Vec<Call>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            epoch: Instant::now(),
            calls: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }
}

impl Recorder {
    /// All calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls lock").clone()
    }
    /// The calls of one kind.
    pub fn ops(&self, op: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.op == op).collect()
    }
    /// The highest number of mutating calls seen running at once.
    pub fn max_concurrency(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
    /// Forgets everything recorded.
    pub fn clear(&self) {
        self.calls.lock().expect("calls lock").clear();
        self.max_in_flight.store(0, Ordering::SeqCst);
    }
}

/// A stored object.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Object {
    /// Attributes as the "API" returns them.
    pub attrs: BTreeMap<String, serde_json::Value>,
    /// Bumped on every change.
    pub version: u64,
    /// Write-only password (the fake keeps it to let tests check what was set).
    #[serde(default)]
    pub password: Option<String>,
}

/// The fake cloud's storage.
#[derive(Debug, Default)]
pub struct Store {
    file: Option<PathBuf>,
    mem: Mutex<BTreeMap<String, Object>>,
    next_id: AtomicUsize,
}

impl Store {
    /// In memory.
    pub fn memory() -> Self {
        Self::default()
    }
    /// Backed by a JSON file (read and rewritten on every call).
    pub fn file(path: PathBuf) -> Self {
        Store { file: Some(path), ..Self::default() }
    }
    /// Runs `f` on the objects, persisting to the file if there is one.
    pub fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<String, Object>) -> R) -> R {
        let mut mem = self.mem.lock().expect("store lock");
        if let Some(path) = &self.file {
            let mut objs: BTreeMap<String, Object> =
                std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
            let r = f(&mut objs);
            let tmp = path.with_extension("tmp");
            let text = serde_json::to_vec_pretty(&objs).expect("objects serialize");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
            *mem = objs;
            r
        } else {
            f(&mut mem)
        }
    }
    /// A copy of the objects.
    pub fn snapshot(&self) -> BTreeMap<String, Object> {
        self.with(|o| o.clone())
    }
}

/// Builds `test` providers sharing one store and recorder.
pub struct MemoryFactory {
    schema: ProviderSchema,
    /// The objects.
    pub store: Arc<Store>,
    /// What was called.
    pub recorder: Arc<Recorder>,
    /// Latency added to every read and apply.
    pub latency: Duration,
}

impl Default for MemoryFactory {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryFactory {
    /// In memory, no latency.
    pub fn new() -> Self {
        Self::named("test", "test_")
    }

    /// A second fake provider with its own name and type prefix (types
    /// `<prefix>object` and `<prefix>lookup`), e.g. to test a provider whose
    /// configuration depends on another provider's resource.
    pub fn named(name: &'static str, prefix: &'static str) -> Self {
        let mut schema = schema();
        if name != "test" {
            schema.name = name;
            schema.type_prefix = prefix;
            for t in &mut schema.types {
                let leaf = t.type_name.trim_start_matches("test_");
                t.type_name = Box::leak(format!("{prefix}{leaf}").into_boxed_str());
            }
        }
        MemoryFactory {
            schema,
            store: Arc::new(Store::memory()),
            recorder: Arc::new(Recorder::default()),
            latency: Duration::ZERO,
        }
    }

    /// For the binary: the store file from `SKYFORM_TEST_STORE` if set.
    pub fn from_env() -> Self {
        let mut f = Self::new();
        if let Ok(p) = std::env::var("SKYFORM_TEST_STORE") {
            f.store = Arc::new(Store::file(PathBuf::from(p)));
        }
        f
    }

    /// With latency on every call.
    pub fn with_latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }
}

fn schema() -> ProviderSchema {
    ProviderSchema {
        name: "test",
        type_prefix: "test_",
        config: vec![
            Attribute::optional("store", AttrType::String, "Path of a JSON file holding the fake objects."),
            Attribute::optional(
                "region",
                AttrType::String,
                "Free-form; lets tests make the configuration depend on a resource.",
            ),
            Attribute::optional(
                "services_url",
                AttrType::String,
                "Where checks with `via = \"test\"` go: `<services_url>/<namespace>/<name>/<port><path>` (tests).",
            ),
        ],
        reaches_services: true,
        types: vec![
            ResourceSchema {
                type_name: "test_object",
                kind: SchemaKind::Resource,
                description: "A fake object.",
                attributes: vec![
                    Attribute::required("name", AttrType::String, "Unique name; changing it replaces the object.")
                        .force_new(),
                    Attribute::optional("value", AttrType::String, "Any string (multi-line allowed)."),
                    Attribute::optional("tags", AttrType::Map(Box::new(AttrType::String)), "String tags."),
                    Attribute::optional("size", AttrType::Number, "A number.").default(Value::Int(1)),
                    Attribute::optional("password", AttrType::String, "Write-only secret.").write_only(),
                    Attribute::optional("secret", AttrType::String, "A sensitive but readable input.").sensitive(),
                    Attribute::optional("fail", AttrType::Bool, "Make apply fail (tests)."),
                    Attribute::optional("delay_ms", AttrType::Number, "Make apply take this long (tests)."),
                    Attribute::computed("id", AttrType::String, "Assigned on create."),
                    Attribute::computed("token", AttrType::String, "A secret assigned on create.").sensitive(),
                    Attribute::computed(
                        "once",
                        AttrType::String,
                        "A secret returned only by create, never by read (like a private key).",
                    )
                    .sensitive(),
                ],
            },
            ResourceSchema {
                type_name: "test_lookup",
                kind: SchemaKind::Data,
                description: "Looks up a fake object by name.",
                attributes: vec![
                    Attribute::required("name", AttrType::String, "The object's name."),
                    Attribute::computed("value", AttrType::String, "Its value."),
                    Attribute::computed("id", AttrType::String, "Its id."),
                ],
            },
        ],
    }
}

#[async_trait]
impl ProviderFactory for MemoryFactory {
    fn schema(&self) -> &ProviderSchema {
        &self.schema
    }
    async fn configure(
        &self,
        config: &Value,
        net: &crate::foundation::net::Net,
    ) -> Result<Arc<dyn Provider>, ProviderError> {
        let store = match config.get("store").and_then(Value::as_str) {
            Some(p) => Arc::new(Store::file(PathBuf::from(p))),
            None => self.store.clone(),
        };
        let services_url = config.get("services_url").and_then(Value::as_str).map(str::to_string);
        Ok(Arc::new(MemoryProvider {
            store,
            recorder: self.recorder.clone(),
            latency: self.latency,
            services_url,
            net: net.clone(),
        }))
    }
}

/// A configured `test` provider.
pub struct MemoryProvider {
    store: Arc<Store>,
    recorder: Arc<Recorder>,
    latency: Duration,
    /// Where `service_get` forwards (`services_url`).
    services_url: Option<String>,
    /// The shared client `service_get` sends through.
    net: crate::foundation::net::Net,
}

impl MemoryProvider {
    fn record(&self, op: &'static str, name: &str, start: Instant) {
        let c =
            Call { op, name: name.to_string(), start: start - self.recorder.epoch, end: self.recorder.epoch.elapsed() };
        self.recorder.calls.lock().expect("calls lock").push(c);
    }

    fn live(name: &str, o: &Object) -> LiveObject {
        let mut attrs: BTreeMap<String, Value> =
            o.attrs.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect();
        attrs.insert("name".into(), Value::str(name));
        LiveObject { identity: Value::str(name), attrs, version: o.version.to_string(), in_progress: false }
    }
}

fn name_of(identity: Option<&Value>, config: &Value) -> Option<String> {
    identity
        .and_then(|i| i.as_str().map(str::to_string))
        .or_else(|| config.get("name").and_then(Value::as_str).map(str::to_string))
}

#[async_trait]
impl Provider for MemoryProvider {
    async fn read(&self, req: &ReadRequest) -> Result<Option<LiveObject>, ProviderError> {
        let start = Instant::now();
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let Some(name) = name_of(req.identity.as_ref(), &req.config) else { return Ok(None) };
        let r = self.store.with(|objs| objs.get(&name).map(|o| Self::live(&name, o)));
        self.record("read", &name, start);
        Ok(r)
    }

    /// Idempotent: create of an existing name fails like a 409 would, so the
    /// engine's adoption path (read before create) is exercised; update and
    /// delete are keyed by name; delete of a missing object succeeds.
    async fn apply(&self, req: &ApplyRequest, _cp: &dyn Checkpoint) -> Result<ApplyResponse, ProviderError> {
        let start = Instant::now();
        let now = self.recorder.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.recorder.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let cfg = req.config.unmarked();
        let delay = cfg.get("delay_ms").and_then(Value::as_i64).unwrap_or(0);
        let pause = self.latency + Duration::from_millis(delay.max(0) as u64);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let result = self.apply_now(req, &cfg);
        self.recorder.in_flight.fetch_sub(1, Ordering::SeqCst);
        let op = match req.action {
            ApplyAction::Create => "create",
            ApplyAction::Update => "update",
            ApplyAction::Delete => "delete",
        };
        let name = name_of(req.identity.as_ref(), &cfg).unwrap_or_default();
        self.record(op, &name, start);
        result
    }

    /// A plain GET to `<services_url>/<namespace>/<name>/<port><path>`, like a service proxy.
    async fn service_get(&self, req: &super::ServiceRequest) -> Result<super::HttpReply, ProviderError> {
        let base = self.services_url.as_deref().ok_or_else(|| ProviderError::Config("no `services_url`".into()))?;
        let url = format!("{base}/{}/{}/{}{}", req.namespace, req.name, req.port, req.path);
        let mut r = self.net.request(reqwest::Method::GET, &url, req.timeout, "check")?;
        for (k, v) in &req.headers {
            r = r.header(k.as_str(), v.as_str());
        }
        let resp = r.send().await.map_err(|e| ProviderError::Transient(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| ProviderError::Transient(e.without_url().to_string()))?;
        Ok(super::HttpReply { status, body: body.to_vec() })
    }

    /// Whether the object is there (what a failing check's message adds).
    async fn diagnose(&self, _type_name: &str, attrs: &Value) -> Option<String> {
        let name = attrs.get("name").and_then(Value::as_str)?.to_string();
        let exists = self.store.with(|objs| objs.contains_key(&name));
        Some(if exists { format!("object {name} exists") } else { format!("object {name} does not exist") })
    }

    async fn read_data(&self, type_name: &str, args: &Value) -> Result<Value, ProviderError> {
        let start = Instant::now();
        if !type_name.ends_with("_lookup") {
            return Err(ProviderError::Permanent(format!("unknown data source {type_name}")));
        }
        let name = args.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let r = self.store.with(|objs| objs.get(&name).cloned());
        self.record("read_data", &name, start);
        match r {
            Some(o) => Ok(Value::map([
                ("name", Value::str(&name)),
                ("value", o.attrs.get("value").map(Value::from_json).unwrap_or(Value::Null)),
                ("id", o.attrs.get("id").map(Value::from_json).unwrap_or(Value::Null)),
            ])),
            None => Err(ProviderError::Permanent(format!("object {name:?} not found"))),
        }
    }
}

impl MemoryProvider {
    fn apply_now(&self, req: &ApplyRequest, cfg: &Value) -> Result<ApplyResponse, ProviderError> {
        if req.action != ApplyAction::Delete && cfg.get("fail").and_then(Value::as_bool) == Some(true) {
            // As a remote API would, the error echoes the input (and a terminal escape): what the
            // engine prints must mask it.
            let value = cfg.get("value").map(|v| v.unmarked().as_str().unwrap_or_default().to_string());
            return Err(ProviderError::Permanent(format!(
                "injected failure (fail = true) for value {}\u{1b}[2J",
                value.unwrap_or_default()
            )));
        }
        let name = name_of(req.identity.as_ref(), cfg).ok_or_else(|| ProviderError::Permanent("no name".into()))?;
        let inputs = ["value", "tags", "size", "secret", "fail", "delay_ms"];
        let pick = |o: &mut Object| {
            for k in inputs {
                match cfg.get(k) {
                    Some(v) if !matches!(v, Value::Null) => {
                        o.attrs.insert(k.to_string(), v.to_json_clear());
                    }
                    _ => {
                        o.attrs.remove(k);
                    }
                }
            }
            if let Some(p) = cfg.get("password").and_then(Value::as_str) {
                o.password = Some(p.to_string());
            }
        };
        self.store.with(|objs| match req.action {
            ApplyAction::Create => {
                if objs.contains_key(&name) {
                    return Err(ProviderError::Permanent(format!("object {name:?} already exists")));
                }
                let n = self.next_id();
                let mut o = Object { attrs: BTreeMap::new(), version: 1, password: None };
                o.attrs.insert("id".into(), serde_json::json!(format!("obj-{n}")));
                o.attrs.insert("token".into(), serde_json::json!(format!("tok-{n}-secret")));
                pick(&mut o);
                let mut live = Self::live(&name, &o);
                live.attrs.insert("once".into(), Value::str(format!("once-{n}-private")));
                objs.insert(name.clone(), o);
                Ok(ApplyResponse { identity: live.identity, attrs: live.attrs, private: Value::Null })
            }
            ApplyAction::Update => {
                let o = objs
                    .get_mut(&name)
                    .ok_or_else(|| ProviderError::Permanent(format!("object {name:?} not found")))?;
                pick(o);
                o.version += 1;
                let live = Self::live(&name, o);
                Ok(ApplyResponse { identity: live.identity, attrs: live.attrs, private: Value::Null })
            }
            ApplyAction::Delete => {
                objs.remove(&name);
                Ok(ApplyResponse::default())
            }
        })
    }

    fn next_id(&self) -> usize {
        // Unique within the store even across processes (file-backed stores).
        let n = self.store.next_id.fetch_add(1, Ordering::SeqCst);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as usize)
            .unwrap_or(0);
        n * 1_000_000_000 + t
    }
}
