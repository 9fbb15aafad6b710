//! `berth wait`: block until a container stops; print its exit code.

use launcher::Launcher;

use crate::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container id, id prefix or name
    container: String,
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    let exit = l.wait(&a.container)?;
    println!("{}", exit.exit_code);
    if exit.oom_killed {
        eprintln!("berth: OOM killed");
    }
    if let Some(n) = exit.note {
        eprintln!("berth: {n}");
    }
    Ok(0)
}
