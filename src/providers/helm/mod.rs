//! The `helm` provider: `helm_release`, driven through the real `helm` binary,
//! with live drift: the chart's objects are compared with the live ones through
//! a server-side dry-run apply, so a `kubectl edit` of an object the chart made
//! is reported (Terraform's `helm_release` misses it: its issue #372).
//!
//! - [`cli`]: running helm with values and credentials in private 0600 files.
//! - [`values`]: `values` + `values_yaml` merged as helm merges `-f` files, read
//!   back in the same terms; an htpasswd line that still verifies is kept.
//! - [`objects`]: the release's objects, rendered and compared with the live ones.

pub mod cli;
pub mod objects;
pub mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value as Json;

use self::cli::{Helm, PrivateFile};
use super::kubernetes::connect::{self, Target};
use super::kubernetes::objects::Cluster;
use super::kubernetes::ready;
use super::{
    ApplyAction, ApplyRequest, ApplyResponse, Checkpoint, HttpReply, LiveObject, PlanRequest, PlanResponse, Provider,
    ProviderError, ProviderFactory, ReadRequest, ServiceRequest,
};
use crate::foundation::names::NameRule;
use crate::foundation::schema::{AttrType, Attribute, ProviderSchema, ResourceSchema, SchemaKind};
use crate::value::Value;

/// How long read-only helm commands may take.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// How long after its last update a release left `pending-*` by an
/// interrupted helm may still be settled by that helm (beyond its `--timeout`
/// when it waits), before skyform takes it back (see `settle_pending`).
const PENDING_GRACE: Duration = Duration::from_secs(30);

use crate::foundation::time::{now_secs, rfc3339_secs as rfc3339_utc_secs};

fn schema() -> ProviderSchema {
    // No `helm_path`: a spec may not choose a program to run (foundation::trust); the binary is
    // `$SKYFORM_HELM`, else `helm` on PATH.
    let config = connect::config_attributes();
    ProviderSchema {
        name: "helm",
        type_prefix: "helm_",
        config,
        reaches_services: true,
        types: vec![ResourceSchema {
            type_name: "helm_release",
            kind: SchemaKind::Resource,
            description: "A Helm release, installed and upgraded with `helm upgrade --install`. Plans compare the chart, version and values with the release, and the chart's objects with the live ones (server-side dry-run), so a change made with kubectl is drift.",
            attributes: vec![
                Attribute::required("name", AttrType::String, "The release name; changing it replaces the release.").force_new().rule(NameRule::HelmRelease),
                Attribute::optional("namespace", AttrType::String, "The release namespace; changing it replaces the release.").default(Value::str("default")).force_new().rule(NameRule::K8sLabel),
                Attribute::required("chart", AttrType::String, "A local chart directory, `repo/name` of a repository added to helm, or a chart name with `repository`."),
                Attribute::optional("repository", AttrType::String, "The chart repository URL (`--repo`); empty: none."),
                Attribute::optional("version", AttrType::String, "The chart version (`--version`); read back from the release. Empty: the newest at install (with `devel`, pre-releases included), never upgraded by itself.").also_computed(),
                Attribute::optional("devel", AttrType::Bool, "Accept pre-release chart versions (`--devel`).").default(Value::Bool(false)),
                Attribute::optional("values", AttrType::Any, "Values, as a TOML table. Secrets in it are masked everywhere and passed to helm in a private file."),
                Attribute::optional("values_yaml", AttrType::String, "Values as YAML text, merged after `values`, for what TOML cannot say (such as `null`)."),
                Attribute::optional("create_namespace", AttrType::Bool, "Create the namespace if missing (`--create-namespace`).").default(Value::Bool(false)),
                Attribute::optional("wait", AttrType::Bool, "After install or upgrade, wait (within `timeout`) until the release's Deployments, StatefulSets and DaemonSets are rolled out and available, Jobs complete, claims bound and Services have a ready endpoint; when they are not, the error says why (conditions, pods' waiting and terminated reasons, restarts, Warning events). Only where the cluster can make them ready.").default(Value::Bool(false)),
                Attribute::optional("timeout", AttrType::Number, "Seconds helm may take (`--timeout`).").default(Value::Int(300)),
                Attribute::optional("atomic", AttrType::Bool, "Roll back a failed upgrade (`--atomic`).").default(Value::Bool(false)),
                Attribute::optional("live_drift", AttrType::Map(Box::new(AttrType::String)), "Not to be set: the chart's objects whose live content differs from the chart (object → paths); always planned empty, which the next apply makes true.").default(Value::Map(BTreeMap::new())),
                Attribute::computed("revision", AttrType::Number, "The release revision."),
                Attribute::computed("status", AttrType::String, "The release status (`deployed`...)."),
                Attribute::computed("app_version", AttrType::String, "The chart's appVersion."),
            ],
        }],
    }
}

/// Builds configured `helm` providers.
pub struct HelmFactory {
    schema: ProviderSchema,
    /// The helm binary the caller chose (never the spec); `None`: `$SKYFORM_HELM`, else `helm`.
    program: Option<PathBuf>,
}

impl Default for HelmFactory {
    fn default() -> Self {
        HelmFactory { schema: schema(), program: None }
    }
}

impl HelmFactory {
    /// With this helm binary (the program embedding skyform chooses it, as `$SKYFORM_HELM` does).
    pub fn with_program(program: PathBuf) -> Self {
        HelmFactory { program: Some(program), ..HelmFactory::default() }
    }
}

#[async_trait]
impl ProviderFactory for HelmFactory {
    fn schema(&self) -> &ProviderSchema {
        &self.schema
    }
    async fn configure(
        &self,
        config: &Value,
        net: &crate::foundation::net::Net,
    ) -> Result<Arc<dyn Provider>, ProviderError> {
        let target = Target::from_config(config, net).await?;
        let program = match &self.program {
            Some(p) => p.clone(),
            None => std::env::var_os("SKYFORM_HELM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("helm")),
        };
        let helm = Helm::new(program, &target)?;
        let cluster = Cluster::new(target.client().await?);
        Ok(Arc::new(HelmProvider { helm, cluster: Arc::new(cluster) }))
    }
}

/// A configured `helm` provider.
pub struct HelmProvider {
    helm: Helm,
    cluster: Arc<Cluster>,
}

/// The release a request is about.
struct Release {
    name: String,
    namespace: String,
}

impl Release {
    fn of(identity: Option<&Value>, config: &Value) -> Option<Release> {
        let from = |v: &Value| {
            Some(Release {
                name: v.get("name")?.as_str()?.to_string(),
                namespace: v.get("namespace").and_then(Value::as_str).unwrap_or("default").to_string(),
            })
        };
        identity.and_then(from).or_else(|| from(config))
    }
    fn identity(&self) -> Value {
        Value::map([("name", Value::str(&self.name)), ("namespace", Value::str(&self.namespace))])
    }
}

/// What `helm get metadata` says.
#[derive(Clone)]
struct Meta {
    chart: String,
    version: String,
    app_version: String,
    revision: i64,
    status: String,
}

/// The chart name a `chart` attribute designates: a local directory's
/// `Chart.yaml` name, else the part after the repository alias.
fn chart_name(chart: &str) -> String {
    let dir = std::path::Path::new(chart);
    if dir.join("Chart.yaml").is_file()
        && let Ok(text) = std::fs::read_to_string(dir.join("Chart.yaml"))
        && let Ok(j) = serde_yaml::from_str::<Json>(&text)
        && let Some(n) = j.get("name").and_then(Json::as_str)
    {
        return n.to_string();
    }
    chart.rsplit('/').next().unwrap_or(chart).to_string()
}

impl HelmProvider {
    async fn metadata(&self, r: &Release) -> Result<Option<Meta>, ProviderError> {
        let args = ["get", "metadata", "-n", &r.namespace, "-o", "json"].map(String::from);
        let out = match self.helm.run(&args, std::slice::from_ref(&r.name), &[], READ_TIMEOUT).await {
            Ok(o) => o,
            Err(ProviderError::Permanent(m)) if m.contains("not found") => return Ok(None),
            Err(e) => return Err(e),
        };
        let j: Json = serde_json::from_str(&out)
            .map_err(|e| ProviderError::Permanent(format!("helm get metadata: unexpected output: {e}")))?;
        let s = |k: &str| j.get(k).and_then(Json::as_str).unwrap_or_default().to_string();
        Ok(Some(Meta {
            chart: s("chart"),
            version: s("version"),
            app_version: s("appVersion"),
            revision: j.get("revision").and_then(Json::as_i64).unwrap_or(0),
            status: s("status"),
        }))
    }

    /// The user-supplied values of the release (`{}` when none).
    async fn live_values(&self, r: &Release) -> Result<Json, ProviderError> {
        let args = ["get", "values", "-n", &r.namespace, "-o", "json"].map(String::from);
        let out = self.helm.run(&args, std::slice::from_ref(&r.name), &[], READ_TIMEOUT).await?;
        let j: Json = serde_json::from_str(out.trim()).unwrap_or(Json::Null);
        Ok(if j.is_null() { Json::Object(Default::default()) } else { j })
    }

    /// The desired values (htpasswd lines that still verify replaced by the
    /// live ones), merged as helm will see them, and the secrets in them.
    fn desired_values(config: &Value, live: Option<&Json>) -> Result<(Value, Json, Vec<String>), ProviderError> {
        let v = config.get("values").cloned().unwrap_or(Value::Map(BTreeMap::new()));
        let v = values::reuse_htpasswd(&v, live);
        let yaml = values::parse_yaml(config.get("values_yaml").and_then(Value::as_str).unwrap_or(""))?;
        let mut merged = match v.to_json_clear() {
            Json::Null => Json::Object(Default::default()),
            j => j,
        };
        values::merge(&mut merged, &yaml);
        let mut secrets = Vec::new();
        values::secret_strings(&v, &mut secrets);
        if config.get("values_yaml").is_some_and(Value::is_sensitive) {
            values::secret_strings(config.get("values_yaml").unwrap_or(&Value::Null), &mut secrets);
        }
        Ok((v, merged, secrets))
    }

    /// The chart and its source flags (`CHART [--repo URL] [--version V] [--devel]`).
    /// The release name and the chart: positional arguments, given to helm
    /// after `--` so that neither can ever be read as a flag.
    fn positionals(r: &Release, config: &Value) -> Vec<String> {
        vec![r.name.clone(), config.get("chart").and_then(Value::as_str).unwrap_or_default().to_string()]
    }

    /// The chart's flags (repository, version, devel).
    fn chart_args(config: &Value) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(repo) = config.get("repository").and_then(Value::as_str).filter(|r| !r.is_empty()) {
            a.extend(["--repo".into(), repo.into()]);
        }
        if let Some(v) = config.get("version").and_then(Value::as_str).filter(|v| !v.is_empty()) {
            a.extend(["--version".into(), v.into()]);
        }
        if config.get("devel").and_then(Value::as_bool) == Some(true) {
            a.push("--devel".into());
        }
        a
    }

    /// Renders the release as `helm upgrade --dry-run=server` would make it.
    async fn render(
        &self,
        r: &Release,
        config: &Value,
        merged: &Json,
        secrets: &[String],
    ) -> Result<String, ProviderError> {
        let file = PrivateFile::new("values", serde_json::to_string(merged).unwrap_or_default().as_bytes())?;
        let mut args: Vec<String> = vec!["upgrade".into()];
        args.extend(Self::chart_args(config));
        args.extend(["-n".into(), r.namespace.clone(), "-f".into(), file.path().display().to_string()]);
        args.extend(["--dry-run=server".into(), "-o".into(), "json".into()]);
        let out = self.helm.run(&args, &Self::positionals(r, config), secrets, READ_TIMEOUT).await?;
        let j: Json = serde_json::from_str(&out)
            .map_err(|e| ProviderError::Permanent(format!("helm upgrade --dry-run: unexpected output: {e}")))?;
        Ok(j.get("manifest").and_then(Json::as_str).unwrap_or_default().to_string())
    }

    /// Settles a release that an interrupted helm left `pending-install`,
    /// `pending-upgrade` or `pending-rollback` (helm then refuses every
    /// operation with "another operation is in progress").
    ///
    /// The helm of a killed skyform may still be running and finish by itself:
    /// while the pending revision is younger than that helm's own limit (its
    /// `--timeout` when it waits, plus [`PENDING_GRACE`]), skyform waits for
    /// the status to move. A revision older than that was abandoned (skyform
    /// holds the state lock, so no other skyform runs helm on the release):
    /// roll back to the last revision that was deployed, or uninstall a
    /// release whose first install never finished, then the caller installs it
    /// afresh. Idempotent: a settled release is left as it is.
    async fn settle_pending(
        &self,
        r: &Release,
        first: &Meta,
        timeout: Duration,
        waits: bool,
    ) -> Result<Option<Meta>, ProviderError> {
        // A helm that still runs finishes within its own --timeout (when it
        // waits for the objects) or within moments: the pending revision is
        // abandoned once it is older than that.
        let stale_after = if waits { timeout + PENDING_GRACE } else { PENDING_GRACE };
        let mut meta = Some(first.clone());
        let history = loop {
            let history = self.history(r).await?;
            let pending_age = history
                .iter()
                .filter(|h| h["status"].as_str().is_some_and(|s| s.starts_with("pending-")))
                .filter_map(|h| h["updated"].as_str().and_then(rfc3339_utc_secs))
                .max()
                .map(|t| now_secs().saturating_sub(t));
            let stale = pending_age.is_none_or(|age| age >= stale_after.as_secs() as i64);
            if stale || !meta.as_ref().is_some_and(|m| m.status.starts_with("pending-")) {
                break history;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            meta = self.metadata(r).await?;
        };
        let Some(m) = meta.filter(|m| m.status.starts_with("pending-")) else { return self.metadata(r).await };
        let last_good = history
            .iter()
            .filter(|h| h["revision"].as_i64().is_some_and(|v| v < m.revision))
            .filter(|h| matches!(h["status"].as_str(), Some("deployed" | "superseded")))
            .filter_map(|h| h["revision"].as_i64())
            .max();
        match last_good {
            Some(rev) => {
                let args = ["rollback", "-n", &r.namespace, "--wait", "--timeout", &format!("{}s", timeout.as_secs())]
                    .map(String::from);
                self.helm.run(&args, &[r.name.clone(), rev.to_string()], &[], timeout + READ_TIMEOUT).await?;
            }
            None => {
                let args = ["uninstall", "-n", &r.namespace, "--wait"].map(String::from);
                match self.helm.run(&args, std::slice::from_ref(&r.name), &[], timeout + READ_TIMEOUT).await {
                    Ok(_) => {}
                    Err(ProviderError::Permanent(e)) if e.contains("not found") => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.metadata(r).await
    }

    /// `helm history` of the release, oldest first.
    async fn history(&self, r: &Release) -> Result<Vec<Json>, ProviderError> {
        let args = ["history", "-n", &r.namespace, "-o", "json"].map(String::from);
        let out = self.helm.run(&args, std::slice::from_ref(&r.name), &[], READ_TIMEOUT).await?;
        serde_json::from_str(out.trim())
            .map_err(|e| ProviderError::Permanent(format!("helm history: unexpected output: {e}")))
    }

    /// The manifest helm recorded for the release's current revision.
    async fn release_manifest(&self, r: &Release) -> Result<String, ProviderError> {
        let args = ["get", "manifest", "-n", &r.namespace].map(String::from);
        self.helm.run(&args, std::slice::from_ref(&r.name), &[], READ_TIMEOUT).await
    }
}

/// Whether the spec's chart is on this machine (a directory or an archive, no `repository`): its
/// content can change without its version changing.
fn chart_is_local(cfg: &Value) -> bool {
    let repository = cfg.get("repository").and_then(Value::as_str).unwrap_or_default();
    let chart = cfg.get("chart").and_then(Value::as_str).unwrap_or_default();
    repository.is_empty() && !chart.is_empty() && std::path::Path::new(chart).exists()
}

/// The release's values at the keys the spec's `values_yaml` sets: the spec's own text when they
/// agree, else the live values there as YAML (sensitive when the spec's text is).
fn live_values_yaml(cfg: &Value, live: &Json, yaml: &Json) -> Value {
    let live_yaml = values::project(live, yaml);
    if &live_yaml == yaml {
        return cfg.get("values_yaml").cloned().unwrap_or(Value::str(""));
    }
    let text = Value::str(serde_yaml::to_string(&live_yaml).unwrap_or_default());
    if matches!(cfg.get("values_yaml"), Some(Value::Sensitive(_))) { text.sensitive() } else { text }
}

#[async_trait]
impl Provider for HelmProvider {
    /// Reads the release (metadata, user values and recorded manifest, side
    /// by side) and compares the chart's objects with the live ones. When the
    /// spec's chart is a local directory or file and its chart, version and
    /// values match the release, the objects compared are the spec's render
    /// (so a local chart edited without a version bump shows too); otherwise
    /// the release's own manifest: a chart from a repository at the version
    /// the release has is the chart the release was made from (rendering it
    /// again would cost a `helm upgrade --dry-run`, most of a converged plan's
    /// time, and find the same objects), and when the spec differs, only
    /// changes made outside skyform show as drift (the spec's changes show on
    /// their attributes).
    async fn read(&self, req: &ReadRequest) -> Result<Option<LiveObject>, ProviderError> {
        let Some(r) = Release::of(req.identity.as_ref(), &req.config) else { return Ok(None) };
        let (meta, live, recorded) = tokio::join!(self.metadata(&r), self.live_values(&r), self.release_manifest(&r));
        let Some(meta) = meta? else { return Ok(None) };
        let live = live?;
        let recorded = recorded?;
        let cfg = &req.config;
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), Value::str(&r.name));
        attrs.insert("namespace".to_string(), Value::str(&r.namespace));
        // Flags of the helm command, not properties of a release.
        for k in ["repository", "devel", "create_namespace", "wait", "timeout", "atomic"] {
            if let Some(v) = cfg.get(k) {
                attrs.insert(k.to_string(), v.clone());
            }
        }
        let want_chart = cfg.get("chart").and_then(Value::as_str).unwrap_or_default();
        let chart_same = chart_name(want_chart) == meta.chart;
        attrs.insert("chart".into(), Value::str(if chart_same { want_chart } else { meta.chart.as_str() }));
        // An empty `version` asks for no particular version (helm's newest at install): any matches.
        let any_version = cfg.get("version").and_then(Value::as_str) == Some("");
        attrs.insert("version".into(), Value::str(if any_version { "" } else { &meta.version }));
        attrs.insert("revision".into(), Value::Int(meta.revision));
        attrs.insert("status".into(), Value::str(&meta.status));
        attrs.insert("app_version".into(), Value::str(&meta.app_version));

        let known = !cfg.has_unknown() && !has_redacted(cfg);
        if known {
            let (desired, merged, secrets) = Self::desired_values(cfg, Some(&live))?;
            let yaml = values::parse_yaml(cfg.get("values_yaml").and_then(Value::as_str).unwrap_or(""))?;
            let values_same = merged == live;
            if values_same {
                if let Some(v) = cfg.get("values") {
                    attrs.insert("values".into(), v.clone());
                }
                if let Some(v) = cfg.get("values_yaml") {
                    attrs.insert("values_yaml".into(), v.clone());
                }
            } else {
                let desired_json = desired.to_json_clear();
                attrs.insert("values".into(), Value::from_json(&values::without_yaml(&live, &desired_json, &yaml)));
                attrs.insert("values_yaml".into(), live_values_yaml(cfg, &live, &yaml));
            }
            let version_same =
                any_version || cfg.get("version").and_then(Value::as_str).is_none_or(|v| v == meta.version);
            let manifest = if values_same && chart_same && version_same && chart_is_local(cfg) {
                self.render(&r, cfg, &merged, &secrets).await?
            } else {
                recorded
            };
            let drift = objects::drift(&self.cluster, &manifest, &r.namespace, &secrets).await?;
            attrs.insert("live_drift".into(), Value::Map(drift.into_iter().map(|(k, v)| (k, Value::str(v))).collect()));
        } else {
            let drift = objects::drift(&self.cluster, &recorded, &r.namespace, &[]).await?;
            attrs.insert("live_drift".into(), Value::Map(drift.into_iter().map(|(k, v)| (k, Value::str(v))).collect()));
            attrs.insert("values".into(), Value::from_json(&live));
            // `values_yaml` is literal text in a spec: known even when a value is not.
            if let Some(text) =
                cfg.get("values_yaml").map(Value::to_json_clear).and_then(|j| j.as_str().map(str::to_string))
            {
                let yaml = values::parse_yaml(&text)?;
                attrs.insert("values_yaml".into(), live_values_yaml(cfg, &live, &yaml));
            }
        }
        Ok(Some(LiveObject { identity: r.identity(), attrs, version: meta.revision.to_string(), in_progress: false }))
    }

    /// Notes what an upgrade does to the live objects: when the chart, version
    /// or values change, the spec is rendered and each object compared with
    /// the live one through a server-side dry-run, so the plan names the
    /// objects and fields the upgrade will change.
    async fn plan(&self, req: &PlanRequest) -> Result<PlanResponse, ProviderError> {
        let mut resp = PlanResponse::default();
        if req.changed.iter().any(|c| c == "live_drift") {
            resp.notes.push("helm upgrade re-applies the chart's objects, reverting the changes made outside".into());
        }
        let cfg = &req.config;
        // A new release: render it (client-side; the namespace may not exist
        // yet) so that a chart that refuses its values fails the plan.
        if req.live.is_none()
            && !cfg.has_unknown()
            && !has_redacted(cfg)
            && let Some(r) = Release::of(None, cfg)
        {
            let (_, merged, secrets) = Self::desired_values(cfg, None)?;
            let file = PrivateFile::new("values", serde_json::to_string(&merged).unwrap_or_default().as_bytes())?;
            let mut args: Vec<String> = vec!["template".into()];
            args.extend(Self::chart_args(cfg));
            args.extend(["-n".into(), r.namespace.clone(), "-f".into(), file.path().display().to_string()]);
            // Render for the real cluster's version (charts check `kubeVersion`).
            if let Some(v) = self.cluster.server_version().await {
                args.extend(["--kube-version".into(), v]);
            }
            match self.helm.run(&args, &Self::positionals(&r, cfg), &secrets, READ_TIMEOUT).await {
                Ok(_) => {}
                Err(ProviderError::Permanent(m)) => resp.errors.push(m),
                Err(e) => return Err(e),
            }
        }
        let spec_change =
            req.changed.iter().any(|c| matches!(c.as_str(), "chart" | "version" | "values" | "values_yaml"));
        if spec_change
            && req.live.is_some()
            && !cfg.has_unknown()
            && !has_redacted(cfg)
            && let Some(r) = Release::of(req.live.as_ref().map(|l| &l.identity), cfg)
        {
            let live = self.live_values(&r).await?;
            let (_, merged, secrets) = Self::desired_values(cfg, Some(&live))?;
            match self.render(&r, cfg, &merged, &secrets).await {
                Ok(manifest) => {
                    for (obj, what) in objects::drift(&self.cluster, &manifest, &r.namespace, &secrets).await? {
                        let what = if what == "deleted outside" { "created".to_string() } else { what };
                        resp.notes.push(format!("upgrade changes {obj}: {what}"));
                    }
                }
                Err(e) => resp.errors.push(e.to_string()),
            }
        }
        if let Some(Value::String(text)) = req.config.get("values_yaml")
            && let Err(e) = values::parse_yaml(text)
        {
            resp.errors.push(e.to_string());
        }
        Ok(resp)
    }

    /// `helm upgrade --install` (idempotent: it installs or upgrades to the
    /// same result); `helm uninstall` (a missing release is fine). After an
    /// upgrade, objects helm left different from the chart (helm's three-way
    /// merge keeps some changes made outside) are re-applied with server-side
    /// apply.
    async fn apply(&self, req: &ApplyRequest, cp: &dyn Checkpoint) -> Result<ApplyResponse, ProviderError> {
        let cfg = &req.config;
        let started = std::time::Instant::now();
        let r = Release::of(req.identity.as_ref(), cfg)
            .ok_or_else(|| ProviderError::Permanent("`name` is required".into()))?;
        let timeout = Duration::from_secs(cfg.get("timeout").and_then(Value::as_i64).unwrap_or(300).max(1) as u64);
        if req.action == ApplyAction::Delete {
            let args = ["uninstall", "-n", &r.namespace, "--wait"].map(String::from);
            match self.helm.run(&args, std::slice::from_ref(&r.name), &[], timeout + READ_TIMEOUT).await {
                Ok(_) => {}
                Err(ProviderError::Permanent(m)) if m.contains("not found") => {}
                Err(e) => return Err(e),
            }
            return Ok(ApplyResponse::default());
        }
        // A release an interrupted helm left `pending-*` refuses every further
        // operation ("another operation is in progress"): settle it first.
        let meta = match self.metadata(&r).await? {
            Some(m) if m.status.starts_with("pending-") => {
                // Helm itself waits only with `atomic` (skyform does the `wait`).
                let waits = cfg.get("atomic").and_then(Value::as_bool) == Some(true);
                self.settle_pending(&r, &m, timeout, waits).await?
            }
            m => m,
        };
        let live = match meta {
            Some(_) => Some(self.live_values(&r).await?),
            None => None,
        };
        let (_, merged, secrets) = Self::desired_values(cfg, live.as_ref())?;
        let file = PrivateFile::new("values", serde_json::to_string(&merged).unwrap_or_default().as_bytes())?;
        let mut args: Vec<String> = vec!["upgrade".into(), "--install".into()];
        args.extend(Self::chart_args(cfg));
        args.extend(["-n".into(), r.namespace.clone(), "-f".into(), file.path().display().to_string()]);
        args.extend(["--timeout".into(), format!("{}s", timeout.as_secs()), "-o".into(), "json".into()]);
        // `wait` is skyform's own (below: it says why an object is not ready); `atomic` needs helm's.
        let flag_set = |attr: &str| cfg.get(attr).and_then(Value::as_bool) == Some(true);
        let atomic = flag_set("atomic");
        for (flag, on) in
            [("--create-namespace", flag_set("create_namespace")), ("--atomic", atomic), ("--wait", atomic)]
        {
            if on {
                args.push(flag.into());
            }
        }
        // Two installs at once can both render an object a chart creates only when a `lookup` does not
        // find it (the SkyPilot chart's `skypilot-system` namespace): the second fails, with "already
        // exists" when the first made it after the second's check, or "cannot be imported into the
        // current release" (another release owns it) when before. Once more, its lookup finds the
        // object and leaves it out; `upgrade --install` is idempotent. An object that really belongs to
        // someone else fails the second time the same way, and that error is the one reported.
        let positionals = Self::positionals(&r, cfg);
        match self.helm.run(&args, &positionals, &secrets, timeout + READ_TIMEOUT).await {
            Err(ProviderError::Permanent(m))
                if m.contains("already exists") || m.contains("cannot be imported into the current release") =>
            {
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.helm.run(&args, &positionals, &secrets, timeout + READ_TIMEOUT).await?;
            }
            other => {
                other?;
            }
        }
        drop(file);
        let manifest = self.release_manifest(&r).await?;
        objects::repair(&self.cluster, &manifest, &r.namespace).await?;
        if flag_set("wait") && !atomic {
            let refs = objects::awaited(&manifest, &r.namespace)?;
            let left = timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
            ready::wait_all(&self.cluster, &refs, left, &|status| cp.progress(status)).await.map_err(|e| match e {
                ProviderError::Permanent(m) => ProviderError::Permanent(format!("release {}: objects {m}", r.name)),
                e => e,
            })?;
        }
        let meta = self
            .metadata(&r)
            .await?
            .ok_or_else(|| ProviderError::Permanent(format!("release {} vanished after install", r.name)))?;
        let mut attrs: BTreeMap<String, Value> = cfg.as_map().cloned().unwrap_or_default();
        if cfg.get("version").and_then(Value::as_str) != Some("") {
            attrs.insert("version".into(), Value::str(&meta.version));
        }
        attrs.insert("revision".into(), Value::Int(meta.revision));
        attrs.insert("status".into(), Value::str(&meta.status));
        attrs.insert("app_version".into(), Value::str(&meta.app_version));
        attrs.insert("live_drift".into(), Value::Map(BTreeMap::new()));
        Ok(ApplyResponse { identity: r.identity(), attrs, private: Value::Null })
    }

    async fn read_data(&self, type_name: &str, _args: &Value) -> Result<Value, ProviderError> {
        Err(ProviderError::Permanent(format!("unknown data source {type_name}")))
    }

    async fn service_get(&self, req: &ServiceRequest) -> Result<HttpReply, ProviderError> {
        self.cluster.service_get(req).await
    }

    /// The release's objects that `wait` waits for and are not ready now, with their pods' reasons.
    async fn diagnose(&self, _type_name: &str, attrs: &Value) -> Option<String> {
        let r = Release::of(None, attrs)?;
        let manifest = match self.release_manifest(&r).await {
            Ok(m) => m,
            Err(e) => return Some(format!("release {}/{}: {e}", r.namespace, r.name)),
        };
        let refs = objects::awaited(&manifest, &r.namespace).ok()?;
        Some(match ready::not_ready(&self.cluster, &refs).await {
            Ok(None) => format!("release {}/{}: its {} objects are ready", r.namespace, r.name, refs.len()),
            Ok(Some(why)) => format!("release {}/{}: objects not ready:{why}", r.namespace, r.name),
            Err(e) => format!("release {}/{}: readiness unknown: {e}", r.namespace, r.name),
        })
    }

    /// `namespace/name`.
    fn import_identity(&self, _type_name: &str, id: &str) -> Result<Value, ProviderError> {
        let (ns, name) = id
            .split_once('/')
            .ok_or_else(|| ProviderError::Permanent(format!("import id must be `namespace/name`, got {id:?}")))?;
        Ok(Release { name: name.into(), namespace: ns.into() }.identity())
    }
}

fn has_redacted(v: &Value) -> bool {
    match v {
        Value::Redacted(_) => true,
        Value::Sensitive(x) => has_redacted(x),
        Value::List(l) => l.iter().any(has_redacted),
        Value::Map(m) => m.values().any(has_redacted),
        _ => false,
    }
}
