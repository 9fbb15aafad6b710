//! Terminals for process.terminal, made as runc makes them.
//!
//! The pty comes from the container's own devpts: init (or an exec'd
//! process), already inside the container's mount namespace, opens
//! /dev/ptmx, takes the slave (/dev/pts/N there) as its stdin, stdout,
//! stderr and controlling terminal, and sends the master over the console
//! socket, which was connected before entering the container (its path is
//! on the host). The wire format is runc's: one message whose data is the
//! master's name ("/dev/ptmx") and whose SCM_RIGHTS carries the master.
//!
//! Without a console socket a foreground `berth run` or `berth exec -t`
//! receives the master itself (an internal socket) and [`relay`]s it to
//! the caller's terminal, as runc does.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::stat::Mode;
use nix::sys::termios::{self, SetArg, Termios};

/// The name runc sends with the master: the path the master was opened at.
pub const MASTER_NAME: &str = "/dev/ptmx";

/// The signals a foreground `run` or `exec -t` passes on to the process
/// (with SIGCHLD, to notice its end, they are what the caller blocks and
/// reads from a signalfd). SIGWINCH is relayed as a resize when there is a
/// terminal.
pub const FORWARDED_SIGNALS: [nix::sys::signal::Signal; 7] = [
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGTERM,
    nix::sys::signal::Signal::SIGHUP,
    nix::sys::signal::Signal::SIGQUIT,
    nix::sys::signal::Signal::SIGUSR1,
    nix::sys::signal::Signal::SIGUSR2,
    nix::sys::signal::Signal::SIGWINCH,
];

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("connecting to the console socket {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("creating the terminal: {step}: {errno}")]
    Pty { step: String, errno: Errno },
    #[error("sending the pty master over the console socket: {0}")]
    Send(Errno),
    #[error("receiving the pty master: {0}")]
    Receive(String),
    #[error("making the pty the controlling terminal: {0}")]
    Ctty(Errno),
    #[error("relaying the terminal: {step}: {errno}")]
    Relay { step: &'static str, errno: Errno },
}

fn pty_err(step: impl Into<String>) -> impl FnOnce(Errno) -> ConsoleError {
    let step = step.into();
    move |errno| ConsoleError::Pty { step, errno }
}

/// Connects to the console socket at `path` (a unix stream socket on the
/// host), before the caller enters the container, where the path may not
/// resolve. The descriptor is close-on-exec.
pub fn connect(path: &Path) -> Result<OwnedFd, ConsoleError> {
    UnixStream::connect(path)
        .map(OwnedFd::from)
        .map_err(|source| ConsoleError::Connect {
            path: path.to_path_buf(),
            source,
        })
}

nix::ioctl_write_ptr_bad!(ioctl_set_winsize, libc::TIOCSWINSZ, libc::winsize);
nix::ioctl_read_bad!(ioctl_get_winsize, libc::TIOCGWINSZ, libc::winsize);

/// Sets a terminal's window size (rows, columns).
pub fn set_size(fd: BorrowedFd, rows: u16, cols: u16) -> nix::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which points
    // to a live local.
    unsafe { ioctl_set_winsize(fd.as_raw_fd(), &ws) }.map(drop)
}

/// A terminal's window size (rows, columns).
pub fn size(fd: BorrowedFd) -> nix::Result<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which
    // points to a live local.
    unsafe { ioctl_get_winsize(fd.as_raw_fd(), &mut ws) }?;
    Ok((ws.ws_row, ws.ws_col))
}

/// Inside the container: opens a pty of the container's devpts through
/// /dev/ptmx, applies `size` (process.consoleSize: rows, columns), gives
/// the slave to `owner` (runc's fixStdioPermissions: the process's user
/// must be able to use its terminal), sends the master over `socket` and
/// makes the slave this process's stdin, stdout and stderr. Returns the
/// slave's path (/dev/pts/N), which init bind-mounts over /dev/console.
///
/// The caller must be a session leader and then call
/// [`set_controlling_terminal`]. Runs in a forked child of a
/// single-threaded process (init, or exec's child), where allocating is
/// allowed.
pub fn open_in_container(
    socket: BorrowedFd,
    size: Option<(u16, u16)>,
    owner: Option<u32>,
) -> Result<PathBuf, ConsoleError> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(pty_err("opening /dev/ptmx"))?;
    nix::pty::unlockpt(&master).map_err(pty_err("unlocking the pty"))?;
    let name = nix::pty::ptsname_r(&master).map_err(pty_err("naming the pty slave"))?;
    if let Some((rows, cols)) = size.filter(|(r, c)| *r > 0 && *c > 0) {
        set_size(master.as_fd(), rows, cols).map_err(pty_err("process.consoleSize"))?;
    }
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(pty_err(format!("opening {name}")))?;
    if let Some(uid) = owner.filter(|u| *u != 0) {
        nix::unistd::fchown(&slave, Some(uid.into()), None)
            .map_err(pty_err(format!("giving {name} to uid {uid}")))?;
    }
    send_master(socket, master.as_fd())?;
    nix::unistd::dup2_stdin(&slave).map_err(pty_err("making the pty stdin"))?;
    nix::unistd::dup2_stdout(&slave).map_err(pty_err("making the pty stdout"))?;
    nix::unistd::dup2_stderr(&slave).map_err(pty_err("making the pty stderr"))?;
    Ok(PathBuf::from(name))
}

/// Sends `master` over the connected `socket`, in runc's format.
pub fn send_master(socket: BorrowedFd, master: BorrowedFd) -> Result<(), ConsoleError> {
    let iov = [IoSlice::new(MASTER_NAME.as_bytes())];
    let fds = [master.as_raw_fd()];
    loop {
        match sendmsg::<()>(
            socket.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(ConsoleError::Send(e)),
        }
    }
}

/// Receives what [`send_master`] sent: the name and the master.
pub fn recv_master(socket: BorrowedFd) -> Result<(String, OwnedFd), ConsoleError> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let (n, fds) = loop {
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let fds: Vec<i32> = msg
                    .cmsgs()
                    .map_err(|e| ConsoleError::Receive(e.to_string()))?
                    .filter_map(|c| match c {
                        ControlMessageOwned::ScmRights(f) => Some(f),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                break (msg.bytes, fds);
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(ConsoleError::Receive(e.to_string())),
        }
    };
    // SAFETY: every descriptor received over SCM_RIGHTS is new in this
    // process and owned by nobody else; wrapping them closes extras.
    let mut owned: Vec<OwnedFd> = fds
        .into_iter()
        .map(|f| unsafe { OwnedFd::from_raw_fd(f) })
        .collect();
    if owned.len() != 1 {
        return Err(ConsoleError::Receive(format!(
            "expected one descriptor, got {} (the container's set-up failed before sending it)",
            owned.len()
        )));
    }
    let name = String::from_utf8_lossy(&buf[..n]).into_owned();
    Ok((name, owned.remove(0)))
}

/// Makes stdin (the pty slave) the controlling terminal of this process,
/// which must be a session leader. Async-signal-safe: one ioctl.
pub fn set_controlling_terminal() -> Result<(), ConsoleError> {
    // SAFETY: TIOCSCTTY takes an int argument and only changes this
    // process's session's controlling terminal.
    let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    if rc < 0 {
        return Err(ConsoleError::Ctty(Errno::last()));
    }
    Ok(())
}

/// The caller's terminal in raw mode for as long as this lives: every key
/// goes to the container's terminal, which does its own echo and line
/// editing. Dropping it restores the saved settings, also when the relay
/// ends with an error.
pub struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    /// None if `fd` is not a terminal (nothing to change then).
    pub fn enter(fd: BorrowedFd<'a>) -> Result<Option<Self>, ConsoleError> {
        if !nix::unistd::isatty(fd).unwrap_or(false) {
            return Ok(None);
        }
        let relay = |step| move |errno| ConsoleError::Relay { step, errno };
        let saved = termios::tcgetattr(fd).map_err(relay("reading the terminal's settings"))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw)
            .map_err(relay("putting the terminal in raw mode"))?;
        Ok(Some(RawMode { fd, saved }))
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSANOW, &self.saved);
    }
}

/// The caller's side of a relayed terminal.
pub struct RelayIo<'a> {
    pub input: BorrowedFd<'a>,
    pub output: BorrowedFd<'a>,
}

impl RelayIo<'static> {
    /// This process's stdin and stdout.
    pub fn stdio() -> Self {
        // SAFETY: 0 and 1 are this process's stdin and stdout, open for
        // its whole life (a CLI that closed them would get EBADF, which the
        // relay treats as end of input / lost output).
        unsafe {
            RelayIo {
                input: BorrowedFd::borrow_raw(0),
                output: BorrowedFd::borrow_raw(1),
            }
        }
    }
}

/// How long output is still copied after the process exited: its
/// terminal closes when the last holder exits, which a process outside
/// the relayed one may delay.
const DRAIN: Duration = Duration::from_secs(1);
/// The most input held for a container that does not read it.
const MAX_PENDING: usize = 64 * 1024;

/// Relays a terminal, as runc does in the foreground: the caller's input
/// (in raw mode if it is a terminal) goes to `master`, the master's
/// output to the caller's output, and the caller's window size to the pty
/// (at once and on every SIGWINCH), until the process has exited and its
/// output is drained. `signals` delivers the caller's blocked signals:
/// SIGCHLD makes the relay ask `exited` (which reaps and returns the
/// shell-style exit code), SIGWINCH resizes, anything else is passed to
/// `forward`. `exited` is also asked once a second. Returns the exit code.
pub fn relay(
    io: RelayIo,
    master: OwnedFd,
    signals: &SignalFd,
    mut exited: impl FnMut() -> Option<i32>,
    mut forward: impl FnMut(Signal),
) -> Result<i32, ConsoleError> {
    let raw = RawMode::enter(io.input)?;
    let resize = |master: &OwnedFd| {
        if let Ok((rows, cols)) = size(io.input) {
            let _ = set_size(master.as_fd(), rows, cols);
        }
    };
    if raw.is_some() {
        resize(&master);
    }
    // Non-blocking writes: a container that reads no input must not stop
    // its output from being copied. (The caller's input is only read after
    // poll says so; its flags are shared with the caller's shell.)
    nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(
        |errno| ConsoleError::Relay {
            step: "setting the pty master non-blocking",
            errno,
        },
    )?;
    let mut pending: Vec<u8> = Vec::new();
    let mut input_open = true;
    let mut master_open = true;
    let mut output_ok = true;
    let mut code: Option<i32> = None;
    let mut drain_until = Instant::now();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if code.is_none() {
            code = exited();
            if code.is_some() {
                drain_until = Instant::now() + DRAIN;
            }
        }
        if let Some(c) = code {
            if !master_open || Instant::now() > drain_until {
                return Ok(c);
            }
        }
        // Only what is still open is polled: a hung-up descriptor reports
        // POLLHUP whatever was asked, which would spin the loop.
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let master_at = master_open.then(|| {
            let mut ev = PollFlags::POLLIN;
            if !pending.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(master.as_fd(), ev));
            fds.len() - 1
        });
        let input_at = (input_open && master_open && pending.len() < MAX_PENDING).then(|| {
            fds.push(PollFd::new(io.input, PollFlags::POLLIN));
            fds.len() - 1
        });
        let timeout = if code.is_some() { 100u16 } else { 1000u16 };
        match poll(&mut fds, PollTimeout::from(timeout)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => {
                return Err(ConsoleError::Relay {
                    step: "poll",
                    errno,
                })
            }
        }
        let ready =
            |i: Option<usize>| i.is_some_and(|i| fds[i].revents().is_some_and(|r| !r.is_empty()));
        let (sig_ready, master_ready, input_ready) =
            (ready(Some(0)), ready(master_at), ready(input_at));
        drop(fds);
        if master_ready {
            match nix::unistd::read(&master, &mut buf) {
                // EIO: every holder of the slave has closed it.
                Ok(0) | Err(Errno::EIO) => master_open = false,
                Ok(n) => {
                    if output_ok && write_all(io.output, &buf[..n]).is_err() {
                        // The caller's output is gone; keep draining the
                        // pty so that the container does not block.
                        output_ok = false;
                    }
                }
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                Err(_) => master_open = false,
            }
        }
        if input_ready {
            match nix::unistd::read(io.input, &mut buf) {
                Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                // End of input (or a hung-up terminal): nothing more to send.
                _ => input_open = false,
            }
        }
        if master_open && !pending.is_empty() {
            match nix::unistd::write(&master, &pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                Err(_) => pending.clear(),
            }
        }
        if sig_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => {}
                    Ok(Signal::SIGWINCH) => {
                        if raw.is_some() {
                            resize(&master);
                        }
                    }
                    Ok(sig) => forward(sig),
                    Err(_) => {}
                }
            }
        }
    }
}

fn write_all(fd: BorrowedFd, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(100u16));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::SigSet;
    use nix::sys::signalfd::SfdFlags;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    #[test]
    fn the_master_arrives_over_scm_rights_in_runcs_format() {
        let (a, b) = pair();
        let pty = nix::pty::openpty(None, None).unwrap();
        send_master(a.as_fd(), pty.master.as_fd()).unwrap();
        let (name, got) = recv_master(b.as_fd()).unwrap();
        assert_eq!(name, "/dev/ptmx");
        // The received descriptor is the same pty master: writing to the
        // slave shows up on it.
        nix::unistd::write(&pty.slave, b"hi\n").unwrap();
        let mut buf = [0u8; 8];
        let n = nix::unistd::read(&got, &mut buf).unwrap();
        assert!(n > 0);
        // Received close-on-exec, so it does not leak into what we run.
        let flags = nix::fcntl::fcntl(&got, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(flags & libc::FD_CLOEXEC != 0);
    }

    #[test]
    fn a_message_without_a_descriptor_is_an_error() {
        let (a, b) = pair();
        drop(a);
        let e = recv_master(b.as_fd()).unwrap_err().to_string();
        assert!(e.contains("expected one descriptor, got 0"), "{e}");
    }

    #[test]
    fn window_size_is_set_and_read() {
        let pty = nix::pty::openpty(None, None).unwrap();
        set_size(pty.master.as_fd(), 33, 101).unwrap();
        assert_eq!(size(pty.slave.as_fd()).unwrap(), (33, 101));
    }

    #[test]
    fn raw_mode_is_restored_on_drop_and_skipped_off_a_terminal() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let before = termios::tcgetattr(&pty.slave).unwrap();
        assert!(before
            .local_flags
            .contains(termios::LocalFlags::ICANON | termios::LocalFlags::ECHO));
        {
            let _raw = RawMode::enter(pty.slave.as_fd()).unwrap().unwrap();
            let now = termios::tcgetattr(&pty.slave).unwrap();
            assert!(!now.local_flags.contains(termios::LocalFlags::ICANON));
            assert!(!now.local_flags.contains(termios::LocalFlags::ECHO));
        }
        let after = termios::tcgetattr(&pty.slave).unwrap();
        assert_eq!(after.local_flags, before.local_flags);
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(RawMode::enter(r.as_fd()).unwrap().is_none());
    }

    /// The relay copies input to the container's terminal and its output
    /// back, and returns the exit code once the output is drained. The
    /// "container" is a thread that echoes a line through the pty slave.
    #[test]
    fn relay_copies_both_ways_until_exit() {
        let container = nix::pty::openpty(None, None).unwrap();
        let (in_r, in_w) = nix::unistd::pipe().unwrap();
        let (out_r, out_w) = nix::unistd::pipe().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let slave = container.slave;
        let d = done.clone();
        let t = std::thread::spawn(move || {
            // The slave echoes input by default; read the line and answer.
            let mut buf = [0u8; 64];
            let mut line = Vec::new();
            while !line.ends_with(b"\n") {
                let n = nix::unistd::read(&slave, &mut buf).unwrap();
                line.extend_from_slice(&buf[..n]);
            }
            nix::unistd::write(&slave, b"answer\n").unwrap();
            drop(slave);
            d.store(true, Ordering::SeqCst);
        });
        nix::unistd::write(&in_w, b"question\n").unwrap();
        drop(in_w);
        let signals = SignalFd::with_flags(&SigSet::empty(), SfdFlags::SFD_CLOEXEC).unwrap();
        let io = RelayIo {
            input: in_r.as_fd(),
            output: out_w.as_fd(),
        };
        let code = relay(
            io,
            container.master,
            &signals,
            || done.load(Ordering::SeqCst).then_some(7),
            |_| {},
        )
        .unwrap();
        t.join().unwrap();
        drop(out_w);
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match nix::unistd::read(&out_r, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let seen = String::from_utf8_lossy(&seen);
        assert_eq!(code, 7);
        assert!(seen.contains("question"), "echo: {seen:?}");
        assert!(seen.contains("answer"), "output: {seen:?}");
    }
}
