//! `[check.<name>]` end to end through the `skyform` binary: validation, plan listing, apply
//! gating (after dependencies, retries, failure messages without secrets, `--skip-checks`, a
//! failed dependency), `drift` (`check_failed`) and `skyform check` exit codes, and the drift
//! report from cron: `--json-out` and `--notify` to a local receiver. The file-backed
//! `test` provider is the cloud; a local HTTP server (on loopback) is what the checks request, and
//! `via = "test"` stands for a Kubernetes API server's service proxy.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

mod http_common;
use http_common::Server;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(spec: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.toml"), spec).unwrap();
        Env { dir }
    }
    fn spec(&self) -> PathBuf {
        self.dir.path().join("main.toml")
    }
    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let spec = self.spec();
        all.extend(["-f", spec.to_str().unwrap()]);
        Command::new(env!("CARGO_BIN_EXE_skyform"))
            .args(&all)
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .env("SKYFORM_ENABLE_TEST_PROVIDER", "1")
            .env("SKYFORM_TEST_STORE", self.dir.path().join("cloud.json"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

fn out(o: &Output) -> (String, String, i32) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

const SECRET: &str = "tok-9f8e7d6c5b";

/// An object, and a check on the server that depends on it, sending a secret header.
fn spec(server: &Server, extra: &str) -> String {
    format!(
        r#"
[variable.token]
type = "string"
sensitive = true
default = "{SECRET}"

[provider.test]
services_url = "{base}"

[resource.test_object.app]
name = "app"
value = "v1"

[check.health]
url = "{url}"
expect_status = 200
expect_json = {{ status = "healthy" }}
headers = {{ X-Token = "${{var.token}}" }}
timeout = "4s"
interval = "1s"
depends_on = ["test_object.app"]
{extra}
"#,
        base = server.url(""),
        url = server.url("/api/health"),
    )
}

#[test]
fn validate_reports_bad_checks_with_positions_and_hints() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[check.c]\nurl = \"http://x/\"\nexpect_stauts = 200\n",
            "main.toml:3:1: error: unknown key `expect_stauts` in check `c`",
            "did you mean `expect_status`?",
        ),
        (
            "[check.c]\nurl = \"http://x/\"\nvia = \"test\"\nservice = \"a/b:80\"\n",
            "has both `url` and `via`/`service`/`path`",
            "not both",
        ),
        ("[check.c]\nexpect_status = 200\n", "check `c` says nothing to request", "add `url"),
        (
            "[check.c]\nurl = \"http://x/\"\ntimeout = \"5 minutes\"\n",
            "main.toml:3:11: error: invalid duration for `timeout` of check `c`",
            "\"5m\"",
        ),
        (
            "[check.c]\nurl = \"http://x/\"\nexpect_status = 1000\n",
            "`expect_status` of check `c` must be an HTTP status code",
            "100 to 599",
        ),
        (
            "[check.c]\nvia = \"kubernetez\"\nservice = \"a/b:80\"\n",
            "main.toml:2:7: error: check `c`: `via` names unknown provider `kubernetez`",
            "kubernetes",
        ),
        (
            "[check.c]\nvia = \"gcp\"\nservice = \"a/b:80\"\n",
            "check `c`: provider `gcp` cannot reach Services",
            "`helm`, `kubernetes`",
        ),
        (
            "[check.c]\nvia = \"test\"\npath = \"/x\"\n",
            "check `c` needs `service` to reach a Service",
            "<namespace>/<name>:<port>",
        ),
        (
            "[check.c]\nvia = \"test\"\nservice = \"a/b:80\"\nheaders = { Authorization = \"Basic x\" }\n",
            "an `Authorization` header cannot go through `via`",
            "removes it before proxying",
        ),
        (
            "[check.c]\nvia = \"test\"\nservice = \"skypilot-api-service:80\"\n",
            "main.toml:3:11: error: `service` of check `c`: \"skypilot-api-service:80\" has no `/`",
            "<namespace>/<name>:<port>",
        ),
        ("[check.c]\nurl = \"ftp://x/\"\n", "is not an http:// or https:// URL", "https://host/path"),
        (
            "[check.c]\nurl = \"http://x/\"\ndepends_on = [\"test_object.nope\"]\n",
            "`depends_on` of check `c` names undeclared resource `test_object.nope`",
            "",
        ),
        ("[check.c]\nurl = \"${test_object.nope.id}\"\n", "test_object.nope", ""),
        ("[check.c]\nurl = \"http://x/\"\n[check.c.headers]\nX = 1\n[check]\nd = 5\n", "`check.d` must be a table", ""),
    ];
    for (text, want, hint) in cases {
        let e = Env::new(text);
        let (_, err, code) = out(&e.run(&["validate"]));
        assert_eq!(code, 1, "{text}\n{err}");
        assert!(err.contains(want), "{text}\nwant {want:?} in:\n{err}");
        assert!(err.contains(hint), "{text}\nwant hint {hint:?} in:\n{err}");
    }
    // A check in a module is refused (checks are the root's).
    let e = Env::new("[module.m]\nsource = \"./m\"\n");
    std::fs::create_dir(e.dir.path().join("m")).unwrap();
    std::fs::write(e.dir.path().join("m/main.toml"), "[check.c]\nurl = \"http://x/\"\n").unwrap();
    let (_, err, code) = out(&e.run(&["validate"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("m/main.toml:1:1") || err.contains("main.toml:1"), "{err}");
    assert!(err.contains("a module cannot have `check` blocks"), "{err}");
}

#[test]
fn plan_lists_checks_with_what_they_wait_for_and_never_fails_on_one() {
    let server = Server::start(&[(500, "{}")]);
    let e = Env::new(&spec(&server, ""));
    let (stdout, err, code) = out(&e.run(&["plan"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains(&format!(
            "Checks apply will run:\n  check.health: GET {}, after test_object.app\n",
            server.url("/api/health")
        )),
        "{stdout}"
    );
    assert!(server.requests().is_empty(), "plan requests nothing");
    let (json, _, _) = out(&e.run(&["plan", "--json"]));
    let j: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(j["checks"][0]["name"], "health");
    assert_eq!(j["checks"][0]["after"][0], "test_object.app");
    assert!(!json.contains(SECRET));
}

#[test]
fn apply_waits_for_the_check_after_its_dependencies_and_retries_until_it_passes() {
    let server = Server::start(&[
        (503, "{\"status\":\"starting\"}"),
        (200, "{\"status\":\"starting\"}"),
        (200, "{\"status\":\"healthy\",\"v\":1}"),
    ]);
    let e = Env::new(&spec(&server, ""));
    let (stdout, err, code) = out(&e.run(&["apply", "--auto-approve"]));
    assert_eq!(code, 0, "{stdout}\n{err}");
    let created = stdout.find("test_object.app: Creation complete").expect(&stdout);
    let checking = stdout.find("check.health: Checking...").expect(&stdout);
    assert!(created < checking, "the check runs after its dependency:\n{stdout}");
    assert!(stdout.contains("check.health: Check passed after"), "{stdout}");
    assert!(stdout.contains("Checks: 1 passed."), "{stdout}");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "503, then a body without the subset, then healthy: {reqs:?}");
    assert!(reqs[0].starts_with("GET /api/health HTTP/1.1"), "{reqs:?}");
    assert!(reqs[0].to_lowercase().contains(&format!("x-token: {SECRET}")), "the header is sent: {reqs:?}");
    assert!(!stdout.contains(SECRET) && !err.contains(SECRET));
    let state = std::fs::read_to_string(e.dir.path().join(".skyform/main.state.json")).unwrap_or_default();
    assert!(!state.contains(SECRET), "no secret in state");
}

#[test]
fn a_failing_check_fails_apply_after_everything_is_saved_and_says_why_without_secrets() {
    // The body echoes the secret header (as a debugging endpoint might).
    let server = Server::start(&[(503, &format!("{{\"error\":\"upstream connect error\",\"echo\":\"{SECRET}\"}}"))]);
    let e = Env::new(&spec(&server, ""));
    let (stdout, err, code) = out(&e.run(&["apply", "--auto-approve"]));
    assert_eq!(code, 1, "{stdout}\n{err}");
    assert!(stdout.contains("Apply complete! Resources: 1 added"), "the changes are applied:\n{stdout}");
    assert!(err.contains("1 of 1 checks failed"), "{err}");
    let line = err.lines().find(|l| l.starts_with("error: check.health: ")).expect(&err);
    assert!(line.contains(&format!("GET {}", server.url("/api/health"))), "{line}");
    assert!(line.contains("status 503 (expected 200)"), "{line}");
    assert!(line.contains("upstream connect error"), "an excerpt of the body: {line}");
    assert!(line.contains("(sensitive value)"), "the echoed secret is masked: {line}");
    assert!(err.contains("  test_object.app: object app exists"), "what the dependency's provider says:\n{err}");
    assert!(!stdout.contains(SECRET) && !err.contains(SECRET), "{stdout}\n{err}");
    let attempts = server.requests().len();
    assert!((3..=5).contains(&attempts), "retried every second for 4s: {attempts}");
    // State is saved: the next plan has no change, and once the server is healthy one apply passes.
    let (plan, _, _) = out(&e.run(&["plan"]));
    assert!(plan.contains("No changes."), "{plan}");
    server.reply(200, "{\"status\":\"healthy\"}");
    let (stdout, err, code) = out(&e.run(&["apply", "--auto-approve"]));
    assert_eq!(code, 0, "{stdout}\n{err}");
    assert!(stdout.contains("check.health: Check passed"), "{stdout}");
}

#[test]
fn skip_checks_and_a_failed_dependency_run_no_request() {
    let server = Server::start(&[(200, "{\"status\":\"healthy\"}")]);
    let e = Env::new(&spec(&server, ""));
    let (stdout, err, code) = out(&e.run(&["apply", "--auto-approve", "--skip-checks"]));
    assert_eq!(code, 0, "{stdout}\n{err}");
    assert!(!stdout.contains("Checks apply will run"), "{stdout}");
    assert!(server.requests().is_empty());

    let failing = spec(&server, "").replace("value = \"v1\"", "value = \"v2\"\nfail = true");
    std::fs::write(e.spec(), failing).unwrap();
    let (stdout, err, code) = out(&e.run(&["apply", "--auto-approve"]));
    assert_eq!(code, 1, "{stdout}\n{err}");
    assert!(err.contains("check.health: skipped because test_object.app failed"), "{err}");
    assert!(server.requests().is_empty(), "a check whose dependency failed is not run");
}

#[test]
fn drift_reports_a_failing_check_and_check_exits_0_2_1() {
    let server = Server::start(&[(200, "{\"status\":\"healthy\"}")]);
    let e = Env::new(&spec(&server, ""));
    assert_eq!(out(&e.run(&["apply", "--auto-approve"])).2, 0);

    let (stdout, err, code) = out(&e.run(&["drift"]));
    assert_eq!(code, 0, "{stdout}\n{err}");
    assert!(stdout.contains("No drift") && stdout.contains("Checks: 1 passed."), "{stdout}");
    let (stdout, err, code) = out(&e.run(&["check"]));
    assert_eq!(code, 0, "{stdout}\n{err}");
    assert!(stdout.contains("1 checks: 1 passed, 0 failed."), "{stdout}");

    server.reply(500, "{\"status\":\"unhealthy\",\"db\":\"permission denied for schema public\"}");
    let before = server.requests().len();
    let (stdout, err, code) = out(&e.run(&["drift", "--json"]));
    assert_eq!(code, 2, "{stdout}\n{err}");
    let j: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(j["counts"]["check_failed"], 1, "{j}");
    let f = &j["findings"][0];
    assert_eq!(f["address"], "check.health");
    assert_eq!(f["class"], "check_failed");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("status 500 (expected 200): {\"status\":\"unhealthy\",\"db\":\"permission denied"),
        "{f}"
    );
    assert_eq!(j["checks"][0]["attempts"], 3, "drift tries a check 3 times before it counts: {j}");
    assert_eq!(server.requests().len() - before, 3);
    let (human, _, code) = out(&e.run(&["drift"]));
    assert_eq!(code, 2);
    assert!(human.contains("! check.health [check_failed]: the check fails"), "{human}");
    assert!(human.contains("1 check_failed."), "{human}");

    let (stdout, err, code) = out(&e.run(&["check", "--json"]));
    assert_eq!(code, 2, "{stdout}\n{err}");
    let j: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(j["failed"], 1);
    assert_eq!(j["checks"][0]["status"], 500);
    assert!(!stdout.contains(SECRET) && !err.contains(SECRET));

    // An error (no checks at all) is 1, not 2.
    let none = Env::new("[resource.test_object.a]\nname = \"a\"\n");
    let (_, err, code) = out(&none.run(&["check"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the spec has no `[check.<name>]` blocks"), "{err}");
}

#[test]
fn a_check_via_a_provider_reaches_the_service_it_names() {
    let server = Server::start(&[(200, "{\"status\":\"healthy\"}")]);
    let extra = r#"
[check.svc]
via = "test"
service = "${test_object.app.id}/api-service:80"
path = "/api/health?verbose=1"
expect_json = { status = "healthy" }
timeout = "3s"
interval = "1s"
"#;
    let e = Env::new(&spec(&server, extra));
    let (stdout, _, _) = out(&e.run(&["plan"]));
    assert!(stdout.contains("check.svc: GET service (known after apply) via test, after test_object.app"), "{stdout}");
    let (stdout, err, code) = out(&e.run(&["apply", "--auto-approve"]));
    assert_eq!(code, 0, "{stdout}\n{err}");
    assert!(stdout.contains("check.svc: Check passed"), "{stdout}");
    let reqs = server.requests();
    assert!(
        reqs.iter().any(|r| r.starts_with("GET /obj-") && r.contains("/api-service/80/api/health?verbose=1 ")),
        "{reqs:?}"
    );
    let (stdout, _, _) = out(&e.run(&["plan"]));
    assert!(
        stdout.contains("check.svc: GET service obj-")
            && stdout.contains("/api-service:80/api/health?verbose=1 via test"),
        "{stdout}"
    );
}

#[test]
fn a_check_that_cannot_connect_says_so() {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e =
        Env::new(&format!("[check.down]\nurl = \"http://127.0.0.1:{port}/\"\ntimeout = \"10s\"\ninterval = \"1s\"\n"));
    let (stdout, err, code) = out(&e.run(&["check"]));
    assert_eq!(code, 2, "{stdout}\n{err}");
    assert!(
        err.contains(&format!("check.down: Check failed: GET http://127.0.0.1:{port}/: failing after 3 attempts")),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connect"), "the connection error: {err}");
}

#[test]
fn a_secret_in_a_path_is_requested_but_never_shown() {
    let server = Server::start(&[(200, "{\"status\":\"healthy\"}")]);
    let e = Env::new(&format!(
        r#"
[variable.token]
type = "string"
sensitive = true
default = "{SECRET}"

[provider.test]
services_url = "{base}"

[check.svc]
via = "test"
service = "ns/api:80"
path = "/health?token=${{var.token}}"
timeout = "3s"
interval = "1s"
"#,
        base = server.url("")
    ));
    let (stdout, _, _) = out(&e.run(&["plan"]));
    assert!(stdout.contains("check.svc: GET service ns/api:80/(sensitive value) via test"), "{stdout}");
    let (stdout, err, code) = out(&e.run(&["check"]));
    assert_eq!(code, 0, "{stdout}\n{err}");
    assert!(!stdout.contains(SECRET) && !err.contains(SECRET), "{stdout}\n{err}");
    assert!(
        server.requests().iter().any(|r| r.starts_with(&format!("GET /ns/api/80/health?token={SECRET} "))),
        "the token is sent"
    );
}

#[test]
fn drift_from_cron_writes_its_report_and_notifies_only_when_asked() {
    let server = Server::start(&[(200, "{\"status\":\"healthy\"}")]);
    let receiver = Server::start(&[(200, "ok")]);
    let hook = receiver.url("/hooks/T0/B1/tok-hook-4242");
    let e = Env::new(&spec(&server, ""));
    assert_eq!(out(&e.run(&["apply", "--auto-approve"])).2, 0);
    let report = e.dir.path().join("drift.json");
    let report_arg = report.to_str().unwrap().to_string();

    // Converged: the report is written; `findings` (the default) sends nothing; `always` does.
    let (stdout, err, code) = out(&e.run(&["drift", "--json-out", &report_arg, "--notify", &hook]));
    assert_eq!(code, 0, "{stdout}\n{err}");
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(written["findings"], serde_json::json!([]));
    assert!(receiver.requests().is_empty(), "nothing to report");
    assert_eq!(out(&e.run(&["drift", "--notify", &hook, "--notify-on", "always"])).2, 0);
    let sent = receiver.requests();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("POST /hooks/T0/B1/tok-hook-4242 "), "{}", sent[0]);
    assert!(
        sent[0].contains("\"text\":\"skyform drift: ") && sent[0].contains("no drift; 1 checks passed"),
        "{}",
        sent[0]
    );

    // A failing check: exit 2, one message with the summary and the whole report, no secret.
    server.reply(503, &format!("{{\"error\":\"down\",\"echo\":\"{SECRET}\"}}"));
    let (stdout, err, code) = out(&e.run(&["drift", "--json-out", &report_arg, "--notify", &hook]));
    assert_eq!(code, 2, "{stdout}\n{err}");
    let sent = receiver.requests();
    assert_eq!(sent.len(), 2);
    let body: serde_json::Value = serde_json::from_str(sent[1].split_once("\r\n\r\n").unwrap().1).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("1 findings (0 changed_outside, 0 deleted_outside, 0 pending_spec_change, 1 check_failed): check.health (check_failed)"), "{text}");
    assert_eq!(body["skyform_report"]["counts"]["check_failed"], 1);
    assert!(!sent[1].contains(SECRET), "a secret was sent: {}", sent[1]);
    let written = std::fs::read_to_string(&report).unwrap();
    assert!(written.contains("check_failed") && !written.contains(SECRET));

    // `errors` only: a drift with findings sends nothing, a drift that fails sends the error.
    assert_eq!(out(&e.run(&["drift", "--notify", &hook, "--notify-on", "errors"])).2, 2);
    assert_eq!(receiver.requests().len(), 2);
    std::fs::write(e.spec(), "[resource.test_object.a]\nname = \"a\"\nvalue = \"${var.missing}\"\n").unwrap();
    let (_, err, code) = out(&e.run(&["drift", "--notify", &hook, "--notify-on", "errors"]));
    assert_eq!(code, 1, "{err}");
    let sent = receiver.requests();
    assert_eq!(sent.len(), 3);
    assert!(sent[2].contains("the drift run failed") && sent[2].contains("var.missing"), "{}", sent[2]);

    // A receiver that cannot be reached: exit 1, naming its host but never the URL's token.
    std::fs::write(e.spec(), spec(&server, "")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = format!("http://127.0.0.1:{port}/hooks/T0/B1/tok-hook-4242");
    let (stdout, err, code) = out(&e.run(&["drift", "--notify", &dead]));
    assert_eq!(code, 1, "{stdout}\n{err}");
    assert!(err.contains("the message did not reach 127.0.0.1 after 3 attempts"), "{err}");
    assert!(!err.contains("tok-hook-4242") && !stdout.contains("tok-hook-4242"), "{err}");

    // The URL from the environment (a CronJob's Secret: never on a command line); empty, none.
    let (stdout, err, code) = out(&e.run_env(&["drift"], &[("SKYFORM_NOTIFY_URL", &hook)]));
    assert_eq!(code, 2, "{stdout}\n{err}");
    assert_eq!(receiver.requests().len(), 4, "SKYFORM_NOTIFY_URL posts");
    let (stdout, err, code) = out(&e.run_env(&["drift"], &[("SKYFORM_NOTIFY_URL", "")]));
    assert_eq!(code, 2, "{stdout}\n{err}");
    assert_eq!(receiver.requests().len(), 4, "an empty URL posts nothing");
    let (help, _, _) = out(&e.run_env(&["drift", "--help"], &[("SKYFORM_NOTIFY_URL", &hook)]));
    assert!(help.contains("SKYFORM_NOTIFY_URL") && !help.contains("tok-hook-4242"), "{help}");
}
