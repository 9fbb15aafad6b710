//! `berth master`: the compact master (scheduler, operator and agent APIs).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use master::allocator::AllocatorConfig;
use master::http::MasterConfig;

use crate::{CmdResult, Failure};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// Port to listen on
    #[arg(long, default_value_t = 5050)]
    pub port: u16,
    /// Directory for the registry (registry.db, unless --registry is etcd)
    #[arg(long, value_name = "DIR")]
    pub work_dir: PathBuf,
    /// Where the registry is: etcd://HOST:PORT[,HOST:PORT...][/PREFIX] for
    /// several masters that elect a leader through etcd (default: SQLite in
    /// the work dir, a single master)
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,
    /// With an etcd registry: the election lease's TTL (whole seconds, at
    /// least 2s): how long a dead leader keeps its leadership
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub election_ttl: Duration,
    /// After a failover (or restart), how long admitted agents have to
    /// re-register before they are marked unreachable
    #[arg(long, default_value = "10mins", value_parser = parse_duration)]
    pub agent_reregister_timeout: Duration,
    /// Host name reported to frameworks (default: the machine's)
    #[arg(long)]
    pub hostname: Option<String>,
    /// Time between batch allocations, e.g. 1s, 500ms
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub allocation_interval: Duration,
    /// Role weights: role=N,role=N
    #[arg(long, value_name = "ROLE=N,...")]
    pub weights: Option<String>,
    /// The only roles frameworks may use (Mesos' deprecated whitelist)
    #[arg(long, value_name = "ROLE,...")]
    pub roles: Option<String>,
    /// Time between PINGs to an agent
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub agent_ping_timeout: Duration,
    /// Missed PINGs after which an agent is unreachable
    #[arg(long, default_value_t = 5)]
    pub max_agent_ping_timeouts: u32,
    /// Time between HEARTBEAT events on scheduler streams
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// Principals and secrets (Mesos' credentials file: JSON or "principal
    /// secret" lines); turns on HTTP basic authentication for the scheduler
    /// and operator APIs
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Mesos ACLs (JSON) for reserve/unreserve/create/destroy and
    /// register_agents
    #[arg(long, value_name = "FILE")]
    pub acls: Option<PathBuf>,
    /// Agents must authenticate with a principal from --credentials
    /// (`berth agent --credential`)
    #[arg(long, alias = "authenticate_agents")]
    pub authenticate_agents: bool,
    /// Smallest offer: alternatives separated by |, e.g. "cpus:0.01|mem:32"
    #[arg(long, value_name = "RESOURCES")]
    pub min_allocatable_resources: Option<String>,
}

/// Durations as Mesos writes them and as people do: `1s`, `500ms`, `2mins`,
/// `1.5secs`, `100us`, `3h`. A bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (use e.g. 1s, 500ms, 2mins)"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" | "seconds" => 1.0,
        "ms" | "msecs" => 1e-3,
        "us" | "usecs" => 1e-6,
        "ns" | "nsecs" => 1e-9,
        "m" | "min" | "mins" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hours" => 3600.0,
        "d" | "days" => 86400.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{s}' (use ns, us, ms, s, mins, hrs or days)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 10.0 * 365.0 * 86400.0 {
        return Err(format!("'{s}' is too long"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `role=N,role=N`.
fn parse_weights(s: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (role, weight) = part
            .split_once('=')
            .ok_or_else(|| format!("'{part}' is not ROLE=WEIGHT"))?;
        let w: f64 = weight
            .trim()
            .parse()
            .map_err(|_| format!("weight '{weight}' of role '{role}' is not a number"))?;
        masterlink::roles::validate_role(role.trim()).map_err(|e| format!("role '{role}': {e}"))?;
        if !(w.is_finite() && w > 0.0) {
            return Err(format!("weight of role '{role}' must be greater than 0"));
        }
        out.insert(role.trim().to_string(), w);
    }
    Ok(out)
}

fn usage(flag: &str, message: impl std::fmt::Display) -> Failure {
    Failure {
        code: 2,
        message: format!("invalid {flag}: {message}"),
    }
}

/// The master's configuration from the flags (bad flags → exit 2).
pub fn config(a: &Args) -> Result<MasterConfig, Failure> {
    let mut allocator = AllocatorConfig::default();
    if let Some(w) = &a.weights {
        allocator.weights = parse_weights(w).map_err(|e| usage("--weights", e))?;
    }
    if let Some(m) = &a.min_allocatable_resources {
        allocator.min_allocatable = AllocatorConfig::parse_min_allocatable(m)
            .map_err(|e| usage("--min-allocatable-resources", e))?;
    }
    let mut flags = vec![];
    let mut whitelist = None;
    if let Some(roles) = &a.roles {
        let set = whitelist.get_or_insert_with(std::collections::BTreeSet::new);
        for role in roles.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            masterlink::roles::validate_role(role)
                .map_err(|e| usage("--roles", format!("role '{role}': {e}")))?;
            set.insert(role.to_string());
        }
        flags.push(("roles".to_string(), roles.clone()));
    }
    if a.max_agent_ping_timeouts == 0 {
        return Err(usage("--max-agent-ping-timeouts", "must be at least 1"));
    }
    let hostname = a.hostname.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    });
    let mut c = MasterConfig::new(&a.work_dir);
    c.bind = SocketAddr::new(a.ip, a.port);
    c.hostname = hostname;
    c.allocation_interval = a.allocation_interval;
    c.agent_ping_interval = a.agent_ping_timeout;
    c.max_agent_ping_timeouts = a.max_agent_ping_timeouts;
    c.heartbeat_interval = a.heartbeat_interval;
    if let Some(registry) = &a.registry {
        // Checked here so that a typo is a usage error, not a start failure.
        master::registry::RegistryLocation::parse(Some(registry), &a.work_dir)
            .map_err(|e| usage("--registry", e))?;
        c.registry = Some(registry.clone());
        flags.push(("registry".to_string(), registry.clone()));
    }
    if a.election_ttl.subsec_nanos() != 0 || a.election_ttl < Duration::from_secs(2) {
        return Err(usage(
            "--election-ttl",
            "must be a whole number of seconds, at least 2s (etcd's minimum)",
        ));
    }
    c.election_ttl = a.election_ttl;
    c.agent_reregister_timeout = a.agent_reregister_timeout;
    c.allocator = allocator;
    c.roles = whitelist;
    if let Some(path) = &a.credentials {
        c.auth.credentials =
            Some(master::auth::Credentials::load(path).map_err(|e| usage("--credentials", e))?);
    }
    if let Some(path) = &a.acls {
        c.auth.acls = master::auth::Acls::load(path).map_err(|e| usage("--acls", e))?;
    }
    if a.authenticate_agents && c.auth.credentials.is_none() {
        return Err(usage(
            "--authenticate-agents",
            "needs --credentials (the principals agents authenticate as)",
        ));
    }
    c.auth.authenticate_agents = a.authenticate_agents;
    c.flags = flags;
    Ok(c)
}

pub fn run(a: Args) -> CmdResult {
    let config = config(&a)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.bind))?;
        let addr = listener
            .local_addr()
            .map_err(|e| anyhow::anyhow!("read the bound address: {e}"))?;
        eprintln!(
            "berth master: listening on {addr} (work dir {}, registry {})",
            config.work_dir.display(),
            config.registry.as_deref().unwrap_or("registry.db")
        );
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("berth master: shutting down");
        };
        match master::http::serve(config, listener, stop).await {
            Ok(()) => Ok::<_, Failure>(0),
            // Mesos' master exits when it loses leadership; a supervisor
            // restarts it as a fresh candidate.
            Err(e @ master::http::MasterError::LostLeadership(_)) => Err(Failure {
                code: 1,
                message: format!("{e}; exiting"),
            }),
            Err(e) => Err(anyhow::anyhow!("{e}").into()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2mins").unwrap(), Duration::from_secs(120));
        assert_eq!(
            parse_duration("1.5secs").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
    }

    #[test]
    fn weights() {
        let w = parse_weights("dev=2,ops=0.5").unwrap();
        assert_eq!(w["dev"], 2.0);
        assert_eq!(w["ops"], 0.5);
        assert!(parse_weights("dev").unwrap_err().contains("ROLE=WEIGHT"));
        assert!(parse_weights("dev=0")
            .unwrap_err()
            .contains("greater than 0"));
        assert!(parse_weights("/x=1").unwrap_err().contains("role"));
    }
}
