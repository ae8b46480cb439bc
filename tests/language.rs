//! The spec language's repetition and refactoring constructs, through the
//! engine with the in-memory provider: locals, `count`, `for_each`, modules
//! (with `for_each`), whole-collection references, `[[moved]]`,
//! `[[removed]]`, `[[import]]`, unknown repetition values, `validate` without
//! variable values, and `--target` with instance and module addresses.

use std::sync::Arc;
use std::time::Duration;

use skyform::address::Address;
use skyform::cli::render;
use skyform::engine::events::Recorder as EventRecorder;
use skyform::engine::{Cancel, Context, PlanOptions};
use skyform::ops::{self, Loaded, SpecOptions};
use skyform::plan::{Action, Plan, Reason};
use skyform::providers::Registry;
use skyform::providers::memory::MemoryFactory;
use skyform::value::Value;

struct Fixture {
    dir: tempfile::TempDir,
    fake: Arc<MemoryFactory>,
}

impl Fixture {
    fn new(spec: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.toml"), spec).unwrap();
        Fixture { dir, fake: Arc::new(MemoryFactory::new()) }
    }

    fn write(&self, spec: &str) {
        std::fs::write(self.dir.path().join("main.toml"), spec).unwrap();
    }

    fn module(&self, name: &str, spec: &str) {
        let d = self.dir.path().join("modules").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("main.toml"), spec).unwrap();
    }

    fn try_load(&self, lenient: bool) -> Result<Loaded, String> {
        let mut reg = Registry::new();
        reg.register(self.fake.clone());
        let opts = SpecOptions {
            file: self.dir.path().join("main.toml"),
            vars: vec![],
            var_files: vec![],
            lenient_vars: lenient,
            policies: vec![],
        };
        ops::load(&opts, reg).map_err(|e| e.to_string())
    }

    fn ctx(&self, loaded: &Loaded) -> Context {
        loaded.context(Arc::new(EventRecorder::default()), 4, Cancel::new())
    }

    async fn try_plan(&self, opts: PlanOptions) -> Result<Plan, String> {
        let loaded = self.try_load(false)?;
        let s = ops::apply::open(&loaded, None, Duration::ZERO).unwrap();
        s.plan(&self.ctx(&loaded), &opts).await.map(|o| o.plan).map_err(|e| e.to_string())
    }

    async fn plan(&self) -> Plan {
        self.try_plan(PlanOptions::default()).await.unwrap_or_else(|e| panic!("plan failed: {e}"))
    }

    async fn apply_with(&self, opts: PlanOptions) -> Plan {
        let loaded = self.try_load(false).unwrap_or_else(|e| panic!("{e}"));
        let ctx = self.ctx(&loaded);
        let mut s = ops::apply::open(&loaded, Some("apply"), Duration::ZERO).unwrap();
        let planned = s.plan(&ctx, &opts).await.unwrap_or_else(|e| panic!("plan failed: {e}"));
        let report = s.apply(&ctx, &planned.plan).await.unwrap();
        assert!(report.ok(), "{report:?}");
        planned.plan
    }

    async fn apply(&self) -> Plan {
        self.apply_with(PlanOptions::default()).await
    }

    fn state_addresses(&self) -> Vec<String> {
        let loaded = self.try_load(true).unwrap();
        let s = ops::apply::open(&loaded, None, Duration::ZERO).unwrap();
        s.state.resources.keys().map(|a| a.to_string()).collect()
    }

    fn names(&self) -> Vec<String> {
        self.fake.store.snapshot().into_keys().collect()
    }
}

fn actions(p: &Plan) -> Vec<(String, Action)> {
    p.changes.iter().filter(|c| c.action.is_change()).map(|c| (c.address.to_string(), c.action)).collect()
}

fn addr(s: &str) -> Address {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

const REPEATED: &str = r#"
[variable.env]
default = "dev"

[locals]
prefix = "sky-${var.env}"
teams = { ml = "gpu", infra = "cpu" }

[resource.test_object.replica]
count = 2
name = "${local.prefix}-replica-${count.index}"

[resource.test_object.team]
for_each = "${local.teams}"
name = "team-${each.key}"
value = "${each.value}"

[resource.test_object.role]
for_each = ["roles/a", "roles/b"]
name = "role-${each.key}"
value = "${test_object.replica[0].id}"

[output.replicas]
value = "${test_object.replica}"
"#;

#[tokio::test]
async fn count_for_each_and_locals_expand_into_instances() {
    let f = Fixture::new(REPEATED);
    let plan = f.plan().await;
    let mut got = actions(&plan);
    got.sort();
    assert_eq!(
        got,
        [
            ("test_object.replica[0]", Action::Create),
            ("test_object.replica[1]", Action::Create),
            ("test_object.role[\"roles/a\"]", Action::Create),
            ("test_object.role[\"roles/b\"]", Action::Create),
            ("test_object.team[\"infra\"]", Action::Create),
            ("test_object.team[\"ml\"]", Action::Create),
        ]
        .map(|(a, x)| (a.to_string(), x))
    );
    let team = plan.get(&addr("test_object.team[\"ml\"]")).unwrap();
    assert_eq!(team.after.as_ref().unwrap()["value"], Value::str("gpu"));
    assert_eq!(
        plan.get(&addr("test_object.replica[1]")).unwrap().after.as_ref().unwrap()["name"],
        Value::str("sky-dev-replica-1")
    );
    // A reference into another instance waits for it.
    let role = plan.get(&addr("test_object.role[\"roles/a\"]")).unwrap();
    assert!(role.depends_on.contains(&addr("test_object.replica[0]")), "{:?}", role.depends_on);
    assert!(render::plan(&plan).contains("test_object.role[\"roles/a\"] will be created"), "{}", render::plan(&plan));

    f.apply().await;
    let mut names = f.names();
    names.sort();
    assert_eq!(
        names,
        ["role-roles/a", "role-roles/b", "sky-dev-replica-0", "sky-dev-replica-1", "team-infra", "team-ml"]
    );
    let again = f.plan().await;
    assert!(!again.has_changes(), "{}", render::plan(&again));
    // The whole collection: a list of the instances' objects.
    let replicas = &again.outputs["replicas"];
    assert_eq!(replicas.as_list().map(<[Value]>::len), Some(2), "{replicas:?}");
    assert_eq!(replicas.as_list().unwrap()[1].get("name"), Some(&Value::str("sky-dev-replica-1")));

    // Removing one key destroys exactly that instance.
    f.write(&REPEATED.replace(r#"["roles/a", "roles/b"]"#, r#"["roles/a"]"#));
    let plan = f.plan().await;
    assert_eq!(actions(&plan), [("test_object.role[\"roles/b\"]".to_string(), Action::Delete)]);
    // --target takes an instance address.
    let loaded = f.try_load(false).unwrap();
    let state = ops::apply::open(&loaded, None, Duration::ZERO).unwrap().state;
    let t = ops::resolve_targets(
        &loaded,
        &state,
        &["test_object.team".parse().unwrap(), "test_object.replica[1]".parse().unwrap()],
    )
    .unwrap();
    assert_eq!(
        t.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        ["test_object.replica[1]", "test_object.team[\"infra\"]", "test_object.team[\"ml\"]"]
    );
}

const MODULE: &str = r#"
[variable.team]
type = "string"

[variable.size]
default = 1

[resource.test_object.ns]
name = "ns-${var.team}"
size = "${var.size}"

[output.id]
value = "${test_object.ns.id}"

[output.name]
value = "${test_object.ns.name}"
"#;

const ROOT_WITH_MODULES: &str = r#"
[module.team]
source = "./modules/team"
for_each = ["ml", "infra"]
team = "${each.key}"

[module.solo]
source = "./modules/team"
team = "solo"
size = 3

[resource.test_object.user]
name = "user"
value = "${module.team[\"ml\"].id}"
"#;

#[tokio::test]
async fn modules_expand_with_for_each_and_their_outputs_are_references() {
    let f = Fixture::new(ROOT_WITH_MODULES);
    f.module("team", MODULE);
    let plan = f.plan().await;
    let mut got: Vec<String> = actions(&plan).into_iter().map(|(a, _)| a).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "module.solo.test_object.ns",
            "module.team[\"infra\"].test_object.ns",
            "module.team[\"ml\"].test_object.ns",
            "test_object.user",
        ]
    );
    let solo = plan.get(&addr("module.solo.test_object.ns")).unwrap();
    assert_eq!(solo.after.as_ref().unwrap()["size"], Value::Int(3));
    let user = plan.get(&addr("test_object.user")).unwrap();
    assert!(user.depends_on.contains(&addr("module.team[\"ml\"].test_object.ns")), "{:?}", user.depends_on);
    assert_eq!(user.after.as_ref().unwrap()["value"], Value::Unknown);
    f.apply().await;
    let objs = f.fake.store.snapshot();
    assert_eq!(objs["user"].attrs["value"], objs["ns-ml"].attrs["id"]);
    assert!(!f.plan().await.has_changes());
    // --target with a module address: everything under it.
    let loaded = f.try_load(false).unwrap();
    let state = ops::apply::open(&loaded, None, Duration::ZERO).unwrap().state;
    let t = ops::resolve_targets(&loaded, &state, &["module.team".parse().unwrap()]).unwrap();
    assert_eq!(t.len(), 2, "{t:?}");
    let t = ops::resolve_targets(&loaded, &state, &["module.team[\"ml\"]".parse().unwrap()]).unwrap();
    assert_eq!(t, [addr("module.team[\"ml\"].test_object.ns")]);
    assert!(ops::resolve_targets(&loaded, &state, &["module.nope".parse().unwrap()]).is_err());
}

#[tokio::test]
async fn moved_blocks_rename_without_destroying_and_removed_forgets() {
    let f = Fixture::new(
        "[resource.test_object.old]\nname = \"keep-me\"\n\n[resource.test_object.gone]\nname = \"leave-me\"\n",
    );
    f.apply().await;
    let created = f.fake.recorder.ops("create").len();
    // Renamed, into a counted instance; the other one forgotten.
    f.write(
        r#"
[resource.test_object.copies]
count = 1
name = "keep-me"

[[moved]]
from = "test_object.old"
to = "test_object.copies[0]"

[[removed]]
from = "test_object.gone"
destroy = false
"#,
    );
    let plan = f.plan().await;
    assert!(!plan.has_changes(), "a move with no other change is no change: {}", render::plan(&plan));
    assert_eq!(plan.moved, [(addr("test_object.old"), addr("test_object.copies[0]"))]);
    assert_eq!(plan.forget, [addr("test_object.gone")]);
    let text = render::plan(&plan);
    assert!(text.contains("# test_object.old has moved to test_object.copies[0]"), "{text}");
    assert!(text.contains("# test_object.gone will no longer be managed"), "{text}");
    assert!(text.contains("No changes."), "{text}");
    f.apply().await;
    assert_eq!(f.fake.recorder.ops("create").len(), created, "nothing was created");
    assert!(f.fake.recorder.ops("delete").is_empty(), "nothing was destroyed");
    assert_eq!(f.state_addresses(), ["test_object.copies[0]"]);
    assert!(f.names().contains(&"leave-me".to_string()), "a forgotten object stays");
    // Applied: the blocks are now no-ops.
    let again = f.plan().await;
    assert!(again.moved.is_empty() && again.forget.is_empty() && !again.has_changes());
}

#[tokio::test]
async fn a_move_onto_an_occupied_address_is_refused() {
    let f = Fixture::new("[resource.test_object.a]\nname = \"a\"\n\n[resource.test_object.b]\nname = \"b\"\n");
    f.apply().await;
    f.write("[resource.test_object.b]\nname = \"b\"\n\n[[moved]]\nfrom = \"test_object.a\"\nto = \"test_object.b\"\n");
    let e = f.try_plan(PlanOptions::default()).await.unwrap_err();
    assert!(
        e.contains(
            "cannot move `test_object.a` to `test_object.b`: the state already has an object at `test_object.b`"
        ),
        "{e}"
    );
    assert!(e.contains("main.toml:"), "located: {e}");
}

#[tokio::test]
async fn import_blocks_adopt_by_id_and_a_missing_object_is_an_error() {
    // An object made by an earlier state, then that state lost.
    let f = Fixture::new("[resource.test_object.x]\nname = \"made-elsewhere\"\n");
    f.apply().await;
    std::fs::remove_dir_all(f.dir.path().join(".skyform")).unwrap();
    f.write("[resource.test_object.x]\nname = \"made-elsewhere\"\n\n[[import]]\nto = \"test_object.x\"\nid = \"made-elsewhere\"\n");
    let plan = f.plan().await;
    let c = plan.get(&addr("test_object.x")).unwrap();
    assert_eq!(c.action, Action::Adopt);
    assert_eq!(c.reason, Some(Reason::ImportByRequest { id: "made-elsewhere".into() }));
    f.apply().await;
    assert!(!f.plan().await.has_changes());

    std::fs::remove_dir_all(f.dir.path().join(".skyform")).unwrap();
    f.write("[resource.test_object.y]\nname = \"y\"\n\n[[import]]\nto = \"test_object.y\"\nid = \"no-such-object\"\n");
    let e = f.try_plan(PlanOptions::default()).await.unwrap_err();
    assert!(e.contains("`[[import]]` to `test_object.y`: there is no test_object with id \"no-such-object\""), "{e}");
    f.write("[resource.test_object.y]\nname = \"y\"\n\n[[import]]\nto = \"test_object.z\"\nid = \"y\"\n");
    let e = f.try_plan(PlanOptions::default()).await.unwrap_err();
    assert!(e.contains("`[[import]]` to `test_object.z`, which is not in the spec"), "{e}");
}

#[tokio::test]
async fn a_for_each_known_only_after_apply_is_an_error_naming_the_reference() {
    let f = Fixture::new(
        r#"
[resource.test_object.a]
name = "a"

[resource.test_object.b]
for_each = "${test_object.a.tags}"
name = "b-${each.key}"
"#,
    );
    let e = f.try_load(false).err().expect("refused");
    assert!(e.contains("the `for_each` value is not known when planning"), "{e}");
    assert!(e.contains("`test_object.a.tags`, known only after apply"), "{e}");
    assert!(e.contains("main.toml:6:"), "located at the for_each: {e}");
}

#[tokio::test]
async fn validate_and_graph_need_no_variable_values() {
    let f = Fixture::new(
        r#"
[variable.teams]
type = "list"

[variable.secret]
sensitive = true

[resource.test_object.t]
for_each = "${var.teams}"
name = "t-${each.key}"
secret = "${var.secret}"

[resource.test_object.u]
name = "u"
value = "${test_object.t[\"x\"].id}"
"#,
    );
    // As `skyform validate`: unknown values, one representative instance.
    let loaded = f.try_load(true).unwrap_or_else(|e| panic!("validate needs no values: {e}"));
    assert!(loaded.spec.resources.contains_key(&addr("test_object.t")), "{:?}", loaded.spec.resources.keys());
    // A plan needs them, and says which.
    let e = f.try_load(false).err().expect("plan needs the values");
    assert!(e.contains("teams") && e.contains("secret"), "{e}");
}

#[tokio::test]
async fn module_details_sensitive_inputs_files_depends_on_and_import_ids() {
    let f = Fixture::new(
        r#"
[locals]
import_id = "pre-existing"

# `a` waits for every instance of a repeated resource in module `b`,
# declared after it.
[module.a]
source = "./modules/a"
depends_on = ["module.b.test_object.many"]
secret = "hunter2-secret"

[module.b]
source = "./modules/b"

[resource.test_object.imported]
name = "pre-existing"

[[import]]
to = "test_object.imported"
id = "${local.import_id}"
"#,
    );
    f.module(
        "a",
        r#"
[variable.secret]
type = "string"
sensitive = true

[resource.test_object.one]
name = "one"
value = "${var.secret}"
tags = { note = '${file("note.txt")}' }
"#,
    );
    std::fs::write(f.dir.path().join("modules/a/note.txt"), "from the module's directory").unwrap();
    f.module("b", "[resource.test_object.many]\ncount = 2\nname = \"many-${count.index}\"\n");
    // The object to import exists already (made through another state).
    let other = Fixture { dir: tempfile::tempdir().unwrap(), fake: f.fake.clone() };
    other.write("[resource.test_object.x]\nname = \"pre-existing\"\n");
    other.apply().await;

    let plan = f.plan().await;
    let one = plan.get(&addr("module.a.test_object.one")).unwrap();
    let text = render::plan(&plan);
    assert!(!text.contains("hunter2-secret"), "a sensitive module input is masked: {text}");
    assert!(one.after.as_ref().unwrap()["value"].has_sensitive());
    assert_eq!(one.after.as_ref().unwrap()["tags"].get("note"), Some(&Value::str("from the module's directory")));
    for i in 0..2 {
        assert!(one.depends_on.contains(&addr(&format!("module.b.test_object.many[{i}]"))), "{:?}", one.depends_on);
    }
    let imported = plan.get(&addr("test_object.imported")).unwrap();
    assert_eq!(imported.reason, Some(Reason::ImportByRequest { id: "pre-existing".into() }));
    f.apply().await;
    assert!(!f.plan().await.has_changes());
}
