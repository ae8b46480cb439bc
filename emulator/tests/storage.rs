//! Cloud Storage: the real `gcloud storage` against the emulator (buckets create/describe/delete,
//! cp up (simple and resumable) and down, ls, cat with gcloud's hash check, rm, preconditions),
//! then the JSON API over HTTP: generation preconditions and their 412/304 answers, 404 shapes,
//! list with prefix/delimiter/pagination, the XML download path with a range, a resumable upload
//! in chunks, persistence across a restart, stats and faults.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{call, exchange};
use gcp_emulator::{Config, Emulator};
use serde_json::{Value, json};

const P: &str = "state-proj";
const B: &str = "acme-skyform-state";

fn gcloud_path() -> String {
    std::env::var("SKYFORM_GCLOUD").unwrap_or_else(|_| "gcloud".into())
}

/// Runs gcloud against the emulator's Storage endpoint; returns (success, stdout, stderr).
async fn gcloud(base: &str, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(gcloud_path());
    cmd.args(args)
        .current_dir(dir)
        .env("CLOUDSDK_CONFIG", dir.join("gcloud"))
        .env("CLOUDSDK_CORE_PROJECT", P)
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
        .env("CLOUDSDK_CORE_CHECK_GCE_METADATA", "false")
        .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true")
        .env("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true")
        .env("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", dir.join("token"))
        .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE", base)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("gcloud {args:?} timed out"))
        .unwrap_or_else(|e| panic!("gcloud is not installed or cannot run ({e}); this test needs it"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn ok(base: &str, dir: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = gcloud(base, dir, args).await;
    assert!(success, "gcloud {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_storage_creates_copies_lists_reads_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "storage-test-token").unwrap();
    gcp_emulator::contract::ensure_documents();
    let emu =
        Emulator::start(Config { access_token: Some("storage-test-token".into()), ..Config::default() }).await.unwrap();
    let base = emu.base_url();
    let d = dir.path();

    ok(base, d, &["storage", "buckets", "create", &format!("gs://{B}"), "--location", "us-central1"]).await;
    let described: Value = serde_json::from_str(
        &ok(base, d, &["storage", "buckets", "describe", &format!("gs://{B}"), "--format=json"]).await,
    )
    .unwrap();
    assert_eq!(described["name"], B, "{described}");
    assert_eq!(described["location"], "US-CENTRAL1", "{described}");
    let buckets = ok(base, d, &["storage", "ls"]).await;
    assert!(buckets.contains(&format!("gs://{B}/")), "{buckets}");

    // A small file (one multipart request) and one above gcloud's resumable threshold.
    std::fs::write(d.join("state.json"), b"{\"serial\": 1}\n").unwrap();
    let big: Vec<u8> = (0..9 * 1024 * 1024 + 17).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(d.join("big.bin"), &big).unwrap();
    ok(base, d, &["storage", "cp", "state.json", &format!("gs://{B}/skypilot/prod/state.json")]).await;
    ok(base, d, &["storage", "cp", "big.bin", &format!("gs://{B}/skypilot/big.bin")]).await;
    let stats = emu.stats();
    assert!(
        stats.requests.get("storage.objects.insert").copied().unwrap_or(0) >= 3,
        "multipart + resumable start + chunk: {stats:?}"
    );

    // cat and cp down check the hashes: they must be right.
    assert_eq!(
        ok(base, d, &["storage", "cat", &format!("gs://{B}/skypilot/prod/state.json")]).await,
        "{\"serial\": 1}\n"
    );
    ok(base, d, &["storage", "cp", &format!("gs://{B}/skypilot/big.bin"), "back.bin"]).await;
    assert!(std::fs::read(d.join("back.bin")).unwrap() == big, "the big object came back intact");
    let meta: Value = serde_json::from_str(
        &ok(
            base,
            d,
            &["storage", "objects", "describe", &format!("gs://{B}/skypilot/prod/state.json"), "--format=json"],
        )
        .await,
    )
    .unwrap();
    assert_eq!(meta["md5_hash"], md5_b64(b"{\"serial\": 1}\n"), "{meta}");
    let generation = meta["generation"].as_str().map(str::to_string).unwrap_or_else(|| meta["generation"].to_string());

    // ls with a delimiter, and recursively.
    let top = ok(base, d, &["storage", "ls", &format!("gs://{B}/skypilot/")]).await;
    assert!(
        top.contains(&format!("gs://{B}/skypilot/prod/")) && top.contains(&format!("gs://{B}/skypilot/big.bin")),
        "{top}"
    );
    let all = ok(base, d, &["storage", "ls", "-r", &format!("gs://{B}")]).await;
    assert!(all.contains("skypilot/prod/state.json"), "{all}");

    // Preconditions: a stale generation is refused, the right one accepted; no-clobber skips.
    let (success, _, stderr) = gcloud(
        base,
        d,
        &["storage", "cp", "state.json", &format!("gs://{B}/skypilot/prod/state.json"), "--if-generation-match=1"],
    )
    .await;
    assert!(!success && stderr.contains("pre-conditions"), "{stderr}");
    ok(
        base,
        d,
        &[
            "storage",
            "cp",
            "state.json",
            &format!("gs://{B}/skypilot/prod/state.json"),
            &format!("--if-generation-match={generation}"),
        ],
    )
    .await;
    let (_, stdout, stderr) = gcloud(
        base,
        d,
        &["storage", "cp", "state.json", &format!("gs://{B}/skypilot/prod/state.json"), "--no-clobber"],
    )
    .await;
    assert!(format!("{stdout}{stderr}").contains("Skipping existing"), "{stdout}{stderr}");

    // A bucket with objects cannot be deleted; once empty it can.
    let (success, _, stderr) = gcloud(base, d, &["storage", "buckets", "delete", &format!("gs://{B}")]).await;
    assert!(!success, "{stderr}");
    ok(
        base,
        d,
        &["storage", "rm", &format!("gs://{B}/skypilot/big.bin"), &format!("gs://{B}/skypilot/prod/state.json")],
    )
    .await;
    let (success, _, _) = gcloud(base, d, &["storage", "cat", &format!("gs://{B}/skypilot/prod/state.json")]).await;
    assert!(!success, "a removed object is gone");
    ok(base, d, &["storage", "buckets", "delete", &format!("gs://{B}")]).await;
    common::assert_contract_kept(&emu);
}

fn md5_b64(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, Md5::digest(data))
}

async fn bucket(base: &str) {
    let (code, body) = call(base, "POST", &format!("/storage/v1/b?project={P}"), Some(&json!({"name": B}))).await;
    assert_eq!(code, 200, "{body}");
}

/// A media upload; returns the status and the JSON answer.
async fn put(base: &str, name: &str, data: &[u8], extra_query: &str) -> (u16, Value) {
    let path = format!("/upload/storage/v1/b/{B}/o?uploadType=media&name={}{extra_query}", name.replace('/', "%2F"));
    let (code, _, body) = exchange(base, "POST", &path, &[("Content-Type", "application/json")], data).await;
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn gen_of(v: &Value) -> i64 {
    v["generation"].as_str().and_then(|g| g.parse().ok()).unwrap_or_else(|| panic!("no generation in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_preconditions_guard_every_write() {
    gcp_emulator::contract::ensure_documents();
    let emu = Emulator::start(Config::default()).await.unwrap();
    let base = emu.base_url();
    bucket(base).await;
    let o = "p/default.tflock";
    let obj = format!("/storage/v1/b/{B}/o/p%2Fdefault.tflock");

    // Create-if-absent: once.
    let (code, first) = put(base, o, b"{\"who\":\"a\"}", "&ifGenerationMatch=0").await;
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["size"], "11");
    assert_eq!(first["metageneration"], "1");
    assert_eq!(first["md5Hash"], md5_b64(b"{\"who\":\"a\"}"));
    let g1 = gen_of(&first);
    let (code, refused) = put(base, o, b"{\"who\":\"b\"}", "&ifGenerationMatch=0").await;
    assert_eq!(code, 412, "{refused}");
    assert_eq!(refused["error"]["errors"][0]["reason"], "conditionNotMet");
    assert_eq!(refused["error"]["message"], "At least one of the pre-conditions you specified did not hold.");

    // Compare-and-swap on the generation read.
    let (code, second) = put(base, o, b"{\"who\":\"a2\"}", &format!("&ifGenerationMatch={g1}")).await;
    assert_eq!(code, 200, "{second}");
    let g2 = gen_of(&second);
    assert_ne!(g1, g2);
    assert_eq!(put(base, o, b"x", &format!("&ifGenerationMatch={g1}")).await.0, 412, "a stale generation loses");

    // Reads: a Match that fails is 412, a NotMatch that fails is 304, an old generation is gone.
    assert_eq!(call(base, "GET", &format!("{obj}?ifGenerationMatch={g1}"), None).await.0, 412);
    assert_eq!(call(base, "GET", &format!("{obj}?ifGenerationNotMatch={g2}"), None).await.0, 304);
    let (code, gone) = call(base, "GET", &format!("{obj}?generation={g1}&alt=media"), None).await;
    assert_eq!(code, 404, "{gone}");
    let (code, _, data) = exchange(base, "GET", &format!("{obj}?generation={g2}&alt=media"), &[], b"").await;
    assert_eq!((code, data.as_slice()), (200, b"{\"who\":\"a2\"}".as_slice()));

    // Metadata: patch bumps the metageneration, guarded by ifMetagenerationMatch.
    let (code, patched) =
        call(base, "PATCH", &format!("{obj}?ifMetagenerationMatch=1"), Some(&json!({"metadata": {"holder": "a"}})))
            .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["metageneration"], "2");
    assert_eq!(patched["metadata"]["holder"], "a");
    assert_eq!(
        call(base, "PATCH", &format!("{obj}?ifMetagenerationMatch=1"), Some(&json!({"metadata": {}}))).await.0,
        412
    );

    // Delete only the generation we hold; then 404 in the API's shape.
    assert_eq!(call(base, "DELETE", &format!("{obj}?ifGenerationMatch={g1}"), None).await.0, 412);
    assert_eq!(call(base, "DELETE", &format!("{obj}?ifGenerationMatch={g2}"), None).await.0, 204);
    let (code, missing) = call(base, "GET", &obj, None).await;
    assert_eq!(code, 404);
    assert_eq!(missing["error"]["errors"][0]["reason"], "notFound");
    assert_eq!(missing["error"]["message"], format!("No such object: {B}/{o}"));
    let (code, nobucket) = call(base, "GET", "/storage/v1/b/no-such-bucket/o", None).await;
    assert_eq!(code, 404, "{nobucket}");

    // Counted by method, and faults apply to Storage like to the other APIs.
    let stats = emu.stats();
    assert!(stats.requests["storage.objects.insert"] >= 4 && stats.requests["storage.objects.get"] >= 4, "{stats:?}");
    let spec = json!({"seed": 1, "rules": [{"method": "storage.objects.get", "code": 503, "rate": 1.0}]});
    assert_eq!(call(base, "PUT", "/_emulator/faults", Some(&spec)).await.0, 200);
    assert_eq!(call(base, "GET", &obj, None).await.0, 503);
    assert_eq!(emu.stats().faults_injected["storage.objects.get"], 1);
    common::assert_contract_kept(&emu);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_rolls_up_prefixes_and_pages() {
    gcp_emulator::contract::ensure_documents();
    let emu = Emulator::start(Config::default()).await.unwrap();
    let base = emu.base_url();
    bucket(base).await;
    for name in ["a/1", "a/2", "a/sub/3", "b/1", "c", "d"] {
        assert_eq!(put(base, name, name.as_bytes(), "").await.0, 200);
    }
    let (_, v) = call(base, "GET", &format!("/storage/v1/b/{B}/o?delimiter=/"), None).await;
    let names: Vec<&str> = v["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["c", "d"]);
    assert_eq!(v["prefixes"], json!(["a/", "b/"]));
    let (_, v) = call(base, "GET", &format!("/storage/v1/b/{B}/o?prefix=a/&delimiter=/"), None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    assert_eq!(v["prefixes"], json!(["a/sub/"]));
    let (_, v) = call(base, "GET", &format!("/storage/v1/b/{B}/o?prefix=zzz"), None).await;
    assert!(v.get("items").is_none() && v["kind"] == "storage#objects", "{v}");

    // Pages of 2 give everything once, in order.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let path = match &token {
            Some(t) => format!("/storage/v1/b/{B}/o?maxResults=2&pageToken={t}"),
            None => format!("/storage/v1/b/{B}/o?maxResults=2"),
        };
        let (_, v) = call(base, "GET", &path, None).await;
        seen.extend(v["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()));
        token = v["nextPageToken"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["a/1", "a/2", "a/sub/3", "b/1", "c", "d"]);
    common::assert_contract_kept(&emu);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_reads_ranges_resumable_chunks_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = || Config { state_dir: Some(dir.path().to_path_buf()), ..Config::default() };
    gcp_emulator::contract::ensure_documents();
    let emu = Emulator::start(config()).await.unwrap();
    let base = emu.base_url().to_string();
    bucket(&base).await;

    // A resumable upload in two chunks, asking how far it got in between.
    let data: Vec<u8> = (0..1000u32).flat_map(|i| i.to_be_bytes()).collect();
    let (code, head, _) = exchange(
        &base,
        "POST",
        &format!("/upload/storage/v1/b/{B}/o?uploadType=resumable"),
        &[("Content-Type", "application/json")],
        json!({"name": "s/state.json", "contentType": "application/json"}).to_string().as_bytes(),
    )
    .await;
    assert_eq!(code, 200);
    let location = head.lines().find_map(|l| l.strip_prefix("location: ")).expect("a session URI").trim().to_string();
    let session = location.split_once("://").unwrap().1.split_once('/').map(|(_, p)| format!("/{p}")).unwrap();
    let (code, head, _) = exchange(&base, "PUT", &session, &[("Content-Range", "bytes 0-1499/*")], &data[..1500]).await;
    assert_eq!(code, 308);
    assert!(head.contains("range: bytes=0-1499"), "{head}");
    let (code, head, _) = exchange(&base, "PUT", &session, &[("Content-Range", "bytes */4000")], b"").await;
    assert_eq!(code, 308, "{head}");
    let (code, _, body) =
        exchange(&base, "PUT", &session, &[("Content-Range", "bytes 1500-3999/4000")], &data[1500..]).await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let meta: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(meta["size"], "4000");
    assert_eq!(meta["contentType"], "application/json");

    // The XML path with a range, and the headers clients check.
    let (code, head, part) =
        exchange(&base, "GET", &format!("/{B}/s/state.json"), &[("Range", "bytes=4-7")], b"").await;
    assert_eq!(code, 206);
    assert_eq!(part, &data[4..8]);
    assert!(head.contains("content-range: bytes 4-7/4000"), "{head}");
    assert!(head.contains(&format!("x-goog-generation: {}", gen_of(&meta))), "{head}");
    assert!(
        head.contains(
            &format!(
                "x-goog-hash: crc32c={},md5={}",
                meta["crc32c"].as_str().unwrap(),
                meta["md5Hash"].as_str().unwrap()
            )
            .to_lowercase()
        ),
        "{head}"
    );

    // Persisted: a restarted emulator serves the same bytes.
    common::assert_contract_kept(&emu);
    emu.shutdown().await;
    gcp_emulator::contract::ensure_documents();
    let emu = Emulator::start(config()).await.unwrap();
    let (code, _, again) =
        exchange(emu.base_url(), "GET", &format!("/storage/v1/b/{B}/o/s%2Fstate.json?alt=media"), &[], b"").await;
    assert_eq!(code, 200);
    assert!(again == data, "the object survives a restart");
}
