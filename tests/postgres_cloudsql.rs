//! The postgres provider configured from a Cloud SQL instance created in the
//! same apply (the testbed's GCP emulator runs a real PostgreSQL per instance):
//! `GRANT "cloudsqlsuperuser" TO "<sa>@<project>.iam"`, as the seed does,
//! through the real `skyform` binary.

use std::process::{Command, Output, Stdio};

use skyform_testbed::Testbed;

const PW: &str = "root-Pw-for-sql-77";

fn skyform(tb: &Testbed, dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skyform"))
        .args(args)
        .args(["--var", &format!("db_password={PW}")])
        .current_dir(dir)
        .envs(&tb.env)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "failed ({}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains(PW), "the password leaked:\n{stdout}");
    stdout
}

/// psql at the instance's address (`ip`), port 5432 as on Cloud SQL (an authorized network).
fn psql(tb: &Testbed, ip: &str, q: &str) -> String {
    skyform_testbed::run_ok(
        tb.command("psql").args(["-h", ip, "-U", "postgres", "-d", "postgres", "-At", "-c", q]).env("PGPASSWORD", PW),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_on_a_cloud_sql_instance_created_in_the_same_apply() {
    let tb = Testbed::get();
    let project = tb.unique_project("skyform-pg");
    let dir = tempfile::tempdir().unwrap();
    let member = format!("skypilot-sql@{project}.iam");
    let spec = format!(
        r#"
[variable.db_password]
type = "string"
sensitive = true

[provider.gcp]
project = "{project}"

[resource.gcp_project_service.sqladmin]
service = "sqladmin.googleapis.com"

[resource.gcp_sql_instance.main]
name = "sky-db"
database_version = "POSTGRES_15"
tier = "db-f1-micro"
database_flags = {{ "cloudsql.iam_authentication" = "on" }}
deletion_protection = false
root_password = "${{var.db_password}}"
# skyform and psql connect directly from the testbed's namespace, where a client of 10.64.x.y has
# the instance network's own addresses as its source (a local route): authorize that network.
ip_configuration = {{ authorized_networks = [{{ name = "testbed", value = "10.64.0.0/16" }}] }}
depends_on = ["gcp_project_service.sqladmin"]

[resource.gcp_project_service.iam]
service = "iam.googleapis.com"

[resource.gcp_service_account.sa]
account_id = "skypilot-sql"
depends_on = ["gcp_project_service.iam"]

[resource.gcp_project_iam_member.instance_user]
role = "roles/cloudsql.instanceUser"
member = "${{gcp_service_account.sa.member}}"

[resource.gcp_sql_user.iam]
instance = "${{gcp_sql_instance.main.name}}"
name = "${{gcp_service_account.sa.email}}"
type = "CLOUD_IAM_SERVICE_ACCOUNT"
depends_on = ["gcp_project_iam_member.instance_user"]

[provider.postgres]
host = "${{gcp_sql_instance.main.public_ip}}"
port = "${{gcp_sql_instance.main.port}}"
password = "${{var.db_password}}"
sslmode = "disable"

[resource.postgres_grant.iam]
role = "cloudsqlsuperuser"
member = "{member}"
depends_on = ["gcp_sql_user.iam"]

[output.ip]
value = "${{gcp_sql_instance.main.public_ip}}"
"#,
    );
    std::fs::write(dir.path().join("main.toml"), spec).unwrap();
    let plan = ok(&skyform(tb, dir.path(), &["plan"]));
    assert!(plan.contains("postgres_grant.iam will be created"), "{plan}");
    ok(&skyform(tb, dir.path(), &["apply", "--auto-approve"]));
    let out = ok(&skyform(tb, dir.path(), &["output", "ip"]));
    let port = out.rsplit('=').next().unwrap().trim().trim_matches('"').to_string();
    // The testbed's emulator gives instances addresses of its own in 10.64.0.0/16 (`--sql-network`).
    assert!(port.starts_with("10.64.") && port.parse::<std::net::Ipv4Addr>().is_ok(), "an address of its own: {port}");
    let is_member = |tb: &Testbed| {
        psql(tb, &port, &format!("SELECT pg_has_role('{member}', 'cloudsqlsuperuser', 'MEMBER')")).trim() == "t"
    };
    assert!(is_member(tb));
    let again = skyform(tb, dir.path(), &["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", String::from_utf8_lossy(&again.stdout));

    psql(tb, &port, &format!(r#"REVOKE "cloudsqlsuperuser" FROM "{member}""#));
    let drift = skyform(tb, dir.path(), &["drift"]);
    assert_eq!(drift.status.code(), Some(2), "{}", String::from_utf8_lossy(&drift.stdout));
    assert!(String::from_utf8_lossy(&drift.stdout).contains("postgres_grant.iam"));
    ok(&skyform(tb, dir.path(), &["apply", "--auto-approve"]));
    assert!(is_member(tb));

    // (The grant's provider is configured from the instance: a one-step destroy
    // meets the engine limitation described in docs/providers-k8s.md, so the
    // grant is forgotten first; deleting the instance removes it.)
    ok(&skyform(tb, dir.path(), &["state", "rm", "postgres_grant.iam"]));
    ok(&skyform(tb, dir.path(), &["destroy", "--auto-approve"]));
}
