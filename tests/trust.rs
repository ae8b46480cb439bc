//! A spec is untrusted input to `plan` (src/foundation/trust.rs): it cannot send the operator's
//! credentials anywhere, read files outside its directory, or run a program, unless the operator
//! allows it through the environment.
//!
//! Every command here runs in a network namespace of its own with no interface up (`unshare -n`):
//! the refusals must come before any connection, and if one did not, nothing could leave the
//! machine anyway (it fails with "network unreachable" instead of the refusal, and the test fails).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A token that must never be sent.
const TOKEN: &str = "ya29.operator-token-never-sent";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(spec: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.toml"), spec).unwrap();
        Env { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    /// `skyform <args>` in an empty network namespace, with the operator's token in the environment.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("unshare");
        c.arg("-n")
            .arg(env!("CARGO_BIN_EXE_skyform"))
            .args(args)
            .current_dir(self.dir.path())
            .env("SKYFORM_GCP_ACCESS_TOKEN", TOKEN)
            .env("HOME", self.dir.path())
            .env_remove("SKYFORM_GCP_ENDPOINT")
            .env_remove("SKYFORM_INSECURE_HTTP_HOSTS")
            .env_remove("SKYFORM_ALLOW_SPEC_ENDPOINTS")
            .env_remove("SKYFORM_ALLOW_SPEC_FILES")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        c
    }
}

/// Runs the same command outside the network namespace (for a server on loopback here).
trait Native {
    fn arg0_native(&mut self) -> &mut Self;
}

impl Native for Command {
    fn arg0_native(&mut self) -> &mut Self {
        let args: Vec<std::ffi::OsString> = self.get_args().skip(2).map(|a| a.to_owned()).collect();
        let mut c = Command::new(env!("CARGO_BIN_EXE_skyform"));
        c.args(args);
        if let Some(d) = self.get_current_dir() {
            c.current_dir(d);
        }
        for (k, v) in self.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.stdin(Stdio::null());
        *self = c;
        self
    }
}

fn run(c: &mut Command) -> (i32, String) {
    let o: Output = c.output().expect("`unshare` runs (util-linux; the test needs it: it isolates the network)");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!text.contains("unshare: "), "unshare failed (the test needs CAP_SYS_ADMIN): {text}");
    assert!(!text.contains(TOKEN), "the token was printed: {text}");
    assert!(!text.contains("panicked"), "{text}");
    (o.status.code().unwrap_or(-1), text)
}

/// A server on loopback that answers every request with a 404 in Google's shape and records the
/// requests' heads.
struct Recorder {
    port: u16,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    fn start() -> Recorder {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut buf = vec![0u8; 65536];
                let mut n = 0;
                while n < buf.len() {
                    match conn.read(&mut buf[n..]) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                seen.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned());
                let body = r#"{"error":{"code":404,"message":"no such thing","status":"NOT_FOUND"}}"#;
                let _ = write!(
                    conn,
                    "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Recorder { port, heads }
    }
    fn tokens_received(&self) -> usize {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.to_ascii_lowercase().contains(&format!("bearer {}", TOKEN.to_ascii_lowercase())))
            .count()
    }
    fn requests(&self) -> usize {
        self.heads.lock().unwrap().len()
    }
}

fn gcp_spec(endpoint: &str, extra: &str) -> String {
    format!(
        "[provider.gcp]\nproject = \"p\"\nendpoint = \"{endpoint}\"\n{extra}\n[data.gcp_project.this]\nproject_id = \"p\"\n"
    )
}

#[test]
fn an_endpoint_written_in_the_spec_gets_no_credential_unless_the_operator_allows_it() {
    let server = Recorder::start();
    let e = Env::new(&gcp_spec(&format!("http://127.0.0.1:{}/", server.port), ""));
    // Without the network namespace: the endpoint is on loopback.
    let (code, text) = run(e.cmd(&["plan", "-f", "main.toml"]).arg0_native());
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("`endpoint` is set in the spec"), "{text}");
    assert!(text.contains("SKYFORM_GCP_ENDPOINT") && text.contains("SKYFORM_ALLOW_SPEC_ENDPOINTS"), "{text}");
    assert_eq!(server.requests(), 0, "refused before connecting");

    // `anonymous = true` sends no credential at all, whatever the environment holds: allowed.
    std::fs::write(
        e.path().join("main.toml"),
        gcp_spec(&format!("http://127.0.0.1:{}/", server.port), "anonymous = true"),
    )
    .unwrap();
    let (code, text) = run(e.cmd(&["plan", "-f", "main.toml"]).arg0_native());
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("no such thing"), "{text}");
    assert!(server.requests() > 0 && server.tokens_received() == 0, "{text}");

    // Allowed by the operator: the token goes there.
    std::fs::write(e.path().join("main.toml"), gcp_spec(&format!("http://127.0.0.1:{}/", server.port), "")).unwrap();
    let (code, text) = run(e.cmd(&["plan", "-f", "main.toml"]).arg0_native().env("SKYFORM_ALLOW_SPEC_ENDPOINTS", "1"));
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("no such thing"), "{text}");
    assert!(server.tokens_received() > 0, "{text}");
}

#[test]
fn a_token_never_goes_over_plain_http_except_to_loopback_or_a_host_the_operator_names() {
    let e = Env::new("[provider.gcp]\nproject = \"p\"\n\n[data.gcp_project.this]\nproject_id = \"p\"\n");
    // From the environment, the endpoint is the operator's, but plain HTTP to another host is refused
    // (in the empty network namespace: had it tried, it could not have reached anything).
    let (code, text) = run(e.cmd(&["plan", "-f", "main.toml"]).env("SKYFORM_GCP_ENDPOINT", "http://192.0.2.10:8080/"));
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("refusing to send a credential over plain HTTP to `192.0.2.10:8080`"), "{text}");
    assert!(text.contains("SKYFORM_INSECURE_HTTP_HOSTS=192.0.2.10:8080"), "{text}");
    assert!(!text.contains("connection error"), "{text}");
    // Loopback needs nothing (an emulator on this machine).
    let server = Recorder::start();
    let (code, text) = run(e
        .cmd(&["plan", "-f", "main.toml"])
        .arg0_native()
        .env("SKYFORM_GCP_ENDPOINT", format!("http://127.0.0.1:{}/", server.port)));
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("no such thing") && server.tokens_received() > 0, "{text}");
}

const CA: &str = "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n";

fn k8s_spec(cluster: &str) -> String {
    format!("[provider.kubernetes]\n{cluster}\n\n[resource.k8s_namespace.ns]\nname = \"skypilot\"\n", cluster = cluster)
}

#[test]
fn a_cluster_table_the_spec_wrote_gets_no_gcp_token() {
    let e = Env::new(&k8s_spec(&format!(
        "cluster = {{ endpoint = \"https://k8s.attacker.example\", ca_certificate = \"{CA}\" }}"
    )));
    let (code, text) = run(&mut e.cmd(&["plan", "-f", "main.toml"]));
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("is not the endpoint of a GKE cluster read from Google"), "{text}");
    assert!(text.contains("SKYFORM_ALLOW_SPEC_ENDPOINTS"), "{text}");

    // A token of its own over plain HTTP to a remote host: refused too.
    let e = Env::new(&k8s_spec(
        "cluster = { endpoint = \"http://192.0.2.10:8080\", ca_certificate = \"x\" }\ntoken = \"t\"",
    ));
    let (code, text) = run(&mut e.cmd(&["plan", "-f", "main.toml"]));
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("ca_certificate") || text.contains("plain HTTP"), "{text}");
    let e = Env::new(&k8s_spec(&format!(
        "cluster = {{ endpoint = \"http://192.0.2.10:8080\", ca_certificate = \"{CA}\" }}\ntoken = \"t\""
    )));
    let (code, text) = run(&mut e.cmd(&["plan", "-f", "main.toml"]));
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("refusing to send a credential over plain HTTP"), "{text}");
}

#[test]
fn a_kubeconfig_named_by_the_spec_may_not_run_a_program() {
    let e = Env::new(&k8s_spec("kubeconfig = \"kc.yaml\""));
    let marker = e.path().join("ran");
    std::fs::write(
        e.path().join("kc.yaml"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:9\n\
             users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      \
             command: /bin/sh\n      args: [\"-c\", \"touch {}\"]\ncontexts:\n- name: x\n  context:\n    cluster: c\n    \
             user: u\ncurrent-context: x\n",
            marker.display()
        ),
    )
    .unwrap();
    let (code, text) = run(&mut e.cmd(&["plan", "-f", "main.toml"]));
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("runs a program for user `u`") && text.contains("KUBECONFIG"), "{text}");
    assert!(!marker.exists(), "the exec plugin ran");
}

#[test]
fn a_spec_cannot_name_the_helm_binary() {
    let e = Env::new("[provider.helm]\nhelm_path = \"./evil.sh\"\n");
    let (code, text) = run(&mut e.cmd(&["validate", "-f", "main.toml"]));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("main.toml:3:13") || text.contains("main.toml:2:"), "{text}");
    assert!(text.contains("has no attribute `helm_path`") && text.contains("SKYFORM_HELM"), "{text}");
}

fn outside_file() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("secret.txt");
    std::fs::write(&f, "outside").unwrap();
    (d, f)
}

#[test]
fn file_reads_only_inside_the_spec_directory_unless_allowed() {
    let (_d, outside) = outside_file();
    let object = |arg: &str| format!("[resource.test_object.o]\nname = \"o\"\nvalue = '${{file(\"{arg}\")}}'\n");
    let e = Env::new(&format!("# an object\n\n{}", object(&outside.display().to_string())));
    let validate = |e: &Env| {
        let mut c = e.cmd(&["validate", "-f", "main.toml"]);
        c.env("SKYFORM_ENABLE_TEST_PROVIDER", "1").env("SKYFORM_TEST_STORE", e.path().join("store.json"));
        c
    };
    let (code, text) = run(&mut validate(&e));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("main.toml:5:") && text.contains("outside the spec's directory"), "{text}");
    assert!(text.contains("SKYFORM_ALLOW_SPEC_FILES"), "{text}");
    // Through a symbolic link inside the directory, or `..`: the same.
    std::os::unix::fs::symlink(&outside, e.path().join("link.txt")).unwrap();
    for arg in ["link.txt", "../../../../../../../../etc/hostname"] {
        std::fs::write(e.path().join("main.toml"), object(arg)).unwrap();
        let (code, text) = run(&mut validate(&e));
        assert_eq!(code, 1, "{arg}: {text}");
        assert!(text.contains("outside the spec's directory") || text.contains("no such file"), "{text}");
    }
    // Allowed by the operator.
    std::fs::write(e.path().join("main.toml"), object("link.txt")).unwrap();
    let (code, text) = run(validate(&e).env("SKYFORM_ALLOW_SPEC_FILES", "1"));
    assert_eq!(code, 0, "{text}");
    // Inside: fine.
    std::fs::write(e.path().join("in.txt"), "inside").unwrap();
    std::fs::write(e.path().join("main.toml"), object("in.txt")).unwrap();
    let (code, text) = run(&mut validate(&e));
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_module_source_stays_inside_the_spec_directory() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("main.toml"), "[output.x]\nvalue = \"x\"\n").unwrap();
    let spec = format!("[module.m]\nsource = \"{}\"\n", outside.path().display());
    let e = Env::new(&spec);
    let (code, text) = run(&mut e.cmd(&["validate", "-f", "main.toml"]));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("main.toml:2:") && text.contains("outside the spec's directory"), "{text}");
    let (code, text) = run(e.cmd(&["validate", "-f", "main.toml"]).env("SKYFORM_ALLOW_SPEC_FILES", "1"));
    assert_eq!(code, 0, "{text}");
}

/// The temporary kubeconfig that holds a token (a `cluster` reached with a token) is removed when a
/// signal ends a `plan` that is waiting on the cluster, as when the process ends normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_plan_leaves_no_temporary_kubeconfig_behind() {
    gcp_emulator::contract::ensure_documents();
    // Only for a CA certificate that parses.
    let emu = gcp_emulator::Emulator::start(gcp_emulator::Config { tls: true, ..Default::default() }).await.unwrap();
    // A cluster that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let e = Env::new(&format!(
            "[provider.helm]\ncluster = {{ endpoint = \"https://127.0.0.1:{port}\", ca_certificate = '''{}''' }}\n\
             token = \"t\"\n\n[resource.helm_release.r]\nname = \"r\"\nchart = \"./chart\"\n",
            emu.ca_pem()
        ));
        let tmp = e.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let helm = e.path().join("helm.sh");
        std::fs::write(&helm, "#!/bin/sh\nexec sleep 20\n").unwrap();
        std::fs::set_permissions(&helm, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let mut child = e
            .cmd(&["plan", "-f", "main.toml"])
            .arg0_native()
            .env("TMPDIR", &tmp)
            .env("SKYFORM_HELM", &helm)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let listed = || std::fs::read_dir(&tmp).unwrap().map(|f| f.unwrap().file_name()).collect::<Vec<_>>();
        let start = std::time::Instant::now();
        while listed().is_empty() {
            assert!(start.elapsed().as_secs() < 30, "no temporary kubeconfig was made");
            assert!(child.try_wait().unwrap().is_none(), "plan ended early: {:?}", child.wait_with_output());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(listed()[0].to_string_lossy().starts_with("skyform-kubeconfig-"), "{:?}", listed());
        let killed = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
        assert!(killed.success());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{signal}: {err}");
        assert!(listed().is_empty(), "{signal}: left behind: {:?}", listed());
        assert!(err.contains("removed 1 temporary file"), "{err}");
    }
    drop(silent);
}
