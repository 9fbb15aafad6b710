//! `berth kill`: send a signal to a container's init.

use launcher::Launcher;

use crate::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Signal name or number (default KILL)
    #[arg(short = 's', long = "signal", default_value = "KILL")]
    signal: String,
    /// Container id, id prefix or name
    container: String,
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    let sig = super::parse_signal(&a.signal)
        .map_err(|m| Failure::from(launcher::Error::invalid("--signal", m)))?;
    l.kill(&a.container, sig)?;
    Ok(0)
}
