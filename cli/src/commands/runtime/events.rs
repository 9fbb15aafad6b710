//! `berth events [--stats] [--interval D] ID`: runc's event stream, one
//! JSON object per line. `--stats` prints one `{"type":"stats",...}` and
//! exits; otherwise a stats event every interval (default 5s) and an
//! `{"type":"oom"}` event whenever the kernel OOM-kills in the container,
//! until the container stops. The `data` object has runc's field names
//! (libcontainer's types.Stats: cpu, memory, pids, blkio, hugetlb).

use std::time::Duration;

use isolator::cgroups::Stats;
use launcher::state::Status;
use launcher::Launcher;
use serde_json::{json, Value};

use super::fail;
use crate::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the container's stats once and exit
    #[arg(long)]
    pub stats: bool,
    /// Time between stats events (e.g. 5s, 500ms, 1m)
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub interval: String,
    /// The container id
    pub id: String,
}

/// Go's duration syntax for the forms runc's users write: 5s, 500ms, 1m, 1h.
fn duration(v: &str) -> Result<Duration, Failure> {
    let bad = || {
        fail(launcher::Error::invalid(
            "--interval",
            format!("{v:?} is not a duration"),
        ))
    };
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(bad)?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if secs <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// runc's stats event for a container.
fn stats_event(id: &str, s: &Stats) -> Value {
    let n = |v: Option<u64>| v.unwrap_or(0);
    json!({
        "type": "stats",
        "id": id,
        "data": {
            "cpu": {
                "usage": { "total": n(s.cpu_usage_ns), "percpu": [], "kernel": 0, "user": 0 },
                "throttling": {
                    "periods": 0,
                    "throttledPeriods": n(s.cpu_nr_throttled),
                    "throttledTime": n(s.cpu_throttled_ns),
                },
            },
            "memory": {
                "usage": {
                    "limit": s.memory_limit.unwrap_or(u64::MAX),
                    "usage": n(s.memory_current),
                    "max": n(s.memory_peak),
                    "failcnt": n(s.memory_failcnt),
                },
                "swap": { "limit": s.memory_swap_limit.unwrap_or(u64::MAX) },
                "raw": {},
            },
            "pids": { "current": n(s.pids_current), "limit": n(s.pids_limit) },
            "blkio": {},
            "hugetlb": {},
        },
    })
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    let interval = duration(&a.interval)?;
    let (_, first) = l.stats_runtime(&a.id).map_err(fail)?;
    if a.stats {
        println!("{}", stats_event(&a.id, &first));
        return Ok(0);
    }
    let mut ooms = first.oom_kill.unwrap_or(0);
    loop {
        // The container stopping (or being deleted) ends the stream.
        let s = match l.stats_runtime(&a.id) {
            Ok((Status::Stopped, _)) | Err(_) => return Ok(0),
            Ok((_, s)) => s,
        };
        let now = s.oom_kill.unwrap_or(0);
        if now > ooms {
            println!("{}", json!({ "type": "oom", "id": a.id }));
            ooms = now;
        }
        println!("{}", stats_event(&a.id, &s));
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn intervals_in_gos_syntax() {
        assert_eq!(super::duration("5s").ok(), Some(Duration::from_secs(5)));
        assert_eq!(
            super::duration("500ms").ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(super::duration("1m").ok(), Some(Duration::from_secs(60)));
        assert!(super::duration("5").is_err());
        assert!(super::duration("0s").is_err());
    }

    #[test]
    fn stats_have_runcs_field_names() {
        let s = isolator::cgroups::Stats {
            memory_current: Some(10),
            memory_limit: Some(20),
            pids_current: Some(3),
            pids_limit: Some(50),
            ..Default::default()
        };
        let e = super::stats_event("c", &s);
        assert_eq!(e["type"], "stats");
        assert_eq!(e["data"]["memory"]["usage"]["usage"], 10);
        assert_eq!(e["data"]["memory"]["usage"]["limit"], 20);
        assert_eq!(e["data"]["pids"]["current"], 3);
        assert_eq!(e["data"]["pids"]["limit"], 50);
    }
}
