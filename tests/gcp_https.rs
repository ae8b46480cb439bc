//! skyform's TLS path to Google (reqwest + rustls with the platform verifier) against a real TLS
//! server: the emulator serving its APIs over HTTPS with a CA of its own. The CA is trusted the
//! way a user trusts a corporate proxy's CA (`SSL_CERT_FILE`); without it the connection is
//! refused as untrusted.

use std::process::{Command, Output};

use gcp_emulator::{Config, Emulator};

const SKYFORM: &str = env!("CARGO_BIN_EXE_skyform");

fn run(dir: &std::path::Path, base: &str, ca: Option<&std::path::Path>, args: &[&str]) -> Output {
    let mut c = Command::new(SKYFORM);
    c.current_dir(dir)
        .args(args)
        .env("SKYFORM_GCP_ENDPOINT", base)
        .env("SKYFORM_GCP_ACCESS_TOKEN", "test-token")
        .env_remove("SSL_CERT_DIR")
        .env("NO_COLOR", "1");
    match ca {
        Some(p) => c.env("SSL_CERT_FILE", p),
        // Another CA only: the emulator's certificate cannot verify.
        None => c.env("SSL_CERT_FILE", dir.join("other-ca.pem")),
    };
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_apply_over_https_trusting_the_emulators_ca() {
    gcp_emulator::contract::ensure_documents();
    let emu = Emulator::start(Config { tls: true, ..Default::default() }).await.expect("emulator");
    let base = emu.base_url().to_string();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("emulator-ca.pem");
    std::fs::write(&ca, emu.ca_pem()).unwrap();
    gcp_emulator::contract::ensure_documents();
    let other = Emulator::start(Config::default()).await.expect("another emulator, for another CA");
    std::fs::write(dir.path().join("other-ca.pem"), other.ca_pem()).unwrap();
    std::fs::write(
        dir.path().join("main.toml"),
        "[provider.gcp]\nproject = \"https-proj\"\n\n[resource.gcp_service_account.sa]\naccount_id = \"over-https\"\n",
    )
    .unwrap();

    // Untrusted: refused, saying why.
    let o = run(dir.path(), &base, None, &["plan", "-f", "main.toml"]);
    assert!(!o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("invalid peer certificate: UnknownIssuer") && t.contains("SSL_CERT_FILE"), "{t}");
    assert!(!t.contains("HTTP 495"), "{t}");
    assert!(!t.contains("retries exhausted"), "a certificate error is not retried: {t}");

    // Trusted: plan, apply, clean re-plan.
    let o = run(dir.path(), &base, Some(&ca), &["plan", "-f", "main.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("gcp_service_account.sa will be created"), "{}", text(&o));
    let o = run(dir.path(), &base, Some(&ca), &["apply", "-f", "main.toml", "--auto-approve"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(dir.path(), &base, Some(&ca), &["plan", "-f", "main.toml", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(emu.stats().requests.get("iam.serviceAccounts.create").is_some_and(|n| *n >= 1));
    let contract = emu.contract();
    assert!(contract.defects.is_empty() && contract.response_defects.is_empty(), "{contract:?}");
}
