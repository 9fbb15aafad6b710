//! `berth run [flags] ID`: create and start. In the foreground (runc's
//! default) berth becomes a child subreaper before creating, so init is
//! handed to it when the supervisor exits; it forwards signals, reaps init,
//! deletes the container (poststop hooks) and exits with init's code.
//! A terminal (process.terminal) without --console-socket is relayed as
//! runc does: the pty master comes back to berth, which copies the
//! caller's stdin (raw if it is a terminal) to it and its output to
//! stdout, and passes on the caller's window size.
//! With --detach it returns once the program runs, as `create` + `start`;
//! a terminal then needs --console-socket.

use std::os::fd::AsFd;

use launcher::Launcher;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{fail, CreateFlags};
use crate::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub flags: CreateFlags,
    /// Return once the container runs
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Keep the container after it exits (foreground only)
    #[arg(long)]
    pub keep: bool,
    /// The container id
    pub id: String,
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    launcher::trace::mark("run: begin");
    if a.detach {
        let mut created = l
            .create_from_bundle(&a.flags.request(&a.id))
            .map_err(fail)?;
        created.wait_supervisor();
        if let Some(p) = &a.flags.pid_file {
            super::write_pid_file(p, created.pid)?;
        }
        return start(l, &a.id).map(|()| 0);
    }
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| fail(anyhow::anyhow!("becoming a subreaper: {e}")))?;
    // Blocked before the container exists, so none is lost; the supervisor
    // (spawned through std::process) starts with an empty mask.
    let mut mask = SigSet::empty();
    for s in launcher::console::FORWARDED_SIGNALS
        .iter()
        .chain([&Signal::SIGCHLD])
    {
        mask.add(*s);
    }
    mask.thread_block()
        .map_err(|e| fail(anyhow::anyhow!("blocking signals: {e}")))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| fail(anyhow::anyhow!("signalfd: {e}")))?;
    let result = (|| -> Result<i32, Failure> {
        let (created, master) = l.create_foreground(&a.flags.request(&a.id)).map_err(fail)?;
        // Init becomes our child when the supervisor exits, which it does
        // right after reporting init created. That exit is not waited for
        // here: start needs only the created init, and wait_init reaps the
        // supervisor and then init (a zombie init is reparented to us with
        // its SIGCHLD). Overlapping the supervisor's exit with start saves
        // its teardown on the critical path (~0.2 ms quiet, more under load).
        if let Some(p) = &a.flags.pid_file {
            super::write_pid_file(p, created.pid)?;
        }
        start(l, &a.id)?;
        launcher::trace::mark("run: started");
        let init = Pid::from_raw(created.pid);
        match master {
            Some(master) => launcher::console::relay(
                launcher::console::RelayIo::stdio(),
                master,
                &signals,
                || reap_init(init),
                |sig| {
                    let _ = kill(init, sig);
                },
            )
            .map_err(|e| fail(anyhow::anyhow!(e))),
            None => Ok(wait_init(init, &signals)),
        }
    })();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&mask), None);
    launcher::trace::mark("run: init reaped");
    match result {
        Ok(code) => {
            if !a.keep {
                for w in l.delete_runtime(&a.id, true).map_err(fail)? {
                    super::log::warn(&w);
                }
                launcher::trace::mark("run: deleted");
            }
            Ok(code.clamp(0, 255) as u8)
        }
        Err(f) => {
            // A container that was created but could not start is removed.
            let _ = l.delete_runtime(&a.id, true);
            Err(f)
        }
    }
}

fn start(l: &Launcher, id: &str) -> Result<(), Failure> {
    for w in l.start_runtime(id).map_err(fail)? {
        super::log::warn(&w);
    }
    Ok(())
}

/// Forwards signals to init until it exits; reaps it (and any orphan that
/// was reparented to us meanwhile). Returns the shell-style exit code.
fn wait_init(init: Pid, signals: &SignalFd) -> i32 {
    loop {
        if let Some(code) = reap_init(init) {
            return code;
        }
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(1000u16));
        while let Ok(Some(info)) = signals.read_signal() {
            if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                if sig != Signal::SIGCHLD {
                    let _ = kill(init, sig);
                }
            }
        }
    }
}

/// Reaps what has exited (init, and orphans reparented to us); init's
/// shell-style exit code once it is among them.
fn reap_init(init: Pid) -> Option<i32> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == init => return Some(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == init => return Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}
