//! The agent's configuration: its command-line flags, checked and turned
//! into what the agent runs with. Every error names the flag at fault.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use masterlink::attributes::{self, Attribute};
use masterlink::resources::{self, Resources};

use crate::reconfig::{self, ReconfigurationPolicy};
use crate::updates::{DEFAULT_RETRY_MAX, DEFAULT_RETRY_MIN};

/// A flag whose value is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {flag}: {reason}")]
pub struct FlagError {
    pub flag: &'static str,
    pub reason: String,
}

fn bad(flag: &'static str, reason: impl Into<String>) -> FlagError {
    FlagError {
        flag,
        reason: reason.into(),
    }
}

/// The flags as given (strings where they need parsing).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub master: String,
    pub ip: String,
    pub port: u16,
    pub work_dir: PathBuf,
    pub resources: Option<String>,
    pub attributes: Option<String>,
    pub hostname: Option<String>,
    pub status_update_retry_interval: Option<String>,
    pub launcher_root: Option<PathBuf>,
    /// `--volume-root` (the global flag, or BERTH_VOLUME_ROOT).
    pub volume_root: Option<PathBuf>,
    /// `--boot-id-file` (tests only; default the kernel's).
    pub boot_id_file: Option<PathBuf>,
    /// `--reconfiguration-policy` (`equal` when not given).
    pub reconfiguration_policy: Option<String>,
    /// `--credential`: a file with the principal and secret this agent
    /// authenticates to the master with.
    pub credential: Option<PathBuf>,
}

/// The principal and secret the agent authenticates with (HTTP basic on
/// every link call; the master checks them with `--authenticate-agents`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub principal: String,
    pub secret: String,
}

impl std::fmt::Debug for Credential {
    // The secret never goes to logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// Mesos' agent credential file: `{"principal": "...", "secret": "..."}`
    /// or one line `principal secret`.
    pub fn parse(text: &str) -> Result<Credential, String> {
        #[derive(serde::Deserialize)]
        struct File {
            principal: String,
            #[serde(default)]
            secret: String,
        }
        let (principal, secret) = if text.trim_start().starts_with('{') {
            let f: File = serde_json::from_str(text)
                .map_err(|e| format!("expecting {{\"principal\": ..., \"secret\": ...}}: {e}"))?;
            (f.principal, f.secret)
        } else {
            let mut lines = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'));
            let line = lines.next().ok_or("the file is empty")?;
            if lines.next().is_some() {
                return Err("expecting one line 'principal secret'".into());
            }
            match line.split_whitespace().collect::<Vec<_>>()[..] {
                [p, s] => (p.to_string(), s.to_string()),
                _ => return Err("expecting one line 'principal secret'".into()),
            }
        };
        if principal.is_empty() || principal.contains(':') {
            return Err(format!(
                "principal {principal:?}: must be non-empty and without ':'"
            ));
        }
        Ok(Credential { principal, secret })
    }
}

/// What the agent runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `--master` as given, normalised: `host:port[,host:port...]`.
    pub master: String,
    /// Each master's `host:port`, in the order given (at least one): the
    /// agent tries them in turn and follows a non-leader's redirect.
    pub masters: Vec<String>,
    pub ip: IpAddr,
    /// 0 picks a free port (the listener reports the real one).
    pub port: u16,
    pub hostname: String,
    pub work_dir: PathBuf,
    /// The launcher's state root (containers' bundles and state).
    pub launcher_root: PathBuf,
    /// The volume store of the persistent volumes the master creates here
    /// (default `<work_dir>/volumes`: the volumes belong to this agent, and
    /// an agent's persistence ids are unique only on it, so two agents
    /// must never share a store).
    pub volume_root: PathBuf,
    pub resources: Resources,
    pub attributes: Vec<Attribute>,
    pub status_update_retry_min: Duration,
    pub status_update_retry_max: Duration,
    /// The berth binary that runs as each container's supervisor (default:
    /// this executable, which is right for `berth agent`).
    pub supervisor_exe: Option<PathBuf>,
    /// Parent of the containers' cgroups (under the agent's own cgroup).
    pub cgroup_parent: String,
    /// The file the host's boot id is read from: the kernel's, except in
    /// tests that simulate a reboot (`--boot-id-file`) without rebooting.
    pub boot_id_file: PathBuf,
    /// What a restart on the same boot may change about the agent
    /// (resources, attributes) and still keep its id and tasks.
    pub reconfiguration_policy: ReconfigurationPolicy,
    /// What the agent authenticates to the master with, if anything.
    pub credential: Option<Credential>,
}

impl Flags {
    /// Checks every flag. Creates the work directory (resource detection
    /// measures its filesystem).
    pub fn into_config(self) -> Result<AgentConfig, FlagError> {
        let masters = parse_masters(&self.master)?;
        let master = masters.join(",");
        let ip: IpAddr = self
            .ip
            .parse()
            .map_err(|_| bad("--ip", format!("{:?} is not an IP address", self.ip)))?;
        if self.work_dir.as_os_str().is_empty() {
            return Err(bad("--work-dir", "a directory is required"));
        }
        std::fs::create_dir_all(&self.work_dir)
            .map_err(|e| bad("--work-dir", format!("{}: {e}", self.work_dir.display())))?;
        let work_dir = std::fs::canonicalize(&self.work_dir)
            .map_err(|e| bad("--work-dir", format!("{}: {e}", self.work_dir.display())))?;
        let resources = agent_resources(self.resources.as_deref(), &work_dir)?;
        let attributes = match self.attributes.as_deref() {
            Some(a) => attributes::parse(a).map_err(|e| bad("--attributes", e.to_string()))?,
            None => Vec::new(),
        };
        let hostname = match self.hostname {
            Some(h) if h.is_empty() || h.contains(char::is_whitespace) => {
                return Err(bad("--hostname", format!("{h:?} is not a host name")))
            }
            Some(h) => h,
            None => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| ip.to_string()),
        };
        let retry_min = match self.status_update_retry_interval.as_deref() {
            Some(s) => parse_duration(s).filter(|d| !d.is_zero()).ok_or_else(|| {
                bad(
                    "--status-update-retry-interval",
                    format!("{s:?} is not a positive duration (e.g. 10s, 500ms, 1mins)"),
                )
            })?,
            None => DEFAULT_RETRY_MIN,
        };
        let reconfiguration_policy = match self.reconfiguration_policy.as_deref() {
            Some(p) => p.parse().map_err(|e: String| bad(reconfig::FLAG, e))?,
            None => ReconfigurationPolicy::default(),
        };
        let credential = match &self.credential {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad("--credential", format!("{}: {e}", path.display())))?;
                Some(
                    Credential::parse(&text)
                        .map_err(|e| bad("--credential", format!("{}: {e}", path.display())))?,
                )
            }
            None => None,
        };
        let launcher_root = self
            .launcher_root
            .unwrap_or_else(|| work_dir.join("containers"));
        let volume_root = match self.volume_root {
            Some(v) if v.as_os_str().is_empty() => {
                return Err(bad("--volume-root", "a directory is required"))
            }
            Some(v) => v,
            None => work_dir.join("volumes"),
        };
        Ok(AgentConfig {
            master,
            masters,
            ip,
            port: self.port,
            hostname,
            work_dir,
            launcher_root,
            volume_root,
            resources,
            attributes,
            status_update_retry_min: retry_min,
            status_update_retry_max: DEFAULT_RETRY_MAX.max(retry_min),
            supervisor_exe: None,
            cgroup_parent: "berth".to_string(),
            boot_id_file: self
                .boot_id_file
                .unwrap_or_else(|| PathBuf::from(crate::paths::BOOT_ID_FILE)),
            reconfiguration_policy,
            credential,
        })
    }
}

/// `--master`: `host:port[,host:port...]` (several masters of which one
/// leads), each optionally with `http://`.
pub fn parse_masters(s: &str) -> Result<Vec<String>, FlagError> {
    let masters = s
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(parse_master)
        .collect::<Result<Vec<_>, _>>()?;
    if masters.is_empty() {
        return Err(bad(
            "--master",
            format!("{s:?} is not HOST:PORT[,HOST:PORT...]"),
        ));
    }
    Ok(masters)
}

/// One master: `host:port`, optionally with `http://`.
pub fn parse_master(s: &str) -> Result<String, FlagError> {
    let rest = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
    if rest.starts_with("zk://") || s.starts_with("zk://") {
        return Err(bad(
            "--master",
            "ZooKeeper master detection is not supported; give HOST:PORT",
        ));
    }
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(bad("--master", format!("{s:?} is not HOST:PORT")));
    };
    if host.is_empty() || host.contains('/') || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad("--master", format!("{s:?} is not HOST:PORT")));
    }
    Ok(rest.to_string())
}

/// `--resources` (Mesos syntax, JSON or `file://`) merged with what is
/// detected on this host for the names it does not give.
pub fn agent_resources(
    flag: Option<&str>,
    work_dir: &std::path::Path,
) -> Result<Resources, FlagError> {
    let explicit = match flag {
        Some(f) => resources::parse_flag(f).map_err(|e| bad("--resources", e.to_string()))?,
        None => Resources::new(),
    };
    Ok(resources::merge_detected(
        &explicit,
        &resources::detect(work_dir),
    ))
}

/// Durations as Mesos writes them (`10secs`, `500ms`, `1mins`, `2hrs`) and
/// the short forms (`10s`, `1m`, `2h`); a bare number is seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ns" | "nsecs" => n / 1e9,
        "us" | "usecs" => n / 1e6,
        "ms" | "msecs" => n / 1e3,
        "" | "s" | "sec" | "secs" => n,
        "m" | "min" | "mins" => n * 60.0,
        "h" | "hr" | "hrs" => n * 3600.0,
        "d" | "day" | "days" => n * 86400.0,
        _ => return None,
    };
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(dir: &std::path::Path) -> Flags {
        Flags {
            master: "127.0.0.1:5050".into(),
            ip: "127.0.0.1".into(),
            port: 5051,
            work_dir: dir.to_path_buf(),
            ..Default::default()
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("10secs"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1mins"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("10parsecs"), None);
    }

    #[test]
    fn master_addresses() {
        assert_eq!(parse_master("m1:5050").unwrap(), "m1:5050");
        assert_eq!(
            parse_masters("m1:5050, http://m2:5050/,m3:5051").unwrap(),
            ["m1:5050", "m2:5050", "m3:5051"]
        );
        assert_eq!(parse_masters(",").unwrap_err().flag, "--master");
        assert_eq!(parse_masters("m1:5050,m2").unwrap_err().flag, "--master");
        assert_eq!(
            parse_master("http://127.0.0.1:5050/").unwrap(),
            "127.0.0.1:5050"
        );
        for b in ["m1", "m1:", ":5050", "m1:x", "zk://h:2181/mesos"] {
            assert_eq!(parse_master(b).unwrap_err().flag, "--master", "{b}");
        }
    }

    #[test]
    fn given_resources_win_and_the_rest_is_detected() {
        let d = tempfile::tempdir().unwrap();
        let mut f = flags(d.path());
        f.resources = Some("cpus:3;mem(ops):512;gpus:1".into());
        let c = f.into_config().unwrap();
        assert_eq!(c.resources.scalar("cpus").value(), 3.0);
        assert_eq!(c.resources.scalar("mem").value(), 512.0);
        assert_eq!(c.resources.scalar("gpus").value(), 1.0);
        // Not given: detected.
        assert!(c.resources.scalar("disk").value() > 0.0);
        assert!(!c.resources.ranges("ports").is_empty());
        assert_eq!(c.status_update_retry_min, DEFAULT_RETRY_MIN);
        assert_eq!(c.launcher_root, c.work_dir.join("containers"));
        assert_eq!(c.volume_root, c.work_dir.join("volumes"));
    }

    #[test]
    fn bad_flags_are_named() {
        let d = tempfile::tempdir().unwrap();
        type Change = Box<dyn Fn(&mut Flags)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "--resources",
                Box::new(|f| f.resources = Some("cpus:x".into())),
            ),
            (
                "--resources",
                Box::new(|f| f.resources = Some("cpus:-1".into())),
            ),
            (
                "--attributes",
                Box::new(|f| f.attributes = Some("rack".into())),
            ),
            ("--ip", Box::new(|f| f.ip = "localhost:1".into())),
            ("--master", Box::new(|f| f.master = "nowhere".into())),
            (
                "--status-update-retry-interval",
                Box::new(|f| f.status_update_retry_interval = Some("0s".into())),
            ),
            ("--hostname", Box::new(|f| f.hostname = Some("a b".into()))),
            (
                "--reconfiguration-policy",
                Box::new(|f| f.reconfiguration_policy = Some("lenient".into())),
            ),
        ];
        for (flag, change) in cases {
            let mut f = flags(d.path());
            change(&mut f);
            let e = f.into_config().unwrap_err();
            assert_eq!(e.flag, flag, "{e}");
            assert!(e.to_string().starts_with(&format!("invalid {flag}: ")));
        }
    }

    #[test]
    fn attributes_and_retry_interval() {
        let d = tempfile::tempdir().unwrap();
        let mut f = flags(d.path());
        f.attributes = Some("rack:r1;level:10".into());
        f.status_update_retry_interval = Some("200ms".into());
        let c = f.into_config().unwrap();
        assert_eq!(c.attributes.len(), 2);
        assert_eq!(c.status_update_retry_min, Duration::from_millis(200));
        assert_eq!(c.status_update_retry_max, DEFAULT_RETRY_MAX);
        assert_eq!(c.reconfiguration_policy, ReconfigurationPolicy::Equal);
    }

    #[test]
    fn credential_files() {
        let c = Credential::parse(r#"{"principal": "node", "secret": "s"}"#).unwrap();
        assert_eq!((c.principal.as_str(), c.secret.as_str()), ("node", "s"));
        let c = Credential::parse("# agent\nnode hunter2\n").unwrap();
        assert_eq!(
            (c.principal.as_str(), c.secret.as_str()),
            ("node", "hunter2")
        );
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
        for bad in ["", "node", "a s\nb t\n", "{\"secret\": \"s\"}", "a:b s"] {
            assert!(Credential::parse(bad).is_err(), "{bad:?}");
        }
        let d = tempfile::tempdir().unwrap();
        let mut f = flags(d.path());
        f.credential = Some(d.path().join("missing"));
        assert_eq!(f.into_config().unwrap_err().flag, "--credential");
    }
}
