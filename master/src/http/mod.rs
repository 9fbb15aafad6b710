//! The master's HTTP APIs (axum on tokio) and its timers.
//!
//! * `POST /api/v1/scheduler` ([`scheduler`]): the Mesos v1 scheduler API.
//! * `POST /api/v1`, `/api/v1/operator` and the legacy JSON endpoints
//!   (`/state`, `/slaves`, `/frameworks`, `/tasks`, `/metrics/...`,
//!   `/redirect`, `/health`, `/version`) ([`operator`]).
//! * `POST /masterlink/v1/agent` ([`agent`]): Berth's agent link.
//!
//! Every route also exists under `/master/`, as in Mesos. The handlers only
//! parse and answer; the state and its rules are in [`crate::core`].
//! Background tasks: the allocation loop (every allocation interval and when
//! the core wakes it), agent pings, the failover-timeout sweep, and the
//! handler of closed streams.
//!
//! Leadership: with the default SQLite registry the master leads from its
//! start. With `etcd://...` it campaigns ([`crate::election`]); while it
//! follows, the scheduler, operator and agent APIs answer 307 with the
//! leader in `Location` (503 "No leader elected" when there is none) and the
//! read-only endpoints answer from its own (empty) state with the leader in
//! `/state`. Winning fences the registry and recovers it; losing ends
//! [`serve`] with [`MasterError::LostLeadership`]: the process must exit
//! rather than serve from the state of an ended term, as Mesos does.

mod agent;
mod operator;
mod scheduler;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use masterlink::scheduler::{Address, MasterInfo};
use serde_json::Value as Json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::allocator::{Allocator, AllocatorConfig, AllocatorError};
use crate::core::{Core, CoreConfig, Refusal};
use crate::election::{Election, ElectionError, ElectionOptions, State as ElectionState};
use crate::registry::{RegistryError, RegistryLocation};

/// The Mesos version this master claims on the wire (pymesos parses it as
/// dotted integers and enables features from 1.0 on).
pub const MESOS_VERSION: &str = "1.11.0";

/// The header carrying a scheduler's stream id.
pub const STREAM_ID_HEADER: &str = "Mesos-Stream-Id";

/// How the master is run.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Where [`Master::start`] listens (ignored by [`serve`], which is given
    /// its listener).
    pub bind: SocketAddr,
    /// Holds the registry (`registry.db`) unless `registry` names etcd.
    pub work_dir: PathBuf,
    /// `--registry`: `None` for SQLite in the work dir (a single master),
    /// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` for several masters that
    /// elect a leader.
    pub registry: Option<String>,
    /// The election's lease TTL (etcd registry only): how long a dead
    /// leader keeps its leadership.
    pub election_ttl: Duration,
    /// After winning an election, how long the admitted agents have to
    /// re-register before they are marked unreachable.
    pub agent_reregister_timeout: Duration,
    /// Time between HEARTBEAT events on a SUBSCRIBE stream.
    pub heartbeat_interval: Duration,
    /// The master's host name, reported in `MasterInfo`.
    pub hostname: String,
    /// Time between batch allocations (allocation also runs on changes).
    pub allocation_interval: Duration,
    /// Time between PINGs to each agent.
    pub agent_ping_interval: Duration,
    /// Missed PINGs after which an agent is unreachable.
    pub max_agent_ping_timeouts: u32,
    /// Weights and minimum offer size.
    pub allocator: AllocatorConfig,
    /// `--roles`: the only roles frameworks may use, when set.
    pub roles: Option<std::collections::BTreeSet<String>>,
    /// Credentials (HTTP basic; off when `None`) and ACLs.
    pub auth: crate::auth::Auth,
    /// The flags as given, for GET_FLAGS and /state.
    pub flags: Vec<(String, String)>,
}

impl MasterConfig {
    /// Port 5050 on 127.0.0.1, 15 s heartbeats, hostname `localhost`, 1 s
    /// allocation interval, pings every 15 s with 5 allowed misses (Mesos'
    /// defaults).
    pub fn new(work_dir: impl Into<PathBuf>) -> MasterConfig {
        MasterConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 5050)),
            work_dir: work_dir.into(),
            registry: None,
            election_ttl: crate::election::DEFAULT_TTL,
            // Mesos' default (and minimum) `--agent_reregister_timeout`.
            agent_reregister_timeout: Duration::from_secs(600),
            heartbeat_interval: Duration::from_secs(15),
            hostname: "localhost".to_string(),
            allocation_interval: Duration::from_secs(1),
            agent_ping_interval: Duration::from_secs(15),
            max_agent_ping_timeouts: 5,
            allocator: AllocatorConfig::default(),
            roles: None,
            auth: crate::auth::Auth::default(),
            flags: Vec::new(),
        }
    }
}

/// Why the master could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// Binding, accepting or serving failed.
    #[error("master: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The registry could not be opened.
    #[error("master: {0}")]
    Registry(#[from] RegistryError),
    /// The allocator refused its configuration.
    #[error("master: {0}")]
    Allocator(#[from] AllocatorError),
    /// The election could not start.
    #[error("master: {0}")]
    Election(#[from] ElectionError),
    /// This master led and does not any more (or could not recover the
    /// registry on winning): it must exit.
    #[error("master: lost leadership: {0}")]
    LostLeadership(String),
}

/// A stream that ended (its client went away, or the master dropped it).
#[derive(Debug)]
enum Closed {
    Framework { id: String, stream_id: String },
    Agent { id: String, stream_id: String },
}

struct Shared {
    core: Mutex<Core>,
    config: MasterConfig,
    closed: mpsc::UnboundedSender<Closed>,
    /// `None`: a single master, which leads from its start. (A mutex only
    /// because an `Election` is not `Sync`; every use is a quick read.)
    election: Option<Mutex<Election>>,
    /// This master's MasterInfo id (to tell itself from the leader key's).
    master_id: String,
    /// Leads and has recovered the registry: serves the APIs.
    serving: std::sync::atomic::AtomicBool,
    /// Why this master stopped leading, once it has.
    lost: watch::Sender<Option<String>>,
}

impl Shared {
    /// The core, even if a handler panicked while holding it (the state is
    /// still consistent per call: every method checks before it changes).
    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn serving(&self) -> bool {
        self.serving.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The leader's MasterInfo as its leader key says (this master's own
    /// when it leads alone); `None` when no master leads.
    fn leader_info(&self) -> Option<MasterInfo> {
        match &self.election {
            None => Some(self.core().master_info.clone()),
            Some(e) => lock(e)
                .leader()
                .and_then(|l| serde_json::from_value::<MasterInfo>(l.info).ok()),
        }
    }

    /// `None` when this master serves calls; otherwise what to answer
    /// instead: 307 to the leader at `path` (Mesos' protocol-relative
    /// `//HOST:PORT/path`), or 503 when no other master leads.
    fn not_leading(&self, path: &str) -> Option<Response> {
        (!self.serving()).then(|| self.redirect(Some(path)))
    }

    /// 307 to the leader (at `path`, or at its root), 503 without one.
    fn redirect(&self, path: Option<&str>) -> Response {
        match self.leader_info() {
            // A leader key naming this master's own address under another
            // id is this master's previous life (killed and restarted on the
            // same port) whose lease has not expired: redirecting would
            // point at itself, so no leader is elected as far as anyone
            // can use.
            Some(info)
                if info.id != self.master_id
                    && !self.serving()
                    && leader_authority(&info) == leader_authority(&self.core().master_info) =>
            {
                text(StatusCode::SERVICE_UNAVAILABLE, "No leader elected")
            }
            // Another master leads; or this one (`/redirect` on the leader).
            Some(info) if info.id != self.master_id || self.serving() => {
                let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
                let location = format!("//{}{}", leader_authority(&info), path.unwrap_or(""));
                if let Ok(v) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, v);
                }
                response
            }
            // This master won but has not recovered the registry yet.
            Some(_) if self.election.as_ref().is_some_and(|e| lock(e).is_leader()) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "Master has not finished recovery",
            ),
            _ => text(StatusCode::SERVICE_UNAVAILABLE, "No leader elected"),
        }
    }
}

fn lock(election: &Mutex<Election>) -> MutexGuard<'_, Election> {
    election.lock().unwrap_or_else(|e| e.into_inner())
}

/// `HOST:PORT` of a master for a redirect. Mesos prefers the hostname; the
/// IP the master listens on is used instead whenever it is a specific one,
/// since a host name need not resolve to the (possibly loopback) address
/// the master is bound to.
fn leader_authority(info: &MasterInfo) -> String {
    let address = info.address.as_ref();
    let ip = address
        .and_then(|a| a.ip.as_deref())
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_unspecified());
    let host = match ip {
        Some(IpAddr::V6(v6)) => format!("[{v6}]"),
        Some(ip) => ip.to_string(),
        None => info
            .hostname
            .clone()
            .or_else(|| address.and_then(|a| a.hostname.clone()))
            .unwrap_or_else(|| info.ip_addr().to_string()),
    };
    format!("{host}:{}", info.port)
}

type AppState = Arc<Shared>;

/// A running master: [`Master::start`] binds and serves in the background.
pub struct Master {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), MasterError>>,
}

impl Master {
    /// Binds `config.bind` and serves until [`Master::shutdown`].
    pub async fn start(config: MasterConfig) -> Result<Master, MasterError> {
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| MasterError::Io {
                what: format!("bind {}", config.bind),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| MasterError::Io {
            what: "read the bound address".into(),
            source,
        })?;
        let app = app(config, local_addr)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, app, async move {
            let _ = stopped.await;
        }));
        Ok(Master {
            local_addr,
            stop: Some(stop),
            task,
        })
    }

    /// The address the master listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits for open ones to finish
    /// (event streams are closed first).
    pub async fn shutdown(mut self) -> Result<(), MasterError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(MasterError::Io {
                what: "join the server task".into(),
                source: std::io::Error::other(e),
            }),
        }
    }
}

/// Serves the master's APIs on `listener` until `stop` completes.
pub async fn serve(
    config: MasterConfig,
    listener: TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MasterError> {
    let local_addr = listener.local_addr().map_err(|source| MasterError::Io {
        what: "read the bound address".into(),
        source,
    })?;
    let app = app(config, local_addr)?;
    run(listener, app, stop).await
}

async fn run(
    listener: TcpListener,
    (router, shared): (Router, AppState),
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MasterError> {
    let timers = spawn_timers(&shared);
    let mut lost = shared.lost.subscribe();
    let mut lost_for_grace = lost.clone();
    let graceful = {
        let shared = shared.clone();
        async move {
            tokio::select! {
                _ = stop => {}
                _ = lost.wait_for(Option::is_some) => {}
            }
            // Close every stream so that the graceful shutdown does not wait
            // for subscribers and agents forever.
            let mut core = shared.core();
            for fw in core.frameworks.values_mut() {
                fw.stream = None;
            }
            for agent in core.agents.values_mut() {
                agent.link = None;
            }
        }
    };
    // Events are small writes on long-lived streams: without TCP_NODELAY,
    // Nagle holds each one until the peer's delayed ACK (40 ms on Linux).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, router).with_graceful_shutdown(graceful);
    let result = tokio::select! {
        r = server => r.map_err(|source| MasterError::Io {
            what: "serve HTTP".into(),
            source,
        }),
        // A deposed master stops within a bounded time even if a client
        // holds a connection open: its successor already serves.
        _ = async {
            let _ = lost_for_grace.wait_for(Option::is_some).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        } => Ok(()),
    };
    for t in timers {
        t.abort();
    }
    if let Some(reason) = shared.lost.borrow().clone() {
        return Err(MasterError::LostLeadership(reason));
    }
    result
}

fn app(config: MasterConfig, local_addr: SocketAddr) -> Result<(Router, AppState), MasterError> {
    std::fs::create_dir_all(&config.work_dir).map_err(|source| MasterError::Io {
        what: format!("create {}", config.work_dir.display()),
        source,
    })?;
    let location = RegistryLocation::parse(config.registry.as_deref(), &config.work_dir)?;
    let registry = location.open()?;
    let allocator = Allocator::new(config.allocator.clone())?;
    let master_info = master_info(&config, local_addr);
    let election = match &location {
        RegistryLocation::Sqlite(_) => None,
        RegistryLocation::Etcd(etcd) => {
            let info = serde_json::to_value(&master_info).unwrap_or_default();
            let options = ElectionOptions {
                ttl: config.election_ttl,
            };
            Some(Election::campaign(etcd, info, options)?)
        }
    };
    let master_id = master_info.id.clone();
    let mut core = Core::new(
        CoreConfig {
            heartbeat_interval: config.heartbeat_interval,
            agent_ping_interval: config.agent_ping_interval,
            max_agent_ping_timeouts: config.max_agent_ping_timeouts,
            roles: config.roles.clone(),
            acls: config.auth.acls.clone(),
            agent_reregister_timeout: config.agent_reregister_timeout,
        },
        allocator,
        registry,
        master_info,
    );
    if election.is_none() {
        // A single master owns its registry: it leads from the start, and
        // its agents re-register after a restart as after a failover.
        core.recover(core.start_time)?;
    }
    let (closed, closed_rx) = mpsc::unbounded_channel();
    let serving = election.is_none();
    let shared = Arc::new(Shared {
        core: Mutex::new(core),
        config,
        closed,
        election: election.map(Mutex::new),
        master_id,
        serving: std::sync::atomic::AtomicBool::new(serving),
        lost: watch::channel(None).0,
    });
    tokio::spawn(handle_closed(Arc::downgrade(&shared), closed_rx));
    if let Some(election) = &shared.election {
        tokio::spawn(follow_election(
            Arc::downgrade(&shared),
            lock(election).watch_state(),
        ));
    }

    let mut router = Router::new().route(masterlink::protocol::AGENT_API_PATH, post(agent::call));
    for prefix in ["", "/master"] {
        router = router
            .route(&format!("{prefix}/api/v1/scheduler"), post(scheduler::call))
            .route(&format!("{prefix}/api/v1"), post(operator::call))
            .route(&format!("{prefix}/api/v1/operator"), post(operator::call))
            .route(&format!("{prefix}/health"), get(operator::health))
            .route(&format!("{prefix}/version"), get(operator::version))
            .route(&format!("{prefix}/state"), get(operator::state))
            .route(&format!("{prefix}/state.json"), get(operator::state))
            .route(&format!("{prefix}/slaves"), get(operator::slaves))
            .route(&format!("{prefix}/frameworks"), get(operator::frameworks))
            .route(&format!("{prefix}/frameworks/"), get(operator::frameworks))
            .route(&format!("{prefix}/tasks"), get(operator::tasks))
            .route(&format!("{prefix}/flags"), get(operator::flags))
            .route(&format!("{prefix}/redirect"), get(operator::redirect))
            .route(
                &format!("{prefix}/metrics/snapshot"),
                get(operator::metrics_snapshot),
            )
            .route(
                &format!("{prefix}/metrics"),
                get(operator::metrics_prometheus),
            );
        for endpoint in ["reserve", "unreserve", "create-volumes", "destroy-volumes"] {
            router = router.route(
                &format!("{prefix}/{endpoint}"),
                post(operator::legacy_operation),
            );
        }
    }
    Ok((router.with_state(shared.clone()), shared))
}

fn master_info(config: &MasterConfig, addr: SocketAddr) -> MasterInfo {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
    };
    MasterInfo {
        id: crate::core::uuid(),
        ip: MasterInfo::ip_from(ip),
        port: u32::from(addr.port()),
        pid: Some(format!("master@{addr}")),
        hostname: Some(config.hostname.clone()),
        version: Some(MESOS_VERSION.to_string()),
        address: Some(Address {
            hostname: Some(config.hostname.clone()),
            ip: Some(addr.ip().to_string()),
            port: i32::from(addr.port()),
        }),
        domain: None,
        capabilities: Vec::new(),
    }
}

/// The allocation loop and the agent pings.
fn spawn_timers(shared: &AppState) -> Vec<JoinHandle<()>> {
    let weak = Arc::downgrade(shared);
    let interval = shared.config.allocation_interval;
    let notify = shared.core().allocate_now.clone();
    let allocation = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = notify.notified() => {}
            }
            let Some(shared) = weak.upgrade() else { return };
            shared.core().allocate(Instant::now());
        }
    });
    let weak = Arc::downgrade(shared);
    let ping_interval = shared
        .config
        .agent_ping_interval
        .max(Duration::from_millis(10));
    let pings = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(ping_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(shared) = weak.upgrade() else { return };
            shared.core().ping_agents();
        }
    });
    let weak = Arc::downgrade(shared);
    let failovers = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(shared) = weak.upgrade() else { return };
            let now = crate::core::now_secs();
            let mut core = shared.core();
            core.expire_frameworks(now);
            core.expire_recovered_agents(now);
        }
    });
    vec![allocation, pings, failovers]
}

/// Acts on this candidate's election: on winning, fences the registry by the
/// term and recovers it, then serves; on losing (or when the recovery
/// fails, or the campaign ends), reports the loss, which stops [`serve`].
async fn follow_election(
    shared: std::sync::Weak<Shared>,
    mut state: watch::Receiver<ElectionState>,
) {
    loop {
        let now = state.borrow_and_update().clone();
        let Some(strong) = shared.upgrade() else {
            return;
        };
        match now {
            ElectionState::Follower => {}
            ElectionState::Leading { term } if !strong.serving() => {
                eprintln!("berth master: elected leader (term {term}); recovering the registry");
                let fence = strong.election.as_ref().and_then(|e| lock(e).fence());
                let worker = strong.clone();
                // Registry calls block (etcd round trips): off the runtime.
                let recovered = tokio::task::spawn_blocking(move || {
                    let mut core = worker.core();
                    core.registry.set_fence(fence);
                    core.recover(crate::core::now_secs())
                })
                .await;
                match recovered {
                    Ok(Ok(())) => {
                        strong
                            .serving
                            .store(true, std::sync::atomic::Ordering::SeqCst);
                        eprintln!("berth master: leading (term {term})");
                    }
                    Ok(Err(e)) => {
                        lose(&strong, format!("cannot recover the registry: {e}"));
                        return;
                    }
                    Err(e) => {
                        lose(&strong, format!("the registry recovery failed: {e}"));
                        return;
                    }
                }
            }
            ElectionState::Leading { .. } => {}
            ElectionState::Lost { reason } => {
                lose(&strong, reason);
                return;
            }
        }
        drop(strong);
        if state.changed().await.is_err() {
            if let Some(strong) = shared.upgrade() {
                lose(&strong, "the election ended".into());
            }
            return;
        }
    }
}

/// Stops serving at once and reports why (the master exits).
fn lose(shared: &Shared, reason: String) {
    shared
        .serving
        .store(false, std::sync::atomic::Ordering::SeqCst);
    eprintln!("berth master: no longer the leader: {reason}");
    shared.lost.send_replace(Some(reason));
}

/// Applies stream closures to the core, outside the code that dropped the
/// stream (which may hold the core's lock).
async fn handle_closed(shared: std::sync::Weak<Shared>, mut rx: mpsc::UnboundedReceiver<Closed>) {
    while let Some(closed) = rx.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match closed {
            Closed::Framework { id, stream_id } => {
                shared.core().framework_disconnected(&id, &stream_id)
            }
            Closed::Agent { id, stream_id } => shared.core().agent_disconnected(&id, &stream_id),
        }
    }
}

/// Tells [`handle_closed`] when the response body carrying a stream is
/// dropped: the client went away or the master ended the stream.
struct CloseGuard {
    tx: mpsc::UnboundedSender<Closed>,
    closed: Option<Closed>,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if let Some(closed) = self.closed.take() {
            let _ = self.tx.send(closed);
        }
    }
}

/// A `200` chunked stream of what arrives on `rx`; it ends when every sender
/// is gone. `guard` reports the end.
fn record_stream(
    header_name: &'static str,
    stream_id: Option<&str>,
    rx: mpsc::UnboundedReceiver<Bytes>,
    guard: Option<CloseGuard>,
) -> Response {
    let stream = futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(b), (rx, guard)))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = stream_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        h.insert(header_name, id);
    }
    response
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

fn json_response(value: &Json) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// The request's principal, or the 401 to answer (with the challenge
/// Mesos sends). `Ok(None)` when authentication is off.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Option<String>, Box<Response>> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    shared.config.auth.principal(header).map_err(unauthorized)
}

/// [`authenticate`] for the agent link: only with `--authenticate-agents`.
fn authenticate_agent(
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<Option<String>, Box<Response>> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    shared
        .config
        .auth
        .agent_principal(header)
        .map_err(unauthorized)
}

/// 401 with Mesos' challenge.
fn unauthorized(d: crate::auth::Denied) -> Box<Response> {
    let (crate::auth::Denied::Unauthenticated(m) | crate::auth::Denied::Forbidden(m)) = d;
    let mut r = text(StatusCode::UNAUTHORIZED, m);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"mesos\""),
    );
    Box::new(r)
}

fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::BadRequest(m) => text(StatusCode::BAD_REQUEST, m),
        Refusal::Forbidden(m) => text(StatusCode::FORBIDDEN, m),
        Refusal::Conflict(m) => text(StatusCode::CONFLICT, m),
        Refusal::Unavailable(m) => text(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

/// A refusal: status and text body.
type Rejection = (StatusCode, String);

/// Mesos' Content-Type check: required; JSON accepted (with parameters such
/// as `;charset=utf-8`); protobuf recognised but not supported here.
fn check_content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "Expecting 'Content-Type' to be present".into(),
        ));
    };
    let media = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" => Ok(()),
        "application/x-protobuf" => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type 'application/x-protobuf' is not supported by this master; \
             use 'application/json'"
                .into(),
        )),
        _ => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Expecting 'Content-Type' of application/json, got '{}'",
                value.to_str().unwrap_or("<not text>")
            ),
        )),
    }
}

/// The Accept check (a missing header means JSON).
fn check_accept(headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(value) = headers.get(header::ACCEPT) else {
        return Ok(());
    };
    let accepts_json = value.to_str().unwrap_or("").split(',').any(|part| {
        let media = part.split(';').next().unwrap_or("").trim();
        media.eq_ignore_ascii_case("application/json")
            || media == "*/*"
            || media.eq_ignore_ascii_case("application/*")
    });
    if accepts_json {
        Ok(())
    } else {
        Err((
            StatusCode::NOT_ACCEPTABLE,
            "Expecting 'Accept' to allow application/json (protobuf is not supported by \
             this master)"
                .into(),
        ))
    }
}
