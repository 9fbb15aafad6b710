//! `berth pause ID` / `berth resume ID`: freeze and thaw every process of
//! a container through its cgroup's freezer (runc's verbs; `state` shows a
//! frozen container as "paused").

use launcher::Launcher;

use super::fail;
use crate::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The container id
    pub id: String,
}

pub fn pause(l: &Launcher, a: Args) -> CmdResult {
    l.pause_runtime(&a.id).map_err(fail)?;
    Ok(0)
}

pub fn resume(l: &Launcher, a: Args) -> CmdResult {
    l.resume_runtime(&a.id).map_err(fail)?;
    Ok(0)
}
