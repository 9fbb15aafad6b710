//! `berth delete [--force] ID`: remove a stopped (or created) container;
//! a running one only with --force (which also accepts an unknown id, as
//! runc). Runs the poststop hooks.

use launcher::Launcher;

use super::fail;
use crate::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kill the container first if it is running
    #[arg(long, short = 'f')]
    pub force: bool,
    /// The container id
    pub id: String,
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    let warnings = match l.delete_runtime(&a.id, a.force) {
        // runc 1.1: `delete --force` of a container it does not know
        // succeeds; containerd's shim cleanup deletes after the
        // container is already gone and logs any failure as a leak.
        Err(launcher::Error::NotFound(_)) if a.force => Vec::new(),
        r => r.map_err(fail)?,
    };
    for w in warnings {
        super::log::warn(&w);
    }
    Ok(0)
}
