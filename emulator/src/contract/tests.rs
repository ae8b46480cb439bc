use super::*;

fn contract() -> Contract {
    Contract::load(&ensure_documents()).expect("documents")
}

fn q(s: &str) -> Vec<(String, String)> {
    crate::http::parse_query(s)
}

#[test]
fn finds_methods_by_path_template() {
    let c = contract();
    let id = |name: &str, m: Method, p: &str| c.find(name, &m, p).map(|f| c.docs[f.doc].methods[f.method].id.clone());
    assert_eq!(
        id("sql.instances.insert", Method::POST, "/sql/v1beta4/projects/p/instances").as_deref(),
        Some("sql.instances.insert")
    );
    assert_eq!(
        id("sql.instances.get", Method::GET, "/v1/projects/p/instances/i1").as_deref(),
        Some("sql.instances.get")
    );
    assert_eq!(
        id(
            "iam.serviceAccounts.getIamPolicy",
            Method::POST,
            "/v1/projects/-/serviceAccounts/a%40p.iam.gserviceaccount.com:getIamPolicy"
        )
        .as_deref(),
        Some("iam.projects.serviceAccounts.getIamPolicy")
    );
    assert_eq!(
        id("cloudresourcemanager.v1.projects.getIamPolicy", Method::POST, "/v1/projects/p:getIamPolicy").as_deref(),
        Some("cloudresourcemanager.projects.getIamPolicy")
    );
    assert_eq!(
        id("storage.objects.insert", Method::POST, "/upload/storage/v1/b/bk/o").as_deref(),
        Some("storage.objects.insert")
    );
    assert_eq!(
        id("storage.objects.get", Method::GET, "/storage/v1/b/bk/o/a%2Fb").as_deref(),
        Some("storage.objects.get")
    );
    assert_eq!(
        id("serviceusage.services.enable", Method::POST, "/v1/projects/p/services/sqladmin.googleapis.com:enable")
            .as_deref(),
        Some("serviceusage.services.enable")
    );
}

#[test]
fn refuses_unknown_fields_enums_and_query_parameters_in_googles_words() {
    let c = contract();
    let body = serde_json::json!({"name": "i", "databaseVersion": "POSTGRES_15", "settings": {"tier": "db-f1-micro", "bogusField": 1}});
    let e = c
        .check_request(
            "sql.instances.insert",
            &Method::POST,
            "/sql/v1beta4/projects/p/instances",
            &q("alt=json"),
            Some(&body),
        )
        .unwrap_err();
    assert_eq!(
        e.message,
        "Invalid JSON payload received. Unknown name \"bogusField\" at 'body.settings': Cannot find field."
    );
    let b = e.body();
    assert_eq!(b["error"]["details"][0]["fieldViolations"][0]["field"], "body.settings");
    assert_eq!(b["error"]["status"], "INVALID_ARGUMENT");

    let body = serde_json::json!({"name": "i", "databaseVersion": "POSTGRES_99"});
    let e = c
        .check_request("sql.instances.insert", &Method::POST, "/sql/v1beta4/projects/p/instances", &[], Some(&body))
        .unwrap_err();
    assert_eq!(
        e.message,
        "Invalid value at 'body.database_version' (type.googleapis.com/google.cloud.sql.v1beta4.SqlDatabaseVersion), \"POSTGRES_99\""
    );

    let e = c
        .check_request("sql.instances.get", &Method::GET, "/v1/projects/p/instances/i", &q("bogusParam=1"), None)
        .unwrap_err();
    assert_eq!(
        e.message,
        "Invalid JSON payload received. Unknown name \"bogusParam\": Cannot bind query parameter. Field 'bogusParam' could not be found in request message."
    );
    // The official SDK's system parameter and empty location are fine.
    assert!(
        c.check_request(
            "sql.instances.get",
            &Method::GET,
            "/v1/projects/p/instances/i",
            &q("location=&%24alt=json%3Benum-encoding%3Dint"),
            None
        )
        .is_ok()
    );
    // v1 getIamPolicy takes its options in the body only.
    assert!(
        c.check_request(
            "cloudresourcemanager.v1.projects.getIamPolicy",
            &Method::POST,
            "/v1/projects/p:getIamPolicy",
            &q("options.requestedPolicyVersion=3"),
            None
        )
        .is_err()
    );
    assert_eq!(c.recorded().defects.len(), 4);
}

#[test]
fn accepts_what_proto3_json_accepts() {
    let c = contract();
    // int64 as a number or a string, null for any field, an enum by number.
    let body = serde_json::json!({"settings": {"dataDiskSizeGb": 10, "settingsVersion": "3", "tier": null, "availabilityType": 1}});
    assert!(
        c.check_request("sql.instances.patch", &Method::PATCH, "/v1/projects/p/instances/i", &[], Some(&body)).is_ok()
    );
    let body = serde_json::json!({"settings": {"tier": 7}});
    let e = c
        .check_request("sql.instances.patch", &Method::PATCH, "/v1/projects/p/instances/i", &[], Some(&body))
        .unwrap_err();
    assert_eq!(e.message, "Invalid value at 'body.settings.tier' (TYPE_STRING), 7");
    // Maps take any key.
    let body = serde_json::json!({"settings": {"userLabels": {"any-key": "v"}}});
    assert!(
        c.check_request("sql.instances.patch", &Method::PATCH, "/v1/projects/p/instances/i", &[], Some(&body)).is_ok()
    );
}

#[test]
fn responses_are_held_to_what_google_writes() {
    let c = contract();
    let f = c.find("sql.instances.get", &Method::GET, "/v1/projects/p/instances/i").unwrap();
    c.check_response(
        f,
        &Method::GET,
        "/v1/projects/p/instances/i",
        &serde_json::json!({"name": "i", "emulatorPostgresPort": 5432, "currentDiskSize": 10}),
    );
    let r = c.recorded();
    assert_eq!(r.response_defects.len(), 1);
    assert_eq!(r.response_defects[0].violations.len(), 2, "{:?}", r.response_defects);
}

#[test]
fn the_script_pins_the_same_version() {
    let script =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/discovery-docs")).unwrap();
    assert!(script.contains(&format!("version={CLIENT_VERSION}\n")));
    for (name, _, _) in DOCUMENTS {
        assert!(script.contains(name), "{name} not fetched by the script");
    }
}
