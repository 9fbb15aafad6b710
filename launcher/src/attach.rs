//! Running a container in the foreground: stream its output, forward
//! SIGINT/SIGTERM/SIGHUP/SIGQUIT to it, and return how it ended.
//!
//! The launcher is not the container's parent (the supervisor is), so it
//! learns the exit from the supervisor's report pipe. Killing the launcher
//! only stops the streaming; the container keeps running.

use std::io::{Read, Write};
use std::os::fd::AsFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use crate::container::Created;
use crate::error::{Error, Result};
use crate::state::ExitInfo;
use crate::supervisor::Report;

/// Streams the attached output to our stdout/stderr until the container
/// exits; forwards termination signals to its init.
pub fn run_foreground(created: &mut Created) -> Result<ExitInfo> {
    let signals = signal_fd(&[
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ])?;
    let init = Pid::from_raw(created.pid);
    let mut out_open = created.stdout.is_some();
    let mut err_open = created.stderr.is_some();
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut buf = vec![0u8; 32 * 1024];
    // Output first, exit report last: the supervisor closes our output pipes
    // when it has drained the container's, before it reports the exit.
    while out_open || err_open {
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if let (true, Some(f)) = (out_open, &created.stdout) {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        if let (true, Some(f)) = (err_open, &created.stderr) {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::sys("poll", e)),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            while let Ok(Some(info)) = signals.read_signal() {
                if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                    let _ = kill(init, sig);
                }
            }
        }
        let mut k = 1;
        if out_open {
            if ready[k] {
                out_open = pump(created.stdout.as_mut(), &mut stdout, &mut buf);
            }
            k += 1;
        }
        if err_open && ready[k] {
            err_open = pump(created.stderr.as_mut(), &mut stderr, &mut buf);
        }
    }
    loop {
        match created.next_report() {
            Some(Report::Exited(e)) => {
                created.reap_supervisor();
                return Ok(e);
            }
            Some(_) => continue,
            None => {
                return Err(Error::Init(
                    "the supervisor exited without reporting the container's exit".into(),
                ))
            }
        }
    }
}

/// Blocks `signals` for this (single-threaded) process and returns a
/// non-blocking signalfd that delivers them, for a poll(2) loop.
pub fn signal_fd(signals: &[Signal]) -> Result<SignalFd> {
    let mut mask = SigSet::empty();
    for s in signals {
        mask.add(*s);
    }
    mask.thread_block()
        .map_err(|e| Error::sys("blocking signals", e))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::sys("creating signalfd", e))
}

fn pump(src: Option<&mut std::fs::File>, dst: &mut dyn Write, buf: &mut [u8]) -> bool {
    let Some(src) = src else { return false };
    match src.read(buf) {
        Ok(0) => false,
        Ok(n) => {
            let _ = dst.write_all(&buf[..n]);
            let _ = dst.flush();
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
        Err(_) => false,
    }
}
