//! CLI tests against the built `skyform` binary, with the file-backed `test`
//! provider as the "cloud" (so several invocations see the same objects and a
//! test can change them out of band).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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
    fn store(&self) -> PathBuf {
        self.dir.path().join("cloud.json")
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skyform"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("SKYFORM_ENABLE_TEST_PROVIDER", "1")
            .env("SKYFORM_TEST_STORE", self.store())
            .stdin(Stdio::null());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    fn objects(&self) -> serde_json::Value {
        std::fs::read(self.store()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(serde_json::json!({}))
    }
    fn edit_object(&self, name: &str, key: &str, value: serde_json::Value) {
        let mut objs = self.objects();
        objs[name]["attrs"][key] = value;
        let v = objs[name]["version"].as_u64().unwrap();
        objs[name]["version"] = serde_json::json!(v + 1);
        std::fs::write(self.store(), serde_json::to_vec(&objs).unwrap()).unwrap();
    }
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

const SPEC: &str = r#"
[variable.greeting]
type = "string"
default = "hello"

[resource.test_object.first]
name = "first"
value = "${var.greeting}"
tags = { team = "platform" }

[resource.test_object.second]
name = "second"
value = "${test_object.first.id}"

[output.first_id]
value = "${test_object.first.id}"
"#;

#[test]
fn plan_apply_replan_and_detailed_exit_codes() {
    let e = Env::new(SPEC);
    let o = e.run(&["plan", "-f", "main.toml", "--detailed-exitcode"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 2, "{out}{err}");
    assert!(out.contains("Plan: 2 to add, 0 to change, 0 to replace, 0 to destroy."), "{out}");
    assert!(out.contains("+ resource \"test_object\" \"first\""), "{out}");

    let o = e.run(&["apply", "-f", "main.toml", "--auto-approve"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(out.contains("test_object.first: Creating..."), "{out}");
    assert!(out.contains("Apply complete! Resources: 2 added, 0 changed, 0 replaced, 0 destroyed."), "{out}");
    assert_eq!(e.objects().as_object().unwrap().len(), 2);

    let o = e.run(&["plan", "-f", "main.toml", "--detailed-exitcode"]);
    let (out, _) = text(&o);
    assert_eq!(code(&o), 0, "{out}");
    assert!(out.contains("No changes."), "{out}");

    let o = e.run(&["output", "-f", "main.toml", "first_id"]);
    let (out, _) = text(&o);
    let id = e.objects()["first"]["attrs"]["id"].as_str().unwrap().to_string();
    assert_eq!(out.trim(), format!("first_id = \"{id}\""));
}

#[test]
fn apply_refuses_to_prompt_without_a_terminal_and_changes_nothing() {
    let e = Env::new(SPEC);
    let o = e.run(&["apply", "-f", "main.toml"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "{out}{err}");
    assert!(err.contains("stdin is not a terminal") && err.contains("--auto-approve"), "{err}");
    assert!(e.objects().as_object().unwrap().is_empty());
}

#[test]
fn drift_exit_codes_and_json_report() {
    let e = Env::new(SPEC);
    assert_eq!(code(&e.run(&["apply", "-f", "main.toml", "--auto-approve"])), 0);
    let o = e.run(&["drift", "-f", "main.toml"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));

    e.edit_object("first", "value", serde_json::json!("edited by hand"));
    let o = e.run(&["drift", "-f", "main.toml", "--json"]);
    assert_eq!(code(&o), 2);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = &report["findings"][0];
    assert_eq!(f["address"], "test_object.first");
    assert_eq!(f["class"], "changed_outside");
    assert_eq!(f["attributes"][0]["path"], "value");
    assert_eq!(f["attributes"][0]["live"], "edited by hand");
    assert_eq!(f["attributes"][0]["last_applied"], "hello");

    // apply repairs it
    assert_eq!(code(&e.run(&["apply", "-f", "main.toml", "--auto-approve"])), 0);
    assert_eq!(e.objects()["first"]["attrs"]["value"], "hello");
    assert_eq!(code(&e.run(&["drift", "-f", "main.toml"])), 0);
}

#[test]
fn saved_plan_applies_once_and_a_stale_one_is_refused() {
    let e = Env::new(SPEC);
    let o = e.run(&["plan", "-f", "main.toml", "--out", "p.plan"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let o = e.run(&["apply", "p.plan", "-f", "main.toml"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    assert_eq!(e.objects().as_object().unwrap().len(), 2);
    // The state moved on: the same plan file is stale now.
    let o = e.run(&["apply", "p.plan", "-f", "main.toml"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 1);
    assert!(err.contains("state changed since the plan was made"), "{err}");

    // A plan made, then the live object changes: refused, naming it.
    std::fs::write(e.spec(), SPEC.replace("default = \"hello\"", "default = \"bonjour\"")).unwrap();
    assert_eq!(code(&e.run(&["plan", "-f", "main.toml", "--out", "p2.plan"])), 0);
    e.edit_object("first", "value", serde_json::json!("meanwhile"));
    let o = e.run(&["apply", "p2.plan", "-f", "main.toml"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 1);
    assert!(err.contains("test_object.first") && err.contains("live object changed"), "{err}");
    assert_eq!(e.objects()["first"]["attrs"]["value"], "meanwhile", "nothing was applied");
}

#[test]
fn invalid_spec_gets_positioned_errors_and_changes_nothing() {
    let e = Env::new(
        r#"
[resource.test_object.a]
name = "a"
valeu = "x"

[resource.test_objekt.b]
name = "b"

[resource.test_object.c]
name = "${test_object.d.id}"

[resource.test_object.d]
name = "${test_object.c.id}"
"#,
    );
    for cmd in ["validate", "plan", "apply"] {
        let o = e.run(
            &[cmd, "-f", "main.toml", "--auto-approve"]
                .iter()
                .copied()
                .filter(|a| cmd == "apply" || *a != "--auto-approve")
                .collect::<Vec<_>>(),
        );
        let (_, err) = text(&o);
        assert_eq!(code(&o), 1, "{cmd}: {err}");
        assert!(err.contains("main.toml:4:1"), "{cmd}: {err}");
        assert!(err.contains("did you mean `value`?"), "{cmd}: {err}");
        assert!(err.contains("did you mean `test_object`?"), "{cmd}: {err}");
        assert!(
            err.contains("dependency cycle") && err.contains("test_object.c") && err.contains("test_object.d"),
            "{cmd}: {err}"
        );
    }
    assert!(!e.store().exists() || e.objects().as_object().unwrap().is_empty());
    assert!(!e.dir.path().join(".skyform").join("main.state.json").exists());
}

#[test]
fn kill_9_mid_apply_then_rerun_converges() {
    let mut spec = String::new();
    for i in 0..8 {
        spec.push_str(&format!("[resource.test_object.o{i}]\nname = \"o{i}\"\ndelay_ms = 250\n"));
    }
    let e = Env::new(&spec);
    let mut child = e
        .cmd(&["apply", "-f", "main.toml", "--auto-approve", "--parallelism", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while e.objects().as_object().map(|o| o.len()).unwrap_or(0) < 3 {
        assert!(start.elapsed() < Duration::from_secs(30), "apply made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = e.objects().as_object().unwrap().len();
    assert!(before < 8, "killed before the end");

    // The lock left behind by the dead process is recognised as stale; the
    // state has every finished step; the re-run converges without duplicates.
    let o = e.run(&["apply", "-f", "main.toml", "--auto-approve", "--parallelism", "4"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    let objs = e.objects();
    assert_eq!(objs.as_object().unwrap().len(), 8);
    let o = e.run(&["plan", "-f", "main.toml", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let o = e.run(&["state", "list", "-f", "main.toml"]);
    assert_eq!(text(&o).0.lines().count(), 8);
}

#[test]
fn state_commands_graph_and_destroy() {
    let e = Env::new(SPEC);
    assert_eq!(code(&e.run(&["apply", "-f", "main.toml", "--auto-approve"])), 0);
    let (out, _) = text(&e.run(&["state", "list", "-f", "main.toml"]));
    assert_eq!(out, "test_object.first\ntest_object.second\n");
    let (out, _) = text(&e.run(&["state", "show", "test_object.first", "-f", "main.toml"]));
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["attrs"]["value"], "hello");
    assert!(shown["attrs"]["token"]["$redacted"].as_str().unwrap().starts_with("argon2id:m=19456,t=2,p=1:"));

    let (dot, _) = text(&e.run(&["graph", "-f", "main.toml"]));
    assert!(dot.starts_with("digraph skyform {"), "{dot}");
    assert!(dot.contains("\"test_object.first\" -> \"test_object.second\";"), "{dot}");

    let o = e.run(&["state", "rm", "test_object.second", "-f", "main.toml"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    // The object still exists: the next plan adopts it.
    let (out, _) = text(&e.run(&["plan", "-f", "main.toml"]));
    assert!(out.contains("test_object.second exists and will be adopted"), "{out}");

    let o = e.run(&["destroy", "-f", "main.toml", "--auto-approve"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(out.contains("Destroy complete! Resources: 0 added, 0 changed, 0 replaced, 1 destroyed."), "{out}");
    // `second` was not managed (removed from state), so it is left alone.
    assert_eq!(e.objects().as_object().unwrap().keys().collect::<Vec<_>>(), vec!["second"]);
}

#[test]
fn import_takes_an_existing_object_under_management() {
    let e = Env::new(SPEC);
    assert_eq!(code(&e.run(&["apply", "-f", "main.toml", "--auto-approve"])), 0);
    assert_eq!(code(&e.run(&["state", "rm", "test_object.first", "-f", "main.toml"])), 0);
    let o = e.run(&["import", "test_object.first", "first", "-f", "main.toml"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let o = e.run(&["plan", "-f", "main.toml", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let o = e.run(&["import", "test_object.nope", "x", "-f", "main.toml"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).1.contains("not declared in the spec"));
}

#[test]
fn missing_variables_are_reported_together() {
    let e = Env::new(
        "[variable.a]\ntype = \"string\"\n[variable.b]\ntype = \"number\"\n[resource.test_object.x]\nname = \"${var.a}-${var.b}\"\n",
    );
    let o = e.run(&["plan", "-f", "main.toml"]);
    let (_, err) = text(&o);
    assert_eq!(code(&o), 1);
    assert!(err.contains("`a`") && err.contains("`b`"), "{err}");
    // An environment value for a variable this spec does not declare is ignored.
    let o = e
        .cmd(&["plan", "-f", "main.toml", "--var", "a=x"])
        .env("SKYFORM_VAR_b", "3")
        .env("SKYFORM_VAR_other_spec_secret", "x")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    assert!(text(&o).0.contains("\"x-3\""));
}

#[test]
fn json_plan_is_machine_readable_and_masks_secrets() {
    let e = Env::new(
        "[variable.pw]\ntype = \"string\"\nsensitive = true\n[resource.test_object.a]\nname = \"a\"\npassword = \"${var.pw}\"\n",
    );
    let o = e.run(&["plan", "-f", "main.toml", "--json", "--var", "pw=TopSecret99"]);
    assert_eq!(code(&o), 0);
    let (out, _) = text(&o);
    assert!(!out.contains("TopSecret99"));
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["format_version"], "1");
    assert_eq!(j["summary"]["add"], 1);
    let c = &j["resource_changes"][0];
    assert_eq!(c["action"], "create");
    assert_eq!(c["after"]["password"], "(sensitive value)");
    assert!(c["after_unknown"].as_array().unwrap().contains(&serde_json::json!("id")));
}

/// Golden rendering of a plan with every kind of change; regenerate with
/// `UPDATE_GOLDEN=1 cargo test --test cli`.
#[test]
fn plan_rendering_matches_the_golden_file() {
    let before = r#"
[resource.test_object.keep]
name = "keep"
value = "line one\nline two\nline three\n"
tags = { team = "platform", tier = "gold" }

[resource.test_object.rename]
name = "old-name"

[resource.test_object.gone]
name = "gone"
"#;
    let after = r#"
[variable.pw]
type = "string"
sensitive = true
default = "not-shown"

[resource.test_object.keep]
name = "keep"
value = "line one\nline 2\nline three\n"
tags = { team = "platform", tier = "silver" }
password = "${var.pw}"

[resource.test_object.rename]
name = "new-name"

[resource.test_object.added]
name = "added"
value = "${test_object.rename.id}"
"#;
    let e = Env::new(before);
    assert_eq!(code(&e.run(&["apply", "-f", "main.toml", "--auto-approve"])), 0);
    std::fs::write(e.spec(), after).unwrap();
    let o = e.run(&["plan", "-f", "main.toml"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(!out.contains("not-shown"));
    assert!(!out.contains("-secret"), "a secret of a deleted object leaked: {out}");
    // Ids are made up by the fake cloud; keep the golden file stable.
    let out = mask_ids(&out);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/golden/plan_mixed.txt");
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(path, &out).unwrap();
    }
    let want = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(out, want, "plan rendering changed; if intended, UPDATE_GOLDEN=1 cargo test --test cli");
}

fn mask_ids(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("obj-") {
        out.push_str(&rest[..i + 4]);
        rest = &rest[i + 4..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push('N');
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// The GitOps flow: a plan saved in a pull request, reviewed with `show`, applied on merge. `show`
/// reads only the file: no spec, no state, no provider.
#[test]
fn show_renders_a_saved_plan_and_touches_nothing() {
    let e = Env::new(&format!(
        "[variable.pw]\ntype = \"string\"\nsensitive = true\n{SPEC}\n[resource.test_object.third]\nname = \"third\"\npassword = \"${{var.pw}}\"\n"
    ));
    let o = e.run(&["plan", "-f", "main.toml", "--out", "p.plan", "--var", "pw=TopSecret99"]);
    let (planned, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    let plan_file = e.dir.path().join("p.plan");
    let elsewhere = tempfile::tempdir().unwrap();
    let cloud = std::fs::read(e.store()).ok();
    let state: Vec<_> = std::fs::read_dir(e.dir.path()).unwrap().map(|f| f.unwrap().path()).collect();
    let show = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_skyform"))
            .args(args)
            .current_dir(elsewhere.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = show(&["show", plan_file.to_str().unwrap()]);
    let (shown, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    let planned = planned.split("\nSaved the plan to").next().unwrap().trim_end();
    assert_eq!(shown.trim_end(), planned, "show renders what plan printed");
    assert!(shown.contains("test_object.third will be created") && !shown.contains("TopSecret99"), "{shown}");
    let o = show(&["show", "--json", plan_file.to_str().unwrap()]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((j["format_version"].as_str(), j["summary"]["add"].as_u64()), (Some("1"), Some(3)));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("TopSecret99"));
    assert_eq!(std::fs::read(e.store()).ok(), cloud, "the cloud was not touched");
    let after: Vec<_> = std::fs::read_dir(e.dir.path()).unwrap().map(|f| f.unwrap().path()).collect();
    assert_eq!(after, state, "no file appeared or vanished beside the spec");
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0, "show wrote nothing");
    let o = show(&["show", "nope.plan"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).1.contains("nope.plan"), "{:?}", text(&o));
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let o = Command::new(env!("CARGO_BIN_EXE_skyform")).args(["completions", shell]).output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "{shell}: {err}");
        for sub in ["plan", "apply", "drift", "show", "completions"] {
            assert!(out.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let o = Command::new(env!("CARGO_BIN_EXE_skyform")).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(code(&o), 1, "an unknown shell is an error (as every usage error)");
    assert!(text(&o).1.contains("possible values: bash"), "{:?}", text(&o));
}

/// Colour as Terraform users expect on a terminal (forced here with CLICOLOR_FORCE, as tests have
/// no terminal); none into a pipe, with NO_COLOR, or with --no-color.
#[test]
fn colour_on_a_terminal_only() {
    let e = Env::new(SPEC);
    let plan = |env: &[(&str, &str)], extra: &[&str]| {
        let mut c = e.cmd(&["plan", "-f", "main.toml"]);
        c.args(extra).env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert_eq!(code(&o), 0, "{:?}", text(&o));
        text(&o).0
    };
    let coloured = plan(&[("CLICOLOR_FORCE", "1")], &[]);
    assert!(coloured.contains("\x1b[32m  # test_object.first will be created\x1b[0m"), "{coloured}");
    assert!(coloured.contains("\x1b[32m  + resource \"test_object\" \"first\" {\x1b[0m"), "{coloured}");
    assert_eq!(coloured.replace("\x1b[32m", "").replace("\x1b[0m", ""), plan(&[], &[]), "colour changes nothing else");
    for (env, extra) in [
        (&[][..], &[][..]),
        (&[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")][..], &[][..]),
        (&[("CLICOLOR_FORCE", "1")][..], &["--no-color"][..]),
    ] {
        assert!(!plan(env, extra).contains('\x1b'), "colour with {env:?} {extra:?}");
    }
}

/// `--exclude` leaves out what it names and everything that depends on it; a target that names
/// nothing, or is not an address at all, is refused before anything is read.
#[test]
fn exclude_leaves_out_a_resource_and_its_dependents() {
    let e = Env::new(SPEC);
    let o = e.run(&["apply", "-f", "main.toml", "--auto-approve", "--exclude", "test_object.first"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(out.contains("0 added"), "neither first nor second (which reads it) is created: {out}");
    assert!(e.objects().as_object().is_none_or(|m| m.is_empty()), "{}", e.objects());
    let o = e.run(&["plan", "-f", "main.toml", "--exclude", "test_object.second"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(out.contains("test_object.first") && !out.contains("test_object.second"), "{out}");
    let o = e.run(&["plan", "-f", "main.toml", "--exclude", "test_object.third"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "{out}{err}");
    assert!(err.contains("`test_object.third` names nothing in the spec or the state"), "{err}");
    let o = e.run(&["plan", "-f", "main.toml", "--target", "not an address"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "{out}{err}");
    assert!(err.contains("is not a resource, instance or module address"), "{err}");
}

/// The state commands need only the variables the backend block uses: with the local backend,
/// none at all, even when the spec has variables without defaults.
#[test]
fn state_commands_need_only_the_backends_variables() {
    let spec = format!("{SPEC}\n[variable.required]\ntype = \"string\"\n");
    let e = Env::new(&spec);
    let o = e.run(&["apply", "-f", "main.toml", "--auto-approve", "--var", "required=x"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let o = e.run(&["state", "list", "-f", "main.toml"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["test_object.first", "test_object.second"]);
    let (out, _) = text(&e.run(&["state", "list", "-f", "main.toml", "test_object.second"]));
    assert_eq!(out.trim(), "test_object.second");
    // A plan still needs every variable.
    let o = e.run(&["plan", "-f", "main.toml"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).1.contains("required"), "{:?}", text(&o));
    // A backend that uses a variable: that one is required, and named.
    let with_backend =
        format!("{spec}\n[variable.bucket]\ntype = \"string\"\n\n[backend.gcs]\nbucket = \"${{var.bucket}}\"\n");
    std::fs::write(e.spec(), with_backend).unwrap();
    let o = e.run(&["state", "list", "-f", "main.toml"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "{out}{err}");
    assert!(err.contains("the backend's bucket or prefix is not known") && err.contains("`bucket`"), "{err}");
    assert!(!err.contains("`required`"), "only the backend's variables are asked for: {err}");
}

/// `state rm` takes every instance of a resource, or everything under a module, and refuses
/// a target that names nothing without forgetting anything.
#[test]
fn state_rm_takes_targets() {
    let spec = r#"
[resource.test_object.copies]
count = 3
name = "copy-${count.index}"
value = "v"
"#;
    let e = Env::new(spec);
    assert_eq!(code(&e.run(&["apply", "-f", "main.toml", "--auto-approve"])), 0);
    let o = e.run(&["state", "rm", "-f", "main.toml", "test_object.copies[1]", "test_object.nope"]);
    assert_eq!(code(&o), 1, "{:?}", text(&o));
    assert_eq!(text(&e.run(&["state", "list", "-f", "main.toml"])).0.lines().count(), 3, "nothing forgotten");
    let o = e.run(&["state", "rm", "-f", "main.toml", "test_object.copies"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("Removed test_object.copies[")).count(), 3, "{out}");
    assert_eq!(text(&e.run(&["state", "list", "-f", "main.toml"])).0.trim(), "");
}

/// Without credentials, a plan against Google says what to do, and claims no HTTP status (no
/// request was made).
#[test]
fn a_missing_credential_says_what_to_do() {
    let spec = r#"
[provider.gcp]
project = "p"

[resource.gcp_service_account.sa]
account_id = "skyform-test-sa"
"#;
    let e = Env::new(spec);
    let home = tempfile::tempdir().unwrap();
    let o = e
        .cmd(&["plan", "-f", "main.toml"])
        .env_remove("SKYFORM_GCP_ACCESS_TOKEN")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env("HOME", home.path())
        .env("CLOUDSDK_CONFIG", home.path())
        // Nothing answers here: the metadata server is not reachable either.
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .env("SKYFORM_GCP_ENDPOINT", "http://127.0.0.1:9/")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "{out}{err}");
    assert!(err.contains("gcloud auth application-default login"), "{err}");
    assert!(err.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{err}");
    assert!(!err.contains("HTTP 401"), "{err}");
}

/// Durations that would overflow are refused with their place, never a panic.
#[test]
fn huge_durations_are_refused_where_they_are_written() {
    let spec = format!(
        "{SPEC}\n[resource.test_object.third]\nname = \"third\"\nvalue = \"v\"\ntimeouts = {{ create = \"18446744073709551615s\" }}\n"
    );
    let e = Env::new(&spec);
    let o = e.run(&["validate", "-f", "main.toml"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "{out}{err}");
    assert!(err.contains("main.toml:") && err.contains("invalid duration for `timeouts.create`"), "{err}");
    assert!(err.contains("at most 7 days"), "{err}");
    let e = Env::new(SPEC);
    let o = e.run(&["plan", "-f", "main.toml", "--lock-timeout", "99999999999999999999h"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 1, "{out}{err}");
    assert!(err.contains("is not a duration of at most 7 days"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Remote text (here a provider's error that echoes its input) reaches stderr and `--json` only
/// through the one mask: no secret, no terminal control character.
#[test]
fn remote_text_is_masked_everywhere_it_is_printed() {
    let spec = r#"
[variable.secret]
type = "string"
sensitive = true

[resource.test_object.leaky]
name = "leaky"
value = "${var.secret}"
fail = true
"#;
    let e = Env::new(spec);
    for json in [false, true] {
        let mut args = vec!["apply", "-f", "main.toml", "--auto-approve"];
        if json {
            args.push("--json");
        }
        let o = e.cmd(&args).env("SKYFORM_VAR_secret", "hunter2-secret").output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(code(&o), 1, "{out}{err}");
        let all = format!("{out}{err}");
        assert!(all.contains("injected failure"), "{all}");
        assert!(!all.contains("hunter2-secret"), "the secret leaked: {all}");
        assert!(all.contains("(sensitive value)"), "{all}");
        assert!(!all.contains('\u{1b}'), "a control character reached the terminal: {all:?}");
    }
}

/// `--timings` (or SKYFORM_TIMINGS=1) tells where the time went, on stderr: stdout (here `--json`)
/// stays what it was.
#[test]
fn timings_say_where_the_time_went_on_stderr_only() {
    let e = Env::new(SPEC);
    let o = e.run(&["plan", "-f", "main.toml", "--json", "--timings"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    serde_json::from_str::<serde_json::Value>(&out).expect("stdout is the plan's JSON alone");
    assert!(err.contains("Timings: ") && err.contains(" wall"), "{err}");
    for phase in ["load", "state", "configure", "read"] {
        assert!(err.lines().any(|l| l.trim_start().starts_with(phase)), "no {phase} row: {err}");
    }
    assert!(err.contains("slowest resources") && err.contains("test_object."), "{err}");
    let o = e.cmd(&["plan", "-f", "main.toml"]).env("SKYFORM_TIMINGS", "1").output().unwrap();
    assert!(text(&o).1.contains("Timings: "), "{}", text(&o).1);
    let o = e.run(&["plan", "-f", "main.toml"]);
    assert!(!text(&o).1.contains("Timings: "), "off by default");
}
