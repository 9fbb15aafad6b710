//! The master's HTTP APIs (axum on tokio), first slice:
//!
//! * `POST /api/v1/scheduler`: SUBSCRIBE (a chunked RecordIO event stream
//!   with SUBSCRIBED, then HEARTBEATs; a second SUBSCRIBE for the same
//!   framework fails the old stream over), TEARDOWN, SUPPRESS and REVIVE.
//!   Every other call type answers `501 Not Implemented`.
//! * `POST /api/v1` (and `/api/v1/operator`, as pymesos posts): GET_HEALTH and
//!   GET_VERSION; other operator calls answer `501`.
//! * `GET /health`, `GET /version`.
//!
//! Every route also exists under `/master/`, as in Mesos.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use masterlink::scheduler::{Address, Call, CallType, Event, FrameworkID, MasterInfo, Subscribed};
use masterlink::ResourceFormat;
use serde_json::{json, Value as Json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use crate::allocator::{Allocator, AllocatorConfig, AllocatorError};
use crate::registry::{FrameworkRecord, Registry, RegistryError, SqliteRegistry};

/// The Mesos version this master claims on the wire (pymesos parses it as
/// dotted integers and enables features from 1.0 on).
pub const MESOS_VERSION: &str = "1.11.0";

/// The header carrying a scheduler's stream id.
pub const STREAM_ID_HEADER: &str = "Mesos-Stream-Id";

/// Events queued for one subscriber before the master stops waiting on it.
const EVENT_QUEUE: usize = 1024;

/// How the master is run.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Where [`Master::start`] listens (ignored by [`serve`], which is given
    /// its listener).
    pub bind: SocketAddr,
    /// Holds the registry (`registry.db`).
    pub work_dir: PathBuf,
    /// Time between HEARTBEAT events on a SUBSCRIBE stream.
    pub heartbeat_interval: Duration,
    /// The master's host name, reported in `MasterInfo`.
    pub hostname: String,
}

impl MasterConfig {
    /// Port 5050 on 127.0.0.1, 15 s heartbeats, hostname `localhost`.
    pub fn new(work_dir: impl Into<PathBuf>) -> MasterConfig {
        MasterConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 5050)),
            work_dir: work_dir.into(),
            heartbeat_interval: Duration::from_secs(15),
            hostname: "localhost".to_string(),
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
}

/// A framework with an open SUBSCRIBE stream.
struct Subscriber {
    stream_id: String,
    format: ResourceFormat,
    /// Dropping it (the heartbeat task only holds a weak sender) ends the
    /// stream.
    events: mpsc::Sender<Bytes>,
}

struct MasterState {
    allocator: Allocator,
    registry: SqliteRegistry,
    frameworks: HashMap<String, Subscriber>,
    master_info: MasterInfo,
    next_framework: u64,
}

struct Shared {
    state: Mutex<MasterState>,
    heartbeat_interval: Duration,
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
        let app = app(&config, local_addr)?;
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
    /// (SUBSCRIBE streams are closed first).
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

/// Serves the master's APIs on `listener` until the process ends.
pub async fn serve(config: MasterConfig, listener: TcpListener) -> Result<(), MasterError> {
    let local_addr = listener.local_addr().map_err(|source| MasterError::Io {
        what: "read the bound address".into(),
        source,
    })?;
    let app = app(&config, local_addr)?;
    run(listener, app, std::future::pending()).await
}

async fn run(
    listener: TcpListener,
    (router, shared): (Router, AppState),
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MasterError> {
    let graceful = {
        let shared = shared.clone();
        async move {
            stop.await;
            // Close every event stream so that the graceful shutdown does not
            // wait for subscribers forever.
            shared.state.lock().await.frameworks.clear();
        }
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(graceful)
        .await
        .map_err(|source| MasterError::Io {
            what: "serve HTTP".into(),
            source,
        })
}

fn app(config: &MasterConfig, local_addr: SocketAddr) -> Result<(Router, AppState), MasterError> {
    std::fs::create_dir_all(&config.work_dir).map_err(|source| MasterError::Io {
        what: format!("create {}", config.work_dir.display()),
        source,
    })?;
    let registry = SqliteRegistry::open(&config.work_dir.join("registry.db"))?;
    let allocator = Allocator::new(AllocatorConfig::default())?;
    let master_info = master_info(config, local_addr);
    let shared = Arc::new(Shared {
        state: Mutex::new(MasterState {
            allocator,
            registry,
            frameworks: HashMap::new(),
            master_info,
            next_framework: 0,
        }),
        heartbeat_interval: config.heartbeat_interval,
    });
    let mut router = Router::new();
    for prefix in ["", "/master"] {
        router = router
            .route(&format!("{prefix}/api/v1/scheduler"), post(scheduler))
            .route(&format!("{prefix}/api/v1"), post(operator))
            .route(&format!("{prefix}/api/v1/operator"), post(operator))
            .route(&format!("{prefix}/health"), get(health))
            .route(&format!("{prefix}/version"), get(version));
    }
    Ok((router.with_state(shared.clone()), shared))
}

fn master_info(config: &MasterConfig, addr: SocketAddr) -> MasterInfo {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
    };
    MasterInfo {
        id: uuid(),
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

/// A random (version 4) UUID in its text form, from `/dev/urandom`.
fn uuid() -> String {
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        // Never expected on Linux; fall back to the clock and the process id.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = (nanos ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
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

/// Mesos' Content-Type check: required; JSON accepted (with parameters such
/// as `;charset=utf-8`); protobuf recognised but not supported here.
/// A refusal: status and text body.
type Rejection = (StatusCode, String);

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

// ---------------------------------------------------------------------------
// Scheduler API

async fn scheduler(State(shared): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err((status, message)) = check_content_type(&headers) {
        return text(status, message);
    }
    let call = match Call::parse(&body) {
        Ok(call) => call,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Failed to validate scheduler::Call: {e}"),
            )
        }
    };
    if call.call_type == CallType::Subscribe {
        if let Err((status, message)) = check_accept(&headers) {
            return text(status, message);
        }
        if headers.contains_key(STREAM_ID_HEADER) {
            return text(
                StatusCode::BAD_REQUEST,
                "Expecting 'Mesos-Stream-Id' to be absent for SUBSCRIBE",
            );
        }
        return subscribe(&shared, call).await;
    }

    let framework_id = match &call.framework_id {
        Some(id) => id.value.clone(),
        // Call::parse validates this; kept as a guard.
        None => {
            return text(
                StatusCode::BAD_REQUEST,
                "Expecting 'framework_id' to be present",
            )
        }
    };
    let mut state = shared.state.lock().await;
    let Some(subscriber) = state.frameworks.get(&framework_id) else {
        let known = state
            .registry
            .frameworks()
            .map(|fs| fs.iter().any(|f| f.id == framework_id))
            .unwrap_or(false);
        return if known {
            text(StatusCode::FORBIDDEN, "Framework is not subscribed")
        } else {
            text(StatusCode::BAD_REQUEST, "Framework cannot be found")
        };
    };
    match headers.get(STREAM_ID_HEADER).map(|v| v.to_str()) {
        None => {
            return text(
                StatusCode::BAD_REQUEST,
                "All non-subscribe calls should include the 'Mesos-Stream-Id' header",
            )
        }
        Some(Ok(given)) if given == subscriber.stream_id => {}
        Some(given) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "The stream ID '{}' included in this request didn't match the stream ID \
                     currently associated with framework ID {framework_id} \
                     (header 'Mesos-Stream-Id')",
                    given.unwrap_or("<not text>")
                ),
            )
        }
    }

    match call.call_type {
        CallType::Teardown => {
            if let Err(e) = state.registry.remove_framework(&framework_id) {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("Failed to remove the framework from the registry: {e}"),
                );
            }
            state.allocator.remove_framework(&framework_id);
            // Dropping the subscriber's sender ends its stream.
            state.frameworks.remove(&framework_id);
            StatusCode::ACCEPTED.into_response()
        }
        CallType::Suppress => {
            let roles = call.suppress.map(|r| r.roles).filter(|r| !r.is_empty());
            state.allocator.suppress(&framework_id, roles.as_deref());
            StatusCode::ACCEPTED.into_response()
        }
        CallType::Revive => {
            let roles = call.revive.map(|r| r.roles).filter(|r| !r.is_empty());
            state.allocator.revive(&framework_id, roles.as_deref());
            StatusCode::ACCEPTED.into_response()
        }
        other => text(
            StatusCode::NOT_IMPLEMENTED,
            format!("call type {other} is not supported by this master yet"),
        ),
    }
}

/// A `200` chunked event stream of what arrives on `rx`; it ends when every
/// sender is gone.
fn event_stream(stream_id: Option<&str>, rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = stream_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        h.insert(STREAM_ID_HEADER, id);
    }
    response
}

fn record(event: &Event, format: ResourceFormat) -> Bytes {
    // SUBSCRIBED, ERROR and HEARTBEAT carry no resources, so this cannot fail.
    Bytes::from(event.to_record(format).unwrap_or_default())
}

async fn subscribe(shared: &AppState, call: Call) -> Response {
    let Some(subscribe) = call.subscribe else {
        return text(
            StatusCode::BAD_REQUEST,
            "Expecting 'subscribe' to be present",
        );
    };
    let mut info = subscribe.framework_info;
    let format = info.resource_format();

    // FrameworkInfo problems are a 200 with a single ERROR event (Mesos).
    if let Err(message) = info.validate_roles() {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(record(&Event::error(message), format));
        return event_stream(None, rx);
    }

    let mut state = shared.state.lock().await;
    let framework_id = match info.id.as_ref().or(call.framework_id.as_ref()) {
        Some(id) => id.value.clone(),
        None => {
            let id = format!("{}-{:04}", state.master_info.id, state.next_framework);
            state.next_framework += 1;
            id
        }
    };
    info.id = Some(FrameworkID::new(framework_id.clone()));
    // `roles` with MULTI_ROLE, else `role` (default `*`).
    let roles = info.effective_roles();

    // Allocator first (it validates roles again), then the registry, so that
    // a refusal changes nothing.
    let failover = state.frameworks.contains_key(&framework_id);
    let added = if failover {
        state
            .allocator
            .update_framework_roles(&framework_id, &roles)
    } else {
        // Re-subscribing after a stream was lost or after a master restart:
        // the allocator may or may not know it.
        state.allocator.remove_framework(&framework_id);
        state.allocator.add_framework(&framework_id, &roles)
    };
    if let Err(e) = added {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(record(&Event::error(e.to_string()), format));
        return event_stream(None, rx);
    }
    let registered_at = state
        .registry
        .frameworks()
        .ok()
        .and_then(|fs| fs.into_iter().find(|f| f.id == framework_id))
        .map(|f| f.registered_at)
        .unwrap_or_else(now_secs);
    let info_json = match serde_json::to_value(&info) {
        Ok(v) => v,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Failed to encode FrameworkInfo: {e}"),
            )
        }
    };
    let record_ = FrameworkRecord {
        id: framework_id.clone(),
        info: info_json,
        failover_timeout_secs: info.failover_timeout,
        registered_at,
        unregistered_at: None,
    };
    if let Err(e) = state.registry.put_framework(&record_) {
        if !failover {
            state.allocator.remove_framework(&framework_id);
        }
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Failed to persist the framework in the registry: {e}"),
        );
    }
    if !subscribe.suppressed_roles.is_empty() {
        state
            .allocator
            .suppress(&framework_id, Some(&subscribe.suppressed_roles));
    }

    if let Some(old) = state.frameworks.remove(&framework_id) {
        let _ = old
            .events
            .try_send(record(&Event::error("Framework failed over"), old.format));
        // `old` is dropped here: its stream ends after the ERROR.
    }

    let stream_id = uuid();
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let interval = shared.heartbeat_interval;
    let subscribed = Event::subscribed(Subscribed {
        framework_id: FrameworkID::new(framework_id.clone()),
        heartbeat_interval_seconds: Some(interval.as_secs_f64()),
        master_info: Some(state.master_info.clone()),
    });
    let _ = tx.try_send(record(&subscribed, format));
    spawn_heartbeats(tx.downgrade(), interval, format);
    state.frameworks.insert(
        framework_id,
        Subscriber {
            stream_id: stream_id.clone(),
            format,
            events: tx,
        },
    );
    event_stream(Some(&stream_id), rx)
}

/// Sends HEARTBEAT every `interval` until the stream's sender is dropped
/// (teardown, failover, shutdown) or the client has gone.
fn spawn_heartbeats(events: mpsc::WeakSender<Bytes>, interval: Duration, format: ResourceFormat) {
    let heartbeat = record(&Event::heartbeat(), format);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticks.tick().await; // the first tick is immediate
        loop {
            ticks.tick().await;
            let Some(tx) = events.upgrade() else { return };
            // A subscriber too slow to drain its queue just misses a beat;
            // never hold the sender across an await (teardown must end the
            // stream at once).
            if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(heartbeat.clone()) {
                return;
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Operator API and legacy endpoints

/// Operator call types this master knows but does not implement yet.
const OPERATOR_CALLS: &[&str] = &[
    "GET_FLAGS",
    "GET_METRICS",
    "GET_LOGGING_LEVEL",
    "SET_LOGGING_LEVEL",
    "LIST_FILES",
    "READ_FILE",
    "GET_STATE",
    "GET_AGENTS",
    "GET_FRAMEWORKS",
    "GET_EXECUTORS",
    "GET_OPERATIONS",
    "GET_TASKS",
    "GET_ROLES",
    "GET_WEIGHTS",
    "UPDATE_WEIGHTS",
    "GET_MASTER",
    "SUBSCRIBE",
    "RESERVE_RESOURCES",
    "UNRESERVE_RESOURCES",
    "CREATE_VOLUMES",
    "DESTROY_VOLUMES",
    "GROW_VOLUME",
    "SHRINK_VOLUME",
    "GET_MAINTENANCE_STATUS",
    "GET_MAINTENANCE_SCHEDULE",
    "UPDATE_MAINTENANCE_SCHEDULE",
    "START_MAINTENANCE",
    "STOP_MAINTENANCE",
    "DRAIN_AGENT",
    "DEACTIVATE_AGENT",
    "REACTIVATE_AGENT",
    "GET_QUOTA",
    "UPDATE_QUOTA",
    "SET_QUOTA",
    "REMOVE_QUOTA",
    "TEARDOWN",
    "MARK_AGENT_GONE",
];

fn version_info() -> Json {
    json!({
        "version": MESOS_VERSION,
        "build_user": "berth",
        "berth_version": env!("CARGO_PKG_VERSION"),
    })
}

async fn operator(headers: HeaderMap, body: Bytes) -> Response {
    if let Err((status, message)) = check_content_type(&headers) {
        return text(status, message);
    }
    if let Err((status, message)) = check_accept(&headers) {
        return text(status, message);
    }
    let value: Json = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "Failed to parse body into master::Call: malformed JSON at line {} \
                     column {}: {e}",
                    e.line(),
                    e.column()
                ),
            )
        }
    };
    let Some(object) = value.as_object() else {
        return text(
            StatusCode::BAD_REQUEST,
            "Failed to parse body into master::Call: expecting a JSON object",
        );
    };
    let call_type = match object.get("type") {
        None | Some(Json::Null) => {
            return text(StatusCode::BAD_REQUEST, "Expecting 'type' to be present")
        }
        Some(Json::String(t)) => t.as_str(),
        Some(_) => return text(StatusCode::BAD_REQUEST, "field 'type': expecting a string"),
    };
    match call_type {
        "GET_HEALTH" => json_response(&json!({
            "type": "GET_HEALTH",
            "get_health": {"healthy": true},
        })),
        "GET_VERSION" => json_response(&json!({
            "type": "GET_VERSION",
            "get_version": {"version_info": version_info()},
        })),
        t if OPERATOR_CALLS.contains(&t) => text(
            StatusCode::NOT_IMPLEMENTED,
            format!("call type {t} is not supported by this master yet"),
        ),
        t => text(
            StatusCode::BAD_REQUEST,
            format!("field 'type': unknown master::Call.Type '{t}'"),
        ),
    }
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn version() -> Response {
    json_response(&version_info())
}
