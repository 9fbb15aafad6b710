//! `berth exec`: run a command inside a running container. Berth's form
//! `exec [-e K=V] [-w DIR] [-u UID[:GID]] ID -- CMD...` and runc's
//! `exec [flags] ID CMD...` / `exec --process FILE ID` both work; runc's
//! --detach/--pid-file and --tty/--console-socket are what engines use.

use std::path::PathBuf;

use launcher::exec::{ExecOutcome, ExecRequest};
use launcher::Launcher;

use crate::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Environment variable KEY=VALUE
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(long, short = 'w', visible_alias = "cwd", value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// User to run as: UID[:GID]
    #[arg(long, short = 'u', value_name = "UID[:GID]")]
    user: Option<String>,
    /// More supplementary group ids (runc's)
    #[arg(long = "additional-gids", short = 'g', value_name = "GID")]
    additional_gids: Vec<u32>,
    /// A runtime-spec process.json to run (args, env, cwd, user, terminal)
    #[arg(long, short = 'p', value_name = "FILE")]
    process: Option<PathBuf>,
    /// Return once the process runs (its pid goes to --pid-file)
    #[arg(long, short = 'd')]
    detach: bool,
    /// File to write the process's pid to
    #[arg(long, value_name = "PATH")]
    pid_file: Option<PathBuf>,
    /// Give the process a terminal (its master goes to --console-socket
    /// with -d; in the foreground berth relays it)
    #[arg(long, short = 't')]
    tty: bool,
    /// Unix socket that receives the pty master
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Add a capability to the process's bounding, effective and permitted sets
    #[arg(long = "cap", short = 'c', value_name = "CAP")]
    caps: Vec<String>,
    /// Set no_new_privs for the process
    #[arg(long)]
    no_new_privs: bool,
    /// Pass N more descriptors (3..3+N) to the process
    #[arg(long, default_value_t = 0, value_name = "N")]
    preserve_fds: u32,
    /// Run in an existing sub-cgroup: [CONTROLLER[,CONTROLLER]:]PATH
    #[arg(long = "cgroup", value_name = "[CTRL:]PATH")]
    cgroups: Vec<String>,
    /// Allow exec into a paused container
    #[arg(long)]
    ignore_paused: bool,
    /// SELinux process label (this host has no SELinux: an error)
    #[arg(long, value_name = "LABEL")]
    process_label: Option<String>,
    /// AppArmor profile (this host has no AppArmor: an error)
    #[arg(long, value_name = "PROFILE")]
    apparmor: Option<String>,
    /// Container id, id prefix or name
    container: String,
    /// The command and its arguments
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    command: Vec<String>,
}

/// UID[:GID]; without a GID the process keeps its gid, as with runc.
fn parse_user(u: &str) -> Result<(u32, Option<u32>), launcher::Error> {
    let (uid, gid) = u
        .split_once(':')
        .map(|(u, g)| (u, Some(g)))
        .unwrap_or((u, None));
    let bad = || launcher::Error::invalid("--user", format!("{u:?} is not UID[:GID] (numbers)"));
    let uid: u32 = uid.parse().map_err(|_| bad())?;
    let gid = gid.map(|g| g.parse()).transpose().map_err(|_| bad())?;
    Ok((uid, gid))
}

/// A --process file, checked field by field so that a mistake names the
/// field (serde's own message names only a line and column).
fn load_process(path: &std::path::Path) -> Result<oci_spec::runtime::Process, launcher::Error> {
    let bad =
        |field: &str, why: String| launcher::Error::invalid(format!("--process {field}"), why);
    let text = std::fs::read(path).map_err(|e| {
        launcher::Error::invalid("--process", format!("reading {}: {e}", path.display()))
    })?;
    let v: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| launcher::Error::invalid("--process", format!("{}: {e}", path.display())))?;
    let Some(obj) = v.as_object() else {
        return Err(launcher::Error::invalid(
            "--process",
            "the file must hold a JSON object (a runtime-spec process)",
        ));
    };
    match obj.get("args").and_then(|a| a.as_array()) {
        Some(a) if !a.is_empty() && a.iter().all(|x| x.is_string()) => {}
        _ => return Err(bad("args", "must be a non-empty array of strings".into())),
    }
    match obj.get("cwd").and_then(|c| c.as_str()) {
        Some(c) if c.starts_with('/') => {}
        Some(c) => return Err(bad("cwd", format!("{c:?} is not an absolute path"))),
        None => return Err(bad("cwd", "must be set (an absolute path)".into())),
    }
    if let Some(env) = obj.get("env") {
        let ok = env.as_array().is_some_and(|a| {
            a.iter()
                .all(|e| e.as_str().is_some_and(|s| s.contains('=')))
        });
        if !ok {
            return Err(bad(
                "env",
                "must be an array of \"KEY=VALUE\" strings".into(),
            ));
        }
    }
    if let Some(caps) = obj.get("capabilities") {
        let Some(sets) = caps.as_object() else {
            return Err(bad(
                "capabilities",
                "must be an object of capability sets".into(),
            ));
        };
        for (set, names) in sets {
            if ![
                "bounding",
                "effective",
                "inheritable",
                "permitted",
                "ambient",
            ]
            .contains(&set.as_str())
            {
                return Err(bad(
                    &format!("capabilities.{set}"),
                    "is not a capability set (bounding, effective, inheritable, permitted, ambient)".into(),
                ));
            }
            for n in names.as_array().into_iter().flatten() {
                let name = n.as_str().unwrap_or_default();
                if !name.starts_with("CAP_")
                    || isolator::capabilities::parse_capability(name).is_err()
                {
                    return Err(bad(
                        &format!("capabilities.{set}"),
                        format!("{n} is not a capability name such as CAP_NET_ADMIN"),
                    ));
                }
            }
        }
    }
    for (i, r) in obj
        .get("rlimits")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let typ = r.get("type").and_then(|t| t.as_str()).unwrap_or_default();
        if serde_json::from_value::<oci_spec::runtime::PosixRlimitType>(typ.into()).is_err() {
            return Err(bad(
                &format!("rlimits[{i}].type"),
                format!("{typ:?} is not an RLIMIT_* name this runtime knows"),
            ));
        }
        let (soft, hard) = (
            r.get("soft").and_then(|s| s.as_u64()),
            r.get("hard").and_then(|s| s.as_u64()),
        );
        match (soft, hard) {
            (Some(s), Some(h)) if s <= h => {}
            (Some(s), Some(h)) => {
                return Err(bad(
                    &format!("rlimits[{i}]"),
                    format!("{typ}: soft limit {s} is above the hard limit {h}"),
                ))
            }
            _ => {
                return Err(bad(
                    &format!("rlimits[{i}]"),
                    format!("{typ}: soft and hard must be numbers"),
                ))
            }
        }
    }
    // runc reads a missing user as uid 0, gid 0 (Go's zero value);
    // oci-spec requires the field.
    let mut v = v;
    if let Some(o) = v.as_object_mut() {
        o.entry("user")
            .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
    }
    serde_json::from_value(v)
        .map_err(|e| launcher::Error::invalid("--process", format!("{}: {e}", path.display())))
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    // runc's own flags make this runc's form: failures exit 255 as
    // `runc exec` does ("exec failed: ..."), which engines expect.
    let runc_form = a.process.is_some()
        || a.detach
        || a.tty
        || a.console_socket.is_some()
        || a.pid_file.is_some()
        || !a.caps.is_empty()
        || a.no_new_privs
        || a.preserve_fds > 0
        || !a.cgroups.is_empty()
        || a.ignore_paused
        || a.process_label.is_some()
        || a.apparmor.is_some();
    let runc_fail = |e: launcher::Error| Failure {
        code: 255,
        message: format!("exec failed: {e}"),
    };
    let fail = |e: launcher::Error| if runc_form { runc_fail(e) } else { e.into() };
    let mut req = ExecRequest {
        args: a.command,
        env: a.env,
        cwd: a.workdir,
        user: a
            .user
            .as_deref()
            .map(parse_user)
            .transpose()
            .map_err(fail)?,
        additional_gids: a.additional_gids,
        detach: a.detach,
        tty: false,
        console_socket: None,
        add_caps: a.caps,
        no_new_privs: a.no_new_privs.then_some(true),
        preserve_fds: a.preserve_fds,
        sub_cgroups: a.cgroups,
        ignore_paused: a.ignore_paused,
        apparmor: a.apparmor,
        process_label: a.process_label,
        process: None,
    };
    let mut tty = a.tty;
    if let Some(path) = &a.process {
        let p = load_process(path).map_err(fail)?;
        if p.oom_score_adj().is_some() {
            // runc sets oom_score_adj for the container's init only; an
            // exec'd process keeps the caller's, here too.
            super::runtime::log::debug(
                "--process oomScoreAdj is not applied to an exec'd process (runc's behaviour: it keeps the caller's)",
            );
        }
        tty |= p.terminal().unwrap_or(false);
        req.process = Some(Box::new(p));
    }
    // With -d the master goes to --console-socket; in the foreground
    // berth relays the terminal to its own stdin/stdout (runc's rules,
    // checked by the launcher).
    req.tty = tty;
    req.console_socket = a.console_socket;
    let outcome = l.exec_with(&a.container, &req).map_err(fail)?;
    match outcome {
        ExecOutcome::Exited(code) => Ok(code.clamp(0, 255) as u8),
        ExecOutcome::Detached(pid) => {
            if let Some(p) = &a.pid_file {
                super::runtime::write_pid_file(p, pid)?;
            }
            Ok(0)
        }
    }
}
