//! Google's official Rust SDK (`google-cloud-sql-v1`), a client we did not write, against the
//! emulator: it creates, reads and deletes an instance, a database and users, polling operations.
//!
//! The same for IAM (`google-cloud-iam-admin-v1`: service accounts, keys, their policy), Resource
//! Manager v3 (project and its policy), GKE (`google-cloud-container-v1`: cluster, node pool,
//! operations) and Service Usage (`google-cloud-api-serviceusage-v1`, with its LRO poller).
//!
//! Compile budget: all with default features off (no aws-lc-rs, no TLS needed on loopback); the
//! shared stack (gax, auth, reqwest) dominates and is built once, each API crate adds under a
//! minute of CPU. The SDK sends enums as numbers (`$alt=json;enum-encoding=int`), which these tests
//! exercise.

mod common;

use std::time::Duration;

use gcp_emulator::{Config, Emulator};
use google_cloud_sql_v1::client::{SqlDatabasesService, SqlInstancesService, SqlOperationsService, SqlUsersService};
use google_cloud_sql_v1::model;

const P: &str = "sdk-proj";

fn install_crypto() {
    // reqwest (inside the SDK) insists on a process-wide rustls provider, even for http://.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn wait(ops: &SqlOperationsService, op: model::Operation) -> model::Operation {
    for _ in 0..600 {
        let got = ops.get().set_project(P).set_operation(&op.name).send().await.expect("operations.get");
        if got.status == model::operation::SqlOperationStatus::Done {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("operation {} not done", op.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_rust_sdk_creates_reads_and_deletes_cloud_sql_resources() {
    install_crypto();
    gcp_emulator::contract::ensure_documents();
    let emu = Emulator::start(Config::default()).await.expect("emulator starts");
    let endpoint = emu.base_url().trim_end_matches('/').to_string();
    let creds = || google_cloud_auth::credentials::anonymous::Builder::new().build();
    let instances = SqlInstancesService::builder()
        .with_endpoint(&endpoint)
        .with_credentials(creds())
        .build()
        .await
        .expect("client");
    let ops = SqlOperationsService::builder()
        .with_endpoint(&endpoint)
        .with_credentials(creds())
        .build()
        .await
        .expect("client");
    let dbs = SqlDatabasesService::builder()
        .with_endpoint(&endpoint)
        .with_credentials(creds())
        .build()
        .await
        .expect("client");
    let users =
        SqlUsersService::builder().with_endpoint(&endpoint).with_credentials(creds()).build().await.expect("client");

    // Instance: insert, wait, get.
    let body = model::DatabaseInstance::new()
        .set_name("sdk-db")
        .set_region("europe-west1")
        .set_database_version(model::SqlDatabaseVersion::Postgres15)
        .set_root_password("sdk-root")
        .set_settings(model::Settings::new().set_tier("db-custom-1-3840").set_ip_configuration(
            // This test's own address may connect directly to 5432.
            model::IpConfiguration::new().set_authorized_networks([model::AclEntry::new().set_value("127.0.0.1/32")]),
        ));
    let op = instances.insert().set_project(P).set_body(body).send().await.expect("instances.insert");
    let done = wait(&ops, op).await;
    assert!(done.error.is_none(), "{done:?}");
    let inst = instances.get().set_project(P).set_instance("sdk-db").send().await.expect("instances.get");
    assert_eq!(inst.state, model::database_instance::SqlInstanceState::Runnable);
    assert_eq!(inst.database_version, model::SqlDatabaseVersion::Postgres15);
    assert_eq!(inst.connection_name, format!("{P}:europe-west1:sdk-db"));
    assert_eq!(inst.settings.as_ref().map(|s| s.tier.as_str()), Some("db-custom-1-3840"));
    assert_eq!(inst.settings.as_ref().and_then(|s| s.settings_version), Some(1));
    let ip = inst.ip_addresses[0].ip_address.clone();
    assert!(ip.starts_with("127.") && ip != "127.0.0.1", "an address of its own: {ip}");

    // Database: insert, get, delete.
    let op = dbs
        .insert()
        .set_project(P)
        .set_instance("sdk-db")
        .set_body(model::Database::new().set_name("appdb"))
        .send()
        .await
        .expect("databases.insert");
    assert!(wait(&ops, op).await.error.is_none());
    let db = dbs.get().set_project(P).set_instance("sdk-db").set_database("appdb").send().await.expect("databases.get");
    assert_eq!(db.charset, "UTF8");

    // Users: a built-in one and an IAM service account (enum sent as a number).
    for user in [
        model::User::new().set_name("app").set_password("app-pw"),
        model::User::new().set_name("robot@sdk-proj.iam").set_type(model::user::SqlUserType::CloudIamServiceAccount),
    ] {
        let op =
            users.insert().set_project(P).set_instance("sdk-db").set_body(user).send().await.expect("users.insert");
        let done = wait(&ops, op).await;
        assert!(done.error.is_none(), "{done:?}");
    }
    let list = users.list().set_project(P).set_instance("sdk-db").send().await.expect("users.list");
    let mut got: Vec<(String, model::user::SqlUserType)> =
        list.items.iter().map(|u| (u.name.clone(), u.r#type.clone())).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("app".to_string(), model::user::SqlUserType::BuiltIn),
            ("postgres".to_string(), model::user::SqlUserType::BuiltIn),
            ("robot@sdk-proj.iam".to_string(), model::user::SqlUserType::CloudIamServiceAccount),
        ]
    );

    // The real server agrees.
    let ip = emu.instance_address(P, "sdk-db").expect("server");
    let (pg, conn) = tokio_postgres::Config::new()
        .host(ip.to_string())
        .port(5432)
        .user("app")
        .password("app-pw")
        .dbname("appdb")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect as the SDK-created user");
    tokio::spawn(conn);
    let n: i64 =
        pg.query_one("SELECT count(*) FROM pg_roles WHERE rolname = 'robot@sdk-proj.iam'", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    drop(pg);

    // Delete user, database, instance; then reads are 404.
    let op = users.delete().set_project(P).set_instance("sdk-db").set_name("app").send().await.expect("users.delete");
    assert!(wait(&ops, op).await.error.is_none());
    let op = dbs
        .delete()
        .set_project(P)
        .set_instance("sdk-db")
        .set_database("appdb")
        .send()
        .await
        .expect("databases.delete");
    assert!(wait(&ops, op).await.error.is_none());
    assert!(dbs.get().set_project(P).set_instance("sdk-db").set_database("appdb").send().await.is_err());
    let op = instances.delete().set_project(P).set_instance("sdk-db").send().await.expect("instances.delete");
    assert!(wait(&ops, op).await.error.is_none());
    let err = instances.get().set_project(P).set_instance("sdk-db").send().await.expect_err("deleted");
    assert_eq!(err.http_status_code(), Some(404), "{err:?}");
    common::assert_contract_kept(&emu);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_rust_sdk_manages_service_accounts_keys_and_policies() {
    use google_cloud_iam_admin_v1::client::Iam;
    use google_cloud_iam_admin_v1::model as iam;
    use google_cloud_iam_v1::model::{Binding, Policy};
    install_crypto();
    gcp_emulator::contract::ensure_documents();
    let emu = Emulator::start(Config::default()).await.expect("emulator starts");
    let endpoint = emu.base_url().trim_end_matches('/').to_string();
    let client = Iam::builder()
        .with_endpoint(&endpoint)
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .expect("client");

    let sa = client
        .create_service_account()
        .set_name(format!("projects/{P}"))
        .set_account_id("sdk-robot")
        .set_service_account(iam::ServiceAccount::new().set_display_name("SDK robot"))
        .send()
        .await
        .expect("create");
    let email = format!("sdk-robot@{P}.iam.gserviceaccount.com");
    assert_eq!(sa.email, email);
    let name = format!("projects/-/serviceAccounts/{email}");
    let got = client.get_service_account().set_name(&name).send().await.expect("get");
    assert_eq!((got.display_name.as_str(), got.unique_id.len()), ("SDK robot", 21));

    // A key: the SDK decodes privateKeyData to the credentials JSON.
    let key = client
        .create_service_account_key()
        .set_name(&name)
        .set_private_key_type(iam::ServiceAccountPrivateKeyType::TypeGoogleCredentialsFile)
        .send()
        .await
        .expect("keys.create");
    let creds: serde_json::Value = serde_json::from_slice(&key.private_key_data).expect("credentials JSON");
    assert_eq!(creds["client_email"], email.as_str());
    assert!(creds["private_key"].as_str().unwrap().starts_with(concat!("-----BEGIN ", "PRIVATE", " KEY-----")));
    let keys = client.list_service_account_keys().set_name(&name).send().await.expect("keys.list");
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].key_type, iam::list_service_account_keys_request::KeyType::UserManaged);

    // Policy read-modify-write with the etag; a stale etag is refused.
    let p0 = client.get_iam_policy().set_resource(&name).send().await.expect("getIamPolicy");
    let binding = Binding::new()
        .set_role("roles/iam.workloadIdentityUser")
        .set_members([format!("serviceAccount:{P}.svc.id.goog[ns/ksa]")]);
    let p1 = client
        .set_iam_policy()
        .set_resource(&name)
        .set_policy(Policy::new().set_bindings([binding.clone()]).set_etag(p0.etag.clone()))
        .send()
        .await
        .expect("setIamPolicy");
    assert_eq!(p1.bindings.len(), 1);
    let stale = client
        .set_iam_policy()
        .set_resource(&name)
        .set_policy(Policy::new().set_bindings([binding]).set_etag(p0.etag))
        .send()
        .await
        .expect_err("stale etag");
    assert_eq!(stale.http_status_code(), Some(409), "{stale:?}");

    // Delete key and account.
    client.delete_service_account_key().set_name(&key.name).send().await.expect("keys.delete");
    client.delete_service_account().set_name(&name).send().await.expect("delete");
    let err = client.get_service_account().set_name(&name).send().await.expect_err("deleted");
    assert_eq!(err.http_status_code(), Some(404));
    common::assert_contract_kept(&emu);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_rust_sdk_drives_resource_manager_gke_and_service_usage() {
    use google_cloud_api_serviceusage_v1::client::ServiceUsage;
    use google_cloud_api_serviceusage_v1::model as su;
    use google_cloud_container_v1::client::ClusterManager;
    use google_cloud_container_v1::model as gke;
    use google_cloud_iam_v1::model::{Binding, Policy};
    use google_cloud_lro::Poller;
    use google_cloud_resourcemanager_v3::client::Projects;
    install_crypto();
    gcp_emulator::contract::ensure_documents();
    let emu = Emulator::start(Config { gke_endpoint: "https://127.0.0.1:6443".into(), ..Config::default() })
        .await
        .expect("emulator starts");
    let endpoint = emu.base_url().trim_end_matches('/').to_string();
    let creds = || google_cloud_auth::credentials::anonymous::Builder::new().build();

    // Resource Manager v3: the project and its policy.
    let projects =
        Projects::builder().with_endpoint(&endpoint).with_credentials(creds()).build().await.expect("client");
    let project = projects.get_project().set_name(format!("projects/{P}")).send().await.expect("projects.get");
    assert_eq!(project.project_id, P);
    assert_eq!(project.state, google_cloud_resourcemanager_v3::model::project::State::Active);
    let p0 = projects.get_iam_policy().set_resource(format!("projects/{P}")).send().await.expect("getIamPolicy");
    let binding = Binding::new().set_role("roles/viewer").set_members(["user:ops@example.com"]);
    let p1 = projects
        .set_iam_policy()
        .set_resource(format!("projects/{P}"))
        .set_policy(Policy::new().set_bindings([binding.clone()]).set_etag(p0.etag.clone()))
        .send()
        .await
        .expect("setIamPolicy");
    assert_eq!(p1.bindings[0].members, ["user:ops@example.com"]);
    let stale = projects
        .set_iam_policy()
        .set_resource(format!("projects/{P}"))
        .set_policy(Policy::new().set_bindings([binding]).set_etag(p0.etag))
        .send()
        .await
        .expect_err("stale etag");
    assert_eq!(stale.http_status_code(), Some(409));

    // Service Usage: enable (LRO through the SDK's poller), get, list, disable.
    let usage =
        ServiceUsage::builder().with_endpoint(&endpoint).with_credentials(creds()).build().await.expect("client");
    let enabled = usage
        .enable_service()
        .set_name(format!("projects/{P}/services/container.googleapis.com"))
        .poller()
        .until_done()
        .await
        .expect("services.enable");
    assert_eq!(enabled.service.expect("service").state, su::State::Enabled);
    emu.set_op_durations(gcp_emulator::OpDurations::uniform(Duration::from_millis(300)));
    let batch = usage
        .batch_enable_services()
        .set_parent(format!("projects/{P}"))
        .set_service_ids(["sqladmin.googleapis.com", "iam.googleapis.com"])
        .poller()
        .until_done()
        .await
        .expect("services.batchEnable, polled");
    assert_eq!(batch.services.len(), 2);
    emu.set_op_durations(gcp_emulator::OpDurations::default());
    let svc = usage
        .get_service()
        .set_name(format!("projects/{P}/services/sqladmin.googleapis.com"))
        .send()
        .await
        .expect("services.get");
    assert_eq!(svc.state, su::State::Enabled);
    let list = usage
        .list_services()
        .set_parent(format!("projects/{P}"))
        .set_filter("state:ENABLED")
        .send()
        .await
        .expect("services.list");
    assert_eq!(list.services.len(), 3);
    usage
        .disable_service()
        .set_name(format!("projects/{P}/services/iam.googleapis.com"))
        .poller()
        .until_done()
        .await
        .expect("services.disable");

    // GKE: create a cluster with Workload Identity, read it and its node pool, update, delete.
    let gke_client =
        ClusterManager::builder().with_endpoint(&endpoint).with_credentials(creds()).build().await.expect("client");
    let parent = format!("projects/{P}/locations/us-central1");
    let wait = |name: String| {
        let c = gke_client.clone();
        let parent = parent.clone();
        async move {
            for _ in 0..600 {
                let op = c
                    .get_operation()
                    .set_name(format!("{parent}/operations/{name}"))
                    .send()
                    .await
                    .expect("operations.get");
                if op.status == gke::operation::Status::Done {
                    assert!(op.error.is_none(), "{op:?}");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("operation {name} not done");
        }
    };
    let cluster = gke::Cluster::new()
        .set_name("sdk-gke")
        .set_node_pools([gke::NodePool::new().set_name("pool-a").set_initial_node_count(1)])
        .set_workload_identity_config(gke::WorkloadIdentityConfig::new().set_workload_pool(format!("{P}.svc.id.goog")));
    let op =
        gke_client.create_cluster().set_parent(&parent).set_cluster(cluster).send().await.expect("clusters.create");
    assert_eq!(op.operation_type, gke::operation::Type::CreateCluster);
    wait(op.name).await;
    let name = format!("{parent}/clusters/sdk-gke");
    let got = gke_client.get_cluster().set_name(&name).send().await.expect("clusters.get");
    assert_eq!(got.status, gke::cluster::Status::Running);
    assert_eq!(got.endpoint, "127.0.0.1:6443");
    assert!(!got.master_auth.expect("masterAuth").cluster_ca_certificate.is_empty());
    let pool =
        gke_client.get_node_pool().set_name(format!("{name}/nodePools/pool-a")).send().await.expect("nodePools.get");
    assert_eq!(pool.initial_node_count, 1);
    let op = gke_client
        .update_cluster()
        .set_name(&name)
        .set_update(
            gke::ClusterUpdate::new()
                .set_desired_workload_identity_config(gke::WorkloadIdentityConfig::new().set_workload_pool("")),
        )
        .send()
        .await
        .expect("clusters.update");
    wait(op.name).await;
    let got = gke_client.get_cluster().set_name(&name).send().await.expect("clusters.get");
    assert!(got.workload_identity_config.is_none_or(|w| w.workload_pool.is_empty()));
    let op = gke_client.delete_cluster().set_name(&name).send().await.expect("clusters.delete");
    wait(op.name).await;
    let err = gke_client.get_cluster().set_name(&name).send().await.expect_err("deleted");
    assert_eq!(err.http_status_code(), Some(404));
    common::assert_contract_kept(&emu);
    emu.shutdown().await;
}
