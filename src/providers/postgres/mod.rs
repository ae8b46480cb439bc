//! The `postgres` provider: role memberships (`postgres_grant`), read from the
//! catalogs and written with `GRANT`/`REVOKE`, identifiers always quoted.
//!
//! The session goes either through the Cloud SQL connector (`instance =
//! "${gcp_sql_instance.main.connection_name}"`: TLS 1.3 with an ephemeral client certificate, no
//! authorized network, see [`connector`]) or directly to `host`/`port`, over TLS verified against
//! the server's CA by default (`sslmode = "verify-ca"` with `server_ca_cert`; `require`; plaintext
//! only with an explicit `disable`, which `validate` and `plan` warn about). A provider configured
//! from an instance created in the same run is configured during apply, once it exists.

pub mod connector;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

use self::connector::{ConnectionName, Connector, Login};

use super::{
    ApplyAction, ApplyRequest, ApplyResponse, Checkpoint, LiveObject, Provider, ProviderError, ProviderFactory,
    ReadRequest,
};
use crate::foundation::names::NameRule;
use crate::foundation::schema::{AttrType, Attribute, ProviderSchema, ResourceSchema, SchemaKind};
use crate::timings;
use crate::value::Value;

/// Quotes an SQL identifier: `"` around it, inner `"` doubled. Every role name
/// skyform sends goes through here (IAM user names contain `@` and `.`).
///
/// ```
/// assert_eq!(skyform::providers::postgres::quote_ident(r#"a"b@p.iam"#), r#""a""b@p.iam""#);
/// ```
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn schema() -> ProviderSchema {
    ProviderSchema {
        name: "postgres",
        type_prefix: "postgres_",
        config: vec![
            Attribute::optional(
                "instance",
                AttrType::String,
                "A Cloud SQL instance's connection name `<project>:<region>:<name>` (`${gcp_sql_instance.main.connection_name}`): connect as the Cloud SQL Auth Proxy does (ephemeral certificate, TLS 1.3 on port 3307, no authorized network; needs `cloudsql.instances.connect`). Instead of `host`.",
            ),
            Attribute::optional(
                "auth",
                AttrType::String,
                "With `instance`: `password` (a built-in user and its password) or `iam` (automatic IAM database authentication: `user` is the caller's IAM database user, no password).",
            )
            .default(Value::str("password")),
            Attribute::optional(
                "host",
                AttrType::String,
                "Server host name or IP, for a direct connection (needs the client in the instance's authorized networks). Instead of `instance`.",
            ),
            Attribute::optional("port", AttrType::Number, "Server port (direct connection).").default(Value::Int(5432)),
            Attribute::optional("user", AttrType::String, "User to connect as.").default(Value::str("postgres")),
            Attribute::optional(
                "password",
                AttrType::String,
                "Its password (from a sensitive variable, or the instance's root password).",
            )
            .sensitive(),
            Attribute::optional("database", AttrType::String, "Database to connect to by default.")
                .default(Value::str("postgres")),
            Attribute::optional(
                "sslmode",
                AttrType::String,
                "Direct connection: `verify-ca` (TLS, the server's certificate must chain to `server_ca_cert`), `require` (TLS, the server unverified) or `disable` (plaintext: statements and results in clear, and the password exposed to anyone in the path).",
            )
            .default(Value::str("verify-ca"))
            .warn_on(&[(
                "disable",
                "the connection is plaintext: every statement and result cross the network in clear, and anyone in the path can ask the client for its password in clear; use `instance` (the Cloud SQL connector) or `sslmode = \"verify-ca\"`",
            )]),
            Attribute::optional(
                "server_ca_cert",
                AttrType::String,
                "Direct connection with `verify-ca`: the server's CA certificate, PEM (`${gcp_sql_instance.main.server_ca_cert}`).",
            ),
            Attribute::optional("connect_timeout", AttrType::Number, "Seconds to wait for a connection.")
                .default(Value::Int(10)),
        ],
        reaches_services: false,
        types: vec![ResourceSchema {
            type_name: "postgres_grant",
            kind: SchemaKind::Resource,
            description: "Membership of `member` in `role` (`GRANT \"role\" TO \"member\"`), e.g. `cloudsqlsuperuser` for a Cloud SQL IAM user. Revoked on delete.",
            attributes: vec![
                Attribute::required("role", AttrType::String, "The role granted (e.g. `cloudsqlsuperuser`).")
                    .force_new()
                    .rule(NameRule::PgIdentifier),
                Attribute::required("member", AttrType::String, "The role receiving it (e.g. `<sa>@<project>.iam`).")
                    .force_new()
                    .rule(NameRule::PgIdentifier),
                Attribute::optional(
                    "database",
                    AttrType::String,
                    "Database to connect to for the grant (roles are cluster-wide; default: the provider's).",
                )
                .force_new(),
            ],
        }],
    }
}

/// Builds configured `postgres` providers.
pub struct PostgresFactory {
    schema: ProviderSchema,
}

impl Default for PostgresFactory {
    fn default() -> Self {
        PostgresFactory { schema: schema() }
    }
}

/// Where the sessions go.
#[derive(Clone)]
enum Route {
    /// Through the Cloud SQL connector.
    Connector(Arc<Connector>),
    /// To `host:port`, with TLS as `sslmode` says.
    Direct { host: String, port: u16, tls: DirectTls },
}

/// TLS of a direct connection.
#[derive(Clone)]
enum DirectTls {
    Disable,
    /// TLS with this client configuration (`require`: any server; `verify-ca`: the CA's).
    Tls(Arc<rustls::ClientConfig>),
}

#[derive(Clone)]
struct Conn {
    route: Route,
    user: String,
    password: Option<String>,
    database: String,
    timeout: Duration,
}

impl Conn {
    fn from_config(c: &Value, net: &crate::foundation::net::Net) -> Result<Conn, ProviderError> {
        let c = c.unmarked();
        let text = |k: &str| c.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let user = text("user").unwrap_or_else(|| "postgres".into());
        let password = c.get("password").and_then(Value::as_str).map(str::to_string);
        let route = match (text("instance"), text("host")) {
            (Some(_), Some(_)) => {
                return Err(ProviderError::Config(
                    "set `instance` (the Cloud SQL connector) or `host`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(ProviderError::Config(
                    "`instance` (a Cloud SQL connection name) or `host` is required".into(),
                ));
            }
            (Some(instance), None) => {
                let name: ConnectionName = instance.parse()?;
                let login = match text("auth").as_deref().unwrap_or("password") {
                    "password" => Login::Password,
                    "iam" if password.is_some() => {
                        return Err(ProviderError::Config(
                            "`auth = \"iam\"` logs in with the caller's Google identity: remove `password`".into(),
                        ));
                    }
                    "iam" => Login::Iam,
                    other => {
                        return Err(ProviderError::Config(format!("`auth` {other:?} is not `password` or `iam`")));
                    }
                };
                Route::Connector(Arc::new(Connector::new(net.clone(), name, login)))
            }
            (None, Some(host)) => {
                let port = match c.get("port") {
                    Some(Value::String(s)) => {
                        s.parse().map_err(|_| ProviderError::Config(format!("bad port {s:?}")))?
                    }
                    Some(v) => u16::try_from(v.as_i64().unwrap_or(5432))
                        .map_err(|_| ProviderError::Config("`port` is not a port number".into()))?,
                    None => 5432,
                };
                let tls = match text("sslmode").as_deref().unwrap_or("verify-ca") {
                    "disable" => DirectTls::Disable,
                    "require" => DirectTls::Tls(direct_config(Arc::new(tls::EncryptOnly::default()))?),
                    "verify-ca" => {
                        let ca = text("server_ca_cert").ok_or_else(|| {
                            ProviderError::Config(
                                "`sslmode = \"verify-ca\"` (the default) needs `server_ca_cert`: the instance's \
                                 `server_ca_cert`, or use `instance` (the Cloud SQL connector)"
                                    .into(),
                            )
                        })?;
                        DirectTls::Tls(direct_config(Arc::new(tls::ChainVerifier::new(tls::roots(&ca)?, None)))?)
                    }
                    other => {
                        return Err(ProviderError::Config(format!(
                            "sslmode {other:?} is not `verify-ca`, `require` or `disable`"
                        )));
                    }
                };
                Route::Direct { host, port, tls }
            }
        };
        Ok(Conn {
            route,
            user,
            password,
            database: text("database").unwrap_or_else(|| "postgres".into()),
            timeout: Duration::from_secs(
                c.get("connect_timeout").and_then(Value::as_i64).unwrap_or(10).clamp(1, 3600) as u64
            ),
        })
    }

    /// Where the sessions go, for messages.
    fn target(&self) -> String {
        match &self.route {
            Route::Connector(c) => format!("{} (Cloud SQL connector)", c.instance()),
            Route::Direct { host, port, .. } => format!("{host}:{port}"),
        }
    }

    /// A failed connection. The server's refusals (a wrong password, 28P01; no
    /// such role or no access, 28000; no such database, 3D000...) are
    /// permanent, with PostgreSQL's own message; only failures to reach the
    /// server are transient. Never the password: neither tokio-postgres nor
    /// the server echoes it.
    fn connect_error(&self, e: &tokio_postgres::Error) -> ProviderError {
        let at = format!("connecting to postgres at {} as {}", self.target(), self.user);
        match e.as_db_error() {
            Some(db) => ProviderError::Permanent(format!("{at}: {} ({})", db.message(), db.code().code())),
            None => ProviderError::Transient(format!("{at}: {e}")),
        }
    }

    async fn connect(&self, database: Option<&str>) -> Result<Client, ProviderError> {
        let _t = timings::span("postgres", || format!("connect to {}", database.unwrap_or(&self.database)));
        let mut cfg = tokio_postgres::Config::new();
        // No statement may hang a plan or an apply (a lock held by someone else's transaction).
        cfg.options("-c statement_timeout=60000");
        cfg.user(&self.user)
            .dbname(database.unwrap_or(&self.database))
            .connect_timeout(self.timeout)
            .application_name("skyform");
        if let Some(p) = &self.password {
            cfg.password(p);
        }
        match &self.route {
            Route::Connector(connector) => {
                // The tunnel is the encryption: no second TLS layer inside it.
                let stream = connector.dial(self.timeout).await?;
                cfg.ssl_mode(SslMode::Disable);
                let (client, connection) = cfg.connect_raw(stream, NoTls).await.map_err(|e| self.connect_error(&e))?;
                tokio::spawn(connection);
                Ok(client)
            }
            Route::Direct { host, port, tls } => {
                cfg.host(host).port(*port);
                match tls {
                    DirectTls::Disable => {
                        cfg.ssl_mode(SslMode::Disable);
                        let (client, connection) = cfg.connect(NoTls).await.map_err(|e| self.connect_error(&e))?;
                        tokio::spawn(connection);
                        Ok(client)
                    }
                    DirectTls::Tls(config) => {
                        cfg.ssl_mode(SslMode::Require);
                        let make = tokio_postgres_rustls::MakeRustlsConnect::new((**config).clone());
                        let (client, connection) = cfg.connect(make).await.map_err(|e| self.connect_error(&e))?;
                        tokio::spawn(connection);
                        Ok(client)
                    }
                }
            }
        }
    }
}

/// A client configuration for a direct TLS connection with `verifier`.
fn direct_config(
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
) -> Result<Arc<rustls::ClientConfig>, ProviderError> {
    let config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProviderError::Config(format!("TLS set-up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[async_trait]
impl ProviderFactory for PostgresFactory {
    fn schema(&self) -> &ProviderSchema {
        &self.schema
    }
    async fn configure(
        &self,
        config: &Value,
        net: &crate::foundation::net::Net,
    ) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(PostgresProvider { conn: Conn::from_config(config, net)?, pool: Mutex::new(Vec::new()) }))
    }
}

/// A configured `postgres` provider. Connections are opened on first use and
/// kept per database.
pub struct PostgresProvider {
    conn: Conn,
    pool: Mutex<Vec<(String, Arc<Client>)>>,
}

impl PostgresProvider {
    /// A connection to `database` (default: the provider's).
    ///
    /// Role memberships are cluster-wide, so the database is only where the
    /// statements run: when it does not exist (`3D000`: not created yet in
    /// this run, or already destroyed, as after an interrupted apply or
    /// destroy), the server's maintenance database `postgres` serves instead,
    /// rather than failing the plan.
    async fn client(&self, database: Option<&str>) -> Result<Arc<Client>, ProviderError> {
        let db = database.unwrap_or(&self.conn.database).to_string();
        let mut pool = self.pool.lock().await;
        pool.retain(|(_, c)| !c.is_closed());
        if let Some((_, c)) = pool.iter().find(|(d, _)| *d == db) {
            return Ok(c.clone());
        }
        let c = match self.conn.connect(Some(&db)).await {
            Ok(c) => c,
            Err(ProviderError::Permanent(m)) if m.contains("(3D000)") && db != "postgres" => {
                self.conn.connect(Some("postgres")).await?
            }
            Err(e) => return Err(e),
        };
        let c = Arc::new(c);
        pool.push((db, c.clone()));
        Ok(c)
    }
}

struct Grant {
    role: String,
    member: String,
    database: Option<String>,
}

impl Grant {
    fn of(identity: Option<&Value>, config: &Value) -> Option<Grant> {
        let from = |v: &Value| {
            Some(Grant {
                role: v.get("role")?.as_str()?.to_string(),
                member: v.get("member")?.as_str()?.to_string(),
                database: v.get("database").and_then(Value::as_str).map(str::to_string),
            })
        };
        identity.and_then(from).or_else(|| from(config))
    }
    fn identity(&self) -> Value {
        let mut m = vec![("role", Value::str(&self.role)), ("member", Value::str(&self.member))];
        if let Some(d) = &self.database {
            m.push(("database", Value::str(d)));
        }
        Value::map(m)
    }
}

fn sql_error(what: &str, e: tokio_postgres::Error) -> ProviderError {
    match e.as_db_error() {
        Some(db) => ProviderError::Permanent(format!("{what}: {} ({})", db.message(), db.code().code())),
        None => ProviderError::Transient(format!("{what}: {e}")),
    }
}

const MEMBERSHIP: &str = "SELECT 1 FROM pg_catalog.pg_auth_members m \
     JOIN pg_catalog.pg_roles r ON r.oid = m.roleid \
     JOIN pg_catalog.pg_roles u ON u.oid = m.member \
     WHERE r.rolname = $1 AND u.rolname = $2";

#[async_trait]
impl Provider for PostgresProvider {
    /// Reads the membership from `pg_auth_members` (absent: `None`).
    async fn read(&self, req: &ReadRequest) -> Result<Option<LiveObject>, ProviderError> {
        let Some(g) = Grant::of(req.identity.as_ref(), &req.config) else { return Ok(None) };
        let c = self.client(g.database.as_deref()).await?;
        let rows =
            c.query(MEMBERSHIP, &[&g.role, &g.member]).await.map_err(|e| sql_error("reading pg_auth_members", e))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut attrs = std::collections::BTreeMap::new();
        attrs.insert("role".to_string(), Value::str(&g.role));
        attrs.insert("member".to_string(), Value::str(&g.member));
        if let Some(d) = &g.database {
            attrs.insert("database".to_string(), Value::str(d));
        }
        Ok(Some(LiveObject { identity: g.identity(), attrs, version: "1".into(), in_progress: false }))
    }

    /// `GRANT` is idempotent (granting an existing membership only notices);
    /// `REVOKE` of a membership, or of a role, that is already gone succeeds.
    async fn apply(&self, req: &ApplyRequest, _cp: &dyn Checkpoint) -> Result<ApplyResponse, ProviderError> {
        let cfg = req.config.unmarked();
        let g = match req.action {
            ApplyAction::Delete => Grant::of(req.identity.as_ref(), &cfg),
            _ => Grant::of(None, &cfg),
        }
        .ok_or_else(|| ProviderError::Permanent("`role` and `member` are required".into()))?;
        let c = self.client(g.database.as_deref()).await?;
        match req.action {
            ApplyAction::Create | ApplyAction::Update => {
                let sql = format!("GRANT {} TO {}", quote_ident(&g.role), quote_ident(&g.member));
                c.batch_execute(&sql)
                    .await
                    .map_err(|e| sql_error(&format!("GRANT {:?} TO {:?}", g.role, g.member), e))?;
                let attrs = cfg.as_map().cloned().unwrap_or_default();
                Ok(ApplyResponse { identity: g.identity(), attrs, private: Value::Null })
            }
            ApplyAction::Delete => {
                let sql = format!("REVOKE {} FROM {}", quote_ident(&g.role), quote_ident(&g.member));
                match c.batch_execute(&sql).await {
                    Ok(()) => {}
                    // 42704 undefined_object: the role or the member is gone.
                    Err(e) if e.code().is_some_and(|c| c.code() == "42704") => {}
                    Err(e) => return Err(sql_error(&format!("REVOKE {:?} FROM {:?}", g.role, g.member), e)),
                }
                Ok(ApplyResponse::default())
            }
        }
    }

    async fn read_data(&self, type_name: &str, _args: &Value) -> Result<Value, ProviderError> {
        Err(ProviderError::Permanent(format!("unknown data source {type_name}")))
    }

    /// `role/member` (or `role/member/database`).
    fn import_identity(&self, _type_name: &str, id: &str) -> Result<Value, ProviderError> {
        let p: Vec<&str> = id.splitn(3, '/').collect();
        match p[..] {
            [role, member] => Ok(Grant { role: role.into(), member: member.into(), database: None }.identity()),
            [role, member, db] => {
                Ok(Grant { role: role.into(), member: member.into(), database: Some(db.into()) }.identity())
            }
            _ => Err(ProviderError::Permanent(format!("import id must be `role/member[/database]`, got {id:?}"))),
        }
    }
}
