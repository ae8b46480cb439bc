//! IAM enforcement (`--enforce-iam`) over HTTP: service-account principals, with tokens from the
//! token endpoint (a JWT signed with a key the IAM API made), need each method's permission from
//! the project's policy; the admin token and enforcement off are unaffected. Then GKE's
//! TokenReview and SubjectAccessReview webhooks for a kube-apiserver.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{call_with, exchange};
use gcp_emulator::{Config, Emulator};
use serde_json::{Value, json};

const P: &str = "iam-proj";
const ADMIN: &str = "admin-token-of-the-iam-tests";

struct Env {
    emu: Emulator,
}

impl Env {
    async fn start(enforce_iam: bool) -> Env {
        gcp_emulator::contract::ensure_documents();
        let emu = Emulator::start(Config { access_token: Some(ADMIN.into()), enforce_iam, ..Default::default() })
            .await
            .expect("emulator starts");
        Env { emu }
    }

    fn base(&self) -> &str {
        self.emu.base_url()
    }

    /// A JSON call with `token` (the admin's by default).
    async fn call(&self, token: Option<&str>, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let auth = format!("Bearer {}", token.unwrap_or(ADMIN));
        call_with(self.base(), method, path, body, &[("Authorization", auth.as_str())]).await
    }

    async fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let body = (!body.is_null()).then_some(body);
        let (code, v) = self.call(None, method, path, body.as_ref()).await;
        assert_eq!(code, 200, "{method} {path}: {v}");
        v
    }

    /// A raw call (Storage uploads and downloads) with `token`.
    async fn raw(&self, token: &str, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        let auth = format!("Bearer {token}");
        let (code, _, body) = exchange(self.base(), method, path, &[("Authorization", auth.as_str())], body).await;
        (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Creates service account `id` and a key for it, and gets a token from the token endpoint.
    async fn principal(&self, id: &str) -> (String, String) {
        let sa = self.admin("POST", &format!("/v1/projects/{P}/serviceAccounts"), json!({"accountId": id})).await;
        let email = sa["email"].as_str().expect("email").to_string();
        let key = self.admin("POST", &format!("/v1/projects/{P}/serviceAccounts/{email}/keys"), json!({})).await;
        let file = base64::engine::general_purpose::STANDARD
            .decode(key["privateKeyData"].as_str().expect("key data"))
            .unwrap();
        let file: Value = serde_json::from_slice(&file).unwrap();
        let token = token_from_key_file(self.base(), &file).await;
        (email, token)
    }

    /// Replaces the project's policy with `bindings` (role, email).
    async fn grant(&self, bindings: &[(&str, &str)]) {
        let pol = self.admin("POST", &format!("/v1/projects/{P}:getIamPolicy"), json!({})).await;
        let bindings: Vec<Value> = bindings
            .iter()
            .map(|(role, email)| json!({"role": role, "members": [format!("serviceAccount:{email}")]}))
            .collect();
        self.admin(
            "POST",
            &format!("/v1/projects/{P}:setIamPolicy"),
            json!({"policy": {"etag": pol["etag"], "bindings": bindings}}),
        )
        .await;
    }
}

/// The JWT-bearer grant, as Google's auth libraries make it from a key file.
async fn token_from_key_file(base: &str, file: &Value) -> String {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": file["private_key_id"]});
    let claims = json!({"iss": file["client_email"], "aud": file["token_uri"], "iat": now, "exp": now + 3600,
        "scope": "https://www.googleapis.com/auth/cloud-platform"});
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let key =
        rsa::RsaPrivateKey::from_pkcs8_pem(file["private_key"].as_str().expect("private_key")).expect("a PKCS#8 key");
    let signature = rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(key).sign(input.as_bytes()).to_bytes();
    let form = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={input}.{}",
        b64(&signature)
    );
    let (code, _, body) =
        exchange(base, "POST", "/token", &[("Content-Type", "application/x-www-form-urlencoded")], form.as_bytes())
            .await;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(code, 200, "token endpoint: {v}");
    v["access_token"].as_str().expect("access_token").to_string()
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_need_the_permission_of_each_method() {
    let env = Env::start(true).await;
    // What there is to read, made with the admin token.
    env.admin(
        "POST",
        &format!("/v1/projects/{P}/instances"),
        json!({"name": "db1", "region": "us-central1",
        "databaseVersion": "POSTGRES_15", "rootPassword": "root-pw", "settings": {"tier": "db-custom-1-3840"}}),
    )
    .await;
    env.admin(
        "POST",
        &format!("/v1/projects/{P}/locations/us-central1/clusters"),
        json!({"cluster": {"name": "c1", "initialNodeCount": 1}}),
    )
    .await;
    env.admin("POST", &format!("/storage/v1/b?project={P}"), json!({"name": "iam-bucket"})).await;
    let (code, v) =
        env.raw(ADMIN, "POST", "/upload/storage/v1/b/iam-bucket/o?uploadType=media&name=state.json", b"{}").await;
    assert_eq!(code, 200, "{v}");
    assert!(env.emu.settle(Duration::from_secs(120)).await);
    let (viewer, viewer_token) = env.principal("viewer-sa").await;
    let (writer, wt) = env.principal("writer-sa").await;
    env.grant(&[
        ("roles/viewer", &viewer),
        ("roles/storage.objectViewer", &viewer),
        ("roles/storage.objectAdmin", &writer),
    ])
    .await;
    let vt = Some(viewer_token.as_str());

    // Reads the viewer roles grant.
    for (m, path, body) in [
        ("GET", format!("/v1/projects/{P}/instances/db1"), None),
        ("GET", format!("/sql/v1beta4/projects/{P}/instances"), None),
        ("GET", format!("/v1/projects/{P}/locations/us-central1/clusters/c1"), None),
        ("POST", format!("/v1/projects/{P}:getIamPolicy"), Some(json!({}))),
        ("GET", format!("/v3/projects/{P}"), None),
        ("GET", format!("/v1/projects/{P}/serviceAccounts"), None),
        ("GET", format!("/v1/projects/{P}/services"), None),
        ("GET", "/storage/v1/b/iam-bucket".to_string(), None),
        ("GET", "/storage/v1/b/iam-bucket/o".to_string(), None),
        ("GET", "/storage/v1/b/iam-bucket/o/state.json".to_string(), None),
    ] {
        let (code, v) = env.call(vt, m, &path, body.as_ref()).await;
        assert_eq!(code, 200, "viewer {m} {path}: {v}");
    }
    let auth = format!("Bearer {viewer_token}");
    let (code, _, data) = exchange(
        env.base(),
        "GET",
        "/download/storage/v1/b/iam-bucket/o/state.json?alt=media",
        &[("Authorization", auth.as_str())],
        b"",
    )
    .await;
    assert_eq!((code, data.as_slice()), (200, b"{}".as_slice()));
    // testIamPermissions answers what the caller holds.
    let (code, v) = env
        .call(
            vt,
            "POST",
            &format!("/v1/projects/{P}:testIamPermissions"),
            Some(&json!({"permissions": ["resourcemanager.projects.get", "resourcemanager.projects.setIamPolicy"]})),
        )
        .await;
    assert_eq!((code, v["permissions"].clone()), (200, json!(["resourcemanager.projects.get"])), "{v}");

    // Writes they do not: Cloud Storage's shape, naming the principal and the permission.
    let (code, v) =
        env.raw(&viewer_token, "POST", "/upload/storage/v1/b/iam-bucket/o?uploadType=media&name=new.json", b"{}").await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        message(&v),
        format!(
            "{viewer} does not have storage.objects.create access to the Google Cloud Storage object. Permission 'storage.objects.create' denied on resource (or it may not exist)."
        )
    );
    assert_eq!(v["error"]["errors"][0]["reason"], "forbidden");
    assert_eq!(v["error"]["errors"][0]["domain"], "global");
    let (code, v) = env.call(vt, "DELETE", "/storage/v1/b/iam-bucket/o/state.json", None).await;
    assert_eq!(code, 403, "{v}");
    assert!(message(&v).contains("storage.objects.delete"), "{v}");
    let (code, v) =
        env.call(vt, "POST", &format!("/storage/v1/b?project={P}"), Some(&json!({"name": "other-bucket"}))).await;
    assert_eq!(code, 403, "{v}");
    assert!(message(&v).contains("storage.buckets.create access to the Google Cloud project"), "{v}");
    // Cloud SQL keeps its notAuthorized shape.
    let (code, v) = env
        .call(
            vt,
            "PATCH",
            &format!("/v1/projects/{P}/instances/db1"),
            Some(&json!({"settings": {"userLabels": {"a": "b"}}})),
        )
        .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["error"]["errors"][0]["reason"], "notAuthorized");
    assert!(message(&v).starts_with("The client is not authorized to make this request"), "{v}");
    assert!(message(&v).contains("cloudsql.instances.update") && message(&v).contains(&viewer), "{v}");
    // The others: google.rpc's PERMISSION_DENIED with IAM_PERMISSION_DENIED.
    let (code, v) = env
        .call(vt, "POST", &format!("/v1/projects/{P}:setIamPolicy"), Some(&json!({"policy": {"bindings": []}})))
        .await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(
        message(&v),
        format!(
            "Permission 'resourcemanager.projects.setIamPolicy' denied on resource '//cloudresourcemanager.googleapis.com/projects/{P}' (or it may not exist)."
        )
    );
    assert_eq!(v["error"]["details"][0]["reason"], "IAM_PERMISSION_DENIED");
    assert_eq!(v["error"]["details"][0]["metadata"]["permission"], "resourcemanager.projects.setIamPolicy");
    let (code, v) = env.call(vt, "DELETE", &format!("/v1/projects/{P}/locations/us-central1/clusters/c1"), None).await;
    assert_eq!(code, 403, "{v}");
    assert!(message(&v).contains("'container.clusters.delete'"), "{v}");
    let (code, v) =
        env.call(vt, "POST", &format!("/v1/projects/{P}/serviceAccounts/{viewer}/keys"), Some(&json!({}))).await;
    assert_eq!(code, 403, "{v}");
    assert!(message(&v).contains("'iam.serviceAccountKeys.create'"), "{v}");
    let (code, v) = env
        .call(vt, "POST", &format!("/v1/projects/{P}/services/container.googleapis.com:enable"), Some(&json!({})))
        .await;
    assert_eq!(code, 403, "{v}");
    assert!(message(&v).contains("'serviceusage.services.enable'"), "{v}");
    let (code, v) = env.call(vt, "GET", &format!("/v1/projects/{P}/instances/db1/connectSettings"), None).await;
    assert_eq!(code, 403, "{v}");
    assert!(message(&v).contains("cloudsql.instances.connect") && message(&v).contains("roles/cloudsql.client"), "{v}");

    // The object admin writes objects, and reads nothing else.
    let wt = wt.as_str();
    let (code, v) =
        env.raw(wt, "POST", "/upload/storage/v1/b/iam-bucket/o?uploadType=media&name=new.json", b"[1]").await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = env
        .call(Some(wt), "PATCH", "/storage/v1/b/iam-bucket/o/new.json", Some(&json!({"metadata": {"k": "v"}})))
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = env.call(Some(wt), "DELETE", "/storage/v1/b/iam-bucket/o/new.json", None).await;
    assert_eq!(code, 204, "{v}");
    let (code, v) = env.call(Some(wt), "GET", &format!("/v1/projects/{P}/instances/db1"), None).await;
    assert_eq!(code, 403, "{v}");
    let (code, v) = env.call(Some(wt), "GET", "/storage/v1/b/iam-bucket", None).await;
    assert_eq!(code, 403, "{v}");
    assert!(message(&v).contains("storage.buckets.get access to the Google Cloud Storage bucket"), "{v}");

    // The admin token is the owner.
    let (code, v) = env
        .call(
            None,
            "PATCH",
            &format!("/v1/projects/{P}/instances/db1"),
            Some(&json!({"settings": {"userLabels": {"a": "b"}}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = env.raw(ADMIN, "DELETE", "/storage/v1/b/iam-bucket/o/state.json", b"").await;
    assert_eq!(code, 204, "{v}");
    assert!(env.emu.settle(Duration::from_secs(120)).await);

    // The stats say what each minted identity asked, refused or not; the admin token is no one's.
    let stats = env.emu.stats();
    let writer_calls = &stats.by_caller[&writer];
    assert_eq!(writer_calls.get("storage.objects.delete"), Some(&1), "{writer_calls:?}");
    assert_eq!(writer_calls.get("sql.instances.get"), Some(&1), "{writer_calls:?}");
    assert_eq!(writer_calls.get("sql.instances.patch"), None, "{writer_calls:?}");
    let viewer_calls = &stats.by_caller[&viewer];
    assert_eq!(viewer_calls.get("sql.instances.patch"), Some(&1), "{viewer_calls:?}");
    assert_eq!(stats.by_caller.len(), 2, "only the two minted identities: {:?}", stats.by_caller.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_enforcement_a_principal_may_do_anything() {
    let env = Env::start(false).await;
    let (_, token) = env.principal("no-roles-sa").await;
    let t = Some(token.as_str());
    let (code, v) =
        env.call(t, "POST", &format!("/storage/v1/b?project={P}"), Some(&json!({"name": "free-bucket"}))).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = env.raw(&token, "POST", "/upload/storage/v1/b/free-bucket/o?uploadType=media&name=x", b"x").await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = env
        .call(t, "POST", &format!("/v1/projects/{P}:setIamPolicy"), Some(&json!({"policy": {"bindings": []}})))
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = env
        .call(
            t,
            "POST",
            &format!("/v1/projects/{P}/locations/us-central1/clusters"),
            Some(&json!({"cluster": {"name": "c2", "initialNodeCount": 1}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = env
        .call(
            t,
            "POST",
            &format!("/v1/projects/{P}:testIamPermissions"),
            Some(&json!({"permissions": ["resourcemanager.projects.setIamPolicy"]})),
        )
        .await;
    assert_eq!((code, v["permissions"].clone()), (200, json!(["resourcemanager.projects.setIamPolicy"])), "{v}");
    assert!(env.emu.settle(Duration::from_secs(60)).await);
}

/// A POST to a webhook, as the kube-apiserver makes it: no Authorization header.
async fn review(base: &str, path: &str, body: Value) -> Value {
    let (code, v) = common::call(base, "POST", path, Some(&body)).await;
    assert_eq!(code, 200, "{path}: {v}");
    v
}

fn sar(user: &str, attrs: Value) -> Value {
    json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["system:authenticated"], "resourceAttributes": attrs}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gke_webhooks_authenticate_google_tokens_and_authorize_by_iam() {
    let env = Env::start(false).await;
    let base = env.base().to_string();
    let (viewer, vt) = env.principal("kube-viewer").await;
    let (developer, _) = env.principal("kube-dev").await;
    env.grant(&[("roles/viewer", &viewer), ("roles/container.developer", &developer)]).await;

    // TokenReview: a minted token is its service account; anything else is not authenticated.
    let tr = |token: &str| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token, "audiences": ["https://kubernetes.default.svc"]}})
    };
    let v = review(&base, "/gke/v1/tokenreview", tr(&vt)).await;
    assert_eq!(v["kind"], "TokenReview");
    assert_eq!(v["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(v["status"]["authenticated"], true, "{v}");
    assert_eq!(v["status"]["user"]["username"], viewer.as_str());
    assert_eq!(v["status"]["user"]["groups"], json!(["system:authenticated"]));
    let sa = env.admin("GET", &format!("/v1/projects/{P}/serviceAccounts/{viewer}"), Value::Null).await;
    assert_eq!(v["status"]["user"]["uid"], sa["uniqueId"]);
    assert_eq!(v["status"]["audiences"], json!(["https://kubernetes.default.svc"]));
    let v = review(&base, "/gke/v1/tokenreview", tr("ya29.not-a-token-we-minted")).await;
    assert_eq!(v["status"]["authenticated"], false, "{v}");
    assert!(!v.to_string().contains("ya29.not-a-token"), "the answer echoes the token: {v}");
    let v = review(&base, "/gke/v1/tokenreview", tr(ADMIN)).await;
    assert_eq!(v["status"]["authenticated"], false, "{v}");

    // SubjectAccessReview: IAM's container.* permissions.
    let allowed = |v: &Value| v["status"]["allowed"] == true;
    let sar_path = "/gke/v1/subjectaccessreview";
    let pods = json!({"namespace": "default", "verb": "get", "group": "", "resource": "pods", "name": "p"});
    let v = review(&base, sar_path, sar(&viewer, pods.clone())).await;
    assert!(allowed(&v), "{v}");
    assert_eq!(v["kind"], "SubjectAccessReview");
    let v = review(
        &base,
        sar_path,
        sar(&viewer, json!({"namespace": "default", "verb": "watch", "group": "apps", "resource": "deployments"})),
    )
    .await;
    assert!(allowed(&v), "{v}");
    let v = review(
        &base,
        sar_path,
        sar(
            &viewer,
            json!({"namespace": "default", "verb": "get", "group": "", "resource": "pods", "subresource": "log"}),
        ),
    )
    .await;
    assert!(allowed(&v), "{v}");
    for (attrs, permission) in [
        (
            json!({"namespace": "default", "verb": "get", "group": "", "resource": "secrets", "name": "s"}),
            "container.secrets.get",
        ),
        (
            json!({"namespace": "default", "verb": "create", "group": "", "resource": "configmaps"}),
            "container.configMaps.create",
        ),
        (
            json!({"namespace": "default", "verb": "get", "group": "", "resource": "services", "subresource": "proxy", "name": "web"}),
            "container.services.proxy",
        ),
    ] {
        let v = review(&base, sar_path, sar(&viewer, attrs)).await;
        assert_eq!(v["status"]["allowed"], false, "{v}");
        assert!(v["status"].get("denied").is_none(), "never denied, RBAC may allow: {v}");
        assert!(v["status"]["reason"].as_str().unwrap_or_default().contains(permission), "{v}");
    }
    let v = review(
        &base,
        sar_path,
        sar(&developer, json!({"namespace": "default", "verb": "get", "group": "", "resource": "secrets"})),
    )
    .await;
    assert!(allowed(&v), "{v}");
    let v = review(
        &base,
        sar_path,
        sar(
            &developer,
            json!({"verb": "create", "group": "rbac.authorization.k8s.io", "resource": "clusterrolebindings"}),
        ),
    )
    .await;
    assert_eq!(v["status"]["allowed"], false, "{v}");
    let discovery = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": viewer, "nonResourceAttributes": {"path": "/apis", "verb": "get"}}});
    assert!(allowed(&review(&base, sar_path, discovery).await));
    // Not a service account, or one without roles: not allowed.
    let v = review(&base, sar_path, sar("alice@example.com", pods.clone())).await;
    assert_eq!(v["status"]["allowed"], false, "{v}");
    let v = review(&base, sar_path, sar(&format!("nobody@{P}.iam.gserviceaccount.com"), pods.clone())).await;
    assert_eq!(v["status"]["allowed"], false, "{v}");
    // The cluster's project can be named in the URL: the viewer has no roles in another project.
    let v = review(&base, &format!("{sar_path}?project=other-proj"), sar(&viewer, pods)).await;
    assert_eq!(v["status"]["allowed"], false, "{v}");
    assert!(v["status"]["reason"].as_str().unwrap_or_default().contains("other-proj"), "{v}");
}
