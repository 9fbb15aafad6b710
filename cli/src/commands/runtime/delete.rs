//! `berth delete [--force] ID`: remove a stopped (or created) container;
//! a running one only with --force. Runs the poststop hooks.

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
    for w in l.delete_runtime(&a.id, a.force).map_err(fail)? {
        super::log::warn(&w);
    }
    Ok(0)
}
