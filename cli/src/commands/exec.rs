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

fn parse_user(u: &str) -> Result<(u32, u32), Failure> {
    let (uid, gid) = u
        .split_once(':')
        .map(|(u, g)| (u, Some(g)))
        .unwrap_or((u, None));
    let bad = || launcher::Error::invalid("--user", format!("{u:?} is not UID[:GID] (numbers)"));
    let uid: u32 = uid.parse().map_err(|_| bad())?;
    let gid: u32 = gid
        .map(|g| g.parse())
        .transpose()
        .map_err(|_| bad())?
        .unwrap_or(uid);
    Ok((uid, gid))
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    let runc_form = a.process.is_some()
        || a.detach
        || a.tty
        || a.console_socket.is_some()
        || a.pid_file.is_some();
    let mut req = ExecRequest {
        args: a.command,
        env: a.env,
        cwd: a.workdir,
        user: a.user.as_deref().map(parse_user).transpose()?,
        additional_gids: a.additional_gids,
        detach: a.detach,
        tty: false,
        console_socket: None,
    };
    let mut tty = a.tty;
    if let Some(path) = &a.process {
        let text = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("reading --process {}: {e}", path.display()))?;
        let p: oci_spec::runtime::Process = serde_json::from_slice(&text)
            .map_err(|e| anyhow::anyhow!("--process {}: {e}", path.display()))?;
        req.args = p.args().clone().unwrap_or_default();
        req.env.extend(p.env().clone().unwrap_or_default());
        req.cwd = Some(p.cwd().clone());
        req.user = Some((p.user().uid(), p.user().gid()));
        req.additional_gids
            .extend(p.user().additional_gids().clone().unwrap_or_default());
        tty |= p.terminal().unwrap_or(false);
    }
    // With -d the master goes to --console-socket; in the foreground
    // berth relays the terminal to its own stdin/stdout (runc's rules,
    // checked by the launcher).
    req.tty = tty;
    req.console_socket = a.console_socket;
    let outcome = l.exec_with(&a.container, &req);
    let outcome = if runc_form {
        outcome.map_err(super::runtime::fail)?
    } else {
        outcome?
    };
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
