//! `berth exec`: run a command inside a running container.

use std::path::PathBuf;

use launcher::exec::ExecRequest;
use launcher::Launcher;

use crate::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Environment variable KEY=VALUE
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(long, short = 'w', value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// User to run as: UID[:GID]
    #[arg(long, short = 'u', value_name = "UID[:GID]")]
    user: Option<String>,
    /// Container id, id prefix or name
    container: String,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    let user = match &a.user {
        Some(u) => {
            let (uid, gid) = u
                .split_once(':')
                .map(|(u, g)| (u, Some(g)))
                .unwrap_or((u, None));
            let bad =
                || launcher::Error::invalid("--user", format!("{u:?} is not UID[:GID] (numbers)"));
            let uid: u32 = uid.parse().map_err(|_| bad())?;
            let gid: u32 = gid
                .map(|g| g.parse())
                .transpose()
                .map_err(|_| bad())?
                .unwrap_or(uid);
            Some((uid, gid))
        }
        None => None,
    };
    let code = l.exec(
        &a.container,
        &ExecRequest {
            args: a.command,
            env: a.env,
            cwd: a.workdir,
            user,
        },
    )?;
    Ok(code.clamp(0, 255) as u8)
}
