//! Engine tests against the in-memory recording provider: ordering, bounded
//! concurrency, failure isolation, convergence, stale plans, drift, lazy
//! providers, and secret masking in every output.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use skyform::cli::{json, render};
use skyform::engine::drift::DriftClass;
use skyform::engine::events::Recorder as EventRecorder;
use skyform::engine::{Cancel, Context, PlanOptions};
use skyform::ops::{self, Loaded, SpecOptions};
use skyform::plan::Action;
use skyform::providers::Registry;
use skyform::providers::memory::MemoryFactory;

struct Fixture {
    dir: tempfile::TempDir,
    fake: Arc<MemoryFactory>,
    lazy: Arc<MemoryFactory>,
}

impl Fixture {
    fn new(spec: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.toml"), spec).unwrap();
        Fixture { dir, fake: Arc::new(MemoryFactory::new()), lazy: Arc::new(MemoryFactory::named("lazy", "lazy_")) }
    }

    fn write(&self, spec: &str) {
        std::fs::write(self.dir.path().join("main.toml"), spec).unwrap();
    }

    fn load(&self, vars: &[&str]) -> Loaded {
        let mut reg = Registry::new();
        reg.register(self.fake.clone());
        reg.register(self.lazy.clone());
        let opts = SpecOptions {
            file: self.dir.path().join("main.toml"),
            vars: vars.iter().map(|s| s.to_string()).collect(),
            var_files: vec![],
            lenient_vars: false,
            policies: vec![],
        };
        match ops::load(&opts, reg) {
            Ok(l) => l,
            Err(e) => panic!("load failed: {e}"),
        }
    }

    fn ctx(&self, loaded: &Loaded, parallelism: usize) -> (Context, Arc<EventRecorder>) {
        let rec = Arc::new(EventRecorder::default());
        (loaded.context(rec.clone(), parallelism, Cancel::new()), rec)
    }

    async fn plan(&self, vars: &[&str], opts: PlanOptions) -> skyform::plan::Plan {
        let loaded = self.load(vars);
        let (ctx, _) = self.ctx(&loaded, 10);
        let s = ops::apply::open(&loaded, None, Duration::ZERO).unwrap();
        s.plan(&ctx, &opts).await.map_err(|e| e.to_string()).unwrap().plan
    }

    async fn apply(&self, vars: &[&str], parallelism: usize) -> skyform::engine::applier::ApplyReport {
        let loaded = self.load(vars);
        let (ctx, _) = self.ctx(&loaded, parallelism);
        let mut s = ops::apply::open(&loaded, Some("apply"), Duration::ZERO).unwrap();
        let planned = s.plan(&ctx, &PlanOptions::default()).await.map_err(|e| e.to_string()).unwrap();
        s.apply(&ctx, &planned.plan).await.unwrap()
    }

    fn state_dir(&self) -> &Path {
        self.dir.path()
    }
}

fn chain(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!("[resource.test_object.r{i}]\nname = \"r{i}\"\n"));
        if i > 0 {
            s.push_str(&format!("value = \"${{test_object.r{}.id}}\"\n", i - 1));
        }
    }
    s
}

#[tokio::test]
async fn creates_follow_dependency_order_and_second_plan_is_empty() {
    let f = Fixture::new(&chain(4));
    let plan = f.plan(&[], PlanOptions::default()).await;
    assert_eq!(plan.summary().add, 4);
    // r1's value is r0's id: unknown until r0 exists.
    let r1 = plan.changes.iter().find(|c| c.address.name == "r1").unwrap();
    assert_eq!(r1.after.as_ref().unwrap()["value"], skyform::value::Value::Unknown);
    assert!(render::plan(&plan).contains("(known after apply)"));

    let report = f.apply(&[], 10).await;
    assert!(report.ok(), "{report:?}");
    let creates = f.fake.recorder.ops("create");
    assert_eq!(creates.len(), 4);
    for w in creates.windows(2) {
        assert!(w[0].end <= w[1].start, "{} must finish before {} starts", w[0].name, w[1].name);
    }
    // The value flowed from the real result of the dependency.
    let objs = f.fake.store.snapshot();
    assert_eq!(objs["r1"].attrs["value"], objs["r0"].attrs["id"]);

    let again = f.plan(&[], PlanOptions::default()).await;
    assert!(!again.has_changes(), "{}", render::plan(&again));
}

#[tokio::test]
async fn concurrency_is_bounded_by_parallelism_and_reaches_it() {
    let mut spec = String::new();
    for i in 0..30 {
        spec.push_str(&format!("[resource.test_object.w{i}]\nname = \"w{i}\"\ndelay_ms = 30\n"));
    }
    let f = Fixture::new(&spec);
    let report = f.apply(&[], 4).await;
    assert!(report.ok());
    assert_eq!(f.fake.recorder.max_concurrency(), 4);
    assert_eq!(f.fake.store.snapshot().len(), 30);
}

#[tokio::test]
async fn a_failure_skips_only_its_dependents() {
    let spec = r#"
[resource.test_object.bad]
name = "bad"
fail = true

[resource.test_object.child]
name = "child"
value = "${test_object.bad.id}"

[resource.test_object.other]
name = "other"
"#;
    let f = Fixture::new(spec);
    let report = f.apply(&[], 10).await;
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].0.to_string(), "test_object.bad");
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].0.to_string(), "test_object.child");
    let objs = f.fake.store.snapshot();
    assert!(objs.contains_key("other") && !objs.contains_key("child"));
    // State holds exactly what exists; fixing the spec converges.
    f.write(&spec.replace("fail = true", "fail = false"));
    let report = f.apply(&[], 10).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.summary.add, 2);
    assert!(!f.plan(&[], PlanOptions::default()).await.has_changes());
}

#[tokio::test]
async fn interrupted_apply_saves_state_and_a_rerun_converges() {
    // Each create takes 40 ms, so the cancel below lands while the chain runs.
    let spec: String = chain(5)
        .split_inclusive('\n')
        .map(|l| if l.starts_with("name = ") { format!("{l}delay_ms = 40\n") } else { l.to_string() })
        .collect();
    let f = Fixture::new(&spec);
    let loaded = f.load(&[]);
    let (ctx, _) = f.ctx(&loaded, 1);
    let mut s = ops::apply::open(&loaded, Some("apply"), Duration::ZERO).unwrap();
    let planned = s.plan(&ctx, &PlanOptions::default()).await.unwrap();
    // Cancel as soon as the first create finished (as Ctrl-C would).
    let cancel = ctx.cancel.clone();
    let watcher = {
        let fake = f.fake.clone();
        tokio::spawn(async move {
            while fake.recorder.ops("create").is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            cancel.cancel();
        })
    };
    let report = s.apply(&ctx, &planned.plan).await.unwrap();
    watcher.await.unwrap();
    assert!(!report.cancelled.is_empty());
    let created = f.fake.store.snapshot().len();
    assert!((1..5).contains(&created));
    drop(s);
    // What was created is in state: the next plan creates only the rest.
    let plan = f.plan(&[], PlanOptions::default()).await;
    assert_eq!(plan.summary().add, 5 - created);
    assert!(f.apply(&[], 10).await.ok());
    assert_eq!(f.fake.store.snapshot().len(), 5);
    assert_eq!(f.fake.recorder.ops("create").len(), 5, "nothing was created twice");
}

#[tokio::test]
async fn objects_that_exist_but_are_not_in_state_are_adopted() {
    let f = Fixture::new("[resource.test_object.a]\nname = \"a\"\nvalue = \"v\"\n");
    assert!(f.apply(&[], 10).await.ok());
    // Lose the state, keep the object.
    std::fs::remove_dir_all(f.state_dir().join(".skyform")).unwrap();
    let plan = f.plan(&[], PlanOptions::default()).await;
    assert_eq!(plan.changes[0].action, Action::Adopt);
    assert!(f.apply(&[], 10).await.ok());
    assert_eq!(f.fake.recorder.ops("create").len(), 1, "adopted, not created again");
    assert!(!f.plan(&[], PlanOptions::default()).await.has_changes());
}

#[tokio::test]
async fn force_new_change_replaces_and_removed_block_is_deleted() {
    let f = Fixture::new(
        "[resource.test_object.a]\nname = \"a\"\n[resource.test_object.b]\nname = \"b\"\nvalue = \"${test_object.a.name}\"\n",
    );
    assert!(f.apply(&[], 10).await.ok());
    f.write("[resource.test_object.a]\nname = \"a2\"\n");
    let plan = f.plan(&[], PlanOptions::default()).await;
    let a = plan.changes.iter().find(|c| c.address.name == "a").unwrap();
    assert_eq!(a.action, Action::DeleteThenCreate);
    assert_eq!(a.requires_replace, vec!["name"]);
    let b = plan.changes.iter().find(|c| c.address.name == "b").unwrap();
    assert_eq!(b.action, Action::Delete);
    let text = render::plan(&plan);
    assert!(text.contains("# forces replacement"), "{text}");
    assert!(text.contains("Plan: 0 to add, 0 to change, 1 to replace, 1 to destroy."), "{text}");
    assert!(f.apply(&[], 10).await.ok());
    // b (which depended on a) was deleted before a.
    let deletes = f.fake.recorder.ops("delete");
    assert_eq!(deletes.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["b", "a"]);
    let objs = f.fake.store.snapshot();
    assert_eq!(objs.keys().collect::<Vec<_>>(), vec!["a2"]);
}

#[tokio::test]
async fn saved_plan_is_refused_when_the_live_object_changed() {
    let f = Fixture::new("[resource.test_object.a]\nname = \"a\"\nvalue = \"one\"\n");
    assert!(f.apply(&[], 10).await.ok());
    f.write("[resource.test_object.a]\nname = \"a\"\nvalue = \"two\"\n");
    let loaded = f.load(&[]);
    let (ctx, _) = f.ctx(&loaded, 10);
    let s = ops::apply::open(&loaded, None, Duration::ZERO).unwrap();
    let planned = s.plan(&ctx, &PlanOptions::default()).await.unwrap();
    let saved = planned.plan.redacted(&s.state.fingerprinter());
    drop(s);
    // Someone edits the object after the plan was made.
    f.fake.store.with(|o| {
        let obj = o.get_mut("a").unwrap();
        obj.attrs.insert("value".into(), serde_json::json!("three"));
        obj.version += 1;
    });
    let s = ops::apply::open(&loaded, Some("apply"), Duration::ZERO).unwrap();
    let err = s.check_saved(&ctx, &saved).await.err().expect("stale plan refused").to_string();
    assert!(err.contains("test_object.a") && err.contains("live object changed"), "{err}");
    // Unchanged reality: the same saved plan is accepted.
    drop(s);
    f.fake.store.with(|o| {
        let obj = o.get_mut("a").unwrap();
        obj.attrs.insert("value".into(), serde_json::json!("one"));
        obj.version -= 1;
    });
    let s = ops::apply::open(&loaded, Some("apply"), Duration::ZERO).unwrap();
    assert!(s.check_saved(&ctx, &saved).await.is_ok());
}

#[tokio::test]
async fn drift_is_classified() {
    let f = Fixture::new(
        "[resource.test_object.a]\nname = \"a\"\nvalue = \"x\"\n[resource.test_object.b]\nname = \"b\"\n[resource.test_object.c]\nname = \"c\"\nvalue = \"1\"\n",
    );
    assert!(f.apply(&[], 10).await.ok());
    f.fake.store.with(|o| {
        o.get_mut("a").unwrap().attrs.insert("value".into(), serde_json::json!("changed by hand"));
        o.remove("b");
    });
    f.write(
        "[resource.test_object.a]\nname = \"a\"\nvalue = \"x\"\n[resource.test_object.b]\nname = \"b\"\n[resource.test_object.c]\nname = \"c\"\nvalue = \"2\"\n",
    );
    let loaded = f.load(&[]);
    let (ctx, _) = f.ctx(&loaded, 10);
    let s = ops::apply::open(&loaded, None, Duration::ZERO).unwrap();
    let report = ops::drift::drift(&s, &ctx, false).await.unwrap();
    let classes: Vec<(String, DriftClass)> = report.findings.iter().map(|f| (f.address.to_string(), f.class)).collect();
    assert_eq!(
        classes,
        vec![
            ("test_object.a".into(), DriftClass::ChangedOutside),
            ("test_object.b".into(), DriftClass::DeletedOutside),
            ("test_object.c".into(), DriftClass::PendingSpecChange),
        ]
    );
    assert_eq!(report.findings[0].attributes[0].path, "value");
    assert_eq!(report.findings[0].attributes[0].live, serde_json::json!("changed by hand"));
}

#[tokio::test]
async fn provider_configured_from_a_resource_created_in_the_same_run() {
    let spec = r#"
[resource.test_object.cluster]
name = "cluster"

[provider.lazy]
region = "${test_object.cluster.id}"

[resource.lazy_object.inside]
name = "inside"
"#;
    let f = Fixture::new(spec);
    let plan = f.plan(&[], PlanOptions::default()).await;
    let inside = plan.changes.iter().find(|c| c.address.name == "inside").unwrap();
    assert_eq!(inside.action, Action::Create);
    assert!(inside.reason.as_ref().unwrap().to_string().contains("test_object.cluster"));
    assert!(f.lazy.recorder.ops("read").is_empty(), "the lazy provider could not be read during plan");
    let report = f.apply(&[], 10).await;
    assert!(report.ok(), "{report:?}");
    assert!(f.lazy.store.snapshot().contains_key("inside"));
    // Next time the provider is configured at plan time and reads its object.
    assert!(!f.plan(&[], PlanOptions::default()).await.has_changes());
    assert!(!f.lazy.recorder.ops("read").is_empty());
}

#[tokio::test]
async fn secrets_never_appear_in_any_output() {
    let secret = "S3cr3t-Value-42";
    let spec = r#"
[variable.db_password]
type = "string"
sensitive = true

[resource.test_object.a]
name = "a"
password = "${var.db_password}"
value = "postgresql://u:${var.db_password}@localhost/db"

[output.url]
value = "${test_object.a.value}"

[output.token]
value = "${test_object.a.token}"
"#;
    let f = Fixture::new(spec);
    let var = format!("db_password={secret}");
    let plan = f.plan(&[&var], PlanOptions::default()).await;
    let human = render::plan(&plan);
    let machine = json::plan(&plan).to_string();
    assert!(human.contains("(sensitive value)"), "{human}");
    for text in [&human, &machine] {
        assert!(!text.contains(secret), "secret leaked: {text}");
    }
    let loaded = f.load(&[&var]);
    let (ctx, events) = f.ctx(&loaded, 10);
    let mut s = ops::apply::open(&loaded, Some("apply"), Duration::ZERO).unwrap();
    let planned = s.plan(&ctx, &PlanOptions::default()).await.unwrap();
    let saved = serde_json::to_string(&planned.plan.redacted(&s.state.fingerprinter())).unwrap();
    assert!(!saved.contains(secret));
    let report = s.apply(&ctx, &planned.plan).await.unwrap();
    assert!(report.ok());
    // The provider got the clear value; nothing persisted or emitted holds it.
    assert_eq!(f.fake.store.snapshot()["a"].password.as_deref(), Some(secret));
    let token = f.fake.store.snapshot()["a"].attrs["token"].as_str().unwrap().to_string();
    let events = format!("{:?}", events.0.lock().unwrap());
    assert!(!events.contains(secret) && !events.contains(&token));
    for entry in std::fs::read_dir(f.state_dir().join(".skyform")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(secret), "state leaked the password");
        assert!(!text.contains(&token), "state leaked the token");
    }
    // A changed password is detected through the fingerprint alone.
    drop(s);
    let p2 = f.plan(&["db_password=another"], PlanOptions::default()).await;
    let a = &p2.changes[0];
    assert!(a.changed.contains(&"password".to_string()), "{:?}", a.changed);
    assert!(!f.plan(&[&var], PlanOptions::default()).await.has_changes());
}

#[tokio::test]
async fn prevent_destroy_blocks_destroy_and_replacement() {
    let f = Fixture::new("[resource.test_object.a]\nname = \"a\"\nlifecycle = { prevent_destroy = true }\n");
    assert!(f.apply(&[], 10).await.ok());
    let loaded = f.load(&[]);
    let (ctx, _) = f.ctx(&loaded, 10);
    let s = ops::apply::open(&loaded, None, Duration::ZERO).unwrap();
    let err = s
        .plan(&ctx, &PlanOptions { destroy: true, ..Default::default() })
        .await
        .err()
        .expect("destroy refused")
        .to_string();
    assert!(err.contains("prevent_destroy") && err.contains("test_object.a"), "{err}");
}

#[tokio::test]
async fn destroy_deletes_in_reverse_dependency_order() {
    let f = Fixture::new(&chain(3));
    assert!(f.apply(&[], 10).await.ok());
    let loaded = f.load(&[]);
    let (ctx, _) = f.ctx(&loaded, 10);
    let mut s = ops::apply::open(&loaded, Some("destroy"), Duration::ZERO).unwrap();
    let planned = s.plan(&ctx, &PlanOptions { destroy: true, ..Default::default() }).await.unwrap();
    assert_eq!(planned.plan.summary().destroy, 3);
    assert!(s.apply(&ctx, &planned.plan).await.unwrap().ok());
    let order: Vec<String> = f.fake.recorder.ops("delete").into_iter().map(|c| c.name).collect();
    assert_eq!(order, vec!["r2", "r1", "r0"]);
    assert!(s.state.resources.is_empty());
}

#[tokio::test]
async fn targets_limit_the_plan_to_a_resource_and_its_dependencies() {
    let mut spec = chain(3);
    spec.push_str("[resource.test_object.lone]\nname = \"lone\"\n");
    let f = Fixture::new(&spec);
    let target: skyform::address::Address = "test_object.r1".parse().unwrap();
    let plan = f.plan(&[], PlanOptions { targets: vec![target], ..Default::default() }).await;
    let names: Vec<&str> = plan.changes.iter().map(|c| c.address.name.as_str()).collect();
    assert_eq!(names, vec!["r0", "r1"]);
}

#[tokio::test]
async fn a_secret_shown_only_at_creation_is_remade_when_its_consumer_lost_it() {
    let spec = r#"
[resource.test_object.key]
name = "key"

[resource.test_object.holder]
name = "holder"
value = "${test_object.key.once}"
"#;
    let f = Fixture::new(spec);
    assert!(f.apply(&[], 10).await.ok());
    let held = f.fake.store.snapshot()["holder"].attrs["value"].clone();
    assert!(held.as_str().unwrap().starts_with("once-"));
    // The consumer still holds the secret: the fingerprint in state proves it.
    assert!(!f.plan(&[], PlanOptions::default()).await.has_changes());
    // Someone overwrites it: the only way back is a new secret.
    f.fake.store.with(|o| {
        let h = o.get_mut("holder").unwrap();
        h.attrs.insert("value".into(), serde_json::json!("tampered"));
        h.version += 1;
    });
    let plan = f.plan(&[], PlanOptions::default()).await;
    let key = plan.changes.iter().find(|c| c.address.name == "key").unwrap();
    assert!(key.action.is_replace(), "{:?}", key.action);
    let holder = plan.changes.iter().find(|c| c.address.name == "holder").unwrap();
    assert_eq!(holder.action, Action::Update);
    assert!(f.apply(&[], 10).await.ok());
    let now = f.fake.store.snapshot()["holder"].attrs["value"].clone();
    assert!(now.as_str().unwrap().starts_with("once-") && now != held);
    assert!(!f.plan(&[], PlanOptions::default()).await.has_changes());
}

#[tokio::test]
async fn data_sources_read_at_plan_time_feed_resources_at_apply() {
    let f = Fixture::new("[resource.test_object.src]\nname = \"src\"\nvalue = \"from-source\"\n");
    assert!(f.apply(&[], 10).await.ok());
    f.write(
        "[resource.test_object.src]\nname = \"src\"\nvalue = \"from-source\"\n\
         [data.test_lookup.s]\nname = \"src\"\n\
         [resource.test_object.dst]\nname = \"dst\"\nvalue = \"${data.test_lookup.s.value}\"\n",
    );
    let report = f.apply(&[], 10).await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(f.fake.store.snapshot()["dst"].attrs["value"], "from-source");
    assert!(!f.plan(&[], PlanOptions::default()).await.has_changes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_configured_from_a_data_source_waits_for_it_at_apply() {
    // The drift CronJob's spec: the Kubernetes provider built from a cluster data source. State keeps
    // no data source among a resource's dependencies, yet apply must set the data source's values
    // before it configures the provider for a resource (or delete) that needs it, though the walk
    // starts first the steps with the longest chains after them (`inside` here).
    let f = Fixture::new("[resource.test_object.cluster]\nname = \"cluster\"\nvalue = \"eu\"\n");
    assert!(f.apply(&[], 10).await.ok());
    let spec = "[resource.test_object.cluster]\nname = \"cluster\"\nvalue = \"eu\"\n\
         [data.test_lookup.c]\nname = \"cluster\"\n\
         [provider.lazy]\nregion = \"${data.test_lookup.c.value}\"\n\
         [resource.lazy_object.inside]\nname = \"inside\"\n\
         [resource.lazy_object.next]\nname = \"next\"\nvalue = \"${lazy_object.inside.id}\"\n";
    f.write(spec);
    // Steps run on two threads, in whatever order: many rounds give the race its chances.
    for parallelism in [1, 10].repeat(15) {
        let report = f.apply(&[], parallelism).await;
        assert!(report.ok(), "parallelism {parallelism}: {report:?}");
        assert!(f.lazy.store.snapshot().contains_key("inside"));
        // Deleting needs the provider too.
        f.write(
            "[resource.test_object.cluster]\nname = \"cluster\"\nvalue = \"eu\"\n\
             [data.test_lookup.c]\nname = \"cluster\"\n\
             [provider.lazy]\nregion = \"${data.test_lookup.c.value}\"\n",
        );
        let report = f.apply(&[], parallelism).await;
        assert!(report.ok(), "parallelism {parallelism}, delete: {report:?}");
        assert!(!f.lazy.store.snapshot().contains_key("inside"));
        f.write(spec);
    }
}

#[test]
fn a_resource_referring_to_itself_is_a_cycle() {
    let f = Fixture::new("[resource.test_object.a]\nname = \"a\"\nvalue = \"${test_object.a.id}\"\n");
    let mut reg = Registry::new();
    reg.register(f.fake.clone());
    let opts = SpecOptions {
        file: f.dir.path().join("main.toml"),
        vars: vec![],
        var_files: vec![],
        lenient_vars: false,
        policies: vec![],
    };
    let err = ops::load(&opts, reg).err().expect("a cycle").to_string();
    assert!(err.contains("dependency cycle: test_object.a"), "{err}");
    assert!(err.contains("main.toml:1:1"), "{err}");
}
