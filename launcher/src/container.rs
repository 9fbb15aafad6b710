//! Container lifecycle operations: create, start, kill, wait, remove, list.
//!
//! `create` writes the bundle and spawns the supervisor; the supervisor
//! creates init, which waits on the exec fifo. `start` opens the fifo. The
//! status of a container is derived from what is on disk and alive, never
//! from a cached field alone, so it is right even after a supervisor died.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::spec::{self, LaunchRequest};
use crate::state::{self, ContainerDir, ContainerState, ExitInfo, StateRoot, Status};
use crate::supervisor::{Report, SupervisorArgs};

/// Options of `create` that are about Berth, not about the container.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    /// Remove the container once it exits.
    pub auto_remove: bool,
    /// Also send the container's stdout/stderr to the returned pipes.
    pub attach: bool,
    /// The berth binary to run as supervisor (default: this executable).
    pub exe: Option<PathBuf>,
    /// The container id (default: a new random one). The agent chooses it
    /// so that the sandbox path, which contains it, exists before create.
    pub id: Option<String>,
    /// The host directory used as the container's sandbox (default:
    /// `<state>/<id>/sandbox`). It is not removed with the container.
    pub sandbox: Option<PathBuf>,
    /// Where the container's stdout and stderr are kept (default:
    /// `<state>/<id>/stdout.log` and `stderr.log`).
    pub stdout_path: Option<PathBuf>,
    pub stderr_path: Option<PathBuf>,
}

/// A container that has been created (init waits for `start`).
pub struct Created {
    pub id: String,
    pub pid: i32,
    /// Reports from the supervisor (the `Exited` report comes later).
    pub reports: BufReader<File>,
    /// The container's stdout and stderr when attached.
    pub stdout: Option<File>,
    pub stderr: Option<File>,
    /// The supervisor, our child: spawned by exec, or forked (see
    /// [`Launcher::spawn`]); either way reaped with waitpid on its pid.
    supervisor: Pid,
}

impl Created {
    /// Waits for the supervisor's `Exited` report. None if the supervisor
    /// died without one.
    pub fn next_report(&mut self) -> Option<Report> {
        let mut line = String::new();
        match self.reports.read_line(&mut line) {
            Ok(n) if n > 0 => serde_json::from_str(&line).ok(),
            _ => None,
        }
    }

    /// Reaps the supervisor once it has exited (it is our child).
    pub fn reap_supervisor(&mut self) {
        let _ = waitpid(self.supervisor, Some(WaitPidFlag::WNOHANG));
    }

    /// Waits for the supervisor to exit and reaps it (blocking). Returns at
    /// once if it was reaped already (ECHILD).
    pub fn wait_supervisor(&mut self) {
        while let Err(Errno::EINTR) = waitpid(self.supervisor, None) {}
    }

    pub fn supervisor_pid(&self) -> u32 {
        self.supervisor.as_raw() as u32
    }
}

/// The entry point to the containers under one state root.
pub struct Launcher {
    pub root: StateRoot,
}

impl Launcher {
    pub fn open(root: PathBuf) -> Result<Self> {
        Ok(Launcher {
            root: StateRoot::open(root)?,
        })
    }

    /// Validates the request, writes the bundle, and has a new supervisor
    /// create the container. Everything is removed again if any step fails.
    pub fn create(&self, req: &LaunchRequest, opts: &CreateOptions) -> Result<Created> {
        req.validate()?;
        if let Some(n) = &opts.name {
            state::validate_name(n)?;
        }
        let id = match &opts.id {
            Some(id) if state::is_valid_id(id) => id.clone(),
            Some(id) => {
                return Err(Error::invalid(
                    "container id",
                    format!("{id:?}: use letters, digits, '_', '+', '-', '.'"),
                ))
            }
            None => state::new_id(),
        };
        let dir = self.root.create_container_dir(&id)?;
        let result = self.create_in(&id, &dir, req, opts);
        if result.is_err() {
            let _ = self.root.remove(&id, opts.name.as_deref());
        }
        result
    }

    fn create_in(
        &self,
        id: &str,
        dir: &ContainerDir,
        req: &LaunchRequest,
        opts: &CreateOptions,
    ) -> Result<Created> {
        if let Some(n) = &opts.name {
            self.root.reserve_name(n, id)?;
        }
        let parent = req.cgroup_parent.trim_end_matches('/');
        let cgroup_path = if parent.is_empty() {
            format!("berth/{id}")
        } else {
            format!("{parent}/{id}")
        };
        std::fs::create_dir_all(dir.bundle())
            .map_err(|e| Error::io("creating", &dir.bundle(), e))?;
        let sandbox = opts.sandbox.clone().unwrap_or_else(|| dir.sandbox());
        std::fs::create_dir_all(&sandbox).map_err(|e| Error::io("creating", &sandbox, e))?;
        if let Some(r) = &req.rootless {
            // The sandbox belongs to the container's root, i.e. the caller.
            let _ = nix::unistd::chown(&sandbox, Some(r.uid.into()), Some(r.gid.into()));
        }
        let spec = spec::build(
            req,
            &spec::SpecPaths {
                sandbox: &sandbox,
                cgroup_path: &cgroup_path,
            },
        )?;
        spec.save(dir.config())
            .map_err(|e| Error::Spec(format!("writing {}: {e}", dir.config().display())))?;
        let st = new_state(id, dir.bundle(), opts, req.rootless.is_some());
        self.spawn(dir, st, opts)
    }

    /// Records the new container and starts its supervisor, which creates
    /// init from the bundle's config.json; returns once init is created.
    pub(crate) fn spawn(
        &self,
        dir: &ContainerDir,
        st: ContainerState,
        opts: &CreateOptions,
    ) -> Result<Created> {
        let id = st.id.as_str();
        dir.write_state(&st)?;

        let (report_r, report_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("creating pipe", e))?;
        let attach = if opts.attach {
            let out =
                nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("creating pipe", e))?;
            let err =
                nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("creating pipe", e))?;
            Some((out, err))
        } else {
            None
        };
        let args = SupervisorArgs {
            root: self.root.root.clone(),
            id: id.to_string(),
            status_fd: Some(report_w.as_raw_fd()),
            stdout_fd: attach.as_ref().map(|(o, _)| o.1.as_raw_fd()),
            stderr_fd: attach.as_ref().map(|(_, e)| e.1.as_raw_fd()),
        };
        let inherit: Vec<i32> = [args.status_fd, args.stdout_fd, args.stderr_fd]
            .into_iter()
            .flatten()
            .collect();
        let child = if st.runtime.is_some() && opts.exe.is_none() && single_threaded() {
            // runc's verbs: this supervisor exits as soon as init is
            // created, so it never needs the lean, freshly exec'd process
            // that a long-lived `berth launch` supervisor sheds memory
            // from. Forking it skips an execve of this binary, the dynamic
            // loader relocating it, and std's start-up: about 1.5 ms of a
            // ~10 ms `berth run` here (BERTH_TRACE), and the caller no
            // longer blocks until that execve is done.
            fork_supervisor(args, &inherit)?
        } else {
            self.exec_supervisor(&args, &inherit, &st, opts)?
        };
        crate::trace::mark("spawn: supervisor started");
        drop(report_w);
        let (stdout, stderr) = match attach {
            Some(((out_r, out_w), (err_r, err_w))) => {
                drop((out_w, err_w));
                (Some(File::from(out_r)), Some(File::from(err_r)))
            }
            None => (None, None),
        };
        let mut created = Created {
            id: id.to_string(),
            pid: 0,
            reports: BufReader::new(File::from(report_r)),
            stdout,
            stderr,
            supervisor: child,
        };
        match created.next_report() {
            Some(Report::Created { pid }) => {
                crate::trace::mark("spawn: created report read");
                created.pid = pid;
                Ok(created)
            }
            Some(Report::Failed { message, exit_code }) => {
                created.wait_supervisor();
                if exit_code == 127 {
                    Err(Error::ExecutableNotFound(
                        message
                            .trim_start_matches("executable not found in container: ")
                            .to_string(),
                    ))
                } else {
                    Err(Error::Reported(message))
                }
            }
            other => {
                let status = waitpid(created.supervisor, None).ok();
                Err(Error::Init(format!(
                    "the supervisor exited without creating the container ({other:?}, {status:?})"
                )))
            }
        }
    }

    /// Starts the supervisor as a new process image: the berth binary run
    /// with [`crate::supervisor::SUPERVISOR_ARG`].
    fn exec_supervisor(
        &self,
        args: &SupervisorArgs,
        inherit: &[i32],
        st: &ContainerState,
        opts: &CreateOptions,
    ) -> Result<Pid> {
        let inherit = inherit.to_vec();
        let exe = opts
            .exe
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
        let mut cmd = Command::new(&exe);
        cmd.args(args.to_args());
        if st.runtime.is_none() {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        }
        // else: runc's verbs give the container the caller's stdio, which
        // the supervisor inherits and hands to init.
        // SAFETY: the closure runs between fork and exec and only calls
        // setsid and fcntl, both async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                // Own session: a signal to the launcher's terminal or
                // process group never reaches the supervisor.
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                for fd in &inherit {
                    if libc::fcntl(*fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::io("starting the supervisor", &exe, e))?;
        // The supervisor is reaped with waitpid on its pid (as a forked one
        // is); std's Child does not reap on drop.
        Ok(Pid::from_raw(child.id() as i32))
    }

    /// Starts a created container: opens the exec fifo, which unblocks init.
    pub fn start(&self, key: &str) -> Result<()> {
        let id = self.root.resolve(key)?;
        let dir = self.root.container(&id);
        let st = dir.read_state()?;
        let status = self.status_of(&dir, &st);
        if status != Status::Created {
            return Err(Error::WrongState {
                id,
                status,
                hint: "only a created container can be started".into(),
            });
        }
        let fifo = dir.exec_fifo();
        // Non-blocking open: it succeeds without a writer, so a dead init
        // cannot hang us; poll then waits for init's byte.
        let fd: OwnedFd = nix::fcntl::open(
            &fifo,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::sys(format!("opening {}", fifo.display()), e))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(50u16));
            let mut b = [0u8; 4096];
            match nix::unistd::read(&fd, &mut b) {
                Ok(n) if n > 0 && b[0] == b'0' => break,
                // Init could not start the program (a startContainer
                // hook failed): the rest is its message.
                Ok(n) if n > 0 => {
                    return Err(Error::Init(
                        String::from_utf8_lossy(&b[1..n]).trim().to_string(),
                    ))
                }
                _ => {
                    if !st.init.is_some_and(|p| p.is_alive()) {
                        return Err(Error::Init("init exited before it could be started".into()));
                    }
                    if Instant::now() > deadline {
                        return Err(Error::Init(
                            "init did not answer on the exec fifo within 10 s".into(),
                        ));
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&fifo);
        Ok(())
    }

    /// The status of a container, from the live system and its files.
    pub fn status_of(&self, dir: &ContainerDir, st: &ContainerState) -> Status {
        if dir.exit().exists() {
            return Status::Stopped;
        }
        match st.status {
            // Set-up takes milliseconds; a container still "creating" long
            // after it was created lost its launcher and supervisor mid-way.
            Status::Creating if is_recent(st.created) => Status::Creating,
            Status::Creating => Status::Stopped,
            _ => match st.init {
                Some(p) if p.is_alive() => {
                    if dir.exec_fifo().exists() {
                        Status::Created
                    } else {
                        Status::Running
                    }
                }
                _ => Status::Stopped,
            },
        }
    }

    /// Loads a container's state and current status.
    pub fn load(&self, key: &str) -> Result<(ContainerDir, ContainerState, Status)> {
        let id = self.root.resolve(key)?;
        let dir = self.root.container(&id);
        let st = dir.read_state()?;
        let status = self.status_of(&dir, &st);
        Ok((dir, st, status))
    }

    /// Sends `signal` to the container's init.
    pub fn kill(&self, key: &str, signal: Signal) -> Result<()> {
        let (_, st, status) = self.load(key)?;
        let init = match (status, st.init) {
            (Status::Created | Status::Running, Some(p)) => p,
            _ => {
                return Err(Error::WrongState {
                    id: st.id,
                    status,
                    hint: "only a created or running container can be signalled".into(),
                })
            }
        };
        kill(Pid::from_raw(init.pid), signal)
            .map_err(|e| Error::sys(format!("sending {signal} to pid {}", init.pid), e))
    }

    /// Waits until the container has stopped and returns how it ended.
    pub fn wait(&self, key: &str) -> Result<ExitInfo> {
        let (dir, st, _) = self.load(key)?;
        wait_for_exit(&dir, &st, None).ok_or_else(|| Error::Init("timed out".into()))
    }

    /// Removes a stopped container (or, with `force`, kills it first):
    /// cgroup, state directory and name.
    pub fn remove(&self, key: &str, force: bool) -> Result<()> {
        let (dir, st, status) = self.load(key)?;
        if matches!(status, Status::Created | Status::Running | Status::Creating) {
            if !force {
                return Err(Error::WrongState {
                    id: st.id,
                    status,
                    hint: "stop it first, or remove it with -f".into(),
                });
            }
            if let Some(p) = st.init.filter(|p| p.is_alive()) {
                let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
            }
            if let Some(cg) = &st.cgroup {
                let _ = cg.kill_all();
            }
            // Let the supervisor record the exit before the directory goes.
            let _ = wait_for_exit(&dir, &st, Some(Duration::from_secs(5)));
        }
        // The supervisor may still be finishing (logs, --rm clean-up);
        // removing the directory under it would race its last writes.
        if let Some(s) = st.supervisor.filter(|s| s.is_alive()) {
            if let Some(fd) = pidfd_open(s.pid) {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(2000u16));
            }
        }
        if let Some(cg) = &st.cgroup {
            cg.kill_all()?;
            cg.destroy()?;
        }
        self.root.remove(&st.id, st.name.as_deref())
    }

    /// Every container with its status, oldest first.
    pub fn list(&self) -> Vec<(ContainerDir, ContainerState, Status)> {
        let mut v: Vec<_> = self
            .root
            .ids()
            .into_iter()
            .filter_map(|id| {
                let dir = self.root.container(&id);
                let st = dir.read_state().ok()?;
                let status = self.status_of(&dir, &st);
                Some((dir, st, status))
            })
            .collect();
        v.sort_by_key(|(_, st, _)| st.created);
        v
    }
}

/// True if this process has one thread. Only then may a forked child run
/// arbitrary code (allocate, take locks): another thread could hold a lock
/// at the fork that nobody in the child would ever release.
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1)
}

/// Forks the supervisor: the child runs [`crate::supervisor::main`] and
/// exits with its code, never returning into the caller's stack frames.
/// It starts as an exec'd supervisor would: in a session of its own, with
/// an empty signal mask (std::process resets it; `berth run` blocks the
/// signals it forwards), and with only the descriptors that are not
/// close-on-exec (those of the caller's that the container may inherit,
/// such as `--preserve-fds`, and `inherit`).
fn fork_supervisor(args: SupervisorArgs, inherit: &[i32]) -> Result<Pid> {
    // SAFETY: the caller checked that this process is single-threaded, so
    // the child may allocate and run arbitrary code; it ends in _exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("forking the supervisor", e))? {
        nix::unistd::ForkResult::Parent { child } => Ok(child),
        nix::unistd::ForkResult::Child => {
            // A panic must not unwind into the caller's frames: that would
            // run the CLI's own code (its error handling, its clean-up) a
            // second time, in this child.
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // Own session: a signal to the caller's terminal or process
                // group never reaches the supervisor (as for an exec'd one).
                if nix::unistd::setsid().is_err() {
                    return 1;
                }
                let _ = nix::sys::signal::sigprocmask(
                    SigmaskHow::SIG_SETMASK,
                    Some(&SigSet::empty()),
                    None,
                );
                close_cloexec_fds(inherit);
                crate::supervisor::main(args)
            }))
            .unwrap_or(1);
            // SAFETY: _exit ends this child without running the caller's
            // atexit handlers or flushing its stdio buffers, which belong
            // to the parent.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Closes every descriptor marked close-on-exec except `keep` (and the
/// trace file's): what an execve would have done.
fn close_cloexec_fds(keep: &[i32]) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    // Collected first: closing while listing would close the listing's own
    // descriptor under it.
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let trace = crate::trace::raw_fd();
    for fd in fds {
        if fd <= 2 || keep.contains(&fd) || trace == Some(fd) {
            continue;
        }
        // SAFETY: F_GETFD only reads a flag (EBADF for the listing's own,
        // now closed, descriptor); the descriptors closed are this child's
        // copies, which no code in the child uses afterwards.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC != 0 {
                libc::close(fd);
            }
        }
    }
}

/// The record of a container about to be created.
pub(crate) fn new_state(
    id: &str,
    bundle: PathBuf,
    opts: &CreateOptions,
    rootless: bool,
) -> ContainerState {
    ContainerState {
        id: id.to_string(),
        name: opts.name.clone(),
        created: state::now_nanos(),
        bundle,
        status: Status::Creating,
        init: None,
        supervisor: None,
        cgroup: None,
        auto_remove: opts.auto_remove,
        rootless,
        warnings: Vec::new(),
        annotations: Default::default(),
        stdout_path: opts.stdout_path.clone(),
        stderr_path: opts.stderr_path.clone(),
        runtime: None,
    }
}

fn is_recent(created_ns: u64) -> bool {
    state::now_nanos().saturating_sub(created_ns) < 30_000_000_000
}

/// Waits for exit.json (written by the supervisor), watching the
/// supervisor's pidfd so a dead supervisor does not hang us.
pub fn wait_for_exit(
    dir: &ContainerDir,
    st: &ContainerState,
    timeout: Option<Duration>,
) -> Option<ExitInfo> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let pidfd = st
        .supervisor
        .filter(|s| s.is_alive())
        .and_then(|s| pidfd_open(s.pid));
    loop {
        if let Some(e) = dir.read_exit() {
            return Some(e);
        }
        let supervisor_alive = st.supervisor.is_some_and(|s| s.is_alive());
        let init_alive = st.init.is_some_and(|p| p.is_alive());
        if !supervisor_alive && !init_alive {
            // Nobody is left to write exit.json.
            return dir.read_exit().or(Some(ExitInfo {
                exit_code: 255,
                signal: None,
                oom_killed: false,
                finished_at: state::now_nanos(),
                note: Some("exit status unknown: the supervisor is gone".into()),
            }));
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return None;
        }
        match &pidfd {
            Some(fd) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(200u16));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// pidfd_open(2): a descriptor that becomes readable when the process exits.
/// nix 0.30 does not wrap it.
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // that we own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    Some(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) })
}

/// The absolute path a bundle's root.path refers to.
pub fn rootfs_of(bundle: &Path, root_path: &Path) -> PathBuf {
    if root_path.is_absolute() {
        root_path.to_path_buf()
    } else {
        bundle.join(root_path)
    }
}
