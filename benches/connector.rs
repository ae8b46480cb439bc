//! Connection time to a Cloud SQL instance: skyform's connector against the real Cloud SQL Auth
//! Proxy, both against the emulator in this process (real PostgreSQL behind the instance, TLS 1.3
//! on its port 3307).
//!
//! `cargo bench --bench connector` prints, for 20 connections each, the median and the spread of:
//! - skyform, warm: a PostgreSQL session (TLS handshake with the cached ephemeral certificate,
//!   startup, SCRAM login, `select 1`) through a `Connector` that has its certificate already;
//! - skyform, cold: the same through a new `Connector` each time (an RSA-2048 key, `connectSettings`,
//!   `generateEphemeralCert`, then the session);
//! - the proxy, warm: the same session through a running `cloud-sql-proxy` on 127.0.0.1 (its client
//!   leg is plaintext on loopback; the proxy keeps its certificate);
//! - the proxy, cold: from starting the proxy to the first session's answer.
//!
//! The proxy is the one `scripts/testbed-build cloud-sql-proxy` builds (`$SKYFORM_CLOUD_SQL_PROXY`, else
//! the testbed cache at the pinned version); without it only skyform's figures are printed.

#![allow(clippy::print_stdout)] // a benchmark prints its figures

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use gcp_emulator::{Config, Emulator, OpDurations};
use serde_json::json;
use skyform::foundation::net::{Net, TokenSource};
use skyform::providers::postgres::connector::{ConnectionName, Connector, Login};
use tokio::io::AsyncBufReadExt;

const P: &str = "bench-proj";
const ROUNDS: usize = 20;
const ROOT_PASSWORD: &str = "bench-root-pw-1";

fn proxy_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SKYFORM_CLOUD_SQL_PROXY").map(PathBuf::from).filter(|p| p.exists()) {
        return Some(p);
    }
    let versions =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testbed-versions.env")).ok()?;
    let v = versions.lines().find_map(|l| l.strip_prefix("CLOUD_SQL_PROXY_VERSION="))?.trim().to_string();
    let cache = std::env::var_os("SKYFORM_TESTBED_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/skyform/testbed"));
    Some(cache.join(format!("cloud-sql-proxy-{v}/bin/cloud-sql-proxy"))).filter(|p| p.exists())
}

async fn create_instance(base: &str) {
    let http = reqwest::Client::new();
    let body = json!({"name": "db", "region": "us-central1", "databaseVersion": "POSTGRES_15",
                      "rootPassword": ROOT_PASSWORD, "settings": {"tier": "db-custom-1-3840"}});
    let r = http.post(format!("{base}v1/projects/{P}/instances")).json(&body).send().await.expect("create");
    assert!(r.status().is_success(), "create: {}", r.text().await.unwrap_or_default());
    for _ in 0..600 {
        let i: serde_json::Value =
            http.get(format!("{base}v1/projects/{P}/instances/db")).send().await.unwrap().json().await.unwrap();
        if i["state"] == "RUNNABLE" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the instance did not become RUNNABLE");
}

fn pg_config() -> tokio_postgres::Config {
    let mut cfg = tokio_postgres::Config::new();
    cfg.user("postgres").password(ROOT_PASSWORD).dbname("postgres").ssl_mode(tokio_postgres::config::SslMode::Disable);
    cfg
}

/// A session through `c`, up to the answer of `select 1`.
async fn through_connector(c: &Connector) {
    let stream = c.dial(Duration::from_secs(10)).await.expect("dial");
    let (client, conn) = pg_config().connect_raw(stream, tokio_postgres::NoTls).await.expect("login");
    tokio::spawn(conn);
    client.simple_query("select 1").await.expect("select 1");
}

/// A session through the proxy on `port`, up to the answer of `select 1`.
async fn through_proxy(port: u16) {
    let mut cfg = pg_config();
    cfg.host("127.0.0.1").port(port);
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("login through the proxy");
    tokio::spawn(conn);
    client.simple_query("select 1").await.expect("select 1");
}

fn connector(net: &Net, base: &str) -> Connector {
    Connector::with_admin_api(
        net.clone(),
        base,
        Some(TokenSource::Static("bench-token".into())),
        format!("{P}:us-central1:db").parse::<ConnectionName>().unwrap(),
        Login::Password,
    )
}

fn report(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let median = (ms[ms.len() / 2] + ms[(ms.len() - 1) / 2]) / 2.0;
    println!(
        "{what:<34} median {median:>7.1} ms   min {:>7.1}   max {:>7.1}   (n = {})",
        ms[0],
        ms[ms.len() - 1],
        ms.len()
    );
}

async fn timed<F: std::future::Future<Output = ()>>(f: F) -> f64 {
    let t = Instant::now();
    f.await;
    t.elapsed().as_secs_f64() * 1000.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the proxy on `port`; returns the child once it says it is ready.
async fn start_proxy(proxy: &PathBuf, base: &str, port: u16) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(proxy)
        .args(["--sqladmin-api-endpoint", base, "--token", "bench-token", "--port", &port.to_string()])
        .arg(format!("{P}:us-central1:db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the proxy runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while let Ok(Some(l)) = lines.next_line().await {
        if l.contains("ready for new connections") {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return child;
        }
    }
    panic!("the proxy did not start");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    gcp_emulator::contract::ensure_documents();
    let emu =
        Emulator::start(Config { op_durations: OpDurations::uniform(Duration::from_millis(20)), ..Default::default() })
            .await
            .expect("emulator");
    let base = emu.base_url().to_string();
    let net = Net::new();
    create_instance(&base).await;
    println!(
        "Connections to a Cloud SQL instance on the emulator ({ROUNDS} each; session = TLS + startup + SCRAM + select 1):"
    );

    let warm = connector(&net, &base);
    through_connector(&warm).await;
    let mut ms = Vec::new();
    for _ in 0..ROUNDS {
        ms.push(timed(through_connector(&warm)).await);
    }
    report("skyform connector, warm", ms);
    let mut ms = Vec::new();
    for _ in 0..ROUNDS {
        let c = connector(&net, &base);
        ms.push(timed(through_connector(&c)).await);
    }
    report("skyform connector, cold (new key)", ms);

    match proxy_binary() {
        None => println!("cloud-sql-proxy: not built (scripts/testbed-build cloud-sql-proxy); no comparison"),
        Some(proxy) => {
            let port = free_port();
            let child = start_proxy(&proxy, &base, port).await;
            through_proxy(port).await;
            let mut ms = Vec::new();
            for _ in 0..ROUNDS {
                ms.push(timed(through_proxy(port)).await);
            }
            report("cloud-sql-proxy, warm", ms);
            drop(child);
            let mut ms = Vec::new();
            for _ in 0..ROUNDS {
                let port = free_port();
                let t = Instant::now();
                let child = start_proxy(&proxy, &base, port).await;
                through_proxy(port).await;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
                drop(child);
            }
            report("cloud-sql-proxy, cold (start)", ms);
        }
    }
    emu.shutdown().await;
}
