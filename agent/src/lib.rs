//! The Berth agent (`berth agent`): registers with the master over the
//! masterlink protocol, runs command tasks in containers through the
//! launcher, and delivers their status updates reliably.
//!
//! - [`config`]: flags -> [`config::AgentConfig`];
//! - [`link`]: the HTTP side of the agent<->master protocol;
//! - [`updates`]: the status update manager (ordering, retries, acks,
//!   checkpoints);
//! - [`task`]: TaskInfo -> container (argv, environment, limits) and exit ->
//!   task state;
//! - [`paths`], [`checkpoint`]: the Mesos-like work directory and its
//!   crash-safe files;
//! - [`checkpointed`], [`persistent`]: the dynamic reservations and
//!   persistent volumes the master makes here (CHECKPOINT_RESOURCES), their
//!   checkpoint, the volume store kept in line with them, and the mounts of
//!   a task's volumes;
//! - [`reconfig`]: what a restart may change about the agent
//!   (`--reconfiguration-policy`);
//! - [`Agent`]: the event loop tying them together, and its HTTP endpoints.

/// Logs one line to stderr, prefixed like every line the agent prints.
#[macro_export]
macro_rules! log {
    ($($t:tt)*) => {
        eprintln!("berth agent: {}", format_args!($($t)*))
    };
}

mod agent;
pub mod checkpoint;
pub mod checkpointed;
pub mod config;
mod http;
pub mod link;
pub mod paths;
pub mod persistent;
pub mod reconfig;
pub mod task;
pub mod updates;

pub use agent::{Agent, AgentError, DEFAULT_GRACE, INITIAL_BACKOFF, MAX_BACKOFF, MISSED_PINGS};
pub use config::{AgentConfig, FlagError, Flags};
pub use http::resources_map;
pub use reconfig::{ReconfigurationError, ReconfigurationPolicy};

/// Runs an agent on its own runtime until SIGTERM or SIGINT (what `berth
/// agent` does). The containers keep running after it returns.
pub fn run_until_signal(cfg: AgentConfig) -> Result<(), AgentError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)?;
    let result = rt.block_on(async {
        let agent = Agent::start(cfg).await?;
        agent.run(stop_signal()).await
    });
    // Task threads may be waiting for containers: do not wait for them.
    rt.shutdown_background();
    result
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without handlers the default actions still stop the process.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
