//! `berth create [flags] ID`: set the container up from its bundle; its
//! init waits for `start`. A terminal (process.terminal) needs
//! --console-socket, which receives the pty master (runc's rule: nobody
//! stays to relay it).

use launcher::Launcher;

use super::{fail, CreateFlags};
use crate::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub flags: CreateFlags,
    /// The container id
    pub id: String,
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    let mut created = l
        .create_from_bundle(&a.flags.request(&a.id))
        .map_err(fail)?;
    // The supervisor exits right after creating init; reaping it here
    // means init has been handed to our caller's subreaper when we return.
    created.wait_supervisor();
    if let Some(p) = &a.flags.pid_file {
        super::write_pid_file(p, created.pid)?;
    }
    Ok(0)
}
