//! `berth up`: a master and one agent on this machine, with embedded
//! defaults, until Ctrl-C. Both run as child processes of this one (the same
//! binary), so each keeps its own signals, logs and exit status.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Master port (on 127.0.0.1)
    #[arg(long, default_value_t = 5050)]
    port: u16,
    /// Agent port (on 127.0.0.1)
    #[arg(long, default_value_t = 5051)]
    agent_port: u16,
    /// Work directory for both (default: /var/lib/berth/up as root,
    /// $XDG_STATE_HOME/berth/up otherwise)
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// The agent's resources in Mesos syntax (default: detected)
    #[arg(long)]
    resources: Option<String>,
    /// Time between batch allocations
    #[arg(long, default_value = "1s")]
    allocation_interval: String,
}

/// Where `berth up` keeps its state by default.
pub fn default_work_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/berth/up");
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    state.join("berth/up")
}

/// Children that are sent SIGTERM and reaped when this process stops.
struct Children(Vec<(&'static str, Child)>);

impl Children {
    fn stop(&mut self) {
        for (_, child) in &self.0 {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        for (name, child) in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        eprintln!("berth up: {name} did not stop in 10 s; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        self.0.clear();
    }

    /// The first child that exited, if any.
    fn exited(&mut self) -> Option<(&'static str, std::process::ExitStatus)> {
        self.0
            .iter_mut()
            .find_map(|(name, c)| c.try_wait().ok().flatten().map(|s| (*name, s)))
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls the master until it lists `n` active agents or `timeout` passes.
fn wait_for_agents(master: &str, timeout: Duration, children: &mut Children) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some((name, status)) = children.exited() {
            return Err(anyhow!(
                "{name} exited during start-up ({status}); see its messages above"
            ));
        }
        if let Ok(body) = http_get(master, "/master/slaves") {
            let active = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v["slaves"]
                        .as_array()
                        .map(|a| a.iter().filter(|s| s["active"] == true).count())
                })
                .unwrap_or(0);
            if active >= 1 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "the agent did not register with the master within {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.0 GET on loopback; enough for a readiness probe, and it
/// keeps an async runtime out of this supervising process.
fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    if !out.starts_with("HTTP/1.1 200") && !out.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::other(format!(
            "GET {path}: {}",
            out.lines().next().unwrap_or("no answer")
        )));
    }
    Ok(body.unwrap_or_default())
}

pub fn run(a: Args) -> CmdResult {
    let work = a.work_dir.unwrap_or_else(default_work_dir);
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let exe = std::env::current_exe().context("find the berth binary")?;
    let master_addr = format!("127.0.0.1:{}", a.port);

    // Ctrl-C and SIGTERM must reach this process only: the children are in
    // their own process group and are stopped in order below.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        signal_hook_flag(sig, &stop)?;
    }

    let mut children = Children(Vec::new());
    let spawn = |args: Vec<String>| -> anyhow::Result<Child> {
        use std::os::unix::process::CommandExt;
        Command::new(&exe)
            .args(&args)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("start berth {}", args.join(" ")))
    };
    let master = spawn(vec![
        "master".into(),
        "--ip=127.0.0.1".into(),
        format!("--port={}", a.port),
        format!("--work-dir={}", work.join("master").display()),
        format!("--allocation-interval={}", a.allocation_interval),
    ])?;
    children.0.push(("master", master));
    let mut agent_args = vec![
        "agent".into(),
        format!("--master={master_addr}"),
        "--ip=127.0.0.1".into(),
        format!("--port={}", a.agent_port),
        format!("--work-dir={}", work.join("agent").display()),
    ];
    if let Some(r) = &a.resources {
        agent_args.push(format!("--resources={r}"));
    }
    let agent = spawn(agent_args)?;
    children.0.push(("agent", agent));

    wait_for_agents(&master_addr, Duration::from_secs(30), &mut children)?;
    println!(
        "berth up: master http://{master_addr} with one agent (work dir {})",
        work.display()
    );
    println!("  try:   berth cluster run -- echo hello");
    println!("         berth cluster agents | frameworks | tasks");
    println!("  state: curl http://{master_addr}/master/state");
    println!("Ctrl-C stops both (running tasks stay in their containers until the agent is back).");

    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("berth up: stopping");
            children.stop();
            return Ok(0);
        }
        if let Some((name, status)) = children.exited() {
            children.stop();
            return Err(anyhow!("{name} exited unexpectedly ({status})").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sets `flag` when `signal` arrives.
fn signal_hook_flag(
    signal: libc::c_int,
    flag: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;
    // A signal handler may only touch async-signal-safe state: a static
    // atomic that the main loop polls.
    static FLAG: OnceLock<std::sync::Arc<AtomicBool>> = OnceLock::new();
    let _ = FLAG.set(flag.clone());
    extern "C" fn on_signal(_: libc::c_int) {
        if let Some(f) = FLAG.get() {
            f.store(true, Ordering::Relaxed);
        }
    }
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_signal),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    let sig = Signal::try_from(signal).map_err(|e| anyhow!("signal {signal}: {e}"))?;
    // SAFETY: the handler only loads a OnceLock that is already set and
    // stores to an atomic, both async-signal-safe.
    unsafe { nix::sys::signal::sigaction(sig, &action) }
        .map_err(|e| anyhow!("install a handler for {sig}: {e}"))?;
    Ok(())
}
