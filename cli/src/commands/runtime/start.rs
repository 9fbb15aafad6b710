//! `berth start ID`: run the user's program of a created container, then
//! the poststart hooks (a failing one is a warning, per the spec).

use launcher::Launcher;

use super::fail;
use crate::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The container id
    pub id: String,
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    for w in l.start_runtime(&a.id).map_err(fail)? {
        super::log::warn(&w);
    }
    Ok(0)
}
