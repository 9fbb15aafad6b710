//! Terminals for process.terminal: a new pty whose master is handed to the
//! engine over `--console-socket` (a unix stream socket; one message whose
//! data is the slave's name and whose SCM_RIGHTS carries the master, as
//! runc sends it), and whose slave becomes the container's stdio and
//! controlling terminal.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("creating a pty: {0}")]
    OpenPty(nix::errno::Errno),
    #[error("connecting to the console socket {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sending the pty master to {path}: {errno}")]
    Send {
        path: PathBuf,
        errno: nix::errno::Errno,
    },
    #[error("making the pty the controlling terminal: {0}")]
    Ctty(nix::errno::Errno),
}

/// A new pty pair.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Opens a pty; `size` is process.consoleSize (height, width) if given.
pub fn open_pty(size: Option<(u16, u16)>) -> Result<Pty, ConsoleError> {
    let ws = size.map(|(rows, cols)| nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    });
    let p = nix::pty::openpty(ws.as_ref(), None).map_err(ConsoleError::OpenPty)?;
    for fd in [&p.master, &p.slave] {
        // Neither end may leak into programs the caller runs later.
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    Ok(Pty {
        master: p.master,
        slave: p.slave,
    })
}

/// Sends `master` to the unix socket at `path`.
pub fn send_master(path: &Path, master: &OwnedFd) -> Result<(), ConsoleError> {
    let stream = UnixStream::connect(path).map_err(|source| ConsoleError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    let name = std::fs::read_link(format!("/proc/self/fd/{}", master.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/dev/ptmx".into());
    let iov = [IoSlice::new(name.as_bytes())];
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        stream.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|errno| ConsoleError::Send {
        path: path.to_path_buf(),
        errno,
    })?;
    Ok(())
}

/// Makes stdin (the pty slave) the controlling terminal of this process,
/// which must be a session leader. Async-signal-safe: one ioctl.
pub fn set_controlling_terminal() -> Result<(), ConsoleError> {
    // SAFETY: TIOCSCTTY takes an int argument and only changes this
    // process's session's controlling terminal.
    let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    if rc < 0 {
        return Err(ConsoleError::Ctty(nix::errno::Errno::last()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    use std::io::IoSliceMut;
    use std::os::unix::net::UnixListener;

    #[test]
    fn the_master_arrives_over_scm_rights() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let pty = open_pty(Some((24, 80))).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 256];
            let mut iov = [IoSliceMut::new(&mut buf)];
            let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
            let msg =
                recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()).unwrap();
            let fds: Vec<i32> = msg
                .cmsgs()
                .unwrap()
                .filter_map(|c| match c {
                    ControlMessageOwned::ScmRights(f) => Some(f),
                    _ => None,
                })
                .flatten()
                .collect();
            let n = msg.bytes;
            (String::from_utf8_lossy(&buf[..n]).into_owned(), fds)
        });
        send_master(&path, &pty.master).unwrap();
        let (name, fds) = t.join().unwrap();
        assert_eq!(name, "/dev/ptmx");
        assert_eq!(fds.len(), 1);
        // The received descriptor is the same pty master: writing to the
        // slave shows up on it.
        nix::unistd::write(&pty.slave, b"hi\n").unwrap();
        let mut b = [0u8; 8];
        // SAFETY: fds[0] was just received and is owned by nobody else.
        let got = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
        let n = nix::unistd::read(&got, &mut b).unwrap();
        assert!(n > 0);
    }
}
