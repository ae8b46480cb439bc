//! `gcp-emulator`: serves the emulator on a loopback port for the testbed, demos and gcloud (the
//! binary, above every floor: it uses the library's public API only).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gcp_emulator::{Config, Emulator, OpDurations};

/// Local emulator of Cloud SQL Admin, IAM, Resource Manager, GKE, Service Usage and Cloud Storage.
#[derive(Debug, Parser)]
#[command(name = "gcp-emulator", version)]
struct Cli {
    /// Address to listen on (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Keep state (and PostgreSQL data) in this directory across restarts.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Endpoint reported for GKE clusters, e.g. https://127.0.0.1:6443.
    #[arg(long)]
    gke_endpoint: Option<String>,
    /// PEM file of the CA reported for GKE clusters.
    #[arg(long)]
    gke_ca_file: Option<PathBuf>,
    /// Require `Authorization: Bearer <contents of this file>` on API requests.
    #[arg(long)]
    access_token_file: Option<PathBuf>,
    /// Duration of every long-running operation, in milliseconds.
    #[arg(long, default_value_t = 0)]
    op_duration_ms: u64,
    /// How long new service accounts stay invisible (eventual consistency), in milliseconds.
    #[arg(long, default_value_t = 0)]
    sa_visibility_delay_ms: u64,
    /// Seed of the fault-injection random generator.
    #[arg(long, default_value_t = 0)]
    fault_seed: u64,
    /// Enforce IAM on principals' tokens: every API method needs its IAM permission from the project's policy.
    #[arg(long)]
    enforce_iam: bool,
    /// Serve the APIs over HTTPS with a certificate from the emulator's own CA.
    #[arg(long)]
    tls: bool,
    /// Write the emulator's CA certificate (PEM) to this file, for clients to trust.
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Network for Cloud SQL instance addresses, e.g. 10.64.0.0/16 (default: 127.64.0.0/10).
    #[arg(long, value_parser = parse_network)]
    sql_network: Option<(std::net::Ipv4Addr, u8)>,
    /// Also serve pods' metadata server here (e.g. 169.254.169.254:80): callers are known by source address.
    #[arg(long)]
    metadata_listen: Option<SocketAddr>,
    /// Also answer pods' DNS here (UDP): metadata.google.internal, NXDOMAIN for every other name.
    #[arg(long)]
    dns_listen: Option<SocketAddr>,
    /// Google's discovery documents (what scripts/discovery-docs prints; default: $SKYFORM_DISCOVERY_DIR,
    /// else its cache directory). Every request and answer is held to them.
    #[arg(long)]
    discovery_dir: Option<PathBuf>,
}

fn parse_network(s: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let (ip, prefix) = s.split_once('/').ok_or_else(|| format!("'{s}' is not ADDRESS/PREFIX, e.g. 10.64.0.0/16"))?;
    let ip = ip.parse().map_err(|e| format!("'{ip}': {e}"))?;
    let prefix = prefix.parse().map_err(|e| format!("'{prefix}': {e}"))?;
    Ok((ip, prefix))
}

fn read(path: &PathBuf, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn config(cli: Cli) -> Result<Config, String> {
    let mut c = Config {
        listen: cli.listen,
        state_dir: cli.state_dir,
        fault_seed: cli.fault_seed,
        enforce_iam: cli.enforce_iam,
        tls: cli.tls,
        sql_network: cli.sql_network,
        metadata_listen: cli.metadata_listen,
        dns_listen: cli.dns_listen,
        discovery_dir: cli.discovery_dir,
        ..Config::default()
    };
    c.op_durations = OpDurations::uniform(Duration::from_millis(cli.op_duration_ms));
    c.sa_visibility_delay = Duration::from_millis(cli.sa_visibility_delay_ms);
    if let Some(e) = cli.gke_endpoint {
        c.gke_endpoint = e;
    }
    if let Some(p) = &cli.gke_ca_file {
        c.gke_ca_pem = read(p, "GKE CA file")?;
    }
    if let Some(p) = &cli.access_token_file {
        let token = read(p, "access token file")?.trim().to_string();
        if token.is_empty() {
            return Err(format!("access token file {} is empty", p.display()));
        }
        c.access_token = Some(token);
    }
    Ok(c)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let ca_out = cli.ca_out.clone();
    let config = match config(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gcp-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    let emu = match Emulator::start(config).await {
        Ok(e) => e,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("gcp-emulator: {msg}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(p) = ca_out
        && let Err(e) = std::fs::write(&p, emu.ca_pem())
    {
        eprintln!("gcp-emulator: cannot write the CA to {}: {e}", p.display());
        return ExitCode::FAILURE;
    }
    // The testbed waits for exactly this line on stdout.
    #[allow(clippy::print_stdout)]
    {
        println!("listening on {}", emu.base_url());
    }
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gcp-emulator: cannot watch SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("gcp-emulator: stopping");
    emu.shutdown().await;
    ExitCode::SUCCESS
}
