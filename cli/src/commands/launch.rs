//! `berth launch`: create and start a container, in the foreground or not.

use std::path::PathBuf;

use launcher::spec::{
    IoKind, IoLimit, LaunchRequest, NetMode, RootlessIds, SeccompChoice, VolumeMount,
};
use launcher::{CreateOptions, Launcher};

use crate::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Name of the container (unique)
    #[arg(long)]
    name: Option<String>,
    /// Root filesystem directory (default: the host's, read-only, with a sandbox)
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// CPU limit in CPUs (CFS quota), e.g. 0.5
    #[arg(long)]
    cpus: Option<f64>,
    /// Memory limit in MiB (swap off)
    #[arg(long, value_name = "MIB")]
    mem: Option<u64>,
    /// Maximum number of processes
    #[arg(long)]
    pids: Option<i64>,
    /// Limit reads from a block device: DEVICE:RATE (bytes/s, k/m/g units)
    #[arg(long = "device-read-bps", value_name = "DEV:RATE")]
    device_read_bps: Vec<String>,
    /// Limit writes to a block device: DEVICE:RATE (bytes/s, k/m/g units)
    #[arg(long = "device-write-bps", value_name = "DEV:RATE")]
    device_write_bps: Vec<String>,
    /// Limit read operations on a block device: DEVICE:IOPS
    #[arg(long = "device-read-iops", value_name = "DEV:IOPS")]
    device_read_iops: Vec<String>,
    /// Limit write operations on a block device: DEVICE:IOPS
    #[arg(long = "device-write-iops", value_name = "DEV:IOPS")]
    device_write_iops: Vec<String>,
    /// Network: none (own namespace with lo) or host
    #[arg(long, value_name = "MODE", default_value = "none", value_parser = ["none", "host"])]
    net: String,
    /// Mount a named volume (NAME:/ctr/path[:ro]) or a host path (/host/path:/ctr/path[:ro])
    #[arg(long = "volume", short = 'v', value_name = "SRC:DST[:ro]")]
    volumes: Vec<String>,
    /// Seccomp profile: default, unconfined, or an OCI linux.seccomp JSON file
    #[arg(long, value_name = "PROFILE", default_value = "default")]
    seccomp: String,
    /// Add a capability
    #[arg(long = "cap-add", value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a capability (ALL drops every one)
    #[arg(long = "cap-drop", value_name = "CAP")]
    cap_drop: Vec<String>,
    /// User to run as: UID[:GID]
    #[arg(long, short = 'u', value_name = "UID[:GID]")]
    user: Option<String>,
    /// Environment variable KEY=VALUE
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(long, short = 'w', value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Hostname inside the container
    #[arg(long)]
    hostname: Option<String>,
    /// cgroup path (relative paths go under the caller's own cgroup)
    #[arg(long = "cgroup-parent", value_name = "PATH", default_value = "berth")]
    cgroup_parent: String,
    /// Print the id and return at once
    #[arg(short = 'd', long = "detach")]
    detach: bool,
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

fn usage(field: &str, reason: impl Into<String>) -> Failure {
    Failure::from(launcher::Error::invalid(field, reason))
}

fn parse_user(s: &str) -> Result<(u32, u32), Failure> {
    let bad = || usage("--user", format!("{s:?} is not UID[:GID] (numbers)"));
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid: u32 = u.parse().map_err(|_| bad())?;
    let gid: u32 = match g {
        Some(g) => g.parse().map_err(|_| bad())?,
        None => uid,
    };
    Ok((uid, gid))
}

/// The request for this user: rootless (user namespace) unless root.
fn rootless_ids() -> Option<RootlessIds> {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return None;
    }
    let gid = nix::unistd::getegid().as_raw();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    let helpers = std::path::Path::new("/usr/bin/newuidmap").exists()
        && std::path::Path::new("/usr/bin/newgidmap").exists();
    let range = |f: &str, id: u32| {
        if helpers {
            isolator::idmap::subordinate_range(std::path::Path::new(f), &name, id)
        } else {
            None
        }
    };
    Some(RootlessIds {
        uid: uid.as_raw(),
        gid,
        sub_uids: range("/etc/subuid", uid.as_raw()),
        sub_gids: range("/etc/subgid", uid.as_raw()),
    })
}

pub fn request(a: &Args, volume_root: &std::path::Path) -> Result<LaunchRequest, Failure> {
    let mut volumes = Vec::new();
    let mut annotations = std::collections::BTreeMap::new();
    for v in &a.volumes {
        let resolved = super::volume::resolve_volume_flag(volume_root, v)?;
        let mount = VolumeMount::parse(&resolved.flag)?;
        if let Some(limit) = resolved.kill_over {
            annotations.insert(
                format!(
                    "{}{}",
                    launcher::spec::VOLUME_LIMIT_ANNOTATION,
                    mount.destination.display()
                ),
                limit.to_string(),
            );
        }
        if let Some(name) = resolved.name {
            annotations.insert(
                format!(
                    "{}{}",
                    launcher::spec::VOLUME_ANNOTATION,
                    mount.destination.display()
                ),
                name,
            );
        }
        volumes.push(mount);
    }
    let seccomp = match a.seccomp.as_str() {
        "default" => SeccompChoice::Default,
        "unconfined" => SeccompChoice::Unconfined,
        f => {
            let p = PathBuf::from(f);
            if !p.is_file() {
                return Err(usage(
                    "--seccomp",
                    format!("{f:?} is not default, unconfined, or an existing JSON file"),
                ));
            }
            SeccompChoice::File(p)
        }
    };
    let mut io = Vec::new();
    for (kind, values) in [
        (IoKind::ReadBps, &a.device_read_bps),
        (IoKind::WriteBps, &a.device_write_bps),
        (IoKind::ReadIops, &a.device_read_iops),
        (IoKind::WriteIops, &a.device_write_iops),
    ] {
        for v in values {
            io.push(IoLimit::parse(kind, v)?);
        }
    }
    Ok(LaunchRequest {
        hidden_paths: Vec::new(),
        args: a.command.clone(),
        rootfs: a
            .rootfs
            .clone()
            .map(|r| std::fs::canonicalize(&r).unwrap_or(r)),
        cpus: a.cpus,
        memory_mib: a.mem,
        pids: a.pids,
        io,
        net: if a.net == "host" {
            NetMode::Host
        } else {
            NetMode::None
        },
        volumes,
        seccomp: Some(seccomp),
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        user: a.user.as_deref().map(parse_user).transpose()?,
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        hostname: a.hostname.clone(),
        rootless: rootless_ids(),
        cgroup_parent: a.cgroup_parent.clone(),
        annotations,
    })
}

pub fn run(l: &Launcher, volume_root: &std::path::Path, a: Args) -> CmdResult {
    let mut req = request(&a, volume_root)?;
    req.hidden_paths = vec![l.root.root.clone(), volume_root.to_path_buf()];
    let opts = CreateOptions {
        name: a.name.clone(),
        auto_remove: a.rm,
        attach: !a.detach,
        ..Default::default()
    };
    let mut created = l.create(&req, &opts)?;
    if let Ok((_, st, _)) = l.load(&created.id) {
        for w in &st.warnings {
            eprintln!("berth: warning: {}: {}", w.what, w.reason);
        }
    }
    if let Err(e) = l.start(&created.id) {
        let _ = l.remove(&created.id, true);
        return Err(e.into());
    }
    if a.detach {
        println!("{}", created.id);
        return Ok(0);
    }
    let exit = launcher::attach::run_foreground(&mut created)?;
    if exit.oom_killed {
        eprintln!("berth: container {} was OOM killed", &created.id[..12]);
    }
    Ok(exit.exit_code.clamp(0, 255) as u8)
}
