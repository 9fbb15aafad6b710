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

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::io;
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
    /// An action the runtime cannot implement (only `SCMP_ACT_NOTIFY` today).
    #[error("seccomp action {action} is not supported")]
    UnsupportedAction {
        /// The OCI action.
        action: LinuxSeccompAction,
    },
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
    /// The kernel refused a filter (or `PR_SET_NO_NEW_PRIVS`).
    #[error("installing seccomp filter {index} of {count} failed: {error}")]
    Install {
        /// 1-based position in install order.
        index: usize,
        /// Number of filters in the profile.
        count: usize,
        /// seccompiler's error (wraps the OS error).
        error: seccompiler::Error,
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
}

impl CompiledSeccomp {
    /// Number of BPF filters apply() installs (for inspect and tests).
    pub fn filter_count(&self) -> usize {
        self.programs.len()
    }

    /// Installs every filter on the calling thread. Called in the container's init right before
    /// execve (no_new_privs is already set by the caller). Does not allocate, so it is safe after
    /// fork in a multi-threaded parent: it only hands the pre-built programs to
    /// `seccompiler::apply_filter` (which also sets no_new_privs again, harmlessly).
    pub fn apply(&self) -> Result<(), SeccompError> {
        let count = self.programs.len();
        for (i, program) in self.programs.iter().enumerate() {
            seccompiler::apply_filter(program).map_err(|error| SeccompError::Install {
                index: i + 1,
                count,
                error,
            })?;
        }
        Ok(())
    }
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

/// Accepts every `SECCOMP_FILTER_FLAG_*` oci-spec can represent (an unknown flag string is
/// already a deserialization error in oci-spec). apply() installs without flags:
/// - TSYNC is meaningless because the container init is single-threaded when it installs;
/// - LOG (log non-ALLOW results) and SPEC_ALLOW (keep speculative store bypass mitigation off)
///   are ignored: seccompiler's installer takes no flags and both only change logging or
///   mitigation, never which syscalls are allowed.
///
/// The exhaustive match makes a new oci-spec flag a compile error here rather than silently
/// accepted.
fn check_flags(profile: &LinuxSeccomp) {
    for flag in profile.flags().iter().flatten() {
        match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync
            | LinuxSeccompFilterFlag::SeccompFilterFlagLog
            | LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {}
        }
    }
}

/// Maps an OCI action (+ errnoRet) to seccompiler's. `field` names the errno field in messages.
fn convert_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    field: impl FnOnce() -> String,
    syscall: Option<&str>,
) -> Result<SeccompAction, SeccompError> {
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
        LinuxSeccompAction::ScmpActErrno => return Ok(SeccompAction::Errno(data(MAX_ERRNO)?)),
        LinuxSeccompAction::ScmpActTrace => return Ok(SeccompAction::Trace(data(MAX_TRACE_DATA)?)),
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::UnsupportedAction { action });
        }
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
fn action_name(action: &SeccompAction) -> String {
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

    /// Whether the installer syscalls (`prctl`, `seccomp`) appear at all.
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

/// Syscalls `seccompiler::apply_filter` makes to install a filter.
const INSTALLER_SYSCALLS: [Sysno; 2] = [Sysno::prctl, Sysno::seccomp];

/// One filter to build: a description for messages, whether it may block the installation of
/// later filters, and the seccompiler filter itself.
struct Planned {
    what: String,
    restricts_installer: bool,
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
pub fn compile(profile: &LinuxSeccomp) -> Result<CompiledSeccomp, SeccompError> {
    let native = native_arch()?;
    check_architectures(profile, &native)?;
    check_flags(profile);

    let default = convert_action(
        profile.default_action(),
        profile.default_errno_ret(),
        || "defaultErrnoRet".to_owned(),
        None,
    )?;

    // Non-default actions in order of first appearance, each with its rules.
    let mut groups: Vec<(SeccompAction, RuleMap)> = Vec::new();
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
            let Ok(sysno) = Sysno::from_str(name) else {
                // Engines ship one profile for every architecture (podman's
                // lists bdflush, absent on x86_64); a syscall this kernel
                // does not have cannot be made, so its rule holds trivially.
                // runc skips these too. A name no architecture has is a typo.
                if exists_on_some_arch(name) {
                    continue;
                }
                return Err(SeccompError::UnknownSyscall {
                    name: name.clone(),
                    arch: native.name,
                });
            };
            resolved.push((i64::from(sysno.id()), rule_for(name, entry)?));
        }
        if action == default {
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

    let mut planned = Vec::new();
    let mut escapes = RuleMap::default();
    for (action, rules) in groups {
        escapes.merge(&rules);
        if action == SeccompAction::Allow {
            // Allowed rules only need to escape the default, which filter D does.
            continue;
        }
        let what = format!("{} rules", action_name(&action));
        let restricts_installer =
            rules.mentions_installer() && !matches!(action, SeccompAction::Log);
        let filter = SeccompFilter::new(
            rules.into_seccompiler(),
            SeccompAction::Allow,
            action,
            native.target,
        )
        .map_err(|error| build_error(what.clone(), error))?;
        planned.push(Planned {
            what,
            restricts_installer,
            filter,
        });
    }
    if default != SeccompAction::Allow {
        let what = format!("default action {}", action_name(&default));
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
            filter,
        });
    }

    // The filter that may block prctl/seccomp goes last. Reordering is harmless: ties between
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
    for Planned { what, filter, .. } in planned {
        programs.push(BpfProgram::try_from(filter).map_err(|error| build_error(what, error))?);
    }
    Ok(CompiledSeccomp { programs })
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
                let code = match compiled.apply() {
                    Ok(()) => child(),
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
        // Also when the rule itself would be a no-op.
        let p = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![entry(&["foo"], LinuxSeccompAction::ScmpActAllow, None)],
        );
        assert!(matches!(
            compile(&p),
            Err(SeccompError::UnknownSyscall { .. })
        ));
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
    fn notify_is_unsupported() {
        let p = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![entry(&["getpid"], LinuxSeccompAction::ScmpActNotify, None)],
        );
        assert_eq!(
            compile(&p).unwrap_err().to_string(),
            "seccomp action SCMP_ACT_NOTIFY is not supported"
        );
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
        // D restricts seccomp (not allowed) and a KILL group restricts prctl.
        let p = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![entry(
                &["prctl"],
                LinuxSeccompAction::ScmpActKillProcess,
                None,
            )],
        );
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
