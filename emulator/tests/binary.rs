//! The `gcp-emulator` binary as the testbed runs it: the ready line on stdout, the token check,
//! and a clean stop on SIGTERM that also stops the PostgreSQL servers it started.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{call, call_with};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prints_ready_line_checks_token_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "bin-token\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gcp-emulator"))
        .args(["--listen", "127.0.0.1:0", "--gke-endpoint", "https://127.0.0.1:6443", "--op-duration-ms", "100"])
        .arg("--access-token-file")
        .arg(&token)
        .arg("--discovery-dir")
        .arg(gcp_emulator::contract::ensure_documents())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gcp-emulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:") && base.ends_with('/'), "{base}");

    assert_eq!(call(&base, "GET", "/v1/projects/p", None).await.0, 401);
    let auth = [("Authorization", "Bearer bin-token")];
    let (code, op) = call_with(
        &base,
        "POST",
        "/v1/projects/p/instances",
        Some(&json!({"name": "bin-db", "databaseVersion": "POSTGRES_15", "settings": {"tier": "db-f1-micro"}})),
        &auth,
    )
    .await;
    assert_eq!(code, 200, "{op}");
    // Operations are polled with the token too; use the admin settle endpoint (no token needed).
    let (code, _) = call(&base, "POST", "/_emulator/settle?timeout_ms=60000", None).await;
    assert_eq!(code, 200);
    let (_, inst) = call_with(&base, "GET", "/v1/projects/p/instances/bin-db", None, &auth).await;
    assert_eq!(inst["state"], "RUNNABLE", "{inst}");
    let ip: std::net::IpAddr = inst["ipAddresses"][0]["ipAddress"].as_str().unwrap().parse().unwrap();
    let port = std::net::SocketAddr::new(ip, 5432);
    assert!(tokio::net::TcpStream::connect(port).await.is_ok());

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    assert!(exit.status.success(), "exit status {:?}", exit.status);
    let log = String::from_utf8_lossy(&exit.stderr);
    assert!(log.contains("POST /v1/projects/p/instances -> 200 sql.instances.insert"), "{log}");
    assert!(!log.contains("bin-token"), "the token must not be logged");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(tokio::net::TcpStream::connect(port).await.is_err(), "PostgreSQL stopped with the emulator");
}

#[test]
fn binary_refuses_to_start_without_the_discovery_documents() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gcp-emulator"))
        .args(["--listen", "127.0.0.1:0", "--discovery-dir"])
        .arg(dir.path().join("none"))
        .output()
        .expect("run gcp-emulator");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scripts/discovery-docs"), "{err}");
}
