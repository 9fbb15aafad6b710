//! `berth list [--format table|json] [-q]`: every container, as runc lists.

use launcher::runtime::OciState;
use launcher::state::Status;
use launcher::Launcher;

use super::fail;
use super::state::RuncState;
use crate::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// table or json
    #[arg(long, short = 'f', default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Print only the ids
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    let all = l.list();
    if a.quiet {
        for (_, st, _) in &all {
            println!("{}", st.id);
        }
        return Ok(0);
    }
    let docs: Vec<RuncState> = all
        .iter()
        .map(|(_, st, status)| {
            // list() does not look at freezers; load_exact says "paused".
            let status = match status {
                Status::Running => l.load_exact(&st.id).map_or(*status, |(_, _, s)| s),
                s => *s,
            };
            RuncState::new(l, OciState::of(st, status), st)
        })
        .collect();
    if a.format == "json" {
        println!(
            "{}",
            serde_json::to_string(&docs).map_err(|e| fail(anyhow::Error::from(e)))?
        );
        return Ok(0);
    }
    let rows: Vec<[String; 6]> = docs
        .iter()
        .map(|d| {
            [
                d.state.id.clone(),
                d.state.pid.to_string(),
                d.state.status.to_string(),
                d.state.bundle.display().to_string(),
                d.created.clone(),
                d.owner.clone(),
            ]
        })
        .collect();
    let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
    let mut widths = [0usize; 6];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    for r in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 5 {
                    c.clone()
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
    Ok(0)
}
