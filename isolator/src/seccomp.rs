//! OCI `linux.seccomp` profiles compiled to BPF with seccompiler.
//!
//! # Why several filters
//!
//! An OCI profile gives every rule its own action, but a seccompiler
//! [`SeccompFilter`] has a single match action. We therefore compile one
//! profile into a stack of filters. The kernel runs every installed filter for
//! each syscall and keeps the most restrictive result (for equal actions, the
//! data of the most recently installed filter wins), so:
//!
//! * for each distinct non-default action (`SCMP_ACT_ERRNO` with a given errno
//!   counts as its own action) there is a filter that returns that action for
//!   the rules of that group and `ALLOW` for everything else;
//! * filter D returns `ALLOW` for every rule with a non-default action and the
//!   default action for everything else, so that an explicitly listed syscall
//!   escapes the default. D is left out when the default action is `ALLOW`.
//!
//! Rules whose action equals the default action are no-ops and are dropped.
//! When the same syscall appears under several actions the most restrictive
//! one wins where their conditions overlap (libseccomp would refuse or pick
//! one; the stacked result is the conservative choice).
//!
//! Installing filter N+1 needs `prctl` and `seccomp`, which filters 1..N may
//! already restrict, so the filter restricting them (D, in an allowlist) is
//! installed last; a profile where two filters restrict them is refused at
//! compile time rather than failing in the container's init.
//!
//! On x86_64 a permissive default (`ALLOW`/`LOG`) also gets a small
//! hand-written guard filter that kills x32-ABI syscalls, which would
//! otherwise bypass every rule (see [`x32_guard`]).
//!
//! # Installing
//!
//! [`CompiledSeccomp::apply`] calls seccomp(2) itself rather than
//! seccompiler's installer, which takes no flags and always sets
//! no_new_privs: `linux.seccomp.flags` must reach the kernel, and (as in
//! runc) no_new_privs is only set when `process.noNewPrivileges` asks for it,
//! so the caller installs while it still has CAP_SYS_ADMIN otherwise.
//!
//! # SCMP_ACT_NOTIFY
//!
//! seccompiler has no user-notification action. The NOTIFY rules form one
//! filter of their own (a process may hold one listener), compiled with
//! `SCMP_ACT_TRAP` as a placeholder match action, whose `RET` instructions
//! are then rewritten to `SECCOMP_RET_USER_NOTIF`: in that filter TRAP can
//! only be the placeholder, since every other action lives in another filter.
//! It is installed with `SECCOMP_FILTER_FLAG_NEW_LISTENER`, and apply()
//! returns the listener for the caller to send to `listenerPath`
//! ([`send_to_agent`]).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use syscalls::Sysno;

/// Largest errno the kernel honours in `SECCOMP_RET_ERRNO` (it clamps larger values).
const MAX_ERRNO: u32 = 4095;
/// `SECCOMP_RET_DATA` is 16 bits wide, which bounds the `SCMP_ACT_TRACE` message.
const MAX_TRACE_DATA: u32 = 0xffff;
/// Highest syscall argument index (`struct seccomp_data` carries six arguments).
const MAX_ARG_INDEX: usize = 5;

/// Errors from compiling, loading or installing a seccomp profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// seccompiler only generates filters for x86_64, aarch64 and riscv64.
    #[error("seccomp filters are not supported on host architecture {arch}")]
    UnsupportedHostArch {
        /// `std::env::consts::ARCH` of this build.
        arch: &'static str,
    },
    /// The profile restricts itself to architectures we are not running on.
    #[error(
        "seccomp profile architectures [{listed}] do not include the native architecture {native}"
    )]
    ArchMismatch {
        /// Native architecture as an OCI name, e.g. `SCMP_ARCH_X86_64`.
        native: &'static str,
        /// The profile's `architectures`, comma separated.
        listed: String,
    },
    /// A syscall name that does not exist on the native architecture.
    #[error("unknown syscall \"{name}\" on {arch}")]
    UnknownSyscall {
        /// The name as written in the profile.
        name: String,
        /// `std::env::consts::ARCH` of this build.
        arch: &'static str,
    },
    /// `SCMP_ACT_NOTIFY` as `defaultAction`: it would also notify the
    /// syscalls that hand the listener over (runc refuses it too).
    #[error("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action (the listener could never be handed to the agent); use it in syscalls[] rules")]
    NotifyDefault,
    /// `SCMP_ACT_NOTIFY` on the syscall that hands the listener over.
    #[error("linux.seccomp.syscalls: SCMP_ACT_NOTIFY cannot be used for \"{syscall}\": the runtime sends the listener to its agent with it, so the container would hang (runc refuses \"write\" for the same reason)")]
    NotifyHandover {
        /// The refused syscall name.
        syscall: String,
    },
    /// `SCMP_ACT_NOTIFY` rules without a socket to send the listener to.
    #[error("linux.seccomp.listenerPath is required when a rule uses SCMP_ACT_NOTIFY (the seccomp agent's unix socket)")]
    NotifyWithoutListener,
    /// `listenerMetadata` without `listenerPath` (the runtime-spec forbids it).
    #[error("linux.seccomp.listenerMetadata must not be set without linux.seccomp.listenerPath")]
    MetadataWithoutListener,
    /// `errnoRet` given on an action that has no use for it.
    #[error("errnoRet is only valid with SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not {action} (syscall \"{syscall}\")")]
    UnexpectedErrnoRet {
        /// The OCI action of the rule.
        action: LinuxSeccompAction,
        /// First syscall name of the rule.
        syscall: String,
    },
    /// `errnoRet`/`defaultErrnoRet` does not fit in the kernel's return data.
    #[error("{field} {value} is out of range (max {max})")]
    ReturnValueOutOfRange {
        /// Which field, e.g. `errnoRet for syscall "mount"`.
        field: String,
        /// The value from the profile.
        value: u32,
        /// The largest accepted value.
        max: u32,
    },
    /// A condition on an argument that does not exist.
    #[error("argument index {index} in rule for syscall \"{syscall}\" is out of range (0-5)")]
    ArgIndexOutOfRange {
        /// Syscall name of the rule.
        syscall: String,
        /// The `index` field of the argument condition.
        index: usize,
    },
    /// Stacked filters would block the syscalls needed to install each other.
    #[error("more than one stacked filter restricts prctl/seccomp ({filters}), so they cannot all be installed; allow prctl and seccomp unconditionally or restrict them under one action only")]
    InstallerRestricted {
        /// Descriptions of the restricting filters.
        filters: String,
    },
    /// A generated filter exceeds the kernel's 4096-instruction limit.
    #[error("seccomp filter for {filter} is too large ({len} BPF instructions, max 4096)")]
    FilterTooLarge {
        /// Which filter, e.g. `SCMP_ACT_ERRNO(1) rules`.
        filter: String,
        /// Instruction count reported by seccompiler.
        len: usize,
    },
    /// Any other seccompiler backend failure (not expected after our own validation).
    #[error("cannot build seccomp filter for {filter}: {error}")]
    Build {
        /// Which filter or rule.
        filter: String,
        /// seccompiler's error.
        error: BackendError,
    },
    /// The kernel refused a filter.
    #[error("installing seccomp filter {index} of {count} (flags {flags:#x}) failed: {error}")]
    Install {
        /// 1-based position in install order.
        index: usize,
        /// Number of filters in the profile.
        count: usize,
        /// The `SECCOMP_FILTER_FLAG_*` bits passed.
        flags: libc::c_ulong,
        /// The OS error of seccomp(2).
        error: io::Error,
    },
    /// The listener could not be sent to the seccomp agent.
    #[error("cannot send the seccomp listener to the agent at linux.seccomp.listenerPath {}: {error}", path.display())]
    Agent {
        /// `listenerPath`.
        path: PathBuf,
        /// The I/O error of connect or sendmsg.
        error: io::Error,
    },
    /// The profile file could not be read.
    #[error("cannot read seccomp profile {}: {error}", path.display())]
    ReadProfile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The profile file is not a valid OCI `linux.seccomp` object.
    #[error("invalid seccomp profile {}: {error}", path.display())]
    ParseProfile {
        /// The file.
        path: PathBuf,
        /// The serde error (carries line and column).
        error: serde_json::Error,
    },
}

/// A profile compiled to BPF, ready to install without allocating.
#[derive(Debug, Clone)]
pub struct CompiledSeccomp {
    /// Programs in install order.
    programs: Vec<BpfProgram>,
    /// `SECCOMP_FILTER_FLAG_*` bits every filter is installed with (LOG, SPEC_ALLOW): the
    /// kernel applies both per filter (SPEC_ALLOW missing on any one filter forces the
    /// mitigation on; LOG is looked up on the filter whose result wins).
    flags: libc::c_ulong,
    /// Index in `programs` of the SCMP_ACT_NOTIFY filter, installed with NEW_LISTENER.
    listener: Option<usize>,
}

impl CompiledSeccomp {
    /// Number of BPF filters apply() installs (for inspect and tests).
    pub fn filter_count(&self) -> usize {
        self.programs.len()
    }

    /// Whether apply() returns a listener that must go to `listenerPath`.
    pub fn needs_listener(&self) -> bool {
        self.listener.is_some()
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits every filter is installed with.
    pub fn flags(&self) -> libc::c_ulong {
        self.flags
    }

    /// Installs every filter on the calling thread and returns the notification listener if
    /// the profile has SCMP_ACT_NOTIFY rules. Does not set no_new_privs: without it the caller
    /// needs CAP_SYS_ADMIN (runc's rule, so setuid programs keep working when
    /// `noNewPrivileges` is false). TSYNC is never passed: the container's init and an exec'd
    /// process are single-threaded when they install, so there is no other thread to
    /// synchronise (and TSYNC with NEW_LISTENER would need TSYNC_ESRCH).
    ///
    /// Does not allocate, so it is safe after fork in a multi-threaded parent.
    pub fn apply(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let count = self.programs.len();
        let mut listener = None;
        for (i, program) in self.programs.iter().enumerate() {
            let notify = self.listener == Some(i);
            let flags = self.flags
                | if notify {
                    libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
                } else {
                    0
                };
            let prog = libc::sock_fprog {
                // compile() refused programs over 4096 instructions (FilterTooLarge).
                len: program.len() as u16,
                // seccompiler's sock_filter is #[repr(C)] with the kernel's layout, as libc's is.
                filter: program.as_ptr().cast_mut().cast(),
            };
            // SAFETY: `prog` points to `program`, which outlives the call; the kernel only
            // copies the instructions in. The flags are plain bits.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    flags,
                    &prog as *const libc::sock_fprog,
                )
            };
            if rc < 0 {
                return Err(SeccompError::Install {
                    index: i + 1,
                    count,
                    flags,
                    error: io::Error::last_os_error(),
                });
            }
            if notify {
                // SAFETY: with NEW_LISTENER, seccomp(2) returns a new descriptor (O_CLOEXEC)
                // that nothing else owns.
                listener = Some(unsafe { OwnedFd::from_raw_fd(rc as RawFd) });
            }
        }
        Ok(listener)
    }
}

/// The runtime-spec "container process state" sent with the listener to `listenerPath`.
/// `state` is the container's state JSON (runtime.md); `pid` the process that installed the
/// filter, as the runtime sees it.
pub fn process_state(pid: i32, metadata: Option<&str>, state: serde_json::Value) -> Vec<u8> {
    let mut doc = serde_json::json!({
        "ociVersion": state["ociVersion"].clone(),
        "fds": ["seccompFd"],
        "pid": pid,
        "state": state,
    });
    if let Some(m) = metadata {
        doc["metadata"] = serde_json::Value::from(m);
    }
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// Sends `message` (a [`process_state`]) and the listener in one SCM_RIGHTS message over a new
/// connection to the agent's socket, then closes it (the runtime-spec: one state per
/// connection, never reused).
pub fn send_to_agent(
    path: &Path,
    message: &[u8],
    listener: BorrowedFd,
) -> Result<(), SeccompError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let agent = |error: io::Error| SeccompError::Agent {
        path: path.to_owned(),
        error,
    };
    let stream = std::os::unix::net::UnixStream::connect(path).map_err(agent)?;
    let fds = [listener.as_raw_fd()];
    let mut sent = 0;
    while sent < message.len() {
        let iov = [io::IoSlice::new(&message[sent..])];
        // The descriptor goes with the first sendmsg only (runtime-spec).
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage] = if sent == 0 { &cmsg } else { &[] };
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(agent(e.into())),
        }
    }
    Ok(())
}

/// Which `SECCOMP_FILTER_FLAG_*` of the runtime-spec this kernel accepts, probed as libseccomp
/// does: seccomp(2) with a NULL program fails with EFAULT for a known flag, EINVAL otherwise.
pub fn kernel_supports_flag(flag: libc::c_ulong) -> bool {
    // SAFETY: a NULL program makes the kernel fail before installing anything; no memory of
    // ours is read or written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flag,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

/// The native architecture in the three spellings we need.
struct NativeArch {
    target: TargetArch,
    /// `std::env::consts::ARCH`, used in messages.
    name: &'static str,
    /// OCI name, e.g. `SCMP_ARCH_X86_64`.
    oci: Arch,
    oci_name: &'static str,
}

fn native_arch() -> Result<NativeArch, SeccompError> {
    let name = std::env::consts::ARCH;
    let (target, oci, oci_name) = match name {
        "x86_64" => (TargetArch::x86_64, Arch::ScmpArchX86_64, "SCMP_ARCH_X86_64"),
        "aarch64" => (
            TargetArch::aarch64,
            Arch::ScmpArchAarch64,
            "SCMP_ARCH_AARCH64",
        ),
        "riscv64" => (
            TargetArch::riscv64,
            Arch::ScmpArchRiscv64,
            "SCMP_ARCH_RISCV64",
        ),
        _ => return Err(SeccompError::UnsupportedHostArch { arch: name }),
    };
    Ok(NativeArch {
        target,
        name,
        oci,
        oci_name,
    })
}

/// Checks `architectures`. Only the native architecture is compiled: other listed
/// architectures (e.g. `SCMP_ARCH_X86`, `SCMP_ARCH_X32` next to `SCMP_ARCH_X86_64`, as Docker's
/// profile lists them) are accepted and ignored, because seccompiler's arch check in every
/// filter kills the process on a syscall made through a foreign ABI anyway. An empty list means
/// "native", as in libseccomp.
fn check_architectures(profile: &LinuxSeccomp, native: &NativeArch) -> Result<(), SeccompError> {
    let listed = profile.architectures().as_deref().unwrap_or(&[]);
    if listed.is_empty()
        || listed
            .iter()
            .any(|arch| *arch == native.oci || *arch == Arch::ScmpArchNative)
    {
        return Ok(());
    }
    Err(SeccompError::ArchMismatch {
        native: native.oci_name,
        listed: listed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The seccomp(2) flags for `linux.seccomp.flags`. An unknown flag string is already a
/// deserialization error naming it (oci-spec's enum; SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV is
/// one, as oci-spec 0.8 and 0.9 lack it). As runc 1.2: no `flags` at all means SPEC_ALLOW
/// (seccomp then leaves the speculative store bypass mitigation to the process, as without a
/// filter), an explicit empty list means none. TSYNC maps to nothing, see
/// [`CompiledSeccomp::apply`].
///
/// The exhaustive match makes a new oci-spec flag a compile error here rather than silently
/// accepted.
fn filter_flags(profile: &LinuxSeccomp) -> libc::c_ulong {
    let Some(flags) = profile.flags() else {
        return libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
    };
    flags.iter().fold(0, |bits, flag| {
        bits | match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
        }
    })
}

/// An OCI action as compiled: one seccompiler has, or NOTIFY, which it lacks (see the module
/// docs).
#[derive(Debug, Clone, PartialEq)]
enum Action {
    Filter(SeccompAction),
    Notify,
}

/// What the NOTIFY filter is compiled with before its returns are rewritten.
const NOTIFY_PLACEHOLDER: SeccompAction = SeccompAction::Trap;

/// Syscalls a NOTIFY rule may not name: the container's init and an exec'd process hand the
/// listener to the runtime with sendmsg(2) after installing, and nobody could answer yet.
const NOTIFY_REFUSED: [&str; 1] = ["sendmsg"];

/// Maps an OCI action (+ errnoRet) to seccompiler's. `field` names the errno field in messages.
fn convert_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    field: impl FnOnce() -> String,
    syscall: Option<&str>,
) -> Result<Action, SeccompError> {
    let data = |max: u32| {
        // runc and libseccomp default both ERRNO and TRACE data to EPERM.
        let value = errno_ret.unwrap_or(libc::EPERM as u32);
        if value > max {
            return Err(SeccompError::ReturnValueOutOfRange {
                field: field(),
                value,
                max,
            });
        }
        Ok(value)
    };
    let converted = match action {
        LinuxSeccompAction::ScmpActErrno => {
            return Ok(Action::Filter(SeccompAction::Errno(data(MAX_ERRNO)?)))
        }
        LinuxSeccompAction::ScmpActTrace => {
            return Ok(Action::Filter(SeccompAction::Trace(data(MAX_TRACE_DATA)?)))
        }
        LinuxSeccompAction::ScmpActAllow => Action::Filter(SeccompAction::Allow),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            Action::Filter(SeccompAction::KillThread)
        }
        LinuxSeccompAction::ScmpActKillProcess => Action::Filter(SeccompAction::KillProcess),
        LinuxSeccompAction::ScmpActTrap => Action::Filter(SeccompAction::Trap),
        LinuxSeccompAction::ScmpActLog => Action::Filter(SeccompAction::Log),
        LinuxSeccompAction::ScmpActNotify => Action::Notify,
    };
    match (errno_ret, syscall) {
        (Some(_), Some(syscall)) => Err(SeccompError::UnexpectedErrnoRet {
            action,
            syscall: syscall.to_owned(),
        }),
        _ => Ok(converted),
    }
}

/// Human-readable action for messages, in OCI spelling.
fn action_name(action: &Action) -> String {
    let Action::Filter(action) = action else {
        return "SCMP_ACT_NOTIFY".into();
    };
    match action {
        SeccompAction::Allow => "SCMP_ACT_ALLOW".into(),
        SeccompAction::Errno(errno) => format!("SCMP_ACT_ERRNO({errno})"),
        SeccompAction::KillThread => "SCMP_ACT_KILL_THREAD".into(),
        SeccompAction::KillProcess => "SCMP_ACT_KILL_PROCESS".into(),
        SeccompAction::Log => "SCMP_ACT_LOG".into(),
        SeccompAction::Trace(data) => format!("SCMP_ACT_TRACE({data})"),
        SeccompAction::Trap => "SCMP_ACT_TRAP".into(),
    }
}

fn build_error(filter: String, error: BackendError) -> SeccompError {
    match error {
        BackendError::FilterTooLarge(len) => SeccompError::FilterTooLarge { filter, len },
        error => SeccompError::Build { filter, error },
    }
}

/// Converts one OCI argument condition. All comparisons are 64-bit, as in libseccomp.
/// SCMP_CMP_MASKED_EQ is `(arg & value) == valueTwo` (valueTwo defaults to 0, as in runc);
/// seccompiler compares against `valueTwo & value`, which only differs for a valueTwo with bits
/// outside the mask, a rule that could never match.
fn convert_arg(syscall: &str, arg: &LinuxSeccompArg) -> Result<SeccompCondition, SeccompError> {
    let index = u8::try_from(arg.index())
        .ok()
        .filter(|_| arg.index() <= MAX_ARG_INDEX)
        .ok_or_else(|| SeccompError::ArgIndexOutOfRange {
            syscall: syscall.to_owned(),
            index: arg.index(),
        })?;
    let (op, value) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
        LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
        LinuxSeccompOperator::ScmpCmpMaskedEq => (
            SeccompCmpOp::MaskedEq(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|error| build_error(format!("syscall \"{syscall}\""), error))
}

/// Rules of one filter, per syscall number. `None` means "unconditionally", which absorbs any
/// conditional rule for the same syscall (the OR of anything with "always" is "always").
#[derive(Default, Clone)]
struct RuleMap(BTreeMap<i64, Option<Vec<SeccompRule>>>);

impl RuleMap {
    fn add(&mut self, nr: i64, rule: Option<SeccompRule>) {
        match (self.0.entry(nr), rule) {
            (Entry::Vacant(slot), rule) => {
                slot.insert(rule.map(|rule| vec![rule]));
            }
            (Entry::Occupied(mut slot), None) => {
                slot.insert(None);
            }
            (Entry::Occupied(mut slot), Some(rule)) => {
                if let Some(rules) = slot.get_mut() {
                    rules.push(rule);
                }
            }
        }
    }

    fn merge(&mut self, other: &RuleMap) {
        for (nr, rules) in &other.0 {
            match rules {
                None => self.add(*nr, None),
                Some(rules) => rules
                    .iter()
                    .for_each(|rule| self.add(*nr, Some(rule.clone()))),
            }
        }
    }

    /// Whether the installer syscall (`seccomp`) appears at all.
    fn mentions_installer(&self) -> bool {
        INSTALLER_SYSCALLS
            .iter()
            .any(|sysno| self.0.contains_key(&i64::from(sysno.id())))
    }

    /// Whether every installer syscall matches without conditions.
    fn allows_installer_unconditionally(&self) -> bool {
        INSTALLER_SYSCALLS
            .iter()
            .all(|sysno| matches!(self.0.get(&i64::from(sysno.id())), Some(None)))
    }

    fn into_seccompiler(self) -> BTreeMap<i64, Vec<SeccompRule>> {
        self.0
            .into_iter()
            .map(|(nr, rules)| (nr, rules.unwrap_or_default()))
            .collect()
    }
}

/// Syscalls [`CompiledSeccomp::apply`] makes to install a filter.
const INSTALLER_SYSCALLS: [Sysno; 1] = [Sysno::seccomp];

/// One filter to build: a description for messages, whether it may block the installation of
/// later filters, whether it is the NOTIFY filter, and the seccompiler filter itself.
struct Planned {
    what: String,
    restricts_installer: bool,
    notify: bool,
    filter: SeccompFilter,
}

/// Whether any Linux architecture has a syscall of this name.
fn exists_on_some_arch(name: &str) -> bool {
    use syscalls::{aarch64, arm, mips, mips64, powerpc, powerpc64, riscv32, riscv64, s390x};
    use syscalls::{sparc, sparc64, x86, x86_64};
    x86_64::Sysno::from_str(name).is_ok()
        || x86::Sysno::from_str(name).is_ok()
        || aarch64::Sysno::from_str(name).is_ok()
        || arm::Sysno::from_str(name).is_ok()
        || mips::Sysno::from_str(name).is_ok()
        || mips64::Sysno::from_str(name).is_ok()
        || powerpc::Sysno::from_str(name).is_ok()
        || powerpc64::Sysno::from_str(name).is_ok()
        || riscv32::Sysno::from_str(name).is_ok()
        || riscv64::Sysno::from_str(name).is_ok()
        || s390x::Sysno::from_str(name).is_ok()
        || sparc::Sysno::from_str(name).is_ok()
        || sparc64::Sysno::from_str(name).is_ok()
}

/// Compiles an OCI `linux.seccomp` section for the native architecture. See the module docs
/// for how per-rule actions become a stack of filters.
///
/// Syscall names: a name another architecture has (engines ship one profile for all) cannot be
/// called here, so its rule holds trivially and is skipped, as runc does. A name no
/// architecture in Berth's table has is skipped in an `SCMP_ACT_ALLOW` rule (the call then
/// gets the default action, never more than the profile allows; runc skips every name
/// libseccomp does not know) and is an error in any other rule: skipping a restricting rule
/// would leave the syscall allowed if the kernel has it (a typo, or a syscall newer than the
/// table, such as mseal).
pub fn compile(profile: &LinuxSeccomp) -> Result<CompiledSeccomp, SeccompError> {
    let native = native_arch()?;
    check_architectures(profile, &native)?;
    let flags = filter_flags(profile);

    let default = match convert_action(
        profile.default_action(),
        profile.default_errno_ret(),
        || "defaultErrnoRet".to_owned(),
        None,
    )? {
        Action::Filter(action) => action,
        Action::Notify => return Err(SeccompError::NotifyDefault),
    };
    if profile.listener_metadata().is_some() && profile.listener_path().is_none() {
        return Err(SeccompError::MetadataWithoutListener);
    }

    // Non-default actions in order of first appearance, each with its rules.
    let mut groups: Vec<(Action, RuleMap)> = Vec::new();
    for entry in profile.syscalls().iter().flatten() {
        let Some(first) = entry.names().first() else {
            continue;
        };
        let action = convert_action(
            entry.action(),
            entry.errno_ret(),
            || format!("errnoRet for syscall \"{first}\""),
            Some(first),
        )?;
        // Validate names and arguments even when the rule turns out to be a no-op, so a typo
        // is reported the same way whatever the default action is.
        let mut resolved = Vec::with_capacity(entry.names().len());
        for name in entry.names() {
            if action == Action::Notify && NOTIFY_REFUSED.contains(&name.as_str()) {
                return Err(SeccompError::NotifyHandover {
                    syscall: name.clone(),
                });
            }
            let Ok(sysno) = Sysno::from_str(name) else {
                if exists_on_some_arch(name) || action == Action::Filter(SeccompAction::Allow) {
                    continue;
                }
                return Err(SeccompError::UnknownSyscall {
                    name: name.clone(),
                    arch: native.name,
                });
            };
            resolved.push((i64::from(sysno.id()), rule_for(name, entry)?));
        }
        if action == Action::Filter(default.clone()) {
            continue;
        }
        let index = match groups.iter().position(|(a, _)| *a == action) {
            Some(index) => index,
            None => {
                groups.push((action, RuleMap::default()));
                groups.len() - 1
            }
        };
        for (nr, rule) in resolved {
            groups[index].1.add(nr, rule);
        }
    }
    if profile.listener_path().is_none() && groups.iter().any(|(a, _)| *a == Action::Notify) {
        return Err(SeccompError::NotifyWithoutListener);
    }

    let mut planned = Vec::new();
    let mut escapes = RuleMap::default();
    for (action, rules) in groups {
        escapes.merge(&rules);
        let what = format!("{} rules", action_name(&action));
        let (matched, notify) = match action {
            // Allowed rules only need to escape the default, which filter D does.
            Action::Filter(SeccompAction::Allow) => continue,
            Action::Filter(action) => (action, false),
            Action::Notify => (NOTIFY_PLACEHOLDER, true),
        };
        let restricts_installer =
            rules.mentions_installer() && !matches!(matched, SeccompAction::Log);
        let filter = SeccompFilter::new(
            rules.into_seccompiler(),
            SeccompAction::Allow,
            matched,
            native.target,
        )
        .map_err(|error| build_error(what.clone(), error))?;
        planned.push(Planned {
            what,
            restricts_installer,
            notify,
            filter,
        });
    }
    if default != SeccompAction::Allow {
        let what = format!(
            "default action {}",
            action_name(&Action::Filter(default.clone()))
        );
        let restricts_installer =
            !matches!(default, SeccompAction::Log) && !escapes.allows_installer_unconditionally();
        let filter = SeccompFilter::new(
            escapes.into_seccompiler(),
            default.clone(),
            SeccompAction::Allow,
            native.target,
        )
        .map_err(|error| build_error(what.clone(), error))?;
        planned.push(Planned {
            what,
            restricts_installer,
            notify: false,
            filter,
        });
    }

    // The filter that may block seccomp(2) goes last. Reordering is harmless: ties between
    // equal actions can only happen between group filters (D returns ALLOW wherever a group
    // matches), and those keep their relative order.
    let restricting: Vec<&str> = planned
        .iter()
        .filter(|p| p.restricts_installer)
        .map(|p| p.what.as_str())
        .collect();
    if restricting.len() > 1 {
        return Err(SeccompError::InstallerRestricted {
            filters: restricting.join(", "),
        });
    }
    planned.sort_by_key(|p| p.restricts_installer);

    let mut programs = Vec::with_capacity(planned.len() + 1);
    #[cfg(target_arch = "x86_64")]
    if !planned.is_empty() && matches!(default, SeccompAction::Allow | SeccompAction::Log) {
        programs.push(x32_guard());
    }
    let mut listener = None;
    for Planned {
        what,
        filter,
        notify,
        ..
    } in planned
    {
        let mut program = BpfProgram::try_from(filter).map_err(|error| build_error(what, error))?;
        if notify {
            to_user_notif(&mut program);
            listener = Some(programs.len());
        }
        programs.push(program);
    }
    Ok(CompiledSeccomp {
        programs,
        flags,
        listener,
    })
}

/// Turns the NOTIFY filter's placeholder returns into `SECCOMP_RET_USER_NOTIF`. Its other
/// returns are ALLOW (no rule matched) and KILL_PROCESS (foreign architecture).
fn to_user_notif(program: &mut BpfProgram) {
    let ret_k = (libc::BPF_RET | libc::BPF_K) as u16;
    for insn in program.iter_mut() {
        if insn.code == ret_k && insn.k == libc::SECCOMP_RET_TRAP {
            insn.k = libc::SECCOMP_RET_USER_NOTIF;
        }
    }
}

/// The seccompiler rule for one OCI entry's `args` (ANDed), or `None` for "any arguments".
fn rule_for(syscall: &str, entry: &LinuxSyscall) -> Result<Option<SeccompRule>, SeccompError> {
    let args = entry.args().as_deref().unwrap_or(&[]);
    if args.is_empty() {
        return Ok(None);
    }
    let conditions = args
        .iter()
        .map(|arg| convert_arg(syscall, arg))
        .collect::<Result<Vec<_>, _>>()?;
    SeccompRule::new(conditions)
        .map(Some)
        .map_err(|error| build_error(format!("syscall \"{syscall}\""), error))
}

/// Kills x32-ABI syscalls. They arrive with the x86_64 audit arch and `nr | 0x40000000`, so
/// seccompiler's arch check lets them through and, with a permissive default action, they would
/// bypass every rule (e.g. mount via its x32 number). libseccomp adds the same check. Only
/// needed when the default action allows; otherwise filter D already refuses unknown numbers.
#[cfg(target_arch = "x86_64")]
fn x32_guard() -> BpfProgram {
    use seccompiler::sock_filter;

    // AUDIT_ARCH_X86_64 = EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    // Offsets in struct seccomp_data { int nr; __u32 arch; ... }.
    const NR_OFFSET: u32 = 0;
    const ARCH_OFFSET: u32 = 4;

    fn insn(code: u32, jt: u8, jf: u8, k: u32) -> sock_filter {
        sock_filter {
            // BPF opcodes fit in 16 bits; libc exposes them as u32.
            code: code as u16,
            jt,
            jf,
            k,
        }
    }
    vec![
        insn(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            0,
            0,
            ARCH_OFFSET,
        ),
        // Foreign arch: leave it to the other filters' arch check (skip to ALLOW).
        insn(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            3,
            AUDIT_ARCH_X86_64,
        ),
        insn(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, NR_OFFSET),
        insn(
            libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
            0,
            1,
            X32_SYSCALL_BIT,
        ),
        insn(
            libc::BPF_RET | libc::BPF_K,
            0,
            0,
            libc::SECCOMP_RET_KILL_PROCESS,
        ),
        insn(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Syscalls refused with EPERM by [`default_profile`]: what Docker's default profile denies to
/// a container without extra capabilities (mounting, namespaces, kernel modules and keyring,
/// tracing other processes, clock and swap management, obsolete interfaces). `personality` and
/// `pidfd_getfd` stay allowed (too common / harmless without ptrace rights); the NUMA memory
/// policy calls stay allowed because runtimes such as the JVM use them.
const DEFAULT_DENIED: &[&str] = &[
    "acct",
    "add_key",
    "adjtimex",
    "bpf",
    "chroot",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "_sysctl",
    "sysfs",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "userfaultfd",
    "uselib",
    "ustat",
    "vhangup",
    "vm86",
    "vm86old",
];

/// Namespace flags refused in `clone` by [`default_profile`]. CLONE_NEWTIME is absent on
/// purpose: for clone(2) its bit (0x80) is part of the exit signal, and new time namespaces
/// can only be requested through clone3/unshare, which are refused anyway.
const DEFAULT_DENIED_CLONE_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];

/// `(arg[index] & mask) == value`. LinuxSeccompArg has getters but no setters, hence the builder.
fn masked_eq_arg(index: usize, mask: u64, value: u64) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(mask)
        .value_two(value)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()
        .expect("every LinuxSeccompArg field is set, so the builder cannot fail")
}

fn syscall_entry(names: Vec<String>, errno: libc::c_int) -> LinuxSyscall {
    let mut entry = LinuxSyscall::default();
    entry
        .set_names(names)
        .set_action(LinuxSeccompAction::ScmpActErrno)
        .set_errno_ret(Some(errno as u32));
    entry
}

/// Sensible default profile: defaultAction SCMP_ACT_ALLOW, and SCMP_ACT_ERRNO with errnoRet EPERM
/// for the syscalls Docker's default profile blocks for an unprivileged container.
///
/// A denylist rather than Docker's allowlist so new syscalls keep working; names that do not
/// exist on the compiling architecture are left out so the result always compiles. `clone3`
/// fails with ENOSYS (as in Docker) because its flags live in memory a filter cannot inspect,
/// and ENOSYS makes libc fall back to `clone`, whose namespace flags are checked.
pub fn default_profile() -> LinuxSeccomp {
    let denied: Vec<String> = DEFAULT_DENIED
        .iter()
        .filter(|name| Sysno::from_str(name).is_ok())
        .map(|name| (*name).to_owned())
        .collect();

    let mut syscalls = vec![syscall_entry(denied, libc::EPERM)];
    for flag in DEFAULT_DENIED_CLONE_FLAGS {
        // clone's flags are argument 0 on x86_64, aarch64 and riscv64.
        let arg = masked_eq_arg(0, flag as u64, flag as u64);
        let mut entry = syscall_entry(vec!["clone".to_owned()], libc::EPERM);
        entry.set_args(Some(vec![arg]));
        syscalls.push(entry);
    }
    syscalls.push(syscall_entry(vec!["clone3".to_owned()], libc::ENOSYS));

    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActAllow)
        .set_syscalls(Some(syscalls));
    profile
}

/// Reads an OCI linux.seccomp JSON document (the object that goes under "seccomp" in
/// config.json) from a file; errors name the file and the serde error.
pub fn load_profile_file(path: &Path) -> Result<LinuxSeccomp, SeccompError> {
    let text = std::fs::read_to_string(path).map_err(|error| SeccompError::ReadProfile {
        path: path.to_owned(),
        error,
    })?;
    serde_json::from_str(&text).map_err(|error| SeccompError::ParseProfile {
        path: path.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    fn entry(names: &[&str], action: LinuxSeccompAction, errno: Option<u32>) -> LinuxSyscall {
        let mut entry = LinuxSyscall::default();
        entry
            .set_names(names.iter().map(|n| (*n).to_owned()).collect())
            .set_action(action)
            .set_errno_ret(errno);
        entry
    }

    fn profile(default: LinuxSeccompAction, syscalls: Vec<LinuxSyscall>) -> LinuxSeccomp {
        let mut profile = LinuxSeccomp::default();
        profile
            .set_default_action(default)
            .set_syscalls(Some(syscalls));
        profile
    }

    /// Filters added on top of the stack by compile() on this arch for a permissive default.
    const GUARD: usize = if cfg!(target_arch = "x86_64") { 1 } else { 0 };

    /// Runs `child` in a forked child after `compiled.apply()` and returns how it ended.
    /// The child must only make async-signal-safe calls: the test harness is multi-threaded.
    fn run_in_child(compiled: &CompiledSeccomp, child: fn() -> i32) -> WaitStatus {
        // SAFETY: the child only calls apply() (no allocation, prctl + seccomp), raw syscalls
        // and _exit, all async-signal-safe; it never returns into the test harness.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                // apply() leaves no_new_privs to the caller; without it installing needs
                // CAP_SYS_ADMIN. SAFETY: prctl with integer arguments.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                let code = match compiled.apply() {
                    Ok(_) => child(),
                    Err(_) => 100,
                };
                // SAFETY: _exit is async-signal-safe and skips atexit handlers and destructors.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
        }
    }

    /// Exit code of a child that ran `child` under `compiled`; panics if it was killed.
    fn exit_code(compiled: &CompiledSeccomp, child: fn() -> i32) -> i32 {
        match run_in_child(compiled, child) {
            WaitStatus::Exited(_, code) => code,
            other => panic!("child did not exit normally: {other:?}"),
        }
    }

    /// No filters: the control case showing each child check depends on the filter.
    const NO_FILTERS: CompiledSeccomp = CompiledSeccomp {
        programs: Vec::new(),
        flags: 0,
        listener: None,
    };

    fn errno() -> i32 {
        // SAFETY: __errno_location returns a valid pointer to this thread's errno.
        unsafe { *libc::__errno_location() }
    }

    #[test]
    fn default_profile_compiles() {
        let compiled = compile(&default_profile()).unwrap();
        // EPERM group + ENOSYS group (+ x32 guard).
        assert_eq!(compiled.filter_count(), 2 + GUARD);
        let names = default_profile().syscalls().clone().unwrap();
        assert!(names[0].names().iter().any(|n| n == "mount"));
        assert!(!names[0].names().iter().any(|n| n == "personality"));
    }

    #[test]
    fn unknown_syscall_is_named() {
        let p = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![entry(
                &["getpid", "foo"],
                LinuxSeccompAction::ScmpActErrno,
                None,
            )],
        );
        let err = compile(&p).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("unknown syscall \"foo\" on {}", std::env::consts::ARCH)
        );
        // Also when the rule would be a no-op under this default.
        let p = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![entry(&["foo"], LinuxSeccompAction::ScmpActErrno, None)],
        );
        assert!(matches!(
            compile(&p),
            Err(SeccompError::UnknownSyscall { .. })
        ));
        // In an allow rule it is skipped, as runc does: the call keeps the default action.
        let p = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![entry(
                &["foo", "exit_group", "seccomp"],
                LinuxSeccompAction::ScmpActAllow,
                None,
            )],
        );
        assert_eq!(compile(&p).unwrap().filter_count(), 1);
    }

    #[test]
    fn syscalls_of_other_architectures_are_skipped() {
        // bdflush is on i386 and arm but not x86_64 or aarch64; podman's
        // default profile lists it.
        let p = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![entry(
                &["bdflush", "getpid"],
                LinuxSeccompAction::ScmpActAllow,
                None,
            )],
        );
        compile(&p).unwrap();
    }

    #[test]
    fn notify_rules_are_checked() {
        let mut p = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![entry(&["getpid"], LinuxSeccompAction::ScmpActNotify, None)],
        );
        assert_eq!(
            compile(&p).unwrap_err().to_string(),
            "linux.seccomp.listenerPath is required when a rule uses SCMP_ACT_NOTIFY (the seccomp agent's unix socket)"
        );
        p.set_listener_path(Some("/run/agent.sock".into()));
        let compiled = compile(&p).unwrap();
        assert!(compiled.needs_listener());
        assert_eq!(compiled.filter_count(), 1 + GUARD);

        let mut p = profile(LinuxSeccompAction::ScmpActNotify, vec![]);
        p.set_listener_path(Some("/run/agent.sock".into()));
        assert!(matches!(compile(&p), Err(SeccompError::NotifyDefault)));

        let mut p = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![entry(&["sendmsg"], LinuxSeccompAction::ScmpActNotify, None)],
        );
        p.set_listener_path(Some("/run/agent.sock".into()));
        let err = compile(&p).unwrap_err().to_string();
        assert!(err.contains("\"sendmsg\""), "{err}");

        let mut p = profile(LinuxSeccompAction::ScmpActAllow, vec![]);
        p.set_listener_metadata(Some("x".into()));
        assert!(matches!(
            compile(&p),
            Err(SeccompError::MetadataWithoutListener)
        ));
    }

    #[test]
    fn flags_follow_runc_1_2() {
        let mut p = default_profile();
        assert_eq!(
            compile(&p).unwrap().flags(),
            libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
        p.set_flags(Some(vec![]));
        assert_eq!(compile(&p).unwrap().flags(), 0);
        p.set_flags(Some(vec![
            LinuxSeccompFilterFlag::SeccompFilterFlagLog,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
        ]));
        assert_eq!(compile(&p).unwrap().flags(), libc::SECCOMP_FILTER_FLAG_LOG);
        assert!(kernel_supports_flag(libc::SECCOMP_FILTER_FLAG_LOG));
        assert!(!kernel_supports_flag(1 << 30));
    }

    /// A NOTIFY rule in a child: the test is the agent, fetching the listener with
    /// pidfd_getfd (as runc's parent does) and answering getppid with 4242 and mkdir with EXDEV.
    #[test]
    fn notify_listener_answers_in_child() {
        let mut p = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![entry(
                &["getppid", "mkdir"],
                LinuxSeccompAction::ScmpActNotify,
                None,
            )],
        );
        p.set_listener_path(Some("/unused".into()));
        let compiled = compile(&p).unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        // SAFETY: the child only calls apply() and raw syscalls, then _exit.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                // SAFETY: prctl with integer arguments (see run_in_child).
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                let code = match compiled.apply() {
                    Ok(Some(fd)) => {
                        let n = fd.as_raw_fd();
                        // SAFETY: writes 4 bytes from a local to our pipe.
                        unsafe { libc::write(w.as_raw_fd(), (&n as *const i32).cast(), 4) };
                        std::mem::forget(fd);
                        // SAFETY: raw syscall without arguments.
                        let ppid = unsafe { libc::syscall(libc::SYS_getppid) };
                        // SAFETY: the path is a NUL-terminated literal the kernel only reads.
                        let rc = unsafe {
                            libc::syscall(libc::SYS_mkdir, c"/nonexistent/x".as_ptr(), 0o755)
                        };
                        if ppid != 4242 {
                            1
                        } else if rc != -1 || errno() != libc::EXDEV {
                            2
                        } else {
                            0
                        }
                    }
                    _ => 100,
                };
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(w);
                let mut b = [0u8; 4];
                nix::unistd::read(&r, &mut b).unwrap();
                let remote = i32::from_ne_bytes(b);
                // SAFETY: plain integer syscalls; the returned descriptors are new and ours.
                let listener = unsafe {
                    let pidfd = libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0);
                    assert!(pidfd >= 0);
                    let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, remote, 0);
                    assert!(fd >= 0, "pidfd_getfd: {}", io::Error::last_os_error());
                    libc::close(pidfd as i32);
                    OwnedFd::from_raw_fd(fd as i32)
                };
                for _ in 0..2 {
                    // SAFETY: zeroed plain-data kernel structs, filled by the ioctls.
                    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
                    // SAFETY: `req` is a valid seccomp_notif for the kernel to fill.
                    let rc = unsafe {
                        libc::ioctl(
                            listener.as_raw_fd(),
                            libc::SECCOMP_IOCTL_NOTIF_RECV,
                            &mut req,
                        )
                    };
                    assert_eq!(rc, 0, "NOTIF_RECV: {}", io::Error::last_os_error());
                    // SAFETY: as above.
                    let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
                    resp.id = req.id;
                    if req.data.nr == libc::SYS_getppid as i32 {
                        resp.val = 4242;
                    } else {
                        resp.error = -libc::EXDEV;
                    }
                    // SAFETY: `resp` is a valid seccomp_notif_resp.
                    let rc = unsafe {
                        libc::ioctl(
                            listener.as_raw_fd(),
                            libc::SECCOMP_IOCTL_NOTIF_SEND,
                            &mut resp,
                        )
                    };
                    assert_eq!(rc, 0, "NOTIF_SEND: {}", io::Error::last_os_error());
                }
                match waitpid(child, None).unwrap() {
                    WaitStatus::Exited(_, code) => assert_eq!(code, 0),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn arch_mismatch() {
        let foreign = if cfg!(target_arch = "aarch64") {
            Arch::ScmpArchX86_64
        } else {
            Arch::ScmpArchAarch64
        };
        let mut p = default_profile();
        p.set_architectures(Some(vec![foreign, Arch::ScmpArchArm]));
        let err = compile(&p).unwrap_err().to_string();
        assert!(
            err.starts_with("seccomp profile architectures [SCMP_ARCH_"),
            "{err}"
        );
        assert!(err.contains("native architecture SCMP_ARCH_"), "{err}");

        let native = native_arch().unwrap();
        p.set_architectures(Some(vec![Arch::ScmpArchX86, native.oci, Arch::ScmpArchX32]));
        assert!(compile(&p).is_ok());
    }

    #[test]
    fn argument_conditions() {
        let masked = masked_eq_arg(0, 0x100, 0x100);
        let mut e = entry(&["dup"], LinuxSeccompAction::ScmpActErrno, Some(13));
        e.set_args(Some(vec![masked]));
        let p = profile(LinuxSeccompAction::ScmpActAllow, vec![e.clone()]);
        assert_eq!(compile(&p).unwrap().filter_count(), 1 + GUARD);

        e.set_args(Some(vec![masked_eq_arg(6, 0x100, 0x100)]));
        let p = profile(LinuxSeccompAction::ScmpActAllow, vec![e]);
        assert_eq!(
            compile(&p).unwrap_err().to_string(),
            "argument index 6 in rule for syscall \"dup\" is out of range (0-5)"
        );
    }

    #[test]
    fn filter_counts() {
        let empty = profile(LinuxSeccompAction::ScmpActAllow, vec![]);
        assert_eq!(compile(&empty).unwrap().filter_count(), 0);

        // Rules equal to the default are dropped.
        let noop = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![entry(&["getpid"], LinuxSeccompAction::ScmpActAllow, None)],
        );
        assert_eq!(compile(&noop).unwrap().filter_count(), 0);

        // Allowlist: only filter D.
        let allow = entry(
            &["read", "write", "exit_group", "getpid"],
            LinuxSeccompAction::ScmpActAllow,
            None,
        );
        let p = profile(LinuxSeccompAction::ScmpActErrno, vec![allow.clone()]);
        assert_eq!(compile(&p).unwrap().filter_count(), 1);

        // Plus one filter per distinct non-default action; ERRNO(EPERM) is the default here.
        let p = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![
                allow,
                entry(&["getuid"], LinuxSeccompAction::ScmpActErrno, Some(13)),
                entry(&["getgid"], LinuxSeccompAction::ScmpActErrno, Some(13)),
                entry(&["getppid"], LinuxSeccompAction::ScmpActErrno, Some(1)),
                entry(&["kill"], LinuxSeccompAction::ScmpActKillProcess, None),
            ],
        );
        assert_eq!(compile(&p).unwrap().filter_count(), 3);
    }

    #[test]
    fn errno_ret_validation() {
        let p = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![entry(
                &["mount"],
                LinuxSeccompAction::ScmpActErrno,
                Some(5000),
            )],
        );
        assert_eq!(
            compile(&p).unwrap_err().to_string(),
            "errnoRet for syscall \"mount\" 5000 is out of range (max 4095)"
        );
        let p = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![entry(&["mount"], LinuxSeccompAction::ScmpActKill, Some(1))],
        );
        assert!(matches!(
            compile(&p),
            Err(SeccompError::UnexpectedErrnoRet { .. })
        ));
    }

    #[test]
    fn installer_restricted_twice_is_refused() {
        // A KILL group restricts seccomp for one argument value, so D, which escapes it only
        // there, restricts it for all others.
        let mut kill = entry(&["seccomp"], LinuxSeccompAction::ScmpActKillProcess, None);
        kill.set_args(Some(vec![masked_eq_arg(1, 0x100, 0x100)]));
        let p = profile(LinuxSeccompAction::ScmpActErrno, vec![kill]);
        assert!(matches!(
            compile(&p),
            Err(SeccompError::InstallerRestricted { .. })
        ));
    }

    #[test]
    fn load_profile_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seccomp.json");
        std::fs::write(&path, "{\"defaultAction\": ").unwrap();
        let err = load_profile_file(&path).unwrap_err().to_string();
        assert!(err.starts_with("invalid seccomp profile "), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line 1"), "{err}");

        let missing = dir.path().join("missing.json");
        let err = load_profile_file(&missing).unwrap_err().to_string();
        assert!(err.contains("missing.json"), "{err}");

        std::fs::write(
            &path,
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        let p = load_profile_file(&path).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
    }

    #[test]
    fn default_profile_denies_unshare_in_child() {
        fn child() -> i32 {
            // SAFETY: raw syscall with integer arguments.
            let rc = unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUTS) };
            if rc != -1 || errno() != libc::EPERM {
                return 1;
            }
            // clone3 with a NULL argument would be EFAULT/EINVAL without the filter.
            // SAFETY: the kernel never dereferences the NULL pointer because the filter
            // answers first; even without it, NULL only yields an error.
            let rc = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
            if rc != -1 || errno() != libc::ENOSYS {
                return 2;
            }
            // SAFETY: raw syscall without arguments.
            if unsafe { libc::syscall(libc::SYS_getpid) } <= 0 {
                return 3;
            }
            0
        }
        assert_eq!(exit_code(&compile(&default_profile()).unwrap(), child), 0);
        // Root gets past unshare (1), an unprivileged user gets EINVAL from clone3 (2).
        assert_ne!(exit_code(&NO_FILTERS, child), 0);
    }

    #[test]
    fn errno_rule_and_masked_eq_apply_in_child() {
        let masked = masked_eq_arg(0, 0x100, 0x100);
        let mut dup = entry(&["dup"], LinuxSeccompAction::ScmpActErrno, Some(13));
        dup.set_args(Some(vec![masked]));
        let p = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![
                entry(&["getcwd"], LinuxSeccompAction::ScmpActErrno, Some(13)),
                dup,
            ],
        );
        fn child() -> i32 {
            let mut buf = [0u8; 64];
            // SAFETY: buf is writable for buf.len() bytes.
            let rc = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
            if rc != -1 || errno() != libc::EACCES {
                return 1;
            }
            // fd 0x100|5 matches the mask: refused. Without the filter it would be EBADF.
            // SAFETY: raw syscall with an integer argument.
            let rc = unsafe { libc::syscall(libc::SYS_dup, 0x105) };
            if rc != -1 || errno() != libc::EACCES {
                return 2;
            }
            // fd 0x7f does not match: the kernel answers (EBADF, as it is not open).
            // SAFETY: raw syscall with an integer argument.
            let rc = unsafe { libc::syscall(libc::SYS_dup, 0x7f) };
            if rc != -1 || errno() != libc::EBADF {
                return 3;
            }
            0
        }
        assert_eq!(exit_code(&compile(&p).unwrap(), child), 0);
        assert_eq!(exit_code(&NO_FILTERS, child), 1);
    }

    #[test]
    fn allowlist_applies_in_child() {
        // defaultErrnoRet, an allowed set, and a different errno for one syscall: checks the
        // stacking and that filter D (which blocks prctl/seccomp) is installed last.
        let mut p = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![
                entry(&["getuid"], LinuxSeccompAction::ScmpActErrno, Some(13)),
                entry(
                    &["exit_group", "exit", "getpid"],
                    LinuxSeccompAction::ScmpActAllow,
                    None,
                ),
            ],
        );
        p.set_default_errno_ret(Some(libc::EOPNOTSUPP as u32));
        let compiled = compile(&p).unwrap();
        assert_eq!(compiled.filter_count(), 2);
        fn child() -> i32 {
            // SAFETY: raw syscalls without arguments.
            if unsafe { libc::syscall(libc::SYS_getpid) } <= 0 {
                return 1;
            }
            // SAFETY: as above.
            let rc = unsafe { libc::syscall(libc::SYS_getppid) };
            if rc != -1 || errno() != libc::EOPNOTSUPP {
                return 2;
            }
            // SAFETY: as above.
            let rc = unsafe { libc::syscall(libc::SYS_getuid) };
            if rc != -1 || errno() != libc::EACCES {
                return 3;
            }
            0
        }
        assert_eq!(exit_code(&compiled, child), 0);
        assert_eq!(exit_code(&NO_FILTERS, child), 2);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_syscalls_are_killed_under_permissive_default() {
        fn child() -> i32 {
            // mount through its x32 number; without the guard it would reach the kernel.
            let nr = 0x4000_0000 | libc::SYS_mount;
            // SAFETY: NULL arguments; the call is refused before they are looked at, and even
            // without a filter the kernel only returns an error for them.
            let rc = unsafe { libc::syscall(nr, 0usize, 0usize, 0usize, 0usize, 0usize) };
            if rc == -1 {
                0
            } else {
                1
            }
        }
        let compiled = compile(&default_profile()).unwrap();
        match run_in_child(&compiled, child) {
            WaitStatus::Signaled(_, signal, _) => assert_eq!(signal, nix::sys::signal::SIGSYS),
            other => panic!("x32 syscall was not killed: {other:?}"),
        }
        assert_eq!(exit_code(&NO_FILTERS, child), 0);
    }
}
