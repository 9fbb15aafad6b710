//! `berth agent`: the node daemon. It registers with the master, runs the
//! tasks the master sends in containers (one detached supervisor each), and
//! serves /state, /metrics/snapshot, /health and /version.
//!
//! SIGTERM or SIGINT stops the agent but not its containers: that is an
//! agent restart, and the next `berth agent` with the same --work-dir
//! re-adopts them and reports what happened while it was down.

use std::path::PathBuf;

use crate::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The master: HOST:PORT
    #[arg(long, value_name = "HOST:PORT")]
    master: String,
    /// Address of the agent's HTTP endpoints (and reported to the master)
    #[arg(long, default_value = "127.0.0.1")]
    ip: String,
    /// Port of the agent's HTTP endpoints (0: any free port)
    #[arg(long, default_value_t = 5051)]
    port: u16,
    /// Work directory: sandboxes, checkpoints (as a Mesos agent's)
    #[arg(long = "work-dir", value_name = "DIR")]
    work_dir: PathBuf,
    /// Resources in Mesos syntax (e.g. "cpus:2;mem:1024;ports:[31000-32000]"),
    /// JSON or file://PATH; what is not given is detected
    #[arg(long)]
    resources: Option<String>,
    /// Attributes, e.g. "rack:r1;zone:a"
    #[arg(long)]
    attributes: Option<String>,
    /// Host name reported to the master (default: this host's)
    #[arg(long)]
    hostname: Option<String>,
    /// First retry interval of an unacknowledged status update (doubles up to 10 mins)
    #[arg(long = "status-update-retry-interval", value_name = "DURATION")]
    status_update_retry_interval: Option<String>,
    /// The launcher's state root for the agent's containers (default: WORK_DIR/containers)
    #[arg(long = "launcher-root", value_name = "DIR")]
    launcher_root: Option<PathBuf>,
    /// Tests only: read the host's boot id from FILE instead of the
    /// kernel's, so that a test can simulate a reboot by changing it
    #[arg(long = "boot-id-file", value_name = "FILE", hide = true)]
    boot_id_file: Option<PathBuf>,
    /// What a restart may change and keep the agent id and its tasks:
    /// "equal" (resources, attributes and host name unchanged) or
    /// "additive" (resources and attributes only added); a refused change
    /// exits 2 naming it
    #[arg(
        long = "reconfiguration-policy",
        alias = "reconfiguration_policy",
        value_name = "equal|additive"
    )]
    reconfiguration_policy: Option<String>,
    /// A file with the principal and secret to authenticate to the master
    /// with (Mesos' format: {"principal": ..., "secret": ...} or one line
    /// "principal secret"); needed by a master with --authenticate-agents
    #[arg(long, value_name = "FILE")]
    credential: Option<PathBuf>,
}

/// `volume_root`: the global `--volume-root` / BERTH_VOLUME_ROOT when given
/// (the agent's own default is WORK_DIR/volumes, not the global default, so
/// that each agent owns its store).
pub fn run(a: Args, volume_root: Option<PathBuf>) -> CmdResult {
    let flags = agent::Flags {
        master: a.master,
        ip: a.ip,
        port: a.port,
        work_dir: a.work_dir,
        resources: a.resources,
        attributes: a.attributes,
        hostname: a.hostname,
        status_update_retry_interval: a.status_update_retry_interval,
        launcher_root: a.launcher_root,
        volume_root,
        boot_id_file: a.boot_id_file,
        reconfiguration_policy: a.reconfiguration_policy,
        credential: a.credential,
    };
    let cfg = flags.into_config().map_err(|e| Failure {
        code: 2,
        message: e.to_string(),
    })?;
    agent::run_until_signal(cfg)
        .map(|()| 0)
        .map_err(|e| Failure {
            // A refused reconfiguration is the flags' fault, like a bad flag.
            code: match e {
                agent::AgentError::Reconfiguration(_) => 2,
                _ => 1,
            },
            message: e.to_string(),
        })
}
