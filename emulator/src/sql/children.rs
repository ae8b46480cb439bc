//! Cloud SQL databases and users (API floor): each change is an operation that runs real SQL on the
//! instance's PostgreSQL server. A statement the server refuses fails the operation with
//! `ERROR_RDBMS` and the server's message (e.g. `role "x" already exists`).

use std::sync::Arc;

use serde_json::{Value, json};

use super::instances::{create_user_sql, require_runnable};
use super::postgres::{ident, literal};
use super::{SqlRequest, check_no_op, instance_not_found, new_op, render_op};
use crate::app::{App, lock};
use crate::error::ApiError;
use crate::state::{OpError, State};
use crate::util::{merge, str_field};

const USER_TYPES: &[&str] = &[
    "BUILT_IN",
    "CLOUD_IAM_USER",
    "CLOUD_IAM_SERVICE_ACCOUNT",
    "CLOUD_IAM_GROUP",
    "CLOUD_IAM_GROUP_USER",
    "CLOUD_IAM_GROUP_SERVICE_ACCOUNT",
    "CLOUD_IAM_WORKFORCE_IDENTITY",
    "ENTRAID_USER",
];

/// How the state changes when an operation succeeds.
type Finish = Box<dyn FnOnce(&mut State) + Send>;

fn rdbms(message: String) -> OpError {
    OpError { code: "ERROR_RDBMS".into(), message }
}

/// Handles `sql.databases.*` and `sql.users.*`.
pub async fn handle(app: &Arc<App>, r: &SqlRequest<'_>, method: &str) -> Result<Value, ApiError> {
    let instance = r.rest[1].to_string();
    let key = format!("{}/{instance}", r.project);
    let base = r.link_base(app);
    let mut st = lock(&app.state);
    let inst = st.sql.instances.get(&key).ok_or_else(instance_not_found)?;
    require_runnable(inst)?;
    let db_link = |name: &str| format!("{base}/instances/{instance}/databases/{name}");
    let missing_db = |name: &str| {
        ApiError::not_found(format!("The database {name} does not exist in instance {instance}."))
            .with_reason("notFound")
    };
    let missing_user = |name: &str| {
        ApiError::not_found(format!("The user {name} does not exist in instance {instance}.")).with_reason("notFound")
    };
    // Which SQL to run (in which database), which op type, and how the state changes when done.
    let (op_type, db, sql, finish): (&str, &str, Option<String>, Finish) = match method {
        "sql.databases.list" => {
            let items: Vec<Value> = inst
                .databases
                .values()
                .map(|d| {
                    let mut d = d.clone();
                    d["selfLink"] = db_link(str_field(&d, "name")).into();
                    d
                })
                .collect();
            return Ok(json!({"kind": "sql#databasesList", "items": items}));
        }
        "sql.databases.get" => {
            let name = r.rest[3];
            let mut d = inst.databases.get(name).cloned().ok_or_else(|| missing_db(name))?;
            d["selfLink"] = db_link(name).into();
            return Ok(d);
        }
        "sql.users.list" => {
            let items: Vec<Value> = inst.users.values().cloned().collect();
            return Ok(json!({"kind": "sql#usersList", "items": items}));
        }
        "sql.users.get" => {
            let name = r.rest[3];
            return inst.users.get(name).cloned().ok_or_else(|| missing_user(name));
        }
        "sql.databases.insert" => {
            let name = str_field(&r.req.body, "name").to_string();
            if name.is_empty() || name.len() > 63 {
                return Err(ApiError::invalid_argument("Invalid request: database name must be 1-63 characters.")
                    .with_reason("invalid"));
            }
            let charset = match str_field(&r.req.body, "charset") {
                "" => "UTF8",
                c => c,
            };
            let collation = match str_field(&r.req.body, "collation") {
                "" => "en_US.UTF8",
                c => c,
            };
            let resource = json!({"kind": "sql#database", "name": name, "charset": charset, "collation": collation,
                                  "instance": instance, "project": r.project, "etag": ""});
            // The server's databases use its default (C) collation; the requested collation is
            // recorded and reported, since a locale such as en_US.UTF8 may not exist here.
            let sql =
                format!("CREATE DATABASE {} OWNER cloudsqlsuperuser ENCODING 'UTF8' TEMPLATE template0", ident(&name));
            let key = key.clone();
            (
                "CREATE_DATABASE",
                "postgres",
                Some(sql),
                Box::new(move |st: &mut State| {
                    if let Some(i) = st.sql.instances.get_mut(&key) {
                        i.databases.insert(name, resource);
                    }
                }),
            )
        }
        "sql.databases.patch" | "sql.databases.update" => {
            let name = r.rest[3].to_string();
            inst.databases.get(&name).ok_or_else(|| missing_db(&name))?;
            let mut patch = json!({});
            for f in ["charset", "collation"] {
                if let Some(v) = r.req.body.get(f).filter(|v| v.is_string()) {
                    patch[f] = v.clone();
                }
            }
            let key = key.clone();
            // Charset and collation of an existing PostgreSQL database cannot change; the new values
            // are recorded only.
            (
                "UPDATE_DATABASE",
                "postgres",
                None,
                Box::new(move |st: &mut State| {
                    if let Some(d) = st.sql.instances.get_mut(&key).and_then(|i| i.databases.get_mut(&name)) {
                        merge(d, &patch);
                    }
                }),
            )
        }
        "sql.databases.delete" => {
            let name = r.rest[3].to_string();
            inst.databases.get(&name).ok_or_else(|| missing_db(&name))?;
            let sql = format!("DROP DATABASE {} WITH (FORCE)", ident(&name));
            let key = key.clone();
            (
                "DELETE_DATABASE",
                "postgres",
                Some(sql),
                Box::new(move |st: &mut State| {
                    if let Some(i) = st.sql.instances.get_mut(&key) {
                        i.databases.remove(&name);
                    }
                }),
            )
        }
        "sql.users.insert" => {
            let mut body = r.req.body.clone();
            super::enums::normalize_user(&mut body);
            let name = str_field(&body, "name").to_string();
            let user_type = match str_field(&body, "type") {
                "" => "BUILT_IN",
                t => t,
            }
            .to_string();
            if name.is_empty() || name.len() > 63 {
                return Err(ApiError::invalid_argument("Invalid request: user name must be 1-63 characters.")
                    .with_reason("invalid"));
            }
            if !USER_TYPES.contains(&user_type.as_str()) {
                return Err(ApiError::invalid_argument(format!("Invalid value for type: {user_type}")));
            }
            // On PostgreSQL an IAM service account's user is its email without
            // `.gserviceaccount.com` (contract §1.4). The real error text is not verified.
            if user_type == "CLOUD_IAM_SERVICE_ACCOUNT"
                && (name.ends_with(".gserviceaccount.com") || !name.contains('@'))
            {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid request: for PostgreSQL, the user name of a service account must be its email without \
                     \".gserviceaccount.com\" (e.g. sa@project.iam), not {name:?}."
                ))
                .with_reason("invalid"));
            }
            let given_password = str_field(&r.req.body, "password");
            let password = if user_type == "BUILT_IN" {
                (!given_password.is_empty()).then(|| given_password.to_string())
            } else {
                // IAM principals log in with an OAuth access token as the password; when the
                // emulator requires a token, that token is the one such users log in with.
                app.config.access_token.clone()
            };
            let sql = create_user_sql(&name, &user_type, password.as_deref());
            let mut resource = json!({"kind": "sql#user", "name": name, "host": str_field(&r.req.body, "host"),
                                      "instance": instance, "project": r.project, "type": user_type, "etag": ""});
            if user_type.starts_with("CLOUD_IAM") {
                resource["iamStatus"] = "IAM_STATUS_UNSPECIFIED".into();
            }
            if let Some(pp) = r.req.body.get("passwordPolicy") {
                resource["passwordPolicy"] = pp.clone();
            }
            let key = key.clone();
            (
                "CREATE_USER",
                "postgres",
                Some(sql),
                Box::new(move |st: &mut State| {
                    if let Some(i) = st.sql.instances.get_mut(&key) {
                        i.users.insert(name, resource);
                    }
                }),
            )
        }
        "sql.users.update" => {
            let name = r.req.query("name").unwrap_or("").to_string();
            inst.users.get(&name).ok_or_else(|| missing_user(&name))?;
            let password = str_field(&r.req.body, "password");
            let sql = (!password.is_empty())
                .then(|| format!("ALTER ROLE {} WITH PASSWORD {}", ident(&name), literal(password)));
            let policy = r.req.body.get("passwordPolicy").cloned();
            let key = key.clone();
            (
                "UPDATE_USER",
                "postgres",
                sql,
                Box::new(move |st: &mut State| {
                    if let (Some(u), Some(p)) =
                        (st.sql.instances.get_mut(&key).and_then(|i| i.users.get_mut(&name)), policy)
                    {
                        u["passwordPolicy"] = p;
                    }
                }),
            )
        }
        "sql.users.delete" => {
            let name = r.req.query("name").unwrap_or("").to_string();
            inst.users.get(&name).ok_or_else(|| missing_user(&name))?;
            let sql = format!("DROP ROLE {}", ident(&name));
            let key = key.clone();
            (
                "DELETE_USER",
                "postgres",
                Some(sql),
                Box::new(move |st: &mut State| {
                    if let Some(i) = st.sql.instances.get_mut(&key) {
                        i.users.remove(&name);
                    }
                }),
            )
        }
        _ => return Err(ApiError::unimplemented(r.req.method.as_str(), &r.req.path)),
    };
    check_no_op(&st, &r.project, &instance)?;
    let op = new_op(&r.project, op_type, &instance);
    let (app2, db) = (app.clone(), db.to_string());
    let work = async move {
        let Some(sql) = sql else { return Ok(()) };
        let server = super::pg(&app2)
            .get(&key)
            .ok_or_else(|| rdbms("the instance's PostgreSQL server is not running".into()))?;
        server.exec(&db, &sql).await.map_err(rdbms)
    };
    let op = app.run_op(&mut st, op, work, move |st, res| {
        if res.is_ok() {
            finish(st);
        }
        Ok(())
    });
    app.persist(&st);
    Ok(render_op(&base, &op))
}
