//! `berth ps`: a table (or JSON) of containers with live usage; with a
//! container id, runc's `ps ID [PS_ARGS...]` (its processes).

use launcher::state::Status;
use launcher::Launcher;
use serde::Serialize;

use crate::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show stopped containers too
    #[arg(short = 'a', long = "all")]
    all: bool,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
    /// runc's ps: table (ps output) or json (pids); needs a container id
    #[arg(long, short = 'f', value_parser = ["table", "json"])]
    format: Option<String>,
    /// runc's ps: the container whose processes to show
    container: Option<String>,
    /// runc's ps: arguments for ps(1) (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

#[derive(Serialize)]
struct Row {
    id: String,
    name: Option<String>,
    pid: Option<i32>,
    status: Status,
    exit_code: Option<i32>,
    oom_killed: bool,
    created: String,
    command: Vec<String>,
    cpu_usage_ns: Option<u64>,
    memory_bytes: Option<u64>,
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    if let Some(id) = &a.container {
        let format = a.format.as_deref().unwrap_or("table");
        return super::runtime::ps::run(l, id, format, &a.ps_args);
    }
    let mut rows = Vec::new();
    for (dir, st, status) in l.list() {
        if !a.all && status == Status::Stopped {
            continue;
        }
        let exit = dir.read_exit();
        let stats = st.cgroup.as_ref().and_then(|c| c.stats().ok());
        let command = oci_spec::runtime::Spec::load(dir.config())
            .ok()
            .and_then(|s| s.process().clone())
            .and_then(|p| p.args().clone())
            .unwrap_or_default();
        rows.push(Row {
            id: st.id.clone(),
            name: st.name.clone(),
            pid: if status == Status::Stopped {
                None
            } else {
                st.init.map(|p| p.pid)
            },
            status,
            exit_code: exit.as_ref().map(|e| e.exit_code),
            oom_killed: exit.as_ref().is_some_and(|e| e.oom_killed),
            created: launcher::inspect::rfc3339(st.created),
            command,
            cpu_usage_ns: stats.as_ref().and_then(|s| s.cpu_usage_ns),
            memory_bytes: stats.as_ref().and_then(|s| s.memory_current),
        });
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(anyhow::Error::from)?
        );
        return Ok(0);
    }
    println!(
        "{:<12}  {:<16}  {:>7}  {:<24}  {:<20}  {:<24}  {:>8}  {:>9}",
        "ID", "NAME", "PID", "STATUS", "CREATED", "COMMAND", "CPU", "MEM"
    );
    for r in rows {
        let status = match (r.status, r.exit_code) {
            (Status::Stopped, Some(c)) if r.oom_killed => format!("exited ({c}, OOM killed)"),
            (Status::Stopped, Some(c)) => format!("exited ({c})"),
            (s, _) => s.to_string(),
        };
        let mut cmd = r.command.join(" ");
        if cmd.chars().count() > 24 {
            cmd = cmd.chars().take(23).collect::<String>() + "…";
        }
        println!(
            "{:<12}  {:<16}  {:>7}  {:<24}  {:<20}  {:<24}  {:>8}  {:>9}",
            &r.id[..r.id.len().min(12)],
            r.name.as_deref().unwrap_or("-"),
            r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            status,
            r.created,
            cmd,
            r.cpu_usage_ns
                .map(|n| format!("{:.2}s", n as f64 / 1e9))
                .unwrap_or_else(|| "-".into()),
            r.memory_bytes
                .map(super::human_bytes)
                .unwrap_or_else(|| "-".into()),
        );
    }
    Ok(0)
}
