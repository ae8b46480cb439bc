//! PostgreSQL provider against a real PostgreSQL server (started here through
//! the emulator's server manager, as `nobody` when running as root): a grant is
//! created, re-planned clean, revoked with the real `psql` (drift: deleted
//! outside), re-granted by apply and revoked on destroy; identifiers with
//! quotes and `@` are quoted.

mod k8s_common;

use std::path::PathBuf;
use std::sync::Arc;

use gcp_emulator::sql::postgres::{PgManager, PgServer, Setup, free_port};
use k8s_common::{Fixture, change, run};
use skyform::engine::drift::DriftClass;
use skyform::plan::Action;

const PW: &str = "pg-Root-pw-123";

struct Pg {
    _manager: PgManager,
    server: Arc<PgServer>,
}

async fn start() -> Pg {
    let manager = PgManager::new(None).expect("PostgreSQL manager (is PostgreSQL installed?)");
    let dir = manager.new_dir("skyform-postgres-test");
    let server = manager
        .create("t", &dir, std::net::Ipv4Addr::LOCALHOST.into(), free_port().unwrap(), &Setup::loopback_passwords())
        .await
        .unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"));
    server
        .exec(
            "postgres",
            &format!(
                "CREATE ROLE cloudsqlsuperuser WITH NOLOGIN CREATEDB CREATEROLE;\n\
                 CREATE ROLE postgres WITH LOGIN CREATEDB CREATEROLE PASSWORD '{PW}';\n\
                 GRANT cloudsqlsuperuser TO postgres WITH ADMIN OPTION;\n\
                 CREATE ROLE \"sky@p.iam\" WITH LOGIN;\n\
                 CREATE ROLE \"we\"\"ird@p.iam\" WITH LOGIN;"
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("setting up roles: {e}"));
    Pg { _manager: manager, server }
}

fn psql() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed")
        .filter_map(|e| Some(e.ok()?.path().join("bin/psql")))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().expect("psql")
}

fn sql(pg: &Pg, q: &str) -> String {
    run(std::process::Command::new(psql())
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.server.port().to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-At",
            "-c",
            q,
        ])
        .env("PGPASSWORD", PW))
}

fn members(pg: &Pg) -> String {
    sql(
        pg,
        "SELECT string_agg(u.rolname, ',' ORDER BY u.rolname) FROM pg_auth_members m \
         JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
         WHERE r.rolname = 'cloudsqlsuperuser' AND u.rolname <> 'postgres'",
    )
    .trim()
    .to_string()
}

fn spec(port: u16) -> String {
    format!(
        r#"
[variable.pg_password]
type = "string"
sensitive = true

[provider.postgres]
host = "127.0.0.1"
port = {port}
user = "postgres"
password = "${{var.pg_password}}"
sslmode = "disable"

[resource.postgres_grant.iam]
role = "cloudsqlsuperuser"
member = "sky@p.iam"

[resource.postgres_grant.weird]
role = "cloudsqlsuperuser"
member = 'we"ird@p.iam'
database = "postgres"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_are_idempotent_detect_revokes_and_are_revoked_on_destroy() {
    let pg = start().await;
    let mut f = Fixture::new(&spec(pg.server.port()));
    f.vars = vec![format!("pg_password={PW}")];
    let p = f.plan().await;
    assert_eq!(change(&p, "postgres_grant.iam").action, Action::Create);
    f.apply().await;
    assert_eq!(members(&pg), "sky@p.iam,we\"ird@p.iam");
    f.assert_clean().await;

    // Revoked with psql: deleted outside; apply grants again.
    sql(&pg, r#"REVOKE "cloudsqlsuperuser" FROM "sky@p.iam""#);
    let p = f.plan().await;
    assert_eq!(change(&p, "postgres_grant.iam").action, Action::Create);
    assert_eq!(change(&p, "postgres_grant.weird").action, Action::NoOp);
    let d = f.drift().await;
    assert_eq!(d.findings.len(), 1, "{d:?}");
    assert_eq!(
        (d.findings[0].address.to_string(), d.findings[0].class),
        ("postgres_grant.iam".into(), DriftClass::DeletedOutside)
    );
    f.apply().await;
    assert_eq!(members(&pg), "sky@p.iam,we\"ird@p.iam");
    f.assert_clean().await;

    // Granted outside as well before skyform's create: adopted, not an error.
    std::fs::remove_dir_all(f.dir.path().join(".skyform")).unwrap();
    let p = f.plan().await;
    assert_eq!(change(&p, "postgres_grant.iam").action, Action::Adopt);
    f.apply().await;
    f.assert_clean().await;

    f.destroy().await;
    assert_eq!(members(&pg), "");
}

/// A wrong password is the server's refusal, said at once in PostgreSQL's own
/// words (28P01), not retried as if transient, and never with the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_the_plan_at_once_with_postgresql_s_message() {
    let pg = start().await;
    let mut f = Fixture::new(&spec(pg.server.port()));
    let wrong = "not-the-Password-42";
    f.vars = vec![format!("pg_password={wrong}")];
    let msg = f.plan_error().await;
    assert!(msg.contains("password authentication failed for user \"postgres\""), "{msg}");
    assert!(msg.contains("28P01"), "{msg}");
    assert!(!msg.contains("transient"), "a refusal is not transient: {msg}");
    assert!(!msg.contains(wrong) && !msg.contains(PW), "{msg}");
}

/// The provider's database may not exist (yet, or any more: an apply or a
/// destroy interrupted between the database and the grant): memberships are
/// cluster-wide, so skyform works through the `postgres` database instead of
/// failing the plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_provider_database_falls_back_to_postgres() {
    let pg = start().await;
    let text = spec(pg.server.port())
        .replace("sslmode = \"disable\"", "sslmode = \"disable\"\ndatabase = \"not-created-yet\"");
    assert!(text.contains("not-created-yet"));
    let mut f = Fixture::new(&text);
    f.vars = vec![format!("pg_password={PW}")];
    let p = f.plan().await;
    assert_eq!(change(&p, "postgres_grant.iam").action, Action::Create);
    f.apply().await;
    assert_eq!(members(&pg), "sky@p.iam,we\"ird@p.iam");
    f.assert_clean().await;
    f.destroy().await;
    assert_eq!(members(&pg), "");
}
