//! The spec reference in docs/ is generated from the provider schemas; this test
//! fails when it is stale. Regenerate with `UPDATE_DOCS=1 cargo test --test docs`.

use skyform::providers::Registry;

#[test]
fn spec_reference_is_current() {
    // The in-memory test provider is not part of the documented surface.
    let want = skyform::cli::docs::spec_reference(&Registry::builtin());
    assert!(!want.contains("test_object"), "the test provider must not be documented");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/spec-reference.md");
    if std::env::var("UPDATE_DOCS").as_deref() == Ok("1") {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(have == want, "docs/spec-reference.md is stale: run `UPDATE_DOCS=1 cargo test --test docs`");
    for t in ["gcp_sql_instance", "k8s_secret", "helm_release", "postgres_grant"] {
        assert!(have.contains(&format!("[resource.{t}.<name>]")), "{t} missing from the reference");
    }
}
