//! `berth rm`: remove containers (their cgroups and state).

use launcher::Launcher;

use crate::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kill running containers first
    #[arg(short = 'f', long = "force")]
    force: bool,
    /// Container ids, id prefixes or names
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    if let [one] = a.containers.as_slice() {
        l.remove(one, a.force)?;
        return Ok(0);
    }
    let mut first_err: Option<Failure> = None;
    for c in &a.containers {
        if let Err(e) = l.remove(c, a.force) {
            let f = Failure::from(e);
            eprintln!("berth: {}", f.message);
            first_err.get_or_insert(f);
        }
    }
    match first_err {
        Some(f) => Err(Failure {
            code: f.code,
            message: "some containers were not removed".into(),
        }),
        None => Ok(0),
    }
}
