//! Fuzzing what skyform parses from outside answers: Google REST answers (the error envelope and
//! its `retryDelay`, operations, clusters, instances, accounts, IAM policies: `src/providers/gcp/`),
//! Cloud Storage's answers to the state backend (`src/state/gcs/`), and the Kubernetes objects,
//! helm outputs and times skyform reads (`src/providers/kubernetes/ready.rs`,
//! `src/providers/helm/`). Two ways: the parsers called with generated answers, and the real
//! provider and backend talking to a server that answers anything (`hostile`). Nothing panics
//! or hangs; a bad answer is an error that says which answer.
//!
//! The short run is part of `cargo test`; the long one is `PROPTEST_CASES=… cargo test --release
//! --test fuzz_answers` (docs/testbed.md#fuzzing).

#[path = "fuzz_answers/answers.rs"]
mod answers;
mod fuzz_common;
#[path = "fuzz_answers/hostile.rs"]
mod hostile;
mod http_common;

use std::sync::OnceLock;

use http_common::Server;
use proptest::prelude::*;
use serde_json::Value as Json;
use skyform::foundation::time::rfc3339_secs;
use skyform::providers::ProviderError;
use skyform::providers::gcp::client::{ApiError, parse_duration};
use skyform::providers::gcp::operation::{Op, status};
use skyform::providers::gcp::policy::{Delta, apply_deltas, has_member, members_of};
use skyform::providers::gcp::{container_cluster, jstr, service_account, sql_instance};
use skyform::providers::helm::objects::{awaited, parse_manifest};
use skyform::providers::helm::values::{merge, parse_yaml, project, without_yaml};
use skyform::providers::kubernetes::objects::ObjRef;
use skyform::providers::kubernetes::ready::{pod_state, ready};
use skyform::value::Value;

/// Every GCP parser on one answer.
fn gcp_parsers(j: &Json, status_code: u16) {
    let text = j.to_string();
    let half = (0..=text.len() / 2).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    for body in [text.as_str(), &text[..half], ""] {
        let e = ApiError::from_body(status_code, body);
        let _ = (e.describe(), e.is_already_exists(), e.is_transient());
        let _ = ProviderError::from(e);
    }
    for api in ["sql", "container", "serviceusage"] {
        let _ = status(api, j);
    }
    for op in [Op::sql("p", j), Op::container("p", "l", j), Op::service_usage(j)] {
        assert_eq!(Op::from_private(&op.to_private()).map(|o| o.name), (!op.name.is_empty()).then_some(op.name));
    }
    let _ = Op::from_private(&Value::from_json(j));
    let _ = container_cluster::attrs_of(j, "p");
    let _ = service_account::attrs_of(j);
    let _ = sql_instance::attrs_of(j, None);
    let _ = sql_instance::attrs_of(j, Some(&Value::from_json(j)));
    for path in ["name", "settings.tier", "masterAuth.clusterCaCertificate", "a.b.c.d"] {
        let _ = jstr(j, path);
    }
    let _ = (has_member(j, "roles/x", "user:a"), members_of(j, "roles/cloudsql.client"));
    let deltas = [
        Delta { role: "roles/cloudsql.client".into(), member: "user:a".into(), add: true },
        Delta { role: "roles/x".into(), member: "user:b".into(), add: false },
    ];
    let mut policy = j.clone();
    let _ = apply_deltas(&mut policy, &deltas);
    assert!(has_member(&policy, "roles/cloudsql.client", "user:a"), "an added member is in the policy");
}

/// Every Kubernetes and helm parser on one answer.
fn k8s_parsers(j: &Json, other: &Json) {
    let _ = ready(j);
    let _ = pod_state(j);
    let _ = ObjRef::of(j);
    let (mut merged, _) = (j.clone(), project(j, other));
    merge(&mut merged, other);
    let _ = without_yaml(j, other, j);
    let yaml = serde_yaml::to_string(j).unwrap_or_default();
    let _ = parse_yaml(&yaml);
    let _ = parse_manifest(&yaml);
    let _ = awaited(&format!("{yaml}\n---\n{}", serde_yaml::to_string(other).unwrap_or_default()), "ns");
}

proptest! {
    #![proptest_config(fuzz_common::config(1024))]

    #[test]
    fn gcp_answers(
        j in answers::answer(),
        status_code in prop_oneof![Just(200u16), Just(404), Just(409), Just(429), Just(503), any::<u16>()],
    ) {
        gcp_parsers(&j, status_code);
    }

    #[test]
    fn retry_delays(d in answers::duration_text()) {
        if let Some(delay) = parse_duration(&d) {
            prop_assert!(delay.as_secs_f64().is_finite());
        }
        let info = serde_json::json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": d});
        let body = serde_json::json!({"error": {"details": [info]}});
        let e = ApiError::from_body(429, &body.to_string());
        prop_assert_eq!(e.retry_delay, parse_duration(&d));
    }

    /// Times from answers (GCS `updated`, helm history `updated`, keys' `validAfterTime`).
    #[test]
    fn times(t in answers::time_text()) {
        let _ = rfc3339_secs(&t);
    }

    #[test]
    fn k8s_and_helm_answers(j in answers::answer(), other in answers::json()) {
        k8s_parsers(&j, &other);
    }

    /// A chart's manifest as `helm get manifest` prints it, edited.
    #[test]
    fn helm_manifests(muts in prop::collection::vec(fuzz_common::mutation(yaml_fragment()), 0..8)) {
        let text = fuzz_common::apply(MANIFEST, &muts);
        match parse_manifest(&text) {
            Ok(objs) => {
                for o in &objs {
                    k8s_parsers(o, &Json::Null);
                }
                let _ = awaited(&text, "ns");
            }
            Err(e) => prop_assert!(e.to_string().contains("not valid YAML"), "{e}"),
        }
        let _ = parse_yaml(&text);
    }
}

proptest! {
    #![proptest_config(fuzz_common::config(48))]

    /// The GCP provider's read, plan, apply and data sources against a server answering a script.
    #[test]
    fn gcp_provider_against_a_hostile_server(
        script in hostile::gcp_script(),
        pick in any::<usize>(),
        action in any::<u8>(),
    ) {
        static S: OnceLock<Server> = OnceLock::new();
        hostile::gcp_case(hostile::server(&S), script, pick, action)?;
    }

    /// The Cloud Storage state backend's every call against a server answering a script.
    #[test]
    fn gcs_backend_against_a_hostile_server(script in hostile::gcs_script()) {
        static S: OnceLock<Server> = OnceLock::new();
        hostile::gcs_case(hostile::server(&S), script)?;
    }
}

const MANIFEST: &str = "---
# Source: skypilot/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: skypilot
spec:
  replicas: 1
  selector:
    matchLabels: {app: api}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: api
          image: \"skypilot:1\"
          args: [\"--port\", \"46580\"]
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports: [{port: 80, targetPort: 46580}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
";

fn yaml_fragment() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        Just("---\n".to_string()),
        Just("&a [*a]".to_string()),
        Just("*a".to_string()),
        Just("<<: *a\n".to_string()),
        Just("!!binary AAAA".to_string()),
        Just("? ".to_string()),
        Just(": ".to_string()),
        Just("- ".to_string()),
        Just("  ".to_string()),
        Just("{".to_string()),
        Just("[".to_string()),
        Just("\"".to_string()),
        Just("kind: Job\n".to_string()),
        Just("kind: 7\n".to_string()),
        Just("apiVersion: null\n".to_string()),
        Just("1e999".to_string()),
        Just("\t".to_string()),
        Just("\n".to_string()),
        Just("\0".to_string()),
        "[a-z: \\-]{1,10}",
    ]
}

/// Found by `gcp_answers`: `getIamPolicy` answering something that is not an object (here an
/// array) made the read-modify-write panic ("cannot access key \"bindings\" in JSON array").
#[test]
fn a_policy_that_is_not_an_object_does_not_panic() {
    for answer in [serde_json::json!([]), serde_json::json!(7), Json::Null, serde_json::json!("x")] {
        let mut policy = answer;
        let add = Delta { role: "roles/x".into(), member: "user:a".into(), add: true };
        assert!(apply_deltas(&mut policy, &[add]));
        assert!(has_member(&policy, "roles/x", "user:a"));
    }
}

/// Found by `times`: a year of 17 digits overflowed the day count (a panic in debug builds, a
/// wrong time in release); years are four digits in RFC 3339.
#[test]
fn a_time_far_out_of_range_is_no_time() {
    assert_eq!(rfc3339_secs("99999999999999999-01-01T00:00:00Z"), None);
    assert_eq!(rfc3339_secs("2026-12-01T21:40:00Z"), Some(1_796_161_200));
}

/// A Storage backend on `server` (bucket `b`, prefix `p`).
fn gcs(server: &Server) -> skyform::state::gcs::GcsBackend {
    let loc = skyform::state::gcs::GcsLocation { bucket: "b".into(), prefix: "p".into() };
    skyform::state::gcs::GcsBackend::new(
        &skyform::foundation::net::Net::new(),
        loc,
        Some(server.url("/")),
        Some("t".into()),
    )
}

/// Found by `gcs_backend_against_a_hostile_server`: a listing whose every page names a next page
/// (`{"items":[],"nextPageToken":"a"}`) was followed for ever.
#[test]
fn a_listing_that_repeats_its_page_token_ends() {
    static S: OnceLock<Server> = OnceLock::new();
    let server = hostile::server(&S);
    server.cycle(&[(200, r#"{"items":[],"nextPageToken":"a"}"#.into())]);
    hostile::bounded(move || {
        let e = skyform::state::gcs::objects(&gcs(server)).expect_err("an endless listing").to_string();
        assert!(e.contains("gs://b/p/") && e.contains("page token"), "{e}");
        Ok(())
    })
    .unwrap();
}

/// Found while writing the Storage target: a lock that answers 412 to the create and 404 to the
/// read that follows (taken and released, again and again) made `lock` retry at once, for ever,
/// whatever its timeout.
#[test]
fn a_lock_that_comes_and_goes_does_not_spin_past_the_timeout() {
    static S: OnceLock<Server> = OnceLock::new();
    let server = hostile::server(&S);
    server.cycle(&[(412, String::new()), (404, String::new())]);
    hostile::bounded(move || {
        let e = skyform::state::Backend::lock(&gcs(server), "apply", std::time::Duration::from_millis(200))
            .err()
            .expect("a lock that is never there to take")
            .to_string();
        assert!(e.contains("gs://b/p/default.lock"), "{e}");
        Ok(())
    })
    .unwrap();
}

/// Found by tightening `gcs_backend_against_a_hostile_server`'s check of locations: a journal
/// batch that is not one was reported at `gs://b/p/p/default.journal/…`, the prefix twice (an
/// object that does not exist).
#[test]
fn a_bad_journal_batch_is_named_by_its_object() {
    static S: OnceLock<Server> = OnceLock::new();
    let server = hostile::server(&S);
    let snapshot = serde_json::json!({
        "format": 2, "lineage": "l", "serial": 1, "resources": {}, "outputs": {}, "journal_epoch": 1,
    });
    server.cycle(&[
        (200, r#"{"generation":"1"}"#.into()),
        (200, snapshot.to_string()),
        (200, r#"{"items":[{"name":"p/default.journal/00000001/0000000000","generation":"1"}]}"#.into()),
        (200, "[{\"op\": \"nope\"}]".into()),
    ]);
    hostile::bounded(move || {
        let e = skyform::state::Backend::load(&gcs(server)).expect_err("a batch that is not one").to_string();
        assert!(e.contains("gs://b/p/default.journal/00000001/0000000000 is corrupt"), "{e}");
        assert!(e.contains("line 1 column"), "{e}");
        Ok(())
    })
    .unwrap();
}
