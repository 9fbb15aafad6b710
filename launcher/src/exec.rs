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
    /// runc's --user UID[:GID]; without a GID the process's gid stays.
    pub user: Option<(u32, Option<u32>)>,
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
    /// runc's --cap: added to the bounding, effective and permitted sets,
    /// and to the ambient set only when the process has inheritable
    /// capabilities (the kernel refuses ambient ones that are not).
    pub add_caps: Vec<String>,
    /// runc's --no-new-privs; `None` keeps process.noNewPrivileges.
    pub no_new_privs: Option<bool>,
    /// runc's --preserve-fds: the caller's descriptors 3..3+N stay open in
    /// the process; every other descriptor above 2 is closed.
    pub preserve_fds: u32,
    /// runc's --cgroup, as given: `PATH` or `CONTROLLER[,CONTROLLER]:PATH`,
    /// existing sub-cgroups of the container's cgroup.
    pub sub_cgroups: Vec<String>,
    /// runc's --ignore-paused: exec into a paused container (the process
    /// stays frozen until `resume`).
    pub ignore_paused: bool,
    /// runc's --apparmor and --process-label (the field names to report).
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
    /// runc's --process FILE: this is the whole process (args, env, cwd,
    /// user, capabilities, rlimits, noNewPrivileges); the fields above that
    /// describe the process are not used with it.
    pub process: Option<Box<oci_spec::runtime::Process>>,
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
        let from_file = req.process.as_deref();
        let args = from_file
            .map(|p| p.args().clone().unwrap_or_default())
            .unwrap_or_else(|| req.args.clone());
        if args.is_empty() {
            return Err(match from_file {
                Some(_) => Error::invalid("--process", "args must not be empty"),
                None => Error::invalid(
                    "command",
                    "no command given (berth exec ID -- CMD [ARGS...])",
                ),
            });
        }
        refuse_security_labels(req)?;
        let (dir, st, mut status) = self.load(key)?;
        // A frozen cgroup is runc's "paused" (Launcher::load does not look).
        if status == Status::Running {
            if let Some(cg) = &st.cgroup {
                if cg.is_frozen()? {
                    status = Status::Paused;
                }
            }
        }
        let init =
            match (status, st.init) {
                (Status::Running | Status::Created, Some(p)) => p,
                (Status::Paused, Some(p)) if req.ignore_paused => p,
                _ => return Err(Error::WrongState {
                    id: st.id,
                    status,
                    hint: match status {
                        Status::Paused => {
                            "cannot exec in a paused container (use --ignore-paused to override)"
                                .into()
                        }
                        _ => "exec needs a running container".into(),
                    },
                }),
            };
        let spec = Spec::load(dir.config()).map_err(|e| Error::Spec(e.to_string()))?;
        let ExecProcess {
            env,
            cwd,
            mut sets,
            user,
            rlimits,
            nnp,
            umask,
        } = exec_process(&spec, req)?;
        let procs_files = match &st.cgroup {
            Some(cg) => sub_cgroup_dirs(cg, &req.sub_cgroups)?
                .into_iter()
                .map(|d| d.join("cgroup.procs"))
                .collect(),
            None if !req.sub_cgroups.is_empty() => {
                return Err(Error::invalid(
                    "--cgroup",
                    format!("container {} has no cgroup of its own", st.id),
                ))
            }
            None => Vec::new(),
        };
        // Descriptors the caller passes (--preserve-fds), noted before this
        // process opens any of its own that could take a free number there.
        let preserved: Vec<i32> = (3..3 + req.preserve_fds as i32)
            // SAFETY: F_GETFD only reads this process's descriptor flags.
            .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
            .collect();
        if preserved.len() != req.preserve_fds as usize {
            return Err(Error::invalid(
                "--preserve-fds",
                format!(
                    "{} descriptors asked for, but only {preserved:?} of 3..{} are open",
                    req.preserve_fds,
                    3 + req.preserve_fds
                ),
            ));
        }
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
        let console_size = req
            .process
            .as_deref()
            .and_then(|p| p.console_size())
            .map(|b| (b.height() as u16, b.width() as u16));
        // The relay also needs the process's pid, to pass signals on.
        let pid_pipe = if req.detach || relay_end.is_some() {
            Some(
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .map_err(|e| Error::sys("creating pipe", e))?,
            )
        } else {
            None
        };
        // Detached, the pid is reported only once the program runs, as
        // runc reports a failed exec: the process writes a byte here when
        // it fails before execve; execve closes it (close-on-exec).
        let exec_pipe = if req.detach {
            Some(
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .map_err(|e| Error::sys("creating pipe", e))?,
            )
        } else {
            None
        };
        let exec_failed_fd = exec_pipe.as_ref().map(|(_, w)| w.as_raw_fd());
        // An exec'd process never gets more than the container's bounding set.
        sets.ambient.retain(|c| sets.bounding.contains(c));
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(p) => Some(isolator::seccomp::compile(p)?),
            None => None,
        };
        // A NOTIFY listener comes back from the process on this socket, for
        // us to send to the agent (we are outside the container's mounts).
        let listener_sock = match &seccomp {
            Some(f) if f.needs_listener() => Some(listener_socketpair()?),
            _ => None,
        };

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
        let to_c = |s: &[u8]| CString::new(s).unwrap_or_default();
        let argv: Vec<CString> = args.iter().map(|a| to_c(a.as_bytes())).collect();
        let path_var = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/bin:/bin")
            .to_string();
        let cmd = args[0].clone();

        // SAFETY: the berth CLI is single-threaded when it calls exec, so
        // the child may use the allocator; it ends in _exit or execve.
        match unsafe { fork() }.map_err(|e| Error::sys("fork", e))? {
            ForkResult::Parent { child } => {
                // The child's copy is the one that matters: closed, the
                // receiver sees the end if the child fails before sending.
                drop(console);
                drop(exec_pipe);
                if let Some((ours, theirs)) = listener_sock {
                    drop(theirs);
                    forward_exec_listener(&spec, &st, init.pid, ours)?;
                }
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
                    if let Some(fd) = exec_failed_fd {
                        // SAFETY: write(2) of one byte from a live buffer to
                        // a descriptor this process holds.
                        unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
                    }
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
                        if let Some((r, w)) = exec_pipe {
                            // Until execve (EOF) or a failure (a byte).
                            drop(w);
                            let mut b = [0u8; 1];
                            let failed = loop {
                                match nix::unistd::read(&r, &mut b) {
                                    Err(nix::errno::Errno::EINTR) => continue,
                                    Ok(n) => break n > 0,
                                    Err(_) => break false,
                                }
                            };
                            if failed {
                                let code = match waitpid(child, None) {
                                    Ok(WaitStatus::Exited(_, c)) if c != 0 => c,
                                    _ => 1,
                                };
                                // SAFETY: see above.
                                unsafe { libc::_exit(code) }
                            }
                        }
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
                // Only the caller's 3..3+N pass (runc's --preserve-fds);
                // anything else this process inherited stays out.
                // SAFETY: close_range with CLOSE_RANGE_CLOEXEC and fcntl
                // F_SETFD only change this process's descriptor flags.
                unsafe {
                    libc::syscall(
                        libc::SYS_close_range,
                        3u32,
                        u32::MAX,
                        libc::CLOSE_RANGE_CLOEXEC,
                    );
                    for &fd in &preserved {
                        libc::fcntl(fd, libc::F_SETFD, 0);
                    }
                }
                if let Some(mask) = umask {
                    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
                }
                if let Err(e) = isolator::rlimits::apply(&rlimits) {
                    fail(e.to_string(), 1);
                }
                let set_groups = !in_userns;
                // Seccomp where the container's init (and runc) installs it.
                let listener_end = listener_sock.as_ref().map(|(_, theirs)| theirs);
                if let Err(e) =
                    crate::init::assume_credentials(&sets, &user, set_groups, nnp, || {
                        install_exec_seccomp(seccomp.as_ref(), listener_end).map_err(|message| {
                            crate::init::InitFailure {
                                message,
                                exit_code: 1,
                            }
                        })
                    })
                {
                    fail(e.message, 1);
                }
                // runc's HOME: from the container's /etc/passwd (this
                // process is in its mount namespace now) when env has none.
                let envp: Vec<CString> = crate::init::with_home(env.clone(), user.uid)
                    .iter()
                    .map(|e| to_c(e.as_bytes()))
                    .collect();
                let prog = to_c(program.as_os_str().as_bytes());
                let e = nix::unistd::execve(&prog, &argv, &envp).err();
                fail(format!("executing {}: {e:?}", program.display()), 126)
            }
        }
    }
}

/// The process an exec runs, after runc's rules: the container's
/// process.json with the request's overrides, or the --process file alone.
struct ExecProcess {
    env: Vec<String>,
    cwd: PathBuf,
    sets: isolator::capabilities::CapabilitySets,
    user: isolator::capabilities::UserSpec,
    rlimits: Vec<oci_spec::runtime::PosixRlimit>,
    nnp: bool,
    /// process.user.umask; without one the caller's umask is inherited,
    /// as with runc.
    umask: Option<u32>,
}

fn exec_process(spec: &Spec, req: &ExecRequest) -> Result<ExecProcess> {
    let (container_sets, container_user) =
        crate::init::credentials(spec).map_err(|f| Error::Init(f.message))?;
    let container = spec.process().clone().unwrap_or_default();
    let container_rlimits = container.rlimits().clone().unwrap_or_default();
    if let Some(p) = req.process.as_deref() {
        // runc replaces the process: its env is not merged with the
        // container's; capabilities fall back to the container's only when
        // the file has none; noNewPrivileges left out is false.
        let sets = match p.capabilities() {
            Some(c) => {
                let conv = |field: &str, set: &Option<oci_spec::runtime::Capabilities>| {
                    let names: Vec<String> = set
                        .iter()
                        .flatten()
                        .filter_map(|c| serde_json::to_value(c).ok())
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect();
                    isolator::capabilities::parse_set(&names).map_err(|e| {
                        Error::invalid(format!("--process capabilities.{field}"), e.to_string())
                    })
                };
                isolator::capabilities::CapabilitySets {
                    bounding: conv("bounding", c.bounding())?,
                    effective: conv("effective", c.effective())?,
                    permitted: conv("permitted", c.permitted())?,
                    inheritable: conv("inheritable", c.inheritable())?,
                    ambient: conv("ambient", c.ambient())?,
                }
            }
            None => container_sets,
        };
        let user = isolator::capabilities::UserSpec {
            uid: p.user().uid(),
            gid: p.user().gid(),
            additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
        };
        // runc applies only the file's rlimits (none: the caller's stay).
        let rlimits = p.rlimits().clone().unwrap_or_default();
        for r in &rlimits {
            if r.soft() > r.hard() {
                return Err(Error::invalid(
                    format!("--process rlimits {}", isolator::rlimits::name(r.typ())),
                    format!(
                        "soft limit {} is above the hard limit {}",
                        r.soft(),
                        r.hard()
                    ),
                ));
            }
        }
        if !p.cwd().is_absolute() {
            return Err(Error::invalid(
                "--process cwd",
                format!("{} is not an absolute path", p.cwd().display()),
            ));
        }
        return Ok(ExecProcess {
            env: p.env().clone().unwrap_or_default(),
            cwd: p.cwd().clone(),
            sets,
            user,
            rlimits,
            nnp: p.no_new_privileges().unwrap_or(false),
            umask: p.user().umask(),
        });
    }
    let mut env = container.env().clone().unwrap_or_default();
    for e in &req.env {
        let k = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(k));
        env.push(e.clone());
    }
    let cwd = req.cwd.clone().unwrap_or_else(|| container.cwd().clone());
    if !cwd.is_absolute() {
        return Err(Error::invalid(
            "--cwd",
            format!("{} is not an absolute path", cwd.display()),
        ));
    }
    let mut sets = container_sets;
    let added = isolator::capabilities::parse_set(&req.add_caps)
        .map_err(|e| Error::invalid("--cap", e.to_string()))?;
    // runc adds ambient ones only when the spec has an inheritable set:
    // without it the kernel refuses to raise them.
    let has_inheritable = container
        .capabilities()
        .as_ref()
        .is_some_and(|c| c.inheritable().is_some());
    for c in added {
        sets.bounding.insert(c);
        sets.effective.insert(c);
        sets.permitted.insert(c);
        if has_inheritable {
            sets.ambient.insert(c);
        }
    }
    let mut user = container_user;
    if let Some((u, g)) = req.user {
        user.uid = u;
        // runc: --user UID keeps the process's gid.
        if let Some(g) = g {
            user.gid = g;
        }
    }
    user.additional_gids.extend(&req.additional_gids);
    Ok(ExecProcess {
        env,
        cwd,
        sets,
        user,
        rlimits: container_rlimits,
        umask: container.user().umask(),
        nnp: req
            .no_new_privs
            .unwrap_or_else(|| container.no_new_privileges().unwrap_or(false)),
    })
}

/// SELinux labels and AppArmor profiles are never applied by Berth; asking
/// for one is an error naming where it came from, never silently ignored.
fn refuse_security_labels(req: &ExecRequest) -> Result<()> {
    let file = req.process.as_deref();
    let apparmor = [
        ("--apparmor", req.apparmor.as_deref()),
        (
            "--process apparmorProfile",
            file.and_then(|p| p.apparmor_profile().as_deref()),
        ),
    ];
    for (field, value) in apparmor {
        if value.is_some_and(|v| !v.is_empty()) {
            let why = if Path::new("/sys/module/apparmor/parameters/enabled").exists() {
                "Berth does not apply AppArmor profiles"
            } else {
                "this host has no AppArmor (/sys/module/apparmor is missing)"
            };
            return Err(Error::invalid(field, why));
        }
    }
    let selinux = [
        ("--process-label", req.process_label.as_deref()),
        (
            "--process selinuxLabel",
            file.and_then(|p| p.selinux_label().as_deref()),
        ),
    ];
    for (field, value) in selinux {
        if value.is_some_and(|v| !v.is_empty()) {
            let why = if Path::new("/sys/fs/selinux/enforce").exists() {
                "Berth does not apply SELinux labels"
            } else {
                "this host has no SELinux (/sys/fs/selinux is not mounted)"
            };
            return Err(Error::invalid(field, why));
        }
    }
    Ok(())
}

/// The cgroup directories an exec joins: the container's own, or with
/// runc's --cgroup the named existing sub-cgroups of it. `PATH` alone (one
/// flag only) applies to every hierarchy (the unified one too on a hybrid
/// host); `CONTROLLER[,CONTROLLER]:PATH` to the v1 hierarchies of those
/// controllers, the others staying in the container's cgroup.
fn sub_cgroup_dirs(cg: &isolator::cgroups::Cgroup, flags: &[String]) -> Result<Vec<PathBuf>> {
    use isolator::cgroups::CgroupMode;
    let bad = |reason: String| Error::invalid("--cgroup", reason);
    let mut dirs: Vec<(String, PathBuf)> = cg
        .v1
        .iter()
        .map(|h| (h.controllers.join(","), h.dir.clone()))
        .chain(cg.unified.iter().map(|h| ("unified".into(), h.dir.clone())))
        .collect();
    let mut moved = vec![false; dirs.len()];
    for flag in flags {
        let (controllers, sub) = match flag.split_once(':') {
            Some((c, p)) => (Some(c), p),
            None if flags.len() == 1 => (None, flag.as_str()),
            None => {
                return Err(bad(format!(
                    "{flag:?}: with several --cgroup flags each must be CONTROLLER:PATH"
                )))
            }
        };
        let sub = relative_inside(sub).ok_or_else(|| {
            bad(format!(
                "{flag:?}: the path escapes the container's cgroup (or is empty)"
            ))
        })?;
        let targets: Vec<usize> = match controllers {
            None => (0..dirs.len()).collect(),
            Some(_) if cg.mode == CgroupMode::V2 => {
                return Err(bad(format!(
                    "{flag:?}: cgroup v2 has a single hierarchy; give --cgroup PATH without a controller"
                )))
            }
            Some(list) => {
                let mut t = Vec::new();
                for c in list.split(',') {
                    let i = cg
                        .v1
                        .iter()
                        .position(|h| h.controllers.iter().any(|x| x == c))
                        .ok_or_else(|| {
                            bad(format!(
                                "{flag:?}: the container's cgroup has no {c:?} hierarchy (it has {})",
                                cg.v1
                                    .iter()
                                    .map(|h| h.controllers.join(","))
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            ))
                        })?;
                    t.push(i);
                }
                t
            }
        };
        for i in targets {
            if moved[i] {
                return Err(bad(format!(
                    "{flag:?}: the {} hierarchy is named twice",
                    dirs[i].0
                )));
            }
            moved[i] = true;
            let d = dirs[i].1.join(&sub);
            if !d.is_dir() {
                return Err(bad(format!(
                    "{flag:?}: {} does not exist (the sub-cgroup must be created first)",
                    d.display()
                )));
            }
            dirs[i].1 = d;
        }
    }
    Ok(dirs.into_iter().map(|(_, d)| d).collect())
}

/// `p` made relative and normalised, or `None` if it climbs out with `..`.
/// A leading `/` is relative to the container's cgroup, as in runc.
fn relative_inside(p: &str) -> Option<PathBuf> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.iter().collect())
}

/// The socket an exec'd process hands its NOTIFY listener back on. The
/// CLI's end passes credentials, so the kernel tells it the process's pid
/// as the CLI sees it (the process only knows its pid in the container).
fn listener_socketpair() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use nix::sys::socket::{setsockopt, socketpair, sockopt, AddressFamily, SockFlag, SockType};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::sys("creating the seccomp listener socket", e))?;
    setsockopt(&ours, sockopt::PassCred, &true)
        .map_err(|e| Error::sys("SO_PASSCRED on the seccomp listener socket", e))?;
    Ok((ours, theirs))
}

/// In the exec'd process: installs the filters and, with a listener, hands
/// it to the CLI and waits until the agent has it (runc's procSeccompDone),
/// so a failure to reach the agent stops the process before it runs.
fn install_exec_seccomp(
    filter: Option<&isolator::seccomp::CompiledSeccomp>,
    sock: Option<&std::os::fd::OwnedFd>,
) -> std::result::Result<(), String> {
    let Some(filter) = filter else {
        return Ok(());
    };
    let listener = filter.apply().map_err(|e| e.to_string())?;
    let (Some(fd), Some(sock)) = (listener, sock) else {
        return Ok(());
    };
    crate::init::send_fd(
        std::os::fd::AsFd::as_fd(sock),
        &crate::init::SyncMsg::SeccompListener,
        &fd,
    )
    .map_err(|e| format!("handing the seccomp listener to berth: {e}"))?;
    drop(fd);
    let mut done = [0u8; 1];
    match nix::unistd::read(sock, &mut done) {
        Ok(1) => Ok(()),
        _ => Err("the seccomp listener did not reach the agent".into()),
    }
}

/// In the CLI: receives the exec'd process's listener and sends it to
/// linux.seccomp.listenerPath with the container process state (runc's:
/// the process's pid, the container's state as "running"). No listener
/// means the process failed before installing; its exit status says why.
fn forward_exec_listener(
    spec: &Spec,
    st: &crate::state::ContainerState,
    init_pid: i32,
    sock: std::os::fd::OwnedFd,
) -> Result<()> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixCredentials};
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!(RawFd, UnixCredentials);
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(|e| Error::sys("receiving the seccomp listener", e))?,
        }
    };
    let (mut listener, mut pid) = (None, None);
    for c in msg
        .cmsgs()
        .map_err(|e| Error::sys("receiving the seccomp listener", e))?
    {
        match c {
            ControlMessageOwned::ScmRights(fds) => {
                for f in fds {
                    // SAFETY: a descriptor just received, owned by nobody else.
                    let owned = unsafe { OwnedFd::from_raw_fd(f) };
                    listener.get_or_insert(owned);
                }
            }
            ControlMessageOwned::ScmCredentials(c) => pid = Some(c.pid()),
            _ => {}
        }
    }
    let (Some(listener), Some(pid)) = (listener, pid) else {
        return Ok(());
    };
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(());
    };
    let Some(path) = profile.listener_path() else {
        return Ok(());
    };
    let state = crate::runtime::OciState {
        oci_version: crate::runtime::OCI_VERSION.to_string(),
        id: st.id.clone(),
        status: Status::Running,
        pid: init_pid,
        bundle: st.bundle.clone(),
        annotations: st.annotations.clone(),
    };
    let state = serde_json::to_value(&state).unwrap_or_default();
    let message =
        isolator::seccomp::process_state(pid, profile.listener_metadata().as_deref(), state);
    isolator::seccomp::send_to_agent(path, &message, std::os::fd::AsFd::as_fd(&listener))?;
    nix::unistd::write(&sock, &[0u8])
        .map_err(|e| Error::sys("telling the exec'd process the agent has its listener", e))?;
    Ok(())
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
    for s in crate::console::FORWARDED_SIGNALS
        .into_iter()
        .chain([Signal::SIGCHLD])
    {
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

#[cfg(test)]
mod tests {
    use super::relative_inside;
    use std::path::PathBuf;

    #[test]
    fn sub_cgroup_paths_stay_inside() {
        assert_eq!(relative_inside("a/b"), Some(PathBuf::from("a/b")));
        assert_eq!(relative_inside("/a/./b/"), Some(PathBuf::from("a/b")));
        assert_eq!(relative_inside("a/../b"), Some(PathBuf::from("b")));
        assert_eq!(relative_inside("../x"), None);
        assert_eq!(relative_inside("a/../../x"), None);
        assert_eq!(relative_inside("/"), None);
    }
}
