//! runc's `ps ID [PS_ARGS...]`: the host's ps(1) output (default `-ef`)
//! restricted to the container's processes, or their pids as JSON.

use std::process::Command;

use launcher::Launcher;

use super::fail;
use crate::CmdResult;

pub fn run(l: &Launcher, id: &str, format: &str, ps_args: &[String]) -> CmdResult {
    let (_, st, _) = l.load_exact(id).map_err(fail)?;
    let pids: Vec<i32> = match &st.cgroup {
        Some(cg) => cg.pids().map_err(|e| fail(launcher::Error::from(e)))?,
        None => st
            .init
            .filter(|p| p.is_alive())
            .map(|p| vec![p.pid])
            .unwrap_or_default(),
    };
    if format == "json" {
        println!(
            "{}",
            serde_json::to_string(&pids).unwrap_or_else(|_| "[]".into())
        );
        return Ok(0);
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| fail(anyhow::anyhow!("running ps: {e}")))?;
    if !out.status.success() {
        return Err(fail(anyhow::anyhow!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Ok(0);
    };
    let pid_col = header
        .split_whitespace()
        .position(|c| c == "PID")
        .ok_or_else(|| {
            fail(anyhow::anyhow!(
                "no PID column in the output of ps {}",
                args.join(" ")
            ))
        })?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(0)
}
