//! The real `gcloud` CLI against the emulator: every gcloud command of the SkyPilot seed
//! (`shared/seed-skypilot-gke-cloudsql.txt`) plus those the issue lists, then describe/list to see
//! what was created, then the instance's real PostgreSQL checked with tokio-postgres.
//!
//! gcloud must be installed (it is on every machine of this project); the test fails loudly
//! otherwise.

mod common;

use std::path::Path;
use std::time::Duration;

use gcp_emulator::{Config, Emulator};
use serde_json::Value;

const P: &str = "skypilot-proj";
const TOKEN: &str = "emulator-test-token";
const SA: &str = "skypilot-cloud-sql-access";
const INSTANCE: &str = "cloud-sql-skypilot-instance";

struct Gcloud<'a> {
    base: &'a str,
    dir: &'a Path,
    config: &'static str,
}

impl<'a> Gcloud<'a> {
    /// The same, with another gcloud configuration directory (concurrent gcloud runs must not
    /// share one).
    fn with_config(&self, config: &'static str) -> Gcloud<'a> {
        Gcloud { base: self.base, dir: self.dir, config }
    }

    /// Runs gcloud with `args`; panics with its output unless it succeeds. Returns stdout.
    async fn run(&self, args: &[&str]) -> String {
        let mut cmd = tokio::process::Command::new(gcloud_path());
        cmd.args(args)
            .current_dir(self.dir)
            .env("CLOUDSDK_CONFIG", self.dir.join(self.config))
            .env("CLOUDSDK_CORE_PROJECT", P)
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true")
            .env("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true")
            .env("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", self.dir.join("token"))
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .kill_on_drop(true);
        for api in ["SQL", "IAM", "CLOUDRESOURCEMANAGER", "CONTAINER", "SERVICEUSAGE"] {
            cmd.env(format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"), self.base);
        }
        let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("gcloud {args:?} timed out"))
            .expect("run gcloud");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "gcloud {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--format=json");
        let out = self.run(&a).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("gcloud {args:?} printed no JSON ({e}): {out}"))
    }
}

fn gcloud_path() -> &'static str {
    let p = "/usr/bin/gcloud";
    assert!(
        Path::new(p).exists() || which_gcloud(),
        "the gcloud CLI is required for this test and was not found (install google-cloud-cli)"
    );
    if Path::new(p).exists() { p } else { "gcloud" }
}

fn which_gcloud() -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("gcloud").exists()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcloud_runs_the_skypilot_seed_against_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    gcp_emulator::contract::ensure_documents();
    let emu = Emulator::start(Config {
        access_token: Some(TOKEN.into()),
        gke_endpoint: "https://127.0.0.1:6443".into(),
        ..Config::default()
    })
    .await
    .expect("emulator starts");
    let g = Gcloud { base: emu.base_url(), dir: dir.path(), config: "cfg-main" };
    let sa_email = format!("{SA}@{P}.iam.gserviceaccount.com");
    let pool = format!("{P}.svc.id.goog");

    // Three independent chains run side by side (each gcloud call costs seconds of CPU), each
    // with its own gcloud configuration directory.
    let (gke, iam, sql) = (g.with_config("cfg-gke"), g.with_config("cfg-iam"), g.with_config("cfg-sql"));
    tokio::join!(
        async {
            // Prerequisites: APIs, a GKE cluster with Workload Identity (today's flag), credentials.
            gke.run(&[
                "services",
                "enable",
                "sqladmin.googleapis.com",
                "container.googleapis.com",
                "iam.googleapis.com",
            ])
            .await;
            gke.run(&[
                "container",
                "clusters",
                "create",
                "skypilot-gke",
                "--location=us-central1",
                &format!("--workload-pool={pool}"),
                "--num-nodes=1",
            ])
            .await;
            gke.run(&["container", "clusters", "get-credentials", "skypilot-gke", "--location=us-central1"]).await;
            let kubeconfig = std::fs::read_to_string(dir.path().join("kubeconfig")).unwrap();
            assert!(kubeconfig.contains("server: https://127.0.0.1:6443"), "{kubeconfig}");
            assert!(kubeconfig.contains("certificate-authority-data:"), "{kubeconfig}");
        },
        async {
            // The service account and its project roles.
            iam.run(&["iam", "service-accounts", "create", SA, &format!("--display-name={SA}")]).await;
            for role in ["roles/cloudsql.client", "roles/cloudsql.instanceUser"] {
                iam.run(&[
                    "projects",
                    "add-iam-policy-binding",
                    P,
                    &format!("--member=serviceAccount:{sa_email}"),
                    &format!("--role={role}"),
                ])
                .await;
            }

            // Workload Identity binding and a key.
            iam.run(&[
                "iam",
                "service-accounts",
                "add-iam-policy-binding",
                "--role=roles/iam.workloadIdentityUser",
                &format!("--member=serviceAccount:{pool}[skypilot/skypilot-api-sa]"),
                &sa_email,
            ])
            .await;
            iam.run(&[
                "iam",
                "service-accounts",
                "keys",
                "create",
                "gcp-key.json",
                &format!("--iam-account={sa_email}"),
                &format!("--project={P}"),
            ])
            .await;
        },
        async {
            // The Cloud SQL instance, its database and users.
            sql.run(&[
                "sql",
                "instances",
                "create",
                INSTANCE,
                "--database-version=POSTGRES_15",
                "--tier=db-f1-micro",
                "--region=us-central1",
                "--root-password=root-pw",
                "--database-flags=cloudsql.iam_authentication=on",
            ])
            .await;
            sql.run(&["sql", "databases", "create", "skypilot-db", "--instance", INSTANCE]).await;
            sql.run(&[
                "sql",
                "users",
                "create",
                &format!("{SA}@{P}.iam"),
                &format!("--instance={INSTANCE}"),
                "--type=cloud_iam_service_account",
            ])
            .await;
            sql.run(&["sql", "users", "create", "skypilot", "--instance", INSTANCE, "--password", "skypilot-pw"]).await;
        },
    );

    // The key file is a valid credentials JSON with a real private key.
    let key: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("gcp-key.json")).unwrap()).unwrap();
    assert_eq!(key["type"], "service_account");
    assert_eq!(key["client_email"], sa_email.as_str());
    assert_eq!(key["project_id"], P);
    {
        use rsa::pkcs8::DecodePrivateKey;
        rsa::RsaPrivateKey::from_pkcs8_pem(key["private_key"].as_str().unwrap()).expect("valid PEM private key");
    }

    // describe/list show what was created (fetched side by side, then checked).
    let (
        (inst_json, users_json, dbs_json),
        (sa_json, policy_json, sa_policy_json),
        (cluster_json, clusters_json, services_json),
    ) = tokio::join!(
        async {
            (
                sql.json(&["sql", "instances", "describe", INSTANCE]).await,
                sql.json(&["sql", "users", "list", "--instance", INSTANCE]).await,
                sql.json(&["sql", "databases", "list", "--instance", INSTANCE]).await,
            )
        },
        async {
            (
                iam.json(&["iam", "service-accounts", "describe", &sa_email]).await,
                iam.json(&["projects", "get-iam-policy", P]).await,
                iam.json(&["iam", "service-accounts", "get-iam-policy", &sa_email]).await,
            )
        },
        async {
            (
                gke.json(&["container", "clusters", "describe", "skypilot-gke", "--location=us-central1"]).await,
                gke.json(&["container", "clusters", "list"]).await,
                gke.json(&["services", "list", "--enabled"]).await,
            )
        },
    );
    let inst = inst_json;
    assert_eq!(inst["state"], "RUNNABLE");
    assert_eq!(inst["databaseVersion"], "POSTGRES_15");
    assert_eq!(inst["settings"]["databaseFlags"][0]["name"], "cloudsql.iam_authentication");
    // The address gcloud reports is where PostgreSQL listens, on 5432; as on Cloud SQL, a client
    // in none of the authorized networks (none yet) is turned away at once...
    let ip = inst["ipAddresses"][0]["ipAddress"].as_str().expect("an ip").to_string();
    assert_ne!(ip, "127.0.0.1", "an address of its own");
    let direct = |conninfo: String| {
        std::process::Command::new(psql())
            .args([&conninfo, "-Atc", "SELECT 40 + 2"])
            .env("PGPASSWORD", "root-pw")
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql runs")
    };
    let plain = format!("host={ip} user=postgres dbname=postgres sslmode=disable");
    let started = std::time::Instant::now();
    let out = direct(plain.clone());
    assert!(!out.status.success() && started.elapsed() < Duration::from_secs(5), "refused at once");
    assert!(String::from_utf8_lossy(&out.stderr).contains("server closed the connection"), "{out:?}");
    // ...until gcloud authorizes this machine's address: then the real psql gets in.
    sql.run(&["sql", "instances", "patch", INSTANCE, "--authorized-networks=127.0.0.1/32"]).await;
    let out = direct(plain.clone());
    assert!(out.status.success(), "psql -h {ip}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    let users = users_json;
    let mut users: Vec<(String, String)> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap().to_string(), u["type"].as_str().unwrap_or("BUILT_IN").to_string()))
        .collect();
    users.sort();
    assert_eq!(
        users,
        [
            ("postgres".to_string(), "BUILT_IN".to_string()),
            ("skypilot".to_string(), "BUILT_IN".to_string()),
            (format!("{SA}@{P}.iam"), "CLOUD_IAM_SERVICE_ACCOUNT".to_string()),
        ]
    );
    let dbs = dbs_json;
    assert!(dbs.as_array().unwrap().iter().any(|d| d["name"] == "skypilot-db"), "{dbs}");
    let sa = sa_json;
    assert_eq!(sa["displayName"], SA);
    let policy = policy_json;
    let roles: Vec<&str> = policy["bindings"].as_array().unwrap().iter().map(|b| b["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["roles/cloudsql.client", "roles/cloudsql.instanceUser"]);
    let sa_policy = sa_policy_json;
    assert_eq!(sa_policy["bindings"][0]["members"][0], format!("serviceAccount:{pool}[skypilot/skypilot-api-sa]"));
    let cluster = cluster_json;
    assert_eq!(cluster["workloadIdentityConfig"]["workloadPool"], pool.as_str());
    assert_eq!(cluster["status"], "RUNNING");
    let clusters = clusters_json;
    assert_eq!(clusters.as_array().unwrap().len(), 1);
    let services = services_json;
    assert_eq!(services.as_array().unwrap().len(), 3, "{services}");

    // The real PostgreSQL sees the role and the database.
    let ip = emu.instance_address(P, INSTANCE).expect("instance has a server");
    assert_eq!(emu.postgres_port(P, INSTANCE), Some(5433), "the server itself, behind 5432");
    let pg = connect(ip, "postgres", "root-pw", "skypilot-db").await;
    let iam_user = format!("{SA}@{P}.iam");
    let row = pg
        .query_one(
            "SELECT r.rolcanlogin, r.rolsuper, pg_has_role(r.rolname, 'cloudsqlsuperuser', 'MEMBER') FROM pg_roles r WHERE r.rolname = $1",
            &[&iam_user],
        )
        .await
        .expect("the IAM user's role exists");
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1), row.get::<_, bool>(2)), (true, false, false));
    let row = pg.query_one("SELECT pg_has_role('skypilot', 'cloudsqlsuperuser', 'MEMBER')", &[]).await.unwrap();
    assert!(row.get::<_, bool>(0), "built-in users are members of cloudsqlsuperuser");
    let n: i64 =
        pg.query_one("SELECT count(*) FROM pg_database WHERE datname = 'skypilot-db'", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    // The seed's own SQL step, as the postgres user.
    pg.batch_execute(&format!("GRANT \"cloudsqlsuperuser\" TO \"{iam_user}\"")).await.expect("seed GRANT runs");
    let app = connect(ip, "skypilot", "skypilot-pw", "skypilot-db").await;
    app.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .await
        .expect("the app user can use its database");

    // The server CA gcloud lists is the instance's serverCaCert; with `--ssl-mode=ENCRYPTED_ONLY`
    // a plaintext client gets PostgreSQL's own refusal and a client verifying that CA gets in.
    let cas = sql.json(&["sql", "ssl", "server-ca-certs", "list", &format!("--instance={INSTANCE}")]).await;
    let described = sql.json(&["sql", "instances", "describe", INSTANCE]).await;
    let ca = &described["serverCaCert"];
    assert_eq!(cas[0]["sha1Fingerprint"], ca["sha1Fingerprint"], "{cas}");
    assert_eq!(cas[0]["cert"], ca["cert"]);
    sql.run(&["sql", "instances", "patch", INSTANCE, "--ssl-mode=ENCRYPTED_ONLY"]).await;
    let described = sql.json(&["sql", "instances", "describe", INSTANCE]).await;
    assert_eq!(described["settings"]["ipConfiguration"]["sslMode"], "ENCRYPTED_ONLY");
    assert_eq!(described["settings"]["ipConfiguration"]["authorizedNetworks"][0]["value"], "127.0.0.1/32");
    let out = direct(plain);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "no pg_hba.conf entry for host \"127.0.0.1\", user \"postgres\", database \"postgres\", no encryption"
        ),
        "{out:?}"
    );
    let ca_file = dir.path().join("server-ca.pem");
    std::fs::write(&ca_file, ca["cert"].as_str().unwrap()).unwrap();
    let out =
        direct(format!("host={ip} user=postgres dbname=postgres sslmode=verify-ca sslrootcert={}", ca_file.display()));
    assert!(out.status.success(), "psql verify-ca: {}", String::from_utf8_lossy(&out.stderr));

    // Every call went through the emulator and was counted.
    let stats = emu.stats();
    assert!(stats.requests["sql.operations.get"] >= 4, "{stats:?}");
    assert_eq!(stats.requests["iam.serviceAccounts.keys.create"], 1);
    drop((pg, app));
    common::assert_contract_kept(&emu);
    emu.shutdown().await;
}

/// Debian's psql (the newest installed).
fn psql() -> std::path::PathBuf {
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed")
        .filter_map(|e| Some(e.ok()?.path().join("bin/psql")))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().expect("psql")
}

async fn connect(ip: std::net::Ipv4Addr, user: &str, password: &str, db: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::Config::new()
        .host(ip.to_string())
        .port(5432)
        .user(user)
        .password(password)
        .dbname(db)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
    tokio::spawn(conn);
    client
}
