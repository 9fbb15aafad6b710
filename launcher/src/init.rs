//! The container's init: the process cloned into the new namespaces, which
//! sets the container up and finally becomes the user's command.
//!
//! It runs in the child of the (single-threaded) supervisor, so it may
//! allocate; it never returns: it either execs or reports an error on the
//! sync socket and exits. `setup` reads as the security procedure, one
//! step per line, in the order the kernel requires.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use isolator::capabilities::{self, CapabilitySets, UserSpec};
use isolator::namespaces::{self, NamespacePlan};
use isolator::rootfs::{self, MountContext};
use isolator::seccomp::CompiledSeccomp;
use nix::sched::CloneFlags;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

/// Messages on the supervisor <-> init socket (SOCK_SEQPACKET: one JSON
/// document per packet, so no framing is needed).
#[derive(Debug, Serialize, Deserialize)]
pub enum SyncMsg {
    /// Supervisor -> init: id maps are written and the cgroup is joined.
    Continue,
    /// Init -> supervisor: set up; waiting on the exec fifo for "start".
    Ready,
    /// Init -> supervisor: setting up (or exec) failed.
    Error { message: String, exit_code: i32 },
    /// Init -> supervisor (runc's verbs only): mounts are set up, pivot_root
    /// is next; run the prestart and createRuntime hooks.
    Hooks,
    /// Supervisor -> init: the hooks succeeded; the state JSON for the
    /// container's own hooks (createContainer, startContainer).
    HooksDone { state: String },
    /// Init -> supervisor: the seccomp NOTIFY listener is attached
    /// (SCM_RIGHTS), for linux.seccomp.listenerPath.
    SeccompListener,
}

pub fn send(fd: BorrowedFd, msg: &SyncMsg) -> nix::Result<()> {
    let body = serde_json::to_vec(msg).unwrap_or_default();
    nix::sys::socket::send(fd.as_raw_fd(), &body, nix::sys::socket::MsgFlags::empty()).map(|_| ())
}

/// Receives one message; Ok(None) on EOF (the peer exited or exec'd).
pub fn recv(fd: BorrowedFd) -> nix::Result<Option<SyncMsg>> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match nix::sys::socket::recv(
            fd.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::empty(),
        ) {
            Ok(0) => return Ok(None),
            Ok(n) => return Ok(serde_json::from_slice(&buf[..n]).ok()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Everything init needs, prepared by the supervisor before clone(2) so
/// that the child only acts.
pub struct InitConfig<'a> {
    pub spec: &'a Spec,
    pub plan: &'a NamespacePlan,
    /// Absolute host path of the root filesystem ("/" in host-root mode).
    pub rootfs: PathBuf,
    /// Where the root is bind-mounted before pivot_root.
    pub root_mount: PathBuf,
    pub seccomp: Option<&'a CompiledSeccomp>,
    pub sync: &'a OwnedFd,
    /// O_PATH descriptor of the exec fifo.
    pub fifo: &'a OwnedFd,
    pub stdin: &'a OwnedFd,
    pub stdout: &'a OwnedFd,
    pub stderr: &'a OwnedFd,
    pub in_userns: bool,
    /// The container's cgroup, whose v1 hierarchies init joins itself
    /// (the v2/unified one it was born in).
    pub cgroup: Option<&'a isolator::cgroups::Cgroup>,
    /// What a "cgroup" mount shows, prepared before init exists (init may
    /// be in a new cgroup namespace by the time it mounts).
    pub cgroup_view: &'a isolator::rootfs::CgroupView,
    /// Created through runc's command line: hooks, preserved fds, keyring.
    pub runtime: Option<&'a crate::state::RuntimeOptions>,
    /// process.terminal: the console socket, connected on the host; init
    /// makes its terminal in the container and sends the master there.
    pub console: Option<&'a OwnedFd>,
    /// process.consoleSize (rows, columns).
    pub console_size: Option<(u16, u16)>,
}

/// A failed step: the message and the exit code the container gets.
pub struct InitFailure {
    pub message: String,
    pub exit_code: i32,
}

impl<E: std::fmt::Display> From<(&str, E)> for InitFailure {
    fn from((step, e): (&str, E)) -> Self {
        InitFailure {
            message: format!("{step}: {e}"),
            exit_code: 1,
        }
    }
}

/// The child's entry point; never returns.
pub fn run(cfg: &InitConfig) -> ! {
    let failure = match setup(cfg) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    let _ = send(
        cfg.sync.as_fd_borrowed(),
        &SyncMsg::Error {
            message: failure.message,
            exit_code: failure.exit_code,
        },
    );
    // SAFETY: _exit is always safe; it skips atexit handlers that belong to
    // the supervisor whose memory this child copied.
    unsafe { libc::_exit(failure.exit_code) }
}

trait AsBorrowed {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_>;
}
impl AsBorrowed for OwnedFd {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

fn setup(cfg: &InitConfig) -> Result<std::convert::Infallible, InitFailure> {
    let spec = cfg.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or(("config.json", "no process section"))?;

    crate::trace::mark("init: begin");
    stdio(cfg).map_err(|e| ("setting up stdio", e))?;
    if cfg.runtime.is_some() {
        // As runc: the container is a session of its own (its terminal,
        // if it has one, becomes the controlling terminal once made).
        nix::unistd::setsid().map_err(|e| ("setsid", e))?;
    }
    wait_for_parent(cfg)?;
    if let Some(adj) = process.oom_score_adj() {
        oom_score_adj(adj)?;
    }
    if let Some(cg) = cfg.cgroup {
        cg.join_self_v1().map_err(|e| ("joining the cgroup", e))?;
    }
    become_root_in_userns(cfg).map_err(|e| ("becoming root in the user namespace", e))?;
    // pid and time namespaces were joined by the supervisor for us.
    for j in cfg.plan.join.iter().filter(|j| !j.for_children()) {
        namespaces::join(j).map_err(|e| ("joining namespace", e))?;
    }
    if cfg.plan.new_cgroupns {
        // Now that we are in our cgroup, a new cgroup namespace makes it
        // the root of what the container sees.
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| ("unsharing the cgroup namespace", e))?;
    }
    // In a joined UTS namespace too, as runc does (the spec: "the
    // container UTS namespace may be" another one); without any the
    // supervisor refused the fields.
    if cfg.plan.has_or_joins(LinuxNamespaceType::Uts) {
        if let Some(h) = spec.hostname() {
            namespaces::set_hostname(h).map_err(|e| ("uts", e))?;
        }
        if let Some(d) = spec.domainname() {
            set_domainname(d).map_err(|e| ("domainname", e))?;
        }
    }
    if cfg.runtime.is_some_and(|r| !r.no_new_keyring) {
        join_session_keyring().map_err(|e| ("session keyring", e))?;
    }
    if cfg.plan.has(LinuxNamespaceType::Network) {
        namespaces::loopback_up().map_err(|e| ("network", e))?;
    }
    let hook_state = if cfg.plan.has(LinuxNamespaceType::Mount) {
        filesystem(cfg)?
    } else {
        let state = before_pivot(cfg)?;
        // No mount namespace: /dev is the host's, so there is no
        // /dev/console of the container's to cover.
        terminal(cfg, false)?;
        sysctl(spec)?;
        state
    };
    crate::trace::mark("init: filesystem done");
    let cwd = process.cwd();
    change_dir(cwd)?;
    let env = with_home(
        process.env().clone().unwrap_or_default(),
        process.user().uid(),
    );
    let args: Vec<String> = process.args().clone().unwrap_or_default();
    let program = find_executable(args.first().map(String::as_str).unwrap_or(""), &env)?;
    if let Some(limits) = process.rlimits() {
        isolator::rlimits::apply(limits).map_err(|e| ("rlimits", e))?;
    }
    let (sets, user) = credentials(spec)?;
    let set_groups = !cfg.in_userns || userns_allows_setgroups();
    // Seccomp where runc installs it: while the supervisor is still there
    // to hand a NOTIFY listener to the agent, and, without no_new_privs,
    // before dropping CAP_SYS_ADMIN, which installing then needs.
    let nnp = process.no_new_privileges().unwrap_or(false);
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        set_personality(p.domain())?;
    }
    if let Some(mask) = process.user().umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    assume_credentials(&sets, &user, set_groups, nnp, || install_seccomp(cfg))?;
    send(cfg.sync.as_fd_borrowed(), &SyncMsg::Ready).map_err(|e| ("reporting ready", e))?;
    crate::trace::mark("init: ready, waiting for start");
    wait_for_start(cfg, hook_state.as_deref())?;
    crate::trace::mark("init: started, exec");
    prepare_exec_signals();
    Err(exec(&program, &args, &env))
}

/// Takes on the process's capabilities (and no_new_privs when asked) with
/// the seccomp filter installed where runc installs it: without
/// no_new_privs before the capabilities go, since installing then needs
/// CAP_SYS_ADMIN; with it, right after no_new_privs is set. For init and
/// for exec'd processes alike; `install` installs the filter, if any.
pub(crate) fn assume_credentials(
    sets: &CapabilitySets,
    user: &UserSpec,
    set_groups: bool,
    nnp: bool,
    mut install: impl FnMut() -> Result<(), InitFailure>,
) -> Result<(), InitFailure> {
    if !nnp {
        install()?;
    }
    capabilities::apply(sets, user, set_groups).map_err(|e| ("capabilities", e))?;
    if nnp {
        capabilities::set_no_new_privs().map_err(|e| ("no_new_privs", e))?;
        install()?;
    }
    Ok(())
}

/// Installs the seccomp filters; a NOTIFY listener goes to the supervisor
/// (SCM_RIGHTS on the sync socket), which sends it to the agent.
fn install_seccomp(cfg: &InitConfig) -> Result<(), InitFailure> {
    let Some(filter) = cfg.seccomp else {
        return Ok(());
    };
    let listener = filter
        .apply()
        .map_err(|e| ("loading the seccomp filter", e))?;
    if let Some(fd) = listener {
        send_fd(cfg.sync.as_fd_borrowed(), &SyncMsg::SeccompListener, &fd)
            .map_err(|e| ("handing the seccomp listener to the supervisor", e))?;
    }
    Ok(())
}

/// [`send`] with a descriptor attached (sendmsg: the one syscall a NOTIFY
/// rule may not name, see isolator::seccomp).
pub fn send_fd(fd: BorrowedFd, msg: &SyncMsg, attached: &OwnedFd) -> nix::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let body = serde_json::to_vec(msg).unwrap_or_default();
    let fds = [attached.as_raw_fd()];
    sendmsg::<()>(
        fd.as_raw_fd(),
        &[std::io::IoSlice::new(&body)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(|_| ())
}

/// [`recv`] that also takes a descriptor sent with the message.
pub fn recv_fd(fd: BorrowedFd) -> nix::Result<(Option<SyncMsg>, Option<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = match recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => other?,
        };
        let mut attached = None;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for f in fds {
                    // SAFETY: a descriptor just received, owned by nobody else.
                    let owned = unsafe { OwnedFd::from_raw_fd(f) };
                    attached.get_or_insert(owned);
                }
            }
        }
        let n = msg.bytes;
        if n == 0 {
            return Ok((None, attached));
        }
        return Ok((serde_json::from_slice(&buf[..n]).ok(), attached));
    }
}

/// stdin/stdout/stderr of the container: the descriptors the supervisor
/// prepared. Every other descriptor is marked close-on-exec.
fn stdio(cfg: &InitConfig) -> nix::Result<()> {
    for (fd, target) in [(cfg.stdin, 0), (cfg.stdout, 1), (cfg.stderr, 2)] {
        // SAFETY: dup2 onto 0/1/2 only replaces the child's own stdio
        // descriptors, which nothing else in this process holds.
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
            return Err(nix::errno::Errno::last());
        }
    }
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on this
    // process's descriptors >= 3; the sync socket and fifo stay usable
    // until execve.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc < 0 {
        return Err(nix::errno::Errno::last());
    }
    // --preserve-fds N: the caller's descriptors 3..3+N stay open.
    let keep = cfg.runtime.map(|r| r.preserve_fds).unwrap_or(0);
    for fd in 3..3 + keep as i32 {
        // SAFETY: clearing FD_CLOEXEC on a descriptor number only changes
        // this process's descriptor flags (EBADF if it is not open).
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, 0);
        }
    }
    Ok(())
}

fn wait_for_parent(cfg: &InitConfig) -> Result<(), InitFailure> {
    match recv(cfg.sync.as_fd_borrowed()) {
        Ok(Some(SyncMsg::Continue)) => Ok(()),
        Ok(other) => Err((
            "waiting for the supervisor",
            format!("unexpected message {other:?}"),
        )
            .into()),
        Err(e) => Err(("waiting for the supervisor", e).into()),
    }
}

fn become_root_in_userns(cfg: &InitConfig) -> nix::Result<()> {
    if cfg.in_userns {
        let root = nix::unistd::Uid::from_raw(0);
        let gid = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(gid, gid, gid)?;
        nix::unistd::setresuid(root, root, root)?;
    }
    Ok(())
}

fn userns_allows_setgroups() -> bool {
    std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() == "allow")
        .unwrap_or(false)
}

/// The root filesystem, in the order runc uses: private propagation, the
/// root bind mount, the spec's mounts, devices, pivot_root, then the paths
/// that must be hidden or read-only (these need the new /proc and /sys).
fn filesystem(cfg: &InitConfig) -> Result<Option<String>, InitFailure> {
    let spec = cfg.spec;
    let linux = spec.linux().as_ref();
    let propagation = linux.and_then(|l| l.rootfs_propagation().clone());
    rootfs::make_private(propagation.as_deref()).map_err(|e| ("rootfs", e))?;
    rootfs::make_root_parent_private(&cfg.rootfs).map_err(|e| ("rootfs", e))?;
    rootfs::bind_root(&cfg.rootfs, &cfg.root_mount).map_err(|e| ("rootfs", e))?;
    let ctx = MountContext {
        root: &cfg.root_mount,
        in_userns: cfg.in_userns,
        own_netns: cfg.plan.has(LinuxNamespaceType::Network),
        own_cgroupns: cfg.plan.new_cgroupns,
        cgroups: cfg.cgroup_view,
    };
    let mounts = spec.mounts().clone().unwrap_or_default();
    rootfs::mount_all(&mounts, &ctx).map_err(|e| ("mounts", e))?;
    let dev_is_tmpfs = mounts
        .iter()
        .any(|m| m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs"));
    if dev_is_tmpfs {
        let devices = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
        rootfs::create_devices(&cfg.root_mount, &devices, cfg.in_userns)
            .map_err(|e| ("devices", e))?;
    }
    // The working directory may not exist in the image; create it while
    // the root is still writable (runc does the same).
    if cfg.rootfs != Path::new("/") {
        if let Some(p) = spec.process().as_ref() {
            let cwd = rootfs::secure_join(&cfg.root_mount, p.cwd()).map_err(|e| ("cwd", e))?;
            if !cwd.exists() {
                std::fs::create_dir_all(&cwd).map_err(|e| ("creating the working directory", e))?;
            }
        }
    }
    let hook_state = before_pivot(cfg)?;
    if cfg.runtime.is_some_and(|r| r.no_pivot) {
        rootfs::move_root(&cfg.root_mount).map_err(|e| ("rootfs", e))?;
    } else {
        rootfs::pivot(&cfg.root_mount).map_err(|e| ("rootfs", e))?;
    }
    // Where runc makes it: in the new root, so /dev/ptmx is the
    // container's devpts, and before the root turns read-only.
    terminal(cfg, true)?;
    // Before the read-only paths: /proc/sys is one of them.
    sysctl(spec)?;
    // runc's order: read-only paths, then masked ones (a path masked
    // under a read-only one is still masked).
    if let Some(l) = linux {
        rootfs::readonly_paths(&l.readonly_paths().clone().unwrap_or_default())
            .map_err(|e| ("read-only paths", e))?;
        rootfs::mask_paths(&l.masked_paths().clone().unwrap_or_default())
            .map_err(|e| ("masked paths", e))?;
    }
    // Host-root mode made the whole tree read-only when binding it.
    let readonly = spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    if readonly && cfg.rootfs != Path::new("/") {
        rootfs::readonly_root(cfg.in_userns).map_err(|e| ("read-only root", e))?;
    }
    Ok(hook_state)
}

/// process.terminal, as runc: a pty of the container's own devpts (the
/// slave is /dev/pts/N inside) becomes stdio and controlling terminal, is
/// bind-mounted over /dev/console when `mount_console`, and its master goes
/// over the console socket, which is then closed so the receiver sees the
/// end of the stream.
fn terminal(cfg: &InitConfig, mount_console: bool) -> Result<(), InitFailure> {
    let Some(socket) = cfg.console else {
        return Ok(());
    };
    let owner = cfg.spec.process().as_ref().map(|p| p.user().uid());
    let slave = crate::console::open_in_container(
        std::os::fd::AsFd::as_fd(socket),
        cfg.console_size,
        owner,
    )
    .map_err(|e| ("terminal", e))?;
    // SAFETY: init never returns into the frame that owns this descriptor
    // (it execs or _exits), so nothing uses or closes it after this.
    unsafe {
        libc::close(socket.as_raw_fd());
    }
    if mount_console {
        rootfs::bind_console(Path::new("/"), &slave).map_err(|e| ("/dev/console", e))?;
    }
    crate::console::set_controlling_terminal().map_err(|e| ("terminal", e))?;
    Ok(())
}

/// runc's verbs: the supervisor runs the runtime-namespace hooks, then init
/// runs createContainer in the container's namespaces, still before
/// pivot_root. Returns the state JSON for startContainer.
fn before_pivot(cfg: &InitConfig) -> Result<Option<String>, InitFailure> {
    if cfg.runtime.is_none() {
        return Ok(None);
    }
    send(cfg.sync.as_fd_borrowed(), &SyncMsg::Hooks).map_err(|e| ("hooks", e))?;
    let state = match recv(cfg.sync.as_fd_borrowed()) {
        Ok(Some(SyncMsg::HooksDone { state })) => state,
        other => return Err(("waiting for the runtime hooks", format!("{other:?}")).into()),
    };
    crate::hooks::run_phase(
        crate::hooks::Phase::CreateContainer,
        cfg.spec.hooks().as_ref(),
        state.as_bytes(),
    )
    .map_err(|e| ("hook", e))?;
    Ok(Some(state))
}

/// linux.sysctl, written through the container's /proc/sys.
fn sysctl(spec: &Spec) -> Result<(), InitFailure> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for k in keys {
        if k.contains("..") || k.starts_with('/') {
            return Err(("linux.sysctl", format!("invalid key {k:?}")).into());
        }
        let path = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
        std::fs::write(&path, &map[k]).map_err(|e| InitFailure {
            message: format!("linux.sysctl: writing {k}={}: {e}", map[k]),
            exit_code: 1,
        })?;
    }
    Ok(())
}

/// process.oomScoreAdj. Lowering it below the current minimum needs
/// CAP_SYS_RESOURCE, which root may lack (it does on Berth's CI hosts):
/// that is an error naming the field, never a silent skip.
fn oom_score_adj(adj: i32) -> Result<(), InitFailure> {
    let path = "/proc/self/oom_score_adj";
    match std::fs::write(path, adj.to_string()) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => {
            let current = std::fs::read_to_string(path).unwrap_or_default();
            Err(InitFailure {
                message: format!(
                    "process.oomScoreAdj: setting {adj} (current {}) needs CAP_SYS_RESOURCE: {e}",
                    current.trim()
                ),
                exit_code: 1,
            })
        }
        Err(e) => Err(("process.oomScoreAdj", e).into()),
    }
}

fn set_domainname(name: &str) -> nix::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which the
    // kernel only reads.
    let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if rc < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// A new session keyring, so that the container does not share keys with
/// the runtime's session (runc does this unless --no-new-keyring).
fn join_session_keyring() -> nix::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: a NULL name asks the kernel for a new anonymous session
    // keyring; no memory of ours is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    match nix::errno::Errno::result(rc) {
        Ok(_) => Ok(()),
        // No keyring support in this kernel: there is nothing to share.
        Err(nix::errno::Errno::ENOSYS) => Ok(()),
        Err(e) => Err(e),
    }
}

/// linux.personality (LINUX or LINUX32), set before seccomp as in runc.
fn set_personality(domain: oci_spec::runtime::LinuxPersonalityDomain) -> Result<(), InitFailure> {
    let persona: libc::c_ulong = match domain {
        oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0x0000,
        oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: personality(2) takes a plain integer.
    let rc = unsafe { libc::personality(persona) };
    if rc < 0 {
        return Err(("linux.personality", nix::errno::Errno::last()).into());
    }
    Ok(())
}

fn change_dir(cwd: &Path) -> Result<(), InitFailure> {
    nix::unistd::chdir(cwd).map_err(|e| InitFailure {
        message: format!("working directory {}: {e}", cwd.display()),
        exit_code: 1,
    })
}

/// Looks the command up in the container's PATH, like execvp would, so a
/// missing command is reported before "start" with the shell's code 127.
fn find_executable(cmd: &str, env: &[String]) -> Result<PathBuf, InitFailure> {
    let not_found = || InitFailure {
        message: format!("executable not found in container: {cmd}"),
        exit_code: 127,
    };
    if cmd.is_empty() {
        return Err(not_found());
    }
    let check = |p: &Path| -> Option<Result<PathBuf, InitFailure>> {
        let md = std::fs::metadata(p).ok()?;
        if !md.is_file() {
            return None;
        }
        if nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_err() {
            return Some(Err(InitFailure {
                message: format!("{} is not executable: permission denied", p.display()),
                exit_code: 126,
            }));
        }
        Some(Ok(p.to_path_buf()))
    };
    if cmd.contains('/') {
        return check(Path::new(cmd)).unwrap_or_else(|| Err(not_found()));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        if let Some(r) = check(&Path::new(dir).join(cmd)) {
            return r;
        }
    }
    Err(not_found())
}

/// The process's capability sets and user from the spec.
/// `env` with HOME set, as runc does when the process has none: the home
/// directory of `uid` in the container's /etc/passwd (read from the current
/// root, i.e. the container's once it is entered), else "/". Called in a
/// process cloned from a single-threaded one, where reading a file is safe.
pub(crate) fn with_home(mut env: Vec<String>, uid: u32) -> Vec<String> {
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return env;
    }
    let home = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| home_in_passwd(&passwd, uid))
        .unwrap_or_else(|| "/".to_string());
    env.push(format!("HOME={home}"));
    env
}

/// The home field of `uid`'s first entry in passwd(5) text.
fn home_in_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse() == Ok(uid) && !f[5].is_empty()).then(|| f[5].to_string())
    })
}

pub fn credentials(spec: &Spec) -> Result<(CapabilitySets, UserSpec), InitFailure> {
    let process = spec
        .process()
        .as_ref()
        .ok_or(("config.json", "no process section"))?;
    let caps = process.capabilities().as_ref();
    let conv =
        |set: Option<&oci_spec::runtime::Capabilities>| -> Result<caps::CapsHashSet, InitFailure> {
            let names: Vec<String> = set
                .map(|s| {
                    s.iter()
                        .filter_map(|c| serde_json::to_value(c).ok())
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            capabilities::parse_set(&names).map_err(|e| ("capabilities", e).into())
        };
    let sets = CapabilitySets {
        bounding: conv(caps.and_then(|c| c.bounding().as_ref()))?,
        effective: conv(caps.and_then(|c| c.effective().as_ref()))?,
        permitted: conv(caps.and_then(|c| c.permitted().as_ref()))?,
        inheritable: conv(caps.and_then(|c| c.inheritable().as_ref()))?,
        ambient: conv(caps.and_then(|c| c.ambient().as_ref()))?,
    };
    let u = process.user();
    let user = UserSpec {
        uid: u.uid(),
        gid: u.gid(),
        additional_gids: u.additional_gids().clone().unwrap_or_default(),
    };
    Ok((sets, user))
}

/// Blocks until `start` opens the exec fifo for reading (runc's design:
/// the fifo lets any process start the container without talking to the
/// supervisor). The fifo is reopened through our O_PATH descriptor because
/// its path is outside the new root.
fn wait_for_start(cfg: &InitConfig, hook_state: Option<&str>) -> Result<(), InitFailure> {
    let path = format!("/proc/self/fd/{}", cfg.fifo.as_raw_fd());
    let fd = nix::fcntl::open(
        path.as_str(),
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| ("opening the exec fifo", e))?;
    // startContainer hooks run once `start` has opened the fifo and before
    // it is answered, so that `start` reports their failure: "0" means
    // started, anything else is the error message.
    if let Some(state) = hook_state {
        let state = state.replace("\"status\":\"creating\"", "\"status\":\"created\"");
        if let Err(e) = crate::hooks::run_phase(
            crate::hooks::Phase::StartContainer,
            cfg.spec.hooks().as_ref(),
            state.as_bytes(),
        ) {
            let msg = e.to_string();
            let _ = nix::unistd::write(&fd, format!("E{msg}").as_bytes());
            return Err(("hook", msg).into());
        }
    }
    nix::unistd::write(&fd, b"0").map_err(|e| ("writing the exec fifo", e))?;
    Ok(())
}

/// The supervisor blocks signals and ignores SIGPIPE; the command must start
/// with the defaults.
fn prepare_exec_signals() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: restoring the default disposition installs no handler.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
}

fn exec(program: &Path, args: &[String], env: &[String]) -> InitFailure {
    let to_c = |s: &[u8]| CString::new(s).unwrap_or_default();
    let prog = to_c(program.as_os_str().as_bytes());
    let argv: Vec<CString> = args.iter().map(|a| to_c(a.as_bytes())).collect();
    let envp: Vec<CString> = env.iter().map(|e| to_c(e.as_bytes())).collect();
    let errno = match nix::unistd::execve(&prog, &argv, &envp) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    InitFailure {
        message: format!("executing {}: {errno}", program.display()),
        exit_code: if errno == nix::errno::Errno::ENOENT {
            127
        } else {
            126
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_from_passwd_as_runc() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nbad line\n\
                      app:x:1000:1000::/home/app:/bin/sh\nnohome:x:1001:1001:::/bin/sh\n";
        assert_eq!(home_in_passwd(passwd, 0).as_deref(), Some("/root"));
        assert_eq!(home_in_passwd(passwd, 1000).as_deref(), Some("/home/app"));
        assert_eq!(home_in_passwd(passwd, 1001), None);
        assert_eq!(home_in_passwd(passwd, 7), None);
        let given = vec!["HOME=/x".to_string()];
        assert_eq!(with_home(given.clone(), 0), given);
    }
}
