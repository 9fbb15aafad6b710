//! `berth kill`: send a signal to a container's init. Both forms work:
//! Berth's `kill -s SIGNAL ID` and runc's `kill [--all] ID [SIGNAL]`.
//! Without a signal it is TERM, as in runc (`berth kill ID` must mean
//! what `runc kill ID` means to anyone swapping one for the other).

use launcher::Launcher;

use crate::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Signal name or number (default TERM)
    #[arg(short = 's', long = "signal")]
    signal: Option<String>,
    /// Signal every process of the container, not only init (runc's --all)
    #[arg(short = 'a', long = "all")]
    all: bool,
    /// Container id, id prefix or name
    container: String,
    /// Signal name or number, as runc takes it
    #[arg(value_name = "SIGNAL", conflicts_with = "signal")]
    signal_arg: Option<String>,
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    let runc_form = a.signal_arg.is_some() || a.all;
    let name = a
        .signal_arg
        .or(a.signal)
        .unwrap_or_else(|| "TERM".to_string());
    let sig = super::parse_signal(&name).map_err(|m| {
        let f = Failure::from(launcher::Error::invalid("signal", m));
        if runc_form {
            super::runtime::fail(f)
        } else {
            f
        }
    })?;
    let id = l.root.resolve(&a.container)?;
    let r = l.kill_runtime(&id, sig, a.all);
    if runc_form {
        r.map_err(super::runtime::fail)?;
    } else {
        r?;
    }
    Ok(0)
}
