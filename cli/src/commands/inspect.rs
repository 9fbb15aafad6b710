//! `berth inspect`: everything about one container, as text or JSON.

use launcher::inspect::Inspection;
use launcher::Launcher;

use crate::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the stable JSON document
    #[arg(long)]
    json: bool,
    /// Container id, id prefix or name
    container: String,
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    let i = l.inspect(&a.container)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&i).map_err(anyhow::Error::from)?
        );
    } else {
        print_text(&i);
    }
    Ok(0)
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

fn print_text(i: &Inspection) {
    println!("ID:           {}", i.id);
    println!("Name:         {}", i.name.as_deref().unwrap_or("-"));
    let mut status = i.status.to_string();
    if let Some(e) = &i.exit {
        status += &format!(" (exit code {}", e.exit_code);
        if let Some(s) = e.signal {
            let name = nix::sys::signal::Signal::try_from(s)
                .map(|s| s.to_string())
                .unwrap_or_else(|_| s.to_string());
            status += &format!(", killed by {name}");
        }
        if e.oom_killed {
            status += ", OOM killed";
        }
        if let Some(n) = &e.note {
            status += &format!(", {n}");
        }
        status += &format!(", finished {})", launcher::inspect::rfc3339(e.finished_at));
    }
    println!("Status:       {status}");
    println!("Pid:          {}", opt(i.pid));
    println!("Created:      {}", i.created);
    println!("Command:      {}", i.command.join(" "));
    println!("User:         uid={} gid={}", i.user.uid, i.user.gid);
    println!("Rootless:     {}", i.rootless);
    println!("Bundle:       {}", i.bundle.display());
    println!("Rootfs:       {}", i.rootfs.display());
    println!("State dir:    {}", i.state_dir.display());
    println!(
        "Logs:         {} {}",
        i.logs.stdout.display(),
        i.logs.stderr.display()
    );
    if let Some(s) = &i.supervisor {
        println!(
            "Supervisor:   pid {} ({}{})",
            s.pid,
            if s.alive { "alive" } else { "exited" },
            s.rss_kib
                .map(|r| format!(", RSS {r} KiB"))
                .unwrap_or_default()
        );
    }
    println!("Namespaces:");
    for n in &i.namespaces {
        println!(
            "  {:<7} {}{}",
            n.typ,
            n.inode
                .map(|x| format!("{}:[{x}]", n.typ))
                .unwrap_or_else(|| "(not running)".into()),
            n.path
                .as_ref()
                .map(|p| format!(" joined from {}", p.display()))
                .unwrap_or_default()
        );
    }
    match &i.cgroup {
        Some(c) => {
            println!("Cgroup:       {} ({})", c.path, c.mode);
            let u = &c.usage;
            let b = |v: Option<u64>| {
                v.map(crate::commands::human_bytes)
                    .unwrap_or_else(|| "-".into())
            };
            println!(
                "  memory:     current {} peak {} limit {}",
                b(u.memory_current),
                b(u.memory_peak),
                u.memory_limit
                    .map(crate::commands::human_bytes)
                    .unwrap_or_else(|| "max".into())
            );
            println!(
                "  cpu:        usage {} quota {} throttled {} times",
                u.cpu_usage_ns
                    .map(|n| format!("{:.3}s", n as f64 / 1e9))
                    .unwrap_or_else(|| "-".into()),
                match (u.cpu_quota_us, u.cpu_period_us) {
                    (Some(q), Some(p)) if q > 0 =>
                        format!("{q}/{p}us ({:.2} CPUs)", q as f64 / p as f64),
                    _ => "max".into(),
                },
                opt(u.cpu_nr_throttled)
            );
            println!(
                "  pids:       current {} limit {}",
                opt(u.pids_current),
                u.pids_limit
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "max".into())
            );
            println!(
                "  oom:        events {} kills {}",
                opt(u.oom_events),
                opt(u.oom_kill)
            );
        }
        None => println!("Cgroup:       none"),
    }
    let sc = &i.seccomp;
    println!(
        "Seccomp:      {} (filters {}; profile: {})",
        sc.mode.as_deref().unwrap_or("-"),
        opt(sc.filters),
        if sc.configured {
            format!(
                "default action {}, {} rules",
                sc.default_action.as_deref().unwrap_or("?"),
                sc.rules
            )
        } else {
            "unconfined".into()
        }
    );
    println!("NoNewPrivs:   {}", opt(i.no_new_privs));
    if let Some(c) = &i.capabilities {
        println!("Capabilities:");
        println!("  effective:   {}", c.effective.join(" "));
        println!("  permitted:   {}", c.permitted.join(" "));
        println!("  inheritable: {}", c.inheritable.join(" "));
        println!("  bounding:    {}", c.bounding.join(" "));
        println!("  ambient:     {}", c.ambient.join(" "));
    }
    let maps = |m: &[isolator::procinfo::IdMap]| {
        m.iter()
            .map(|x| format!("{}->{}({})", x.inside, x.outside, x.count))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if !i.uid_map.is_empty() {
        println!("UID map:      {}", maps(&i.uid_map));
        println!("GID map:      {}", maps(&i.gid_map));
    }
    if !i.volumes.is_empty() {
        println!("Volumes:");
        for v in &i.volumes {
            println!(
                "  {}{} -> {} ({}, used {})",
                v.name
                    .as_ref()
                    .map(|n| format!("{n} at "))
                    .unwrap_or_default(),
                v.source.display(),
                v.destination.display(),
                if v.read_only { "ro" } else { "rw" },
                v.usage_bytes
                    .map(crate::commands::human_bytes)
                    .unwrap_or_else(|| "?".into())
            );
        }
    }
    if !i.mounts.is_empty() {
        println!("Mounts:");
        for m in &i.mounts {
            println!(
                "  {:<28} {:<10} {:<12} {}",
                m.mount_point,
                m.fs_type,
                m.source,
                m.options.join(",")
            );
        }
    }
    for w in &i.warnings {
        println!("Warning:      {}: {}", w.what, w.reason);
    }
}
