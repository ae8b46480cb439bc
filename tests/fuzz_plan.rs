//! Fuzzing the plan file loader (`src/plan/file.rs`, `plan --out` then `apply FILE`, `show FILE`):
//! mutated, truncated and random plan files. Nothing panics; every error names the file and, for
//! what is not a plan, the line and column; a plan that loads renders (human and JSON) and saves
//! again to the same plan.
//!
//! The short run is part of `cargo test`; the long one is `PROPTEST_CASES=… cargo test --release
//! --test fuzz_plan` (docs/testbed.md#fuzzing).

mod fuzz_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use fuzz_common::{apply_bytes, json_fragment, json_located, mutation};
use proptest::prelude::*;
use skyform::address::Address;
use skyform::diag::{Diagnostic, Pos};
use skyform::plan::file::{PlanFileError, load, save};
use skyform::plan::{Action, PLAN_FORMAT, Plan, PlannedCheck, Reason, ResourceChange};
use skyform::value::Value;

fn addr(s: &str) -> Address {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

/// A plan with every action, reason and kind of value.
fn sample() -> Plan {
    let attrs = |i: i64| {
        BTreeMap::from([
            ("name".to_string(), Value::str(format!("n-{i}"))),
            ("password".to_string(), Value::Redacted("argon2id:m=19456,t=2,p=1:00ff".into())),
            ("later".to_string(), Value::Unknown),
            ("dollar".to_string(), Value::map([("$redacted", Value::Int(i))])),
            ("nested".to_string(), Value::List(vec![Value::Float(0.5), Value::Bool(false), Value::Null])),
        ])
    };
    let actions = [
        (Action::NoOp, None),
        (Action::Create, Some(Reason::CreateBecauseDeletedOutside)),
        (Action::Update, None),
        (Action::DeleteThenCreate, Some(Reason::ReplaceBecauseCannotUpdate { attributes: vec!["name".into()] })),
        (Action::CreateThenDelete, Some(Reason::ReplaceByRequest)),
        (Action::Delete, Some(Reason::DeleteBecauseNoResourceConfig)),
        (Action::Read, Some(Reason::ReadBecauseInputsUnknown)),
        (Action::Adopt, Some(Reason::ImportByRequest { id: "projects/p/x".into() })),
    ];
    let changes = actions
        .into_iter()
        .enumerate()
        .map(|(i, (action, reason))| {
            let a = match i % 3 {
                0 => addr(&format!("test_object.r{i}")),
                1 => addr(&format!("module.m[\"k{i}\"].test_object.r[{i}]")),
                _ => addr(&format!("data.test_data.d{i}")),
            };
            ResourceChange {
                reason,
                before: (action != Action::Create).then(|| attrs(i as i64)),
                after: (action != Action::Delete).then(|| attrs(i as i64 + 1)),
                changed: vec!["name".into()],
                requires_replace: if action.is_replace() { vec!["name".into()] } else { vec![] },
                identity: Some(Value::map([("name", Value::str(format!("n-{i}")))])),
                live_version: Some(format!("etag-{i}")),
                private: Value::map([("operation", Value::map([("name", Value::str("op"))]))]),
                notes: vec!["restarts the instance".into()],
                sensitive_attributes: vec!["password".into()],
                ..ResourceChange::new(a, "test".into(), action, vec![addr("test_object.r0")])
            }
        })
        .collect();
    Plan {
        format_version: PLAN_FORMAT.into(),
        lineage: "0123456789abcdef".into(),
        serial: 3,
        spec_digest: "sha256:00".into(),
        destroy: false,
        changes,
        outputs: BTreeMap::from([("o".to_string(), Value::Unknown), ("s".to_string(), Value::Redacted("fp".into()))]),
        warnings: vec![Diagnostic::warning(
            Some(Pos { file: Arc::new(PathBuf::from("main.toml")), line: 3, col: 1 }),
            "a warning",
        )],
        targets: vec![addr("test_object.r0")],
        replace: vec![addr("module.m[\"k1\"].test_object.r[1]")],
        exclude: vec![],
        moved: vec![(addr("test_object.old"), addr("test_object.r0"))],
        forget: vec![addr("test_object.gone")],
        dropped: vec![],
        checks: vec![PlannedCheck {
            name: "health".into(),
            target: "GET /api/health".into(),
            after: vec![addr("test_object.r0")],
        }],
        variables: BTreeMap::from([
            ("v".to_string(), Value::str("x")),
            ("s".to_string(), Value::Redacted("fp".into())),
        ]),
        providers: BTreeMap::from([("test".to_string(), BTreeMap::from([("region".to_string(), Value::str("r"))]))]),
        policy: None,
    }
}

/// The sample as `plan --out` writes it.
fn saved() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        save(&path, &sample()).unwrap();
        std::fs::read(path).unwrap()
    })
}

/// Loads `bytes` as a plan file: an error is located; a plan renders and round-trips.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    std::fs::write(&path, bytes).unwrap();
    match load(&path) {
        Ok(plan) => {
            let _ = skyform::cli::render::plan(&plan);
            let _ = skyform::cli::json::plan(&plan);
            let _ = plan.summary();
            let again = dir.path().join("again.json");
            save(&again, &plan).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = load(&again).map_err(|e| TestCaseError::fail(format!("saved, then refused: {e}")))?;
            prop_assert_eq!(back, plan);
        }
        Err(PlanFileError::Invalid { path: p, message }) => {
            prop_assert_eq!(Path::new(&p), path.as_path());
            prop_assert!(
                json_located(&message) || message.starts_with("format_version is"),
                "a plan file error without its place: {}",
                message
            );
        }
        Err(e) => prop_assert!(false, "not an invalid-plan error: {e}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_common::config(512))]

    /// A saved plan, edited: loads (and renders, and saves again), or is refused at its place.
    #[test]
    fn mutated_plan_file(muts in prop::collection::vec(mutation(json_fragment()), 1..6)) {
        check(&apply_bytes(saved(), &muts))?;
    }

    /// Anything at all.
    #[test]
    fn random_plan_file(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check(&bytes)?;
    }

    /// JSON made of meaningful pieces.
    #[test]
    fn json_fragments_as_plan_file(parts in prop::collection::vec(json_fragment(), 0..40)) {
        check(parts.concat().as_bytes())?;
    }
}

#[test]
fn the_sample_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    std::fs::write(&path, saved()).unwrap();
    assert_eq!(load(&path).unwrap(), sample());
}
