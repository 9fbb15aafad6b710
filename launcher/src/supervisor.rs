//! The per-container supervisor: a small single-threaded process, detached
//! from whoever launched it (own session), that creates the container's
//! init, keeps its output in log files, reaps it, and records how it ended.
//!
//! It is started by exec'ing the berth binary with [`SUPERVISOR_ARG`], so
//! it carries none of the caller's state and only touches the pages it
//! needs. The supervisor of a container created through runc's verbs,
//! which exits as soon as init is created, is forked from a
//! single-threaded caller instead (see `Launcher::spawn`). No async runtime: one poll(2) loop over a signalfd and the
//! container's output pipes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use isolator::cgroups::{Cgroup, Layout};
use isolator::namespaces::NamespacePlan;
use isolator::seccomp::CompiledSeccomp;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::init::{self, InitConfig, SyncMsg};
use crate::state::{
    ContainerDir, ExitInfo, ProcessRef, RuntimeOptions, StateRoot, Status, Warning,
};

/// argv[1] that turns the berth binary into a supervisor.
pub const SUPERVISOR_ARG: &str = "__supervise";

/// Size at which a log file is rotated to `<name>.1` (one old file kept).
pub const LOG_CAP_BYTES: u64 = 16 * 1024 * 1024;

/// Messages from the supervisor to the process that launched it, one JSON
/// document per line on the status pipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    Created { pid: i32 },
    Failed { message: String, exit_code: i32 },
    Exited(ExitInfo),
}

/// Arguments of a supervisor, as passed on its command line.
#[derive(Debug, Clone)]
pub struct SupervisorArgs {
    pub root: PathBuf,
    pub id: String,
    pub status_fd: Option<i32>,
    pub stdout_fd: Option<i32>,
    pub stderr_fd: Option<i32>,
}

impl SupervisorArgs {
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            SUPERVISOR_ARG.to_string(),
            self.root.display().to_string(),
            self.id.clone(),
        ];
        for fd in [self.status_fd, self.stdout_fd, self.stderr_fd] {
            v.push(fd.map(|f| f.to_string()).unwrap_or_else(|| "-".into()));
        }
        v
    }

    /// Parses what `to_args` produced (after SUPERVISOR_ARG).
    pub fn parse(args: &[String]) -> Option<Self> {
        let fd = |s: &String| if s == "-" { None } else { s.parse().ok() };
        match args {
            [root, id, status, out, err] => Some(SupervisorArgs {
                root: PathBuf::from(root),
                id: id.clone(),
                status_fd: fd(status),
                stdout_fd: fd(out),
                stderr_fd: fd(err),
            }),
            _ => None,
        }
    }
}

/// Entry point of the supervisor process. Returns the process exit code.
pub fn main(args: SupervisorArgs) -> i32 {
    // SAFETY: the fds were passed to us by our parent on purpose and are
    // owned by nothing else in this fresh process.
    let take = |fd: Option<i32>| fd.map(|f| unsafe { OwnedFd::from_raw_fd(f) });
    let mut status = take(args.status_fd).map(File::from);
    let forward = [
        take(args.stdout_fd).map(File::from),
        take(args.stderr_fd).map(File::from),
    ];
    let root = StateRoot {
        root: args.root.clone(),
    };
    let dir = root.container(&args.id);
    crate::trace::mark("supervisor: begin");
    match Supervisor::prepare(&root, dir, forward) {
        Ok(mut sup) => match sup.create() {
            Ok(pid) => {
                report(&mut status, &Report::Created { pid });
                crate::trace::mark("supervisor: created reported");
                if sup.runtime.is_some() {
                    // runc's model: init is left to the caller's subreaper,
                    // which reaps it and sees its exit; nothing to watch.
                    return 0;
                }
                let exit = sup.supervise();
                sup.finish(&exit);
                report(&mut status, &Report::Exited(exit));
                0
            }
            Err(e) => {
                sup.cleanup_failed();
                let code = match &e {
                    Error::ExecutableNotFound(_) => 127,
                    _ => 1,
                };
                report(
                    &mut status,
                    &Report::Failed {
                        message: e.to_string(),
                        exit_code: sup.failure_code.unwrap_or(code),
                    },
                );
                1
            }
        },
        Err(e) => {
            report(
                &mut status,
                &Report::Failed {
                    message: e.to_string(),
                    exit_code: 1,
                },
            );
            1
        }
    }
}

/// [`init::recv`] that keeps a descriptor init attached (the seccomp
/// NOTIFY listener) in `kept`.
fn recv_keeping_fd(
    sock: std::os::fd::BorrowedFd,
    kept: &mut Option<OwnedFd>,
) -> nix::Result<Option<SyncMsg>> {
    let (msg, fd) = init::recv_fd(sock)?;
    if fd.is_some() {
        *kept = fd;
    }
    Ok(msg)
}

fn report(status: &mut Option<File>, r: &Report) {
    if let Some(f) = status {
        let mut line = serde_json::to_vec(r).unwrap_or_default();
        line.push(b'\n');
        // The launcher may be gone (killed, or -d): that is fine.
        if f.write_all(&line).is_err() {
            *status = None;
        }
    }
}

struct Output {
    pipe: Option<OwnedFd>,
    log: File,
    log_path: PathBuf,
    written: u64,
    /// Rotate when the log would grow past this many bytes.
    cap: u64,
    forward: Option<File>,
}

impl Output {
    fn open(path: PathBuf, pipe: OwnedFd, forward: Option<File>) -> Result<Self> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("opening log", &path, e))?;
        let written = log.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Output {
            pipe: Some(pipe),
            log,
            log_path: path,
            written,
            cap: LOG_CAP_BYTES,
            forward,
        })
    }

    /// Moves what is readable from the pipe to the log (and the launcher).
    /// Returns false at EOF.
    fn pump(&mut self) -> bool {
        let Some(pipe) = &self.pipe else { return false };
        let mut buf = [0u8; 32 * 1024];
        match nix::unistd::read(pipe, &mut buf) {
            Ok(0) => {
                self.pipe = None;
                false
            }
            Ok(n) => {
                self.write(&buf[..n]);
                true
            }
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => true,
            Err(_) => {
                self.pipe = None;
                false
            }
        }
    }

    fn write(&mut self, data: &[u8]) {
        if self.written + data.len() as u64 > self.cap {
            let old = self.log_path.with_extension("log.1");
            let _ = std::fs::rename(&self.log_path, old);
            if let Ok(f) = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log_path)
            {
                self.log = f;
                self.written = 0;
            }
        }
        if self.log.write_all(data).is_ok() {
            self.written += data.len() as u64;
        }
        if let Some(f) = &mut self.forward {
            if f.write_all(data).is_err() {
                self.forward = None;
            }
        }
    }
}

struct Supervisor {
    root: StateRoot,
    dir: ContainerDir,
    spec: Spec,
    plan: NamespacePlan,
    seccomp: Option<CompiledSeccomp>,
    cgroup: Option<Cgroup>,
    /// The cgroup layout found while creating `cgroup`.
    layout: Option<Layout>,
    init: Option<Pid>,
    signals: SignalFd,
    outputs: Vec<Output>,
    forward: [Option<File>; 2],
    failure_code: Option<i32>,
    /// Unenforced volumes whose users are killed when over their size.
    watches: Vec<SizeWatch>,
    /// Why the supervisor killed the container, if it did.
    kill_note: Option<String>,
    /// Created through runc's command line (see [`RuntimeOptions`]).
    runtime: Option<RuntimeOptions>,
}

/// A volume without an enforced size (Mesos' disk isolator semantics):
/// its usage is measured periodically and the container is killed when it
/// goes over `limit`. Declared in config.json with the annotation
/// [`crate::spec::VOLUME_LIMIT_ANNOTATION`]`<destination>` = bytes.
#[derive(Debug, Clone)]
struct SizeWatch {
    source: PathBuf,
    destination: String,
    limit: u64,
}

/// How often unenforced volumes are measured.
const SIZE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

impl Supervisor {
    fn prepare(root: &StateRoot, dir: ContainerDir, forward: [Option<File>; 2]) -> Result<Self> {
        // Become a subreaper so that anything the container leaves behind
        // outside its pid namespace is ours to reap.
        let _ = nix::sys::prctl::set_child_subreaper(true);
        // SAFETY: ignoring SIGPIPE installs no handler; a closed launcher
        // pipe then shows up as EPIPE instead of killing the supervisor.
        unsafe {
            let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn);
        }
        let signals = crate::attach::signal_fd(&[
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
        ])?;

        let spec = crate::state::load_spec(&dir.config())?;
        let linux = spec.linux().clone().unwrap_or_default();
        let plan = NamespacePlan::from_spec(&linux.namespaces().clone().unwrap_or_default())
            .map_err(|e| Error::Spec(e.to_string()))?;
        // Bad namespace paths and fields that would act on the host's
        // namespaces fail before anything is created.
        plan.check_paths().map_err(|e| Error::Spec(e.to_string()))?;
        let sysctl: Vec<&str> = linux
            .sysctl()
            .as_ref()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        plan.check_fields(
            spec.hostname().as_ref().is_some_and(|h| !h.is_empty()),
            spec.domainname().as_ref().is_some_and(|d| !d.is_empty()),
            &sysctl,
            Path::new("/proc/self/ns"),
        )
        .map_err(|e| Error::Spec(e.to_string()))?;
        let seccomp = match linux.seccomp() {
            Some(profile) => Some(isolator::seccomp::compile(profile)?),
            None => None,
        };
        let watches = size_watches(&spec);
        Ok(Supervisor {
            watches,
            kill_note: None,
            root: root.clone(),
            dir,
            spec,
            plan,
            seccomp,
            cgroup: None,
            layout: None,
            init: None,
            signals,
            outputs: Vec::new(),
            forward,
            failure_code: None,
            runtime: None,
        })
    }

    /// Clones the container's init, places it in its cgroup, and waits until
    /// it is set up and blocked on the exec fifo. Returns its pid.
    fn create(&mut self) -> Result<i32> {
        let mut st = self.dir.read_state()?;
        let rootfs = self.rootfs_path()?;
        let root_mount = if rootfs == Path::new("/") {
            let m = self.dir.root_mount();
            std::fs::create_dir_all(&m).map_err(|e| Error::io("creating", &m, e))?;
            m
        } else {
            rootfs.clone()
        };

        self.runtime = st.runtime.clone();
        let process = self.spec.process().clone().unwrap_or_default();
        let terminal = self.runtime.is_some() && process.terminal().unwrap_or(false);
        let (stdin, out_w, err_w, pipes) = self.stdio(terminal)?;
        // Connected here, on the host, before init enters the container
        // (where the socket's path may not exist); init sends the master.
        let console = match self
            .runtime
            .as_ref()
            .and_then(|r| r.console_socket.as_ref())
        {
            Some(path) if terminal => Some(crate::console::connect(path)?),
            _ if terminal => {
                return Err(Error::invalid(
                    "--console-socket",
                    "process.terminal is true but no console socket was given",
                ))
            }
            _ => None,
        };
        let console_size = process
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16));
        let (sync_parent, sync_child) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::sys("creating sync socket", e))?;
        let fifo_path = self.dir.exec_fifo();
        let _ = std::fs::remove_file(&fifo_path);
        nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o622))
            .map_err(|e| Error::sys(format!("creating {}", fifo_path.display()), e))?;
        // mkfifo honours the umask; the mode must allow any container uid
        // to open it for writing.
        let _ = std::fs::set_permissions(
            &fifo_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o622),
        );
        let fifo = nix::fcntl::open(
            &fifo_path,
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::sys(format!("opening {}", fifo_path.display()), e))?;

        let in_userns = self.plan.has(LinuxNamespaceType::User);
        // The cgroup exists, with its limits, before init does: init is
        // born in the v2/unified directory and joins the v1 ones itself
        // before it runs anything of the user's.
        crate::trace::mark("supervisor: config loaded");
        st.warnings.extend(self.setup_cgroup(st.rootless)?);
        st.cgroup = self.cgroup.clone();
        crate::trace::mark("supervisor: cgroup ready");
        let cgroup_dir = match self.cgroup.as_ref().and_then(|c| c.unified_dir()) {
            Some(d) => Some(
                nix::fcntl::open(
                    d,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|e| Error::sys(format!("opening {}", d.display()), e))?,
            ),
            None => None,
        };
        // The layout setup_cgroup detected (mountinfo and /proc/self/cgroup
        // parsed once per launch, not twice). Detection only fails without
        // any cgroup filesystem; a "cgroup" mount then fails in init,
        // naming it.
        let cgroup_view = match &self.layout {
            Some(l) => isolator::cgroups::mount_view(l, self.cgroup.as_ref()),
            None => Layout::detect()
                .map(|l| isolator::cgroups::mount_view(&l, self.cgroup.as_ref()))
                .unwrap_or_default(),
        };
        let cfg = InitConfig {
            spec: &self.spec,
            plan: &self.plan,
            rootfs,
            root_mount,
            seccomp: self.seccomp.as_ref(),
            sync: &sync_child,
            fifo: &fifo,
            stdin: &stdin,
            stdout: &out_w,
            stderr: &err_w,
            in_userns,
            cgroup: self.cgroup.as_ref(),
            cgroup_view: &cgroup_view,
            runtime: self.runtime.as_ref(),
            console: console.as_ref(),
            console_size,
        };
        let flags = self.plan.clone_flags;
        // A pid (or time) namespace joined by path takes effect for
        // children only: init must be born in it.
        let for_children = self
            .plan
            .enter_for_children()
            .map_err(|e| Error::Spec(e.to_string()))?;
        // SAFETY: the supervisor is single-threaded, so the child (a copy of
        // this process) may run arbitrary code; it ends in execve or _exit.
        let cloned =
            unsafe { isolator::process::clone_fork(flags, cgroup_dir.as_ref().map(|f| f.as_fd())) }
                .map_err(|e| Error::sys(format!("clone with {flags:?}"), e));
        if let Ok(isolator::process::Forked::Child) = cloned.as_ref().map(|c| &c.forked) {
            init::run(&cfg);
        }
        for_children
            .restore()
            .map_err(|e| Error::Spec(e.to_string()))?;
        let cloned = cloned?;
        let pid = match cloned.forked {
            isolator::process::Forked::Parent { child } => child,
            isolator::process::Forked::Child => unreachable!("init::run never returns"),
        };
        drop(cfg);
        crate::trace::mark("supervisor: init cloned");
        drop((sync_child, out_w, err_w, stdin, fifo, cgroup_dir, console));
        self.init = Some(pid);
        if let Some((out_r, err_r)) = pipes {
            self.outputs = vec![
                Output::open(st.stdout_log(&self.dir), out_r, self.forward[0].take())?,
                Output::open(st.stderr_log(&self.dir), err_r, self.forward[1].take())?,
            ];
        }
        if !cloned.in_cgroup {
            if let Some(cg) = &self.cgroup {
                cg.add_pid_unified(pid.as_raw())?;
            }
        }

        // Parent side of the set-up: id maps, then let init go on.
        if in_userns {
            let linux = self.spec.linux().clone().unwrap_or_default();
            isolator::idmap::write_maps(
                Path::new("/proc"),
                pid.as_raw(),
                &linux.uid_mappings().clone().unwrap_or_default(),
                &linux.gid_mappings().clone().unwrap_or_default(),
                nix::unistd::geteuid().is_root(),
            )
            .map_err(|e| Error::Init(e.to_string()))?;
        }
        init::send(sync_parent.as_fd(), &SyncMsg::Continue)
            .map_err(|e| Error::sys("sync with init", e))?;
        let mut listener = None;
        let mut msg = recv_keeping_fd(sync_parent.as_fd(), &mut listener);
        if let Ok(Some(SyncMsg::Hooks)) = msg {
            // Init has its mounts and waits before pivot_root: the
            // runtime-namespace hooks run now (runtime-spec createRuntime).
            let state = crate::runtime::OciState {
                oci_version: crate::runtime::OCI_VERSION.to_string(),
                id: st.id.clone(),
                status: Status::Creating,
                pid: pid.as_raw(),
                bundle: st.bundle.clone(),
                annotations: st.annotations.clone(),
            }
            .to_json();
            let hooks = self.spec.hooks().as_ref();
            let ran = crate::hooks::run_phase(crate::hooks::Phase::Prestart, hooks, &state)
                .and_then(|()| {
                    crate::hooks::run_phase(crate::hooks::Phase::CreateRuntime, hooks, &state)
                });
            if let Err(e) = ran {
                self.reap_failed_init();
                return Err(e.into());
            }
            init::send(
                sync_parent.as_fd(),
                &SyncMsg::HooksDone {
                    state: String::from_utf8_lossy(&state).into_owned(),
                },
            )
            .map_err(|e| Error::sys("sync with init", e))?;
            msg = recv_keeping_fd(sync_parent.as_fd(), &mut listener);
        }
        if let (Ok(Some(SyncMsg::SeccompListener)), Some(fd)) = (&msg, listener.take()) {
            if let Err(e) = self.send_listener(&st, pid.as_raw(), fd) {
                self.reap_failed_init();
                return Err(e);
            }
            msg = init::recv(sync_parent.as_fd());
        }
        match msg {
            Ok(Some(SyncMsg::Ready)) => {}
            Ok(Some(SyncMsg::Error { message, exit_code })) => {
                self.failure_code = Some(exit_code);
                self.reap_failed_init();
                return Err(if exit_code == 127 {
                    Error::ExecutableNotFound(
                        message
                            .trim_start_matches("executable not found in container: ")
                            .to_string(),
                    )
                } else {
                    Error::Init(message)
                });
            }
            other => {
                self.reap_failed_init();
                return Err(Error::Init(format!(
                    "init exited during set-up ({other:?})"
                )));
            }
        }
        // Keep the socket: init reports an exec failure on it after start.
        std::mem::forget(sync_parent);
        crate::trace::mark("supervisor: init ready");

        st.status = Status::Created;
        st.init = ProcessRef::of(pid.as_raw());
        st.supervisor = if self.runtime.is_some() {
            None
        } else {
            ProcessRef::of(std::process::id() as i32)
        };
        self.dir.write_state(&st)?;
        Ok(pid.as_raw())
    }

    /// Sends init's seccomp NOTIFY listener to linux.seccomp.listenerPath
    /// with the container process state, as runc does during create
    /// (status "creating", init's pid).
    fn send_listener(
        &self,
        st: &crate::state::ContainerState,
        pid: i32,
        fd: OwnedFd,
    ) -> Result<()> {
        let Some(profile) = self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
        else {
            return Err(Error::Init(
                "init sent a seccomp listener without a profile".into(),
            ));
        };
        let Some(path) = profile.listener_path() else {
            return Err(Error::Init(
                "init sent a seccomp listener without linux.seccomp.listenerPath".into(),
            ));
        };
        let state = crate::runtime::OciState {
            oci_version: crate::runtime::OCI_VERSION.to_string(),
            id: st.id.clone(),
            status: Status::Creating,
            pid,
            bundle: st.bundle.clone(),
            annotations: st.annotations.clone(),
        };
        let state = serde_json::to_value(&state).unwrap_or_default();
        let message =
            isolator::seccomp::process_state(pid, profile.listener_metadata().as_deref(), state);
        isolator::seccomp::send_to_agent(path, &message, fd.as_fd())?;
        Ok(())
    }

    /// The container's stdin, stdout and stderr, and the read ends of the
    /// output pipes when the supervisor keeps the output in log files.
    /// `berth launch`: /dev/null and pipes to us. runc's verbs: the
    /// caller's own stdio, or /dev/null until init has made its terminal.
    #[allow(clippy::type_complexity)]
    fn stdio(
        &self,
        terminal: bool,
    ) -> Result<(OwnedFd, OwnedFd, OwnedFd, Option<(OwnedFd, OwnedFd)>)> {
        let dup = |fd: std::os::fd::BorrowedFd| -> Result<OwnedFd> {
            fd.try_clone_to_owned()
                .map_err(|e| Error::io("duplicating stdio", Path::new("-"), e))
        };
        if self.runtime.is_some() {
            if terminal {
                // As runc: init starts on /dev/null and takes the pty it
                // opens in the container as stdio once it has one.
                let null = || -> Result<OwnedFd> {
                    Ok(File::options()
                        .read(true)
                        .write(true)
                        .open("/dev/null")
                        .map_err(|e| Error::io("opening", Path::new("/dev/null"), e))?
                        .into())
                };
                return Ok((null()?, null()?, null()?, None));
            }
            // SAFETY: 0, 1 and 2 are this process's stdio, open for its
            // whole life (the launcher passed its own); borrowing them
            // only to duplicate them.
            let (i, o, e) = unsafe {
                (
                    std::os::fd::BorrowedFd::borrow_raw(0),
                    std::os::fd::BorrowedFd::borrow_raw(1),
                    std::os::fd::BorrowedFd::borrow_raw(2),
                )
            };
            return Ok((dup(i)?, dup(o)?, dup(e)?, None));
        }
        let stdin: OwnedFd = File::open("/dev/null")
            .map_err(|e| Error::io("opening", Path::new("/dev/null"), e))?
            .into();
        let (out_r, out_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("creating pipe", e))?;
        let (err_r, err_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("creating pipe", e))?;
        Ok((stdin, out_w, err_w, Some((out_r, err_r))))
    }

    fn rootfs_path(&self) -> Result<PathBuf> {
        let root = self
            .spec
            .root()
            .as_ref()
            .ok_or_else(|| Error::Spec("config.json has no root".into()))?;
        let p = root.path();
        Ok(if p.is_absolute() {
            p.clone()
        } else {
            self.dir.bundle().join(p)
        })
    }

    /// Creates the container's cgroup and applies the limits.
    /// Rootless without a delegated cgroup, the limits that cannot be applied
    /// are returned as warnings instead of failing the launch.
    fn setup_cgroup(&mut self, rootless: bool) -> Result<Vec<Warning>> {
        let linux = self.spec.linux().clone().unwrap_or_default();
        let path = linux
            .cgroups_path()
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| {
                format!(
                    "berth/{}",
                    self.dir
                        .dir
                        .file_name()
                        .and_then(|s| s.to_str())
                        .unwrap_or("x")
                )
            });
        let mut resources = linux.resources().clone().unwrap_or_default();
        // Device rules are set once, on the new cgroup, by apply_devices
        // (they need linux.devices too); apply() gets the limits.
        let devices = isolator::cgroups::DevicePolicy::for_container(
            resources.devices().as_deref().unwrap_or_default(),
            linux.devices().as_deref().unwrap_or_default(),
        )?;
        let mut warnings = Vec::new();
        if rootless && devices.is_some() {
            // As runc: an unprivileged user can neither write a v1 devices
            // cgroup nor attach a BPF program, and opens devices with its
            // own permissions only.
            warnings.push(Warning {
                what: "devices".into(),
                reason: "device cgroup rules are not applied to a rootless container".into(),
            });
        }
        let devices = devices.filter(|_| !rootless);
        let opts = isolator::cgroups::ResolveOptions::for_resources(&resources);
        resources.set_devices(None);
        type Attempt = (Cgroup, Vec<Warning>, Layout);
        let attempt = || -> std::result::Result<Attempt, isolator::cgroups::CgroupError> {
            let layout = Layout::detect()?;
            let mut cg = Cgroup::resolve_with(&layout, &path, opts)?;
            cg.create()?;
            let applied = cg.apply(&resources).and_then(|unapplied| {
                if let Some(d) = &devices {
                    cg.apply_devices(d)?;
                }
                Ok(unapplied)
            });
            match applied {
                // A limit the host cannot apply fails the create, naming
                // it, as runc fails on a missing cgroup file; rootless
                // (runc's --rootless) keeps going with a warning.
                Ok(unapplied) if !unapplied.is_empty() && !rootless => {
                    let _ = cg.destroy();
                    let u = &unapplied[0];
                    Err(isolator::cgroups::CgroupError::Unsupported(format!(
                        "cannot apply linux.resources.{}: {}",
                        u.limit, u.reason
                    )))
                }
                Ok(unapplied) => Ok((
                    cg,
                    unapplied
                        .into_iter()
                        .map(|u| Warning {
                            what: u.limit,
                            reason: u.reason,
                        })
                        .collect(),
                    layout,
                )),
                Err(e) => {
                    let _ = cg.destroy();
                    Err(e)
                }
            }
        };
        match attempt() {
            Ok((cg, more, layout)) => {
                self.cgroup = Some(cg);
                self.layout = Some(layout);
                warnings.extend(more);
                Ok(warnings)
            }
            Err(e) if rootless => {
                warnings.extend(
                    requested_limits(&resources)
                        .into_iter()
                        .map(|what| Warning {
                            what,
                            reason: format!("not applied: no delegated cgroup for this user ({e})"),
                        }),
                );
                Ok(warnings)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn reap_failed_init(&mut self) {
        if let Some(pid) = self.init {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }

    /// Undo a failed create: the cgroup (the mounts died with the mount
    /// namespace). The launcher removes the state directory.
    fn cleanup_failed(&mut self) {
        self.reap_failed_init();
        if let Some(cg) = &self.cgroup {
            let _ = cg.kill_all();
            let _ = cg.destroy();
        }
        let _ = std::fs::remove_file(self.dir.exec_fifo());
    }

    /// Gives back what set-up needed and the loop does not: the parsed
    /// spec and filters, free heap, and the file-backed pages of the binary
    /// and libraries (they stay in the page cache and fault back in if the
    /// loop needs them). A node runs one supervisor per container, so this
    /// is what keeps each at a few hundred KiB resident.
    fn shed_memory(&mut self) {
        self.seccomp = None;
        self.spec = Spec::default();
        // SAFETY: malloc_trim only returns free heap memory to the kernel.
        unsafe {
            libc::malloc_trim(0);
        }
        release_clean_file_pages();
    }

    /// The poll loop: moves output to the logs and reaps children until the
    /// container's init has exited and its output is drained.
    fn supervise(&mut self) -> ExitInfo {
        let init = self.init.unwrap_or(Pid::from_raw(-1));
        let mut exit: Option<WaitStatus> = None;
        let mut drain_deadline: Option<std::time::Instant> = None;
        // Memory is shed once the container has settled, not while the
        // launcher is still starting it (that would compete for the CPU).
        let mut shed = false;
        let mut last_size_check = std::time::Instant::now();
        loop {
            let open: Vec<usize> = (0..self.outputs.len())
                .filter(|i| self.outputs[*i].pipe.is_some())
                .collect();
            if exit.is_some()
                && (open.is_empty()
                    || drain_deadline.is_some_and(|d| std::time::Instant::now() > d))
            {
                break;
            }
            let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            for i in &open {
                if let Some(p) = &self.outputs[*i].pipe {
                    fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                }
            }
            let timeout = if exit.is_some() {
                PollTimeout::from(100u16)
            } else if !shed {
                PollTimeout::from(200u16)
            } else if !self.watches.is_empty() {
                PollTimeout::from(SIZE_CHECK_INTERVAL.as_millis() as u16)
            } else {
                PollTimeout::NONE
            };
            match poll(&mut fds, timeout) {
                Ok(0) if !shed && exit.is_none() => {
                    drop(fds);
                    self.shed_memory();
                    shed = true;
                    continue;
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => break,
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            if exit.is_none() && last_size_check.elapsed() >= SIZE_CHECK_INTERVAL {
                last_size_check = std::time::Instant::now();
                self.check_sizes(init);
            }
            for (k, i) in open.iter().enumerate() {
                if ready[k + 1] {
                    self.outputs[*i].pump();
                }
            }
            if ready[0] {
                while let Ok(Some(info)) = self.signals.read_signal() {
                    let sig = info.ssi_signo as i32;
                    if sig == Signal::SIGCHLD as i32 {
                        continue;
                    }
                    // Someone asked the supervisor to stop: pass it on.
                    if let Ok(s) = Signal::try_from(sig) {
                        let _ = kill(init, s);
                    }
                }
                loop {
                    match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::StillAlive) | Err(_) => break,
                        Ok(ws) => {
                            if ws.pid() == Some(init) {
                                exit = Some(ws);
                                // Everything in the pid namespace dies with
                                // init, so the pipes close soon; a process
                                // outside it may keep them open, so the
                                // drain is bounded.
                                drain_deadline = Some(
                                    std::time::Instant::now() + std::time::Duration::from_secs(1),
                                );
                            }
                        }
                    }
                }
            }
        }
        self.exit_info(exit)
    }

    fn exit_info(&self, ws: Option<WaitStatus>) -> ExitInfo {
        let (exit_code, signal) = match ws {
            Some(WaitStatus::Exited(_, code)) => (code, None),
            Some(WaitStatus::Signaled(_, sig, _)) => (128 + sig as i32, Some(sig as i32)),
            _ => (255, None),
        };
        // Any process of the container killed by the OOM killer counts (as
        // Docker's OOMKilled and Mesos' memory limitation do): init is often
        // a shell that only reports its child's SIGKILL as status 137.
        let oom_killed = self.cgroup.as_ref().is_some_and(|c| c.oom_kill_count() > 0);
        ExitInfo {
            exit_code,
            signal,
            oom_killed,
            finished_at: crate::state::now_nanos(),
            note: self.kill_note.clone(),
        }
    }

    /// Kills the container when an unenforced volume is over its size.
    fn check_sizes(&mut self, init: Pid) {
        if self.kill_note.is_some() {
            return;
        }
        for w in &self.watches {
            let Some(used) = crate::inspect::dir_usage(&w.source, 1_000_000) else {
                continue;
            };
            if used > w.limit {
                self.kill_note = Some(format!(
                    "killed: the volume at {} used {used} bytes, over its size of {} bytes",
                    w.destination, w.limit
                ));
                match &self.cgroup {
                    Some(cg) => {
                        let _ = cg.kill_all();
                    }
                    None => {
                        let _ = kill(init, Signal::SIGKILL);
                    }
                }
                return;
            }
        }
    }

    /// Records the exit durably, then cleans up if the container was
    /// launched with --rm.
    fn finish(&mut self, exit: &ExitInfo) {
        for o in &mut self.outputs {
            let _ = o.log.flush();
        }
        let _ = std::fs::remove_file(self.dir.exec_fifo());
        let Ok(mut st) = self.dir.read_state() else {
            let _ = self.dir.write_exit(exit);
            return;
        };
        if st.auto_remove {
            if let Some(cg) = &st.cgroup {
                let _ = cg.kill_all();
                let _ = cg.destroy();
            }
            let _ = self.root.remove(&st.id, st.name.as_deref());
        } else {
            st.status = Status::Stopped;
            let _ = self.dir.write_state(&st);
            // Last: exit.json is what `wait` and `rm` watch for, so nothing
            // may be written into the directory after it.
            let _ = self.dir.write_exit(exit);
        }
    }
}

/// The size watches config.json asks for.
fn size_watches(spec: &Spec) -> Vec<SizeWatch> {
    let Some(annotations) = spec.annotations().as_ref() else {
        return Vec::new();
    };
    let mounts = spec.mounts().clone().unwrap_or_default();
    annotations
        .iter()
        .filter_map(|(k, v)| {
            let destination = k.strip_prefix(crate::spec::VOLUME_LIMIT_ANNOTATION)?;
            let limit = v.parse().ok()?;
            let source = mounts
                .iter()
                .find(|m| m.destination() == Path::new(destination))?
                .source()
                .clone()?;
            Some(SizeWatch {
                source,
                destination: destination.to_string(),
                limit,
            })
        })
        .collect()
}

/// Human names of the limits in `resources`, for warnings.
fn requested_limits(res: &oci_spec::runtime::LinuxResources) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(m) = res.memory().as_ref().and_then(|m| m.limit()) {
        v.push(format!("memory limit {} MiB", m / (1024 * 1024)));
    }
    if let Some(c) = res.cpu().as_ref().and_then(|c| c.quota()) {
        v.push(format!("cpu quota {c}us"));
    }
    if let Some(p) = res.pids().as_ref().map(|p| p.limit()) {
        v.push(format!("pids limit {p}"));
    }
    v
}

/// madvise(MADV_DONTNEED) on every file-backed mapping that holds no
/// private (copy-on-write) page, per /proc/self/smaps. Such pages are
/// identical to the file, so dropping them loses nothing; mappings with
/// anonymous pages (relocated data, RELRO) are left alone.
fn release_clean_file_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut current: Option<(usize, usize, bool)> = None;
    let flush = |m: Option<(usize, usize, bool)>| {
        if let Some((start, end, true)) = m {
            // SAFETY: the range is a whole mapping of this process, backed
            // by a file and without private pages: dropping its pages only
            // makes later accesses re-read them from the file.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    };
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            flush(current.take());
            let perms = f.next().unwrap_or_default();
            let path = f.nth(3).unwrap_or_default();
            let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            else {
                continue;
            };
            let candidate = path.starts_with('/') && !perms.contains('w');
            current = Some((start, end, candidate));
        } else if first == "Anonymous:" {
            if let Some(m) = current.as_mut() {
                if f.next().unwrap_or("0") != "0" {
                    m.2 = false;
                }
            }
        }
    }
    flush(current.take());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_rotate_at_the_cap_and_keep_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let (r, _w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let path = dir.path().join("stdout.log");
        let mut out = Output::open(path.clone(), r, None).unwrap();
        out.cap = 10;
        out.write(b"12345678");
        out.write(b"abcdef");
        out.write(b"XYZ");
        assert_eq!(std::fs::read(&path).unwrap(), b"abcdefXYZ");
        assert_eq!(
            std::fs::read(dir.path().join("stdout.log.1")).unwrap(),
            b"12345678"
        );
        out.write(b"0123");
        assert_eq!(std::fs::read(&path).unwrap(), b"0123");
        assert_eq!(
            std::fs::read(dir.path().join("stdout.log.1")).unwrap(),
            b"abcdefXYZ"
        );
    }

    #[test]
    fn supervisor_args_round_trip() {
        let a = SupervisorArgs {
            root: "/run/berth".into(),
            id: "abc".into(),
            status_fd: Some(5),
            stdout_fd: None,
            stderr_fd: Some(7),
        };
        let v = a.to_args();
        assert_eq!(v[0], SUPERVISOR_ARG);
        let b = SupervisorArgs::parse(&v[1..]).unwrap();
        assert_eq!(
            (b.status_fd, b.stdout_fd, b.stderr_fd),
            (Some(5), None, Some(7))
        );
        assert_eq!(b.id, "abc");
        assert!(SupervisorArgs::parse(&v[2..]).is_none());
    }
}
