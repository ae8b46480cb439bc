//! The running emulator (top floor): the HTTP(S) servers and the [`Emulator`] handle. A request
//! to `/_emulator/` goes to the admin API ([`crate::admin`]), any other to the router
//! ([`crate::router::serve`]), which runs the APIs' pipeline.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State as AxumState;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{App, Settings, Stats, lock, tracing_err};
use crate::config::{Config, OpDurations};
use crate::error::{ApiError, EmulatorError};
use crate::faults::{FaultSpec, Faults};
use crate::sql::connect::Connectors;
use crate::state::State;

/// A running emulator. Dropping it (or [`Emulator::shutdown`]) stops the HTTP server and every
/// PostgreSQL server it started.
#[derive(Debug)]
pub struct Emulator {
    app: Arc<App>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// The pods' metadata server and DNS responder (`Config::metadata_listen`, `dns_listen`), if
    /// any; they keep no state.
    side_tasks: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Starts serving on `config.listen`, loading the state from `config.state_dir` if given and
    /// restarting the PostgreSQL servers of the instances found there.
    pub async fn start(config: Config) -> Result<Emulator, EmulatorError> {
        let (state, state_file, pg_root) = match &config.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| EmulatorError::StateDir { path: dir.clone(), source })?;
                let file = dir.join("state.json");
                (State::load(&file)?, Some(file), Some(dir.join("postgres")))
            }
            None => (State::default(), None, None),
        };
        let contract = crate::contract::Contract::load(&crate::contract::resolve_dir(config.discovery_dir.as_deref()))?;
        let extensions = crate::router::extensions(state_file.as_deref(), pg_root)?;

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| EmulatorError::Bind { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| EmulatorError::Bind { addr: config.listen, source })?;
        let tls = config.tls;
        let tls_config = if tls {
            let connectors = extensions.get::<Connectors>().expect("the router registers the connector CA");
            Some(connectors.https_config(&addr.ip()).map_err(EmulatorError::Postgres)?)
        } else {
            None
        };
        let settings = Settings {
            op_durations: config.op_durations.clone(),
            name_reuse_window_s: config.name_reuse_window.as_secs(),
            sa_visibility_delay_ms: config.sa_visibility_delay.as_millis() as u64,
        };
        let app = Arc::new(App {
            faults: Mutex::new(Faults::new(config.fault_seed)),
            config,
            settings: Mutex::new(settings),
            state: Mutex::new(state),
            generation: Default::default(),
            tokens: Default::default(),
            stats: Mutex::new(Stats::default()),
            base_url: format!("{}://{addr}/", if tls { "https" } else { "http" }),
            state_file,
            extensions,
            contract,
        });
        let mut side_tasks = Vec::new();
        if let Some(at) = app.config.metadata_listen {
            let listener =
                tokio::net::TcpListener::bind(at).await.map_err(|source| EmulatorError::Bind { addr: at, source })?;
            let router = Router::new().fallback(handle_pod_metadata).with_state(app.clone());
            side_tasks.push(tokio::spawn(async move {
                let service = router.into_make_service_with_connect_info::<SocketAddr>();
                if let Err(e) = axum::serve(listener, service).await {
                    tracing_err(&format!("metadata server stopped: {e}"));
                }
            }));
        }
        if let Some(at) = app.config.dns_listen {
            let socket =
                crate::metadata::dns::bind(at).await.map_err(|source| EmulatorError::Bind { addr: at, source })?;
            side_tasks.push(tokio::spawn(crate::metadata::dns::serve(socket)));
        }
        crate::router::resume(&app).await;
        let router = Router::new().fallback(handle).with_state(app.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = match tls_config {
            None => tokio::spawn(async move {
                // No Nagle: a response written in two segments would wait for the client's
                // delayed ACK (tens of milliseconds per request on loopback).
                use axum::serve::ListenerExt;
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let serve = axum::serve(listener, router).with_graceful_shutdown(async {
                    let _ = stopped.await;
                });
                if let Err(e) = serve.await {
                    tracing_err(&format!("HTTP server stopped: {e}"));
                }
            }),
            Some(cfg) => tokio::spawn(serve_https(listener, router, cfg, stopped)),
        };
        Ok(Emulator { app, addr, stop: Some(stop), task: Some(task), side_tasks })
    }

    /// `http://127.0.0.1:PORT/`: the value for gcloud's `api_endpoint_overrides/*` and for the
    /// official SDKs' endpoint (without the trailing slash there).
    pub fn base_url(&self) -> &str {
        &self.app.base_url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The emulator's CA (PEM): it signs the HTTPS certificate (`Config::tls`), the Cloud SQL
    /// instances' server certificates and the connectors' ephemeral certificates.
    pub fn ca_pem(&self) -> &str {
        crate::sql::connectors(&self.app).ca_pem()
    }

    /// Replaces the injected faults (the admin API's `PUT /_emulator/faults`).
    pub fn set_faults(&self, spec: FaultSpec) -> Result<(), String> {
        lock(&self.app.faults).set(spec)
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        let _ = lock(&self.app.faults).set(FaultSpec::default());
    }

    /// Request counts per API method so far.
    pub fn stats(&self) -> Stats {
        lock(&self.app.stats).clone()
    }

    /// Zeroes the request counts.
    pub fn reset_stats(&self) {
        *lock(&self.app.stats) = Stats::default();
    }

    /// What Google's published contract recorded: the requests refused (clients' defects), the
    /// answers outside the response schemas (the emulator's), the paths no document knows.
    pub fn contract(&self) -> crate::contract::Record {
        self.app.contract.recorded()
    }

    /// Forgets what the contract recorded.
    pub fn clear_contract(&self) {
        self.app.contract.clear();
    }

    /// The runtime settings.
    pub fn settings(&self) -> Settings {
        self.app.settings()
    }

    /// Sets the durations of long-running operations started from now on.
    pub fn set_op_durations(&self, d: OpDurations) {
        lock(&self.app.settings).op_durations = d;
    }

    /// Sets the eventual-consistency delay of service accounts created from now on (and of those
    /// already created, which are measured from their creation time).
    pub fn set_sa_visibility_delay(&self, d: Duration) {
        lock(&self.app.settings).sa_visibility_delay_ms = d.as_millis() as u64;
    }

    /// Forgets every resource and operation and deletes every PostgreSQL server.
    pub async fn reset(&self) {
        crate::router::reset(&self.app).await;
    }

    /// Waits until every long-running operation is done; false on timeout.
    pub async fn settle(&self, timeout: Duration) -> bool {
        self.app.settle(timeout).await
    }

    /// The port of Cloud SQL instance `project/instance`'s PostgreSQL server itself, once it runs:
    /// the internal 5433 behind the public 5432 (the name of its unix socket, `.s.PGSQL.<port>`).
    pub fn postgres_port(&self, project: &str, instance: &str) -> Option<u16> {
        lock(&self.app.state).sql.instances.get(&format!("{project}/{instance}")).and_then(|i| i.pg_port)
    }

    /// The address of Cloud SQL instance `project/instance` (its `PRIMARY` IP), once it runs.
    pub fn instance_address(&self, project: &str, instance: &str) -> Option<std::net::Ipv4Addr> {
        lock(&self.app.state).sql.instances.get(&format!("{project}/{instance}")).and_then(|i| i.pg_host)
    }

    /// The unix socket directory of that instance's server (connect as `cloudsqladmin`, trusted).
    pub fn postgres_socket_dir(&self, project: &str, instance: &str) -> Option<std::path::PathBuf> {
        crate::sql::pg(&self.app).get(&format!("{project}/{instance}")).map(|s| s.socket_dir())
    }

    /// Stops the HTTP server and the PostgreSQL servers (their data is kept when persisting).
    pub async fn shutdown(mut self) {
        self.stop_now().await;
    }

    async fn stop_now(&mut self) {
        for task in self.side_tasks.drain(..) {
            task.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // Open keep-alive connections could hold graceful shutdown forever.
            if tokio::time::timeout(Duration::from_secs(2), task).await.is_err() {
                tracing_err("HTTP server did not stop within 2 s; abandoning open connections");
            }
        }
        crate::router::stop(&self.app);
        self.app.persist(&lock(&self.app.state));
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        for task in self.side_tasks.drain(..) {
            task.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        crate::router::stop(&self.app);
    }
}

/// The APIs over HTTPS: each connection's TLS handshake, then HTTP/1 with the same router.
async fn serve_https(
    listener: tokio::net::TcpListener,
    router: Router,
    config: Arc<rustls::ServerConfig>,
    mut stopped: oneshot::Receiver<()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stopped => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let _ = tcp.set_nodelay(true);
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

/// The pods' metadata server: `/computeMetadata/v1/...` for the pod at the caller's address.
async fn handle_pod_metadata(
    AxumState(app): AxumState<Arc<App>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response {
    let path = req.uri().path().to_string();
    let resp = crate::metadata::handle_pod(&app, peer.ip(), &path, req.headers()).await;
    eprintln!("{} {path} -> {} metadata (pod {})", req.method(), resp.status().as_u16(), peer.ip());
    resp
}

async fn handle(AxumState(app): AxumState<Arc<App>>, req: Request<Body>) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let method = parts.method.clone();
    let bytes = match to_bytes(body, 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::invalid_argument(format!("cannot read the request body: {e}")).into_response();
        }
    };
    if path.starts_with("/_emulator/") || path == "/_emulator" {
        let resp = crate::admin::handle(&app, &method, &path, parts.uri.query(), &bytes).await;
        eprintln!("{method} {path} -> {} (admin)", resp.status().as_u16());
        return resp;
    }
    crate::router::serve(&app, &parts, &bytes, started).await
}
