//! `exec`: run another process inside a running container, with the same
//! namespaces, cgroup, user, capabilities, no_new_privs and seccomp filter
//! as the container's own process.
//!
//! The caller must be single-threaded (the berth CLI is): we fork, join the
//! container's cgroup and namespaces in the child (setns with a pidfd joins
//! them all at once), and fork again so the grandchild is inside the pid
//! namespace; the child relays the grandchild's exit status.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::Spec;

use crate::container::{pidfd_open, Launcher};
use crate::error::{Error, Result};
use crate::state::Status;

/// What to run, on top of the container's own process settings.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<(u32, u32)>,
    /// More supplementary groups (runc's --additional-gids).
    pub additional_gids: Vec<u32>,
    /// runc's --detach: return the process's host pid once it runs, and
    /// leave it to the caller's subreaper instead of waiting for it.
    pub detach: bool,
    /// runc's --tty: a pty of the container's devpts is the process's
    /// stdio and controlling terminal. Its master goes to `console_socket`
    /// (with `detach`), or, in the foreground without one, is relayed to
    /// the caller's stdin/stdout by [`crate::console::relay`] (runc's).
    pub tty: bool,
    /// runc's --console-socket: the unix socket the pty master is sent to.
    pub console_socket: Option<PathBuf>,
}

/// How an exec ended: the exit code, or (detached) the running pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOutcome {
    Exited(i32),
    Detached(i32),
}

impl Launcher {
    /// Runs the request in the container and returns its shell-style exit
    /// code (128+N when killed by signal N).
    pub fn exec(&self, key: &str, req: &ExecRequest) -> Result<i32> {
        match self.exec_with(key, req)? {
            ExecOutcome::Exited(c) | ExecOutcome::Detached(c) => Ok(c),
        }
    }

    /// [`Launcher::exec`] with runc's detached and terminal modes.
    pub fn exec_with(&self, key: &str, req: &ExecRequest) -> Result<ExecOutcome> {
        if req.args.is_empty() {
            return Err(Error::invalid(
                "command",
                "no command given (berth exec ID -- CMD [ARGS...])",
            ));
        }
        let (dir, st, status) = self.load(key)?;
        let init = match (status, st.init) {
            (Status::Running | Status::Created, Some(p)) => p,
            _ => {
                return Err(Error::WrongState {
                    id: st.id,
                    status,
                    hint: "exec needs a running container".into(),
                })
            }
        };
        let spec = Spec::load(dir.config()).map_err(|e| Error::Spec(e.to_string()))?;
        let process = spec.process().clone().unwrap_or_default();
        let mut env = process.env().clone().unwrap_or_default();
        for e in &req.env {
            let k = e.split('=').next().unwrap_or_default();
            env.retain(|x| x.split('=').next() != Some(k));
            env.push(e.clone());
        }
        let cwd = req.cwd.clone().unwrap_or_else(|| process.cwd().clone());
        let (mut sets, mut user) =
            crate::init::credentials(&spec).map_err(|f| Error::Init(f.message))?;
        if let Some((u, g)) = req.user {
            user.uid = u;
            user.gid = g;
        }
        user.additional_gids.extend(&req.additional_gids);
        // The terminal's master goes over `console`, connected here on the
        // host (its path may not exist in the container); in the
        // foreground without a console socket, to `relay_end`, and this
        // process relays the terminal.
        crate::runtime::check_terminal(
            "--tty",
            req.tty,
            req.detach,
            req.console_socket.as_deref(),
        )?;
        let (console, relay_end) = match (&req.console_socket, req.tty) {
            (_, false) => (None, None),
            (Some(sock), true) => (Some(crate::console::connect(sock)?), None),
            (None, true) => {
                let (ours, theirs) = nix::sys::socket::socketpair(
                    nix::sys::socket::AddressFamily::Unix,
                    nix::sys::socket::SockType::Stream,
                    None,
                    nix::sys::socket::SockFlag::SOCK_CLOEXEC,
                )
                .map_err(|e| Error::sys("creating the console socket pair", e))?;
                (Some(theirs), Some(ours))
            }
        };
        // process.consoleSize comes with --process (not parsed here yet).
        let console_size = None;
        // The relay also needs the process's pid, to pass signals on.
        let pid_pipe = if req.detach || relay_end.is_some() {
            Some(
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .map_err(|e| Error::sys("creating pipe", e))?,
            )
        } else {
            None
        };
        // An exec'd process never gets more than the container's bounding set.
        sets.ambient.retain(|c| sets.bounding.contains(c));
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(p) => Some(isolator::seccomp::compile(p)?),
            None => None,
        };
        let rlimits = process.rlimits().clone().unwrap_or_default();
        let nnp = process.no_new_privileges().unwrap_or(false);

        // Namespaces that differ from ours are the ones to join.
        let proc_root = Path::new("/proc");
        let mut flags = CloneFlags::empty();
        for (name, flag) in [
            ("user", CloneFlags::CLONE_NEWUSER),
            ("mnt", CloneFlags::CLONE_NEWNS),
            ("uts", CloneFlags::CLONE_NEWUTS),
            ("ipc", CloneFlags::CLONE_NEWIPC),
            ("net", CloneFlags::CLONE_NEWNET),
            ("pid", CloneFlags::CLONE_NEWPID),
            ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ] {
            let theirs = isolator::procinfo::namespace_inode(proc_root, init.pid, name).ok();
            let ours =
                isolator::procinfo::namespace_inode(proc_root, std::process::id() as i32, name)
                    .ok();
            if theirs.is_some() && theirs != ours {
                flags |= flag;
            }
        }
        let in_userns = flags.contains(CloneFlags::CLONE_NEWUSER);
        let pidfd = pidfd_open(init.pid)
            .ok_or_else(|| Error::Init(format!("container init {} is gone", init.pid)))?;
        let procs_files: Vec<PathBuf> = st
            .cgroup
            .as_ref()
            .map(|c| {
                c.dirs()
                    .into_iter()
                    .map(|d| d.join("cgroup.procs"))
                    .collect()
            })
            .unwrap_or_default();
        let to_c = |s: &[u8]| CString::new(s).unwrap_or_default();
        let argv: Vec<CString> = req.args.iter().map(|a| to_c(a.as_bytes())).collect();
        let envp: Vec<CString> = env.iter().map(|e| to_c(e.as_bytes())).collect();
        let path_var = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/bin:/bin")
            .to_string();
        let cmd = req.args[0].clone();

        // SAFETY: the berth CLI is single-threaded when it calls exec, so
        // the child may use the allocator; it ends in _exit or execve.
        match unsafe { fork() }.map_err(|e| Error::sys("fork", e))? {
            ForkResult::Parent { child } => {
                // The child's copy is the one that matters: closed, the
                // receiver sees the end if the child fails before sending.
                drop(console);
                if let Some(ours) = relay_end {
                    return relay_exec(child, ours, pid_pipe);
                }
                let code = loop {
                    match waitpid(child, None) {
                        Ok(WaitStatus::Exited(_, c)) => break c,
                        Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
                        Err(nix::errno::Errno::EINTR) => continue,
                        Ok(_) => continue,
                        Err(e) => return Err(Error::sys("waiting for exec", e)),
                    }
                };
                if let Some((r, w)) = pid_pipe {
                    drop(w);
                    let mut b = [0u8; 4];
                    if code == 0 && nix::unistd::read(&r, &mut b) == Ok(4) {
                        return Ok(ExecOutcome::Detached(i32::from_ne_bytes(b)));
                    }
                    return Err(Error::Init(format!("exec failed (status {code})")));
                }
                Ok(ExecOutcome::Exited(code))
            }
            ForkResult::Child => {
                let fail = |msg: String, code: i32| -> ! {
                    eprintln!("berth: {msg}");
                    // SAFETY: _exit ends the child without running the
                    // parent's atexit handlers.
                    unsafe { libc::_exit(code) }
                };
                for f in &procs_files {
                    if let Err(e) = std::fs::write(f, "0") {
                        fail(format!("joining cgroup {}: {e}", f.display()), 1);
                    }
                }
                // SAFETY: setns on a pidfd we own with namespace flags; it
                // only changes this process's namespaces.
                if unsafe { libc::setns(pidfd.as_raw_fd(), flags.bits()) } < 0 {
                    fail(
                        format!(
                            "joining the namespaces of pid {}: {}",
                            init.pid,
                            nix::errno::Errno::last()
                        ),
                        1,
                    );
                }
                // SAFETY: still single-threaded; see above.
                match unsafe { fork() } {
                    Err(e) => fail(format!("fork: {e}"), 1),
                    Ok(ForkResult::Parent { child }) => {
                        if let Some((_, w)) = &pid_pipe {
                            let _ = nix::unistd::write(w, &child.as_raw().to_ne_bytes());
                        }
                        if req.detach {
                            // Detached: the process is left to our
                            // caller's subreaper once we exit.
                            // SAFETY: see above.
                            unsafe { libc::_exit(0) }
                        }
                        let code = loop {
                            match waitpid(child, None) {
                                Ok(WaitStatus::Exited(_, c)) => break c,
                                Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
                                Err(nix::errno::Errno::EINTR) | Ok(_) => continue,
                                Err(_) => break 255,
                            }
                        };
                        // SAFETY: see above.
                        unsafe { libc::_exit(code) }
                    }
                    Ok(ForkResult::Child) => {}
                }
                if in_userns {
                    let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
                    let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
                }
                if let Some(socket) = &console {
                    // As runc: a pty of the container's devpts (its mount
                    // namespace is ours now), made by root in it, given to
                    // the process's user.
                    if let Err(e) = nix::unistd::setsid() {
                        fail(format!("setsid: {e}"), 1);
                    }
                    if let Err(e) = crate::console::open_in_container(
                        std::os::fd::AsFd::as_fd(socket),
                        console_size,
                        Some(user.uid),
                    )
                    .and_then(|_| crate::console::set_controlling_terminal())
                    {
                        fail(e.to_string(), 1);
                    }
                }
                if let Err(e) = nix::unistd::chdir(&cwd) {
                    fail(format!("working directory {}: {e}", cwd.display()), 1);
                }
                let program = if cmd.contains('/') {
                    Some(PathBuf::from(&cmd))
                } else {
                    path_var
                        .split(':')
                        .map(|d| Path::new(d).join(&cmd))
                        .find(|p| p.is_file())
                };
                let Some(program) = program.filter(|p| p.exists()) else {
                    fail(format!("executable not found in container: {cmd}"), 127)
                };
                if let Err(e) = isolator::rlimits::apply(&rlimits) {
                    fail(e.to_string(), 1);
                }
                let set_groups = !in_userns;
                if let Err(e) = isolator::capabilities::apply(&sets, &user, set_groups) {
                    fail(e.to_string(), 1);
                }
                if nnp {
                    if let Err(e) = isolator::capabilities::set_no_new_privs() {
                        fail(e.to_string(), 1);
                    }
                }
                if let Some(f) = &seccomp {
                    if let Err(e) = f.apply() {
                        fail(e.to_string(), 1);
                    }
                }
                let prog = to_c(program.as_os_str().as_bytes());
                let e = nix::unistd::execve(&prog, &argv, &envp).err();
                fail(format!("executing {}: {e:?}", program.display()), 126)
            }
        }
    }
}

/// `exec -t` in the foreground without a console socket (runc's): the
/// process sends its pty master to `ours`, and this process relays the
/// terminal until the process has exited. `pid_pipe` carries the
/// process's pid, for the signals passed on. A child that fails before
/// sending has said why on stderr; its exit code is returned.
fn relay_exec(
    child: nix::unistd::Pid,
    ours: std::os::fd::OwnedFd,
    pid_pipe: Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>,
) -> Result<ExecOutcome> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let wait_child = || loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, c)) => break c,
            Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
            Err(nix::errno::Errno::EINTR) | Ok(_) => continue,
            Err(_) => break 255,
        }
    };
    let Some((r, w)) = pid_pipe else {
        return Ok(ExecOutcome::Exited(wait_child()));
    };
    drop(w);
    let mut b = [0u8; 4];
    if nix::unistd::read(&r, &mut b) != Ok(4) {
        return Ok(ExecOutcome::Exited(wait_child()));
    }
    let pid = nix::unistd::Pid::from_raw(i32::from_ne_bytes(b));
    let master = match crate::console::recv_master(std::os::fd::AsFd::as_fd(&ours)) {
        Ok((_, m)) => m,
        Err(_) => return Ok(ExecOutcome::Exited(wait_child())),
    };
    // Blocked and read from a signalfd, so that none ends this process
    // with the caller's terminal still raw; all but SIGCHLD and SIGWINCH
    // are passed on to the process.
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGWINCH,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        mask.add(s);
    }
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old))
        .map_err(|e| Error::sys("blocking signals", e))?;
    let relayed = nix::sys::signalfd::SignalFd::with_flags(
        &mask,
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    )
    .map_err(|e| Error::sys("signalfd", e))
    .and_then(|signals| {
        crate::console::relay(
            crate::console::RelayIo::stdio(),
            master,
            &signals,
            || match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, c)) => Some(c),
                Ok(WaitStatus::Signaled(_, s, _)) => Some(128 + s as i32),
                Ok(_) => None,
                Err(nix::errno::Errno::EINTR) => None,
                Err(_) => Some(255),
            },
            |sig| {
                let _ = nix::sys::signal::kill(pid, sig);
            },
        )
        .map_err(Error::from)
    });
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    relayed.map(ExecOutcome::Exited)
}
