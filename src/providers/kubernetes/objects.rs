//! Generic object operations on one cluster, by `apiVersion`/`kind`: get,
//! server-side apply (real or dry-run) with field manager `skyform`, delete, and
//! waiting for a deletion to finish.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::discovery::Scope;
use serde_json::Value as Json;

use crate::providers::{HttpReply, ProviderError, ServiceRequest};
use crate::timings;

/// The field manager of every write skyform makes.
pub const FIELD_MANAGER: &str = "skyform";

/// Which object: enough to find it again (the identity kept in state).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjRef {
    /// `v1`, `apps/v1`...
    pub api_version: String,
    /// `ConfigMap`...
    pub kind: String,
    /// Empty for cluster-scoped objects (and filled from the scope for
    /// namespaced ones that do not name one: `default`).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ObjRef {
    /// From a manifest (`apiVersion`, `kind`, `metadata.name`, `metadata.namespace`).
    pub fn of(obj: &Json) -> Result<ObjRef, ProviderError> {
        let s = |v: Option<&Json>, what: &str| {
            v.and_then(Json::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| ProviderError::Permanent(format!("the manifest has no {what}")))
        };
        Ok(ObjRef {
            api_version: s(obj.get("apiVersion"), "apiVersion")?,
            kind: s(obj.get("kind"), "kind")?,
            namespace: obj.pointer("/metadata/namespace").and_then(Json::as_str).unwrap_or_default().to_string(),
            name: s(obj.pointer("/metadata/name"), "metadata.name")?,
        })
    }

    /// `Kind/namespace/name` (or `Kind/name`), for messages and maps.
    pub fn display(&self) -> String {
        if self.namespace.is_empty() {
            format!("{}/{}", self.kind, self.name)
        } else {
            format!("{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }

    fn gvk(&self) -> GroupVersionKind {
        let (group, version) = match self.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", self.api_version.as_str()),
        };
        GroupVersionKind::gvk(group, version, &self.kind)
    }
}

/// A connected cluster with a cache of resolved kinds.
pub struct Cluster {
    client: kube::Client,
    kinds: Mutex<BTreeMap<(String, String), (ApiResource, bool)>>,
    /// The (apiVersion, kind, namespace) this identity may not dry-run apply: asked once a run.
    no_dry_run: Mutex<std::collections::BTreeSet<(String, String, String)>>,
}

impl Cluster {
    /// Wraps a client.
    pub fn new(client: kube::Client) -> Self {
        Cluster { client, kinds: Mutex::new(BTreeMap::new()), no_dry_run: Mutex::new(Default::default()) }
    }

    /// A GET to a Service through the API server's service proxy. A status the Service (or the
    /// proxy: 503 without endpoints) answers is a reply, not an error; errors are for requests
    /// that got no answer.
    pub async fn service_get(&self, req: &ServiceRequest) -> Result<HttpReply, ProviderError> {
        use http_body_util::BodyExt;
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        let path = if req.path.starts_with('/') { req.path.clone() } else { format!("/{}", req.path) };
        let url = format!(
            "/api/v1/namespaces/{}/services/{}:{}/proxy{path}",
            enc(&req.namespace),
            enc(&req.name),
            enc(&req.port)
        );
        let mut b = http::Request::get(url);
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        // The header values may be secrets: the builder's error would not show them, but say
        // only which header it was.
        let request = b.body(kube::client::Body::empty()).map_err(|_| {
            ProviderError::Permanent("the request could not be built (a header name or value is not valid HTTP)".into())
        })?;
        let call = async {
            let resp = self.client.send(request).await.map_err(|e| ProviderError::Transient(e.to_string()))?;
            let status = resp.status().as_u16();
            let body =
                resp.into_body().collect().await.map_err(|e| ProviderError::Transient(e.to_string()))?.to_bytes();
            Ok(HttpReply { status, body: body.iter().take(1 << 20).copied().collect() })
        };
        tokio::time::timeout(req.timeout, call)
            .await
            .unwrap_or_else(|_| Err(ProviderError::Transient(format!("no answer within {:?}", req.timeout))))
    }

    /// The last `lines` lines a pod's container wrote (`previous`: its instance before the last
    /// restart), as the kubelet keeps them.
    pub async fn log_tail(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
        lines: u32,
    ) -> Result<String, ProviderError> {
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        let url = format!(
            "/api/v1/namespaces/{}/pods/{}/log?container={}&previous={previous}&tailLines={lines}",
            enc(namespace),
            enc(pod),
            enc(container)
        );
        let request = http::Request::get(url)
            .body(Vec::new())
            .map_err(|e| ProviderError::Permanent(format!("log request: {e}")))?;
        tokio::time::timeout(std::time::Duration::from_secs(10), self.client.request_text(request))
            .await
            .map_err(|_| ProviderError::Transient("the log did not come within 10s".into()))?
            .map_err(|e| ProviderError::Transient(e.to_string()))
    }

    /// The API resource of a kind and whether it is namespaced (discovery,
    /// cached).
    async fn resolve(&self, r: &ObjRef) -> Result<(ApiResource, bool), ProviderError> {
        let key = (r.api_version.clone(), r.kind.clone());
        if let Some(hit) = self.kinds.lock().expect("kinds lock").get(&key) {
            return Ok(hit.clone());
        }
        let gvk = r.gvk();
        let _t = timings::span("kubernetes", || format!("discover {} {}", r.api_version, r.kind));
        let (ar, caps) = retry(|| kube::discovery::pinned_kind(&self.client, &gvk))
            .await
            .map_err(|e| ProviderError::Permanent(format!("unknown kind {} {}: {}", r.api_version, r.kind, e)))?;
        let hit = (ar, caps.scope == Scope::Namespaced);
        self.kinds.lock().expect("kinds lock").insert(key, hit.clone());
        Ok(hit)
    }

    async fn api(&self, r: &ObjRef) -> Result<(Api<DynamicObject>, ObjRef), ProviderError> {
        let (ar, namespaced) = self.resolve(r).await?;
        let mut r = r.clone();
        if namespaced {
            if r.namespace.is_empty() {
                r.namespace = "default".into();
            }
            Ok((Api::namespaced_with(self.client.clone(), &r.namespace, &ar), r))
        } else {
            r.namespace.clear();
            Ok((Api::all_with(self.client.clone(), &ar), r))
        }
    }

    /// The server's version (`v1.34.4`), `None` when it cannot be read.
    pub async fn server_version(&self) -> Option<String> {
        self.client.apiserver_version().await.ok().map(|v| v.git_version)
    }

    /// The reference with its namespace settled by the kind's scope.
    pub async fn settle(&self, r: &ObjRef) -> Result<ObjRef, ProviderError> {
        Ok(self.api(r).await?.1)
    }

    /// The live object, `None` when absent.
    pub async fn get(&self, r: &ObjRef) -> Result<Option<Json>, ProviderError> {
        let (api, r) = self.api(r).await?;
        let _t = timings::span("kubernetes", || format!("get {} {}", r.kind, r.name));
        let got = retry(|| api.get_opt(&r.name)).await.map_err(|e| api_error(&r, "reading", e))?;
        Ok(got.map(|o| serde_json::to_value(o).unwrap_or_default()))
    }

    /// The objects of a kind in `namespace` matching the label and field selectors (empty: any).
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        labels: &str,
        fields: &str,
    ) -> Result<Vec<Json>, ProviderError> {
        let r = ObjRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: String::new(),
        };
        let (api, r) = self.api(&r).await?;
        let mut lp = ListParams::default();
        if !labels.is_empty() {
            lp = lp.labels(labels);
        }
        if !fields.is_empty() {
            lp = lp.fields(fields);
        }
        let _t = timings::span("kubernetes", || format!("list {kind} in {namespace:?}"));
        let list = retry(|| api.list(&lp)).await.map_err(|e| api_error(&r, "listing", e))?;
        Ok(list.items.into_iter().map(|o| serde_json::to_value(o).unwrap_or_default()).collect())
    }

    /// Server-side apply of `obj` as `skyform`, forcing conflicts (skyform's
    /// spec is the source of truth for the fields it sets: a field another
    /// manager took over is taken back, which is how drift is repaired).
    /// Idempotent: applying the same manifest twice changes nothing.
    /// `dry_run`: nothing is persisted; the answer is what the object would be.
    pub async fn apply(&self, obj: &Json, dry_run: bool) -> Result<Json, ProviderError> {
        let verb = if dry_run { "dry-run applying" } else { "applying" };
        let (r, result) = self.server_side_apply(obj, dry_run).await?;
        result.map_err(|e| api_error(&r, verb, e))
    }

    async fn server_side_apply(
        &self,
        obj: &Json,
        dry_run: bool,
    ) -> Result<(ObjRef, Result<Json, kube::Error>), ProviderError> {
        let (api, r) = self.api(&ObjRef::of(obj)?).await?;
        let mut obj = obj.clone();
        if !r.namespace.is_empty()
            && let Some(meta) = obj.get_mut("metadata").and_then(Json::as_object_mut)
        {
            meta.insert("namespace".into(), Json::String(r.namespace.clone()));
        }
        let mut pp = PatchParams::apply(FIELD_MANAGER).force();
        if dry_run {
            pp = pp.dry_run();
        }
        let patch = Patch::Apply(&obj);
        let t = timings::span("kubernetes", || {
            format!("apply{} {} {}", if dry_run { " (dry run)" } else { "" }, r.kind, r.name)
        });
        let out = retry(|| api.patch(&r.name, &pp, &patch)).await;
        drop(t);
        Ok((r, out.map(|o| serde_json::to_value(o).unwrap_or_default())))
    }

    /// What applying `obj` would make of the live object: the server's answer
    /// to a dry-run apply or, when RBAC refuses this identity the write a
    /// dry-run rehearses (a read-only drift job: "... cannot patch resource
    /// ..."; not a quota's or an admission webhook's 403), computed here from
    /// `live` ([`client_side_apply`](crate::providers::kubernetes::compare::client_side_apply)).
    /// A refusal is remembered for the kind and namespace, so a read-only run
    /// asks once.
    pub async fn would_apply(&self, obj: &Json, live: &Json) -> Result<Json, ProviderError> {
        let r = ObjRef::of(obj)?;
        let namespace = live.pointer("/metadata/namespace").and_then(Json::as_str).unwrap_or(&r.namespace).to_string();
        let key = (r.api_version.clone(), r.kind.clone(), namespace);
        let client_side = || Ok(crate::providers::kubernetes::compare::client_side_apply(obj, live));
        if self.no_dry_run.lock().expect("dry-run lock").contains(&key) {
            return client_side();
        }
        match self.server_side_apply(obj, true).await? {
            (_, Ok(dry)) => Ok(dry),
            (_, Err(kube::Error::Api(e))) if e.code == 403 && e.message.contains(" cannot patch resource ") => {
                self.no_dry_run.lock().expect("dry-run lock").insert(key);
                client_side()
            }
            (r, Err(e)) => Err(api_error(&r, "dry-run applying", e)),
        }
    }

    /// Deletes the object (absent is fine) and, with `wait`, waits until it is
    /// gone (a namespace takes a while: its content is deleted first).
    pub async fn delete(&self, r: &ObjRef, wait: Option<Duration>) -> Result<(), ProviderError> {
        let (api, r) = self.api(r).await?;
        let dp = DeleteParams::background();
        let t = timings::span("kubernetes", || format!("delete {} {}", r.kind, r.name));
        let deleted = retry(|| api.delete(&r.name, &dp)).await;
        drop(t);
        match deleted {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(api_error(&r, "deleting", e)),
        }
        let Some(limit) = wait else { return Ok(()) };
        let start = Instant::now();
        loop {
            if retry(|| api.get_opt(&r.name)).await.map_err(|e| api_error(&r, "reading", e))?.is_none() {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(ProviderError::Timeout(limit));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Runs `f` again (up to 3 times) on errors that are worth retrying: 429,
/// 5xx, and connection failures.
async fn retry<T, F, Fut>(mut f: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(200);
    for _ in 0..2 {
        match f().await {
            Err(e) if transient(&e) => {
                tokio::time::sleep(delay).await;
                delay *= 3;
            }
            r => return r,
        }
    }
    f().await
}

fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

fn api_error(r: &ObjRef, verb: &str, e: kube::Error) -> ProviderError {
    let what = format!("{verb} {}", r.display());
    match &e {
        kube::Error::Api(s) if transient(&e) => ProviderError::Transient(format!("{what}: {} ({})", s.message, s.code)),
        kube::Error::Api(s) => ProviderError::Permanent(format!("{what}: {} ({} {})", s.message, s.code, s.reason)),
        _ if transient(&e) => ProviderError::Transient(format!("{what}: {e}")),
        _ => ProviderError::Permanent(format!("{what}: {e}")),
    }
}
