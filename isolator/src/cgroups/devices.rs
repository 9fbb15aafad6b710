//! The device cgroup: which device nodes a container may open or create.
//!
//! OCI `linux.resources.devices` is a list of allow/deny rules applied in
//! order, with cgroup v1's semantics. [`DevicePolicy`] evaluates that list
//! the way the v1 kernel (and runc's emulator) does: a rule of type `a`
//! resets everything to "allow all" or "deny all", any other rule adds an
//! exception to the current default or removes one. The result is then
//! enforced by one of two back ends:
//!
//! * cgroup v1 (hybrid hosts): the container's directory in the `devices`
//!   hierarchy gets `a` written to `devices.deny` (or `devices.allow`) first
//!   and then each exception to the other file, as runc does for a fresh
//!   cgroup;
//! * cgroup v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program, generated here
//!   instruction by instruction, loaded with `BPF_PROG_LOAD` and attached to
//!   the container's cgroup with `BPF_F_ALLOW_MULTI` (so programs of the
//!   parents, e.g. systemd's, still apply: the kernel allows an access only
//!   if every program allows it).
//!
//! # Why by hand
//!
//! The program is at most a few dozen fixed-shape instructions and needs no
//! maps, helpers or BTF. aya and libbpf-rs are full eBPF toolchains (ELF
//! loading, maps, BTF relocation; libbpf-rs also links the C libbpf), and
//! rbpf is a userspace interpreter whose instruction builder would be the
//! only part used; encoding eight-byte instructions and two `bpf(2)` calls
//! is smaller than any of them.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};
use serde::{Deserialize, Serialize};

use super::error::CgroupError;
use super::fsutil;

/// Access bits, with the values of the kernel's `BPF_DEVCG_ACC_*`.
const ACC_MKNOD: u8 = 1;
const ACC_READ: u8 = 2;
const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// A device class a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DeviceKind {
    Char,
    Block,
}

impl DeviceKind {
    fn letter(self) -> char {
        match self {
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        }
    }

    /// The kernel's `BPF_DEVCG_DEV_*` value.
    fn bpf(self) -> i32 {
        match self {
            DeviceKind::Block => 1,
            DeviceKind::Char => 2,
        }
    }
}

/// What an exception matches: a device class and major/minor numbers
/// (`None` = any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceMatch {
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
}

/// One OCI rule, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    allow: bool,
    /// `None` for type `a` (every device).
    target: Option<DeviceMatch>,
    access: u8,
}

/// The device access a container gets: a default and the exceptions to it,
/// as the v1 kernel keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DevicePolicy {
    /// Whether devices not matched by an exception are allowed.
    pub default_allow: bool,
    /// Exceptions to the default with their access bits (r, w, m).
    exceptions: BTreeMap<DeviceMatch, u8>,
}

/// runc's default device rules (specconv.AllowedDevices) for device
/// nodes: the runtime-spec's default devices (null, random, full, tty, zero,
/// urandom), ptys, /dev/ptmx and tun. /dev/console needs none of its own:
/// it is a bind mount of a pty, covered by 136:*.
const DEFAULT_NODES: &[(DeviceKind, Option<u32>, Option<u32>, u8)] = &[
    (DeviceKind::Char, Some(1), Some(3), ACC_ALL),
    (DeviceKind::Char, Some(1), Some(8), ACC_ALL),
    (DeviceKind::Char, Some(1), Some(7), ACC_ALL),
    (DeviceKind::Char, Some(5), Some(0), ACC_ALL),
    (DeviceKind::Char, Some(1), Some(5), ACC_ALL),
    (DeviceKind::Char, Some(1), Some(9), ACC_ALL),
    (DeviceKind::Char, Some(136), None, ACC_ALL),
    (DeviceKind::Char, Some(5), Some(2), ACC_ALL),
    (DeviceKind::Char, Some(10), Some(200), ACC_ALL),
];

/// runc's other default rules: mknod of any device (creating a node is
/// still subject to CAP_MKNOD; opening it to the rules above).
const DEFAULT_MKNOD: &[(DeviceKind, Option<u32>, Option<u32>, u8)] = &[
    (DeviceKind::Char, None, None, ACC_MKNOD),
    (DeviceKind::Block, None, None, ACC_MKNOD),
];

fn allow_rules(list: &[(DeviceKind, Option<u32>, Option<u32>, u8)]) -> Vec<Rule> {
    list.iter()
        .map(|&(kind, major, minor, access)| Rule {
            allow: true,
            target: Some(DeviceMatch { kind, major, minor }),
            access,
        })
        .collect()
}

fn access_string(bits: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
        if bits & bit != 0 {
            s.push(c);
        }
    }
    s
}

fn number(n: Option<u32>) -> String {
    n.map_or_else(|| "*".to_string(), |n| n.to_string())
}

impl std::fmt::Display for DeviceMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}:{}",
            self.kind.letter(),
            number(self.major),
            number(self.minor)
        )
    }
}

impl DevicePolicy {
    /// The policy for a container: `None` when its config has no device
    /// rules (the cgroup is then left as the kernel makes it: what the
    /// parent allows). Otherwise the rules are evaluated in order from
    /// "deny all" (runc's starting point), with runc's default device nodes
    /// and an allow-all-access rule for each of `linux.devices` inserted
    /// right after the last rule of type `a`, and runc's "mknod of anything"
    /// rules at the end. runc appends all of them at the end, so there a
    /// user cannot deny e.g. /dev/zero; here a later rule of the user still
    /// can (its read and write; mknod stays allowed, as with runc), while a
    /// "deny all" at the start (what `runc spec` and podman write) cannot
    /// take the defaults away.
    ///
    /// Errors name the rule: `linux.resources.devices[2].access: ...`.
    pub fn for_container(
        rules: &[LinuxDeviceCgroup],
        devices: &[LinuxDevice],
    ) -> Result<Option<DevicePolicy>, CgroupError> {
        if rules.is_empty() {
            return Ok(None);
        }
        let mut parsed = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            parsed.push(parse_rule(i, r)?);
        }
        let mut defaults = allow_rules(DEFAULT_NODES);
        for (i, d) in devices.iter().enumerate() {
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
                LinuxDeviceType::B => DeviceKind::Block,
                // FIFOs and "all" are not device numbers the cgroup sees.
                LinuxDeviceType::P | LinuxDeviceType::A => continue,
            };
            let field = format!("linux.devices[{i}]");
            defaults.push(Rule {
                allow: true,
                target: Some(DeviceMatch {
                    kind,
                    major: Some(device_number(&field, "major", d.major())?),
                    minor: Some(device_number(&field, "minor", d.minor())?),
                }),
                access: ACC_ALL,
            });
        }
        let at = parsed
            .iter()
            .rposition(|r| r.target.is_none())
            .map_or(0, |i| i + 1);
        parsed.splice(at..at, defaults);
        parsed.extend(allow_rules(DEFAULT_MKNOD));

        let mut policy = DevicePolicy::default();
        for r in &parsed {
            policy.apply(r)?;
        }
        Ok(Some(policy))
    }

    /// One rule with the v1 kernel's semantics (runc's emulator).
    fn apply(&mut self, r: &Rule) -> Result<(), CgroupError> {
        let Some(target) = r.target else {
            *self = DevicePolicy {
                default_allow: r.allow,
                exceptions: BTreeMap::new(),
            };
            return Ok(());
        };
        if r.allow != self.default_allow {
            // An exception to the default: add (merging access bits).
            *self.exceptions.entry(target).or_insert(0) |= r.access;
            return Ok(());
        }
        // Same action as the default: remove (part of) an exception. The
        // kernel silently ignores a removal that only a wider wildcard
        // exception covers; refuse it instead, as runc does, so the
        // container does not get access its config denies.
        for wider in [
            DeviceMatch {
                major: None,
                ..target
            },
            DeviceMatch {
                minor: None,
                ..target
            },
            DeviceMatch {
                major: None,
                minor: None,
                ..target
            },
        ] {
            if wider == target {
                continue;
            }
            if let Some(bits) = self.exceptions.get(&wider) {
                if bits & r.access != 0 {
                    return Err(CgroupError::InvalidResources(format!(
                        "linux.resources.devices: {} {target} {} cannot be {} inside the wider rule {wider} {} (the device cgroup cannot punch holes)",
                        if r.allow { "allow" } else { "deny" },
                        access_string(r.access),
                        if r.allow { "allowed" } else { "denied" },
                        access_string(*bits),
                    )));
                }
            }
        }
        if let Some(bits) = self.exceptions.get_mut(&target) {
            *bits &= !r.access;
            if *bits == 0 {
                self.exceptions.remove(&target);
            }
        }
        Ok(())
    }

    /// Whether an access to a device is allowed (for tests and callers
    /// that want to explain a policy).
    pub fn allows(&self, kind: DeviceKind, major: u32, minor: u32, access: &str) -> bool {
        let want = parse_access(access).unwrap_or(ACC_ALL);
        let matched = self.exceptions.iter().any(|(m, bits)| {
            m.kind == kind
                && m.major.is_none_or(|x| x == major)
                && m.minor.is_none_or(|x| x == minor)
                && want & !bits == 0
        });
        matched != self.default_allow
    }

    /// The writes that put a freshly created v1 devices cgroup into this
    /// state: `a` to the file of the default first (devices.deny for
    /// "deny all"), then every exception to the other file.
    pub fn v1_writes(&self) -> Vec<(&'static str, String)> {
        let (default_file, exception_file) = if self.default_allow {
            ("devices.allow", "devices.deny")
        } else {
            ("devices.deny", "devices.allow")
        };
        let mut v = vec![(default_file, "a".to_string())];
        for (m, bits) in &self.exceptions {
            v.push((exception_file, format!("{m} {}", access_string(*bits))));
        }
        v
    }

    /// Applies the policy to a freshly created v1 devices cgroup `dir` and
    /// checks the kernel's view of it afterwards.
    pub(crate) fn apply_v1(&self, dir: &Path) -> Result<(), CgroupError> {
        for (file, value) in self.v1_writes() {
            fsutil::write(&dir.join(file), &value)?;
        }
        // devices.list shows "a *:* rwm" exactly when everything is allowed;
        // a "deny all" that did not take would leave it there.
        let list_path = dir.join("devices.list");
        let list = fsutil::read(&list_path)?;
        let allow_all = list.lines().any(|l| l.trim() == "a *:* rwm");
        if allow_all != self.default_allow {
            return Err(CgroupError::Parse {
                path: list_path,
                content: list,
            });
        }
        Ok(())
    }

    /// The eBPF program (cgroup v2): for each exception a block that jumps
    /// to the next block unless type, access, major and minor match, and
    /// otherwise returns the exception's verdict; after the last block the
    /// default verdict.
    pub fn bpf_program(&self) -> Vec<Insn> {
        use Insn as I;
        // R1 points to struct bpf_cgroup_dev_ctx { u32 access_type
        // (access << 16 | type); u32 major; u32 minor; }.
        let mut p = vec![
            I::ldx_w(2, 1, 0),
            I::alu32_imm(ALU_AND, 2, 0xffff),
            I::ldx_w(3, 1, 0),
            I::alu32_imm(ALU_RSH, 3, 16),
            I::ldx_w(4, 1, 4),
            I::ldx_w(5, 1, 8),
        ];
        let verdict = i32::from(!self.default_allow);
        for (m, bits) in &self.exceptions {
            let mut block = vec![I::jne_imm(2, m.kind.bpf())];
            if *bits != ACC_ALL {
                // Every requested access bit must be among the rule's:
                // (access & bits) != access -> next block.
                block.push(I::mov32_reg(1, 3));
                block.push(I::alu32_imm(ALU_AND, 1, i32::from(*bits)));
                block.push(I::jne_reg(1, 3));
            }
            if let Some(major) = m.major {
                block.push(I::jne_imm(4, major as i32));
            }
            if let Some(minor) = m.minor {
                block.push(I::jne_imm(5, minor as i32));
            }
            block.push(I::mov32_imm(0, verdict));
            block.push(I::exit());
            // Each conditional jump goes to the first instruction after
            // this block's exit.
            let len = block.len();
            for (i, insn) in block.iter_mut().enumerate() {
                if insn.is_jump() {
                    insn.off = (len - i - 1) as i16;
                }
            }
            p.extend(block);
        }
        p.push(I::mov32_imm(0, i32::from(self.default_allow)));
        p.push(I::exit());
        p
    }

    /// Loads [`DevicePolicy::bpf_program`] and attaches it to the cgroup v2
    /// directory `dir` with `BPF_F_ALLOW_MULTI`. The attachment holds the
    /// program; it goes away with the cgroup.
    pub(crate) fn attach_bpf(&self, dir: &Path) -> Result<(), CgroupError> {
        let insns = self.bpf_program();
        let prog = bpf_prog_load(&insns, dir)?;
        let cgroup = std::fs::File::open(dir).map_err(|source| CgroupError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let attr = ProgAttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: BPF_F_ALLOW_MULTI,
            replace_bpf_fd: 0,
        };
        // SAFETY: attr is a valid, fully initialized bpf_attr prefix for
        // BPF_PROG_ATTACH and the size passed is its size; both fds are
        // open for the duration of the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_ATTACH,
                &attr as *const ProgAttachAttr,
                std::mem::size_of::<ProgAttachAttr>() as u32,
            )
        };
        if r < 0 {
            return Err(CgroupError::Bpf {
                step: "attaching the device filter (BPF_PROG_ATTACH) to",
                path: dir.to_path_buf(),
                source: Errno::last(),
                log: String::new(),
            });
        }
        Ok(())
    }
}

fn device_number(field: &str, which: &str, n: i64) -> Result<u32, CgroupError> {
    // The BPF program compares against a sign-extended 32-bit immediate;
    // real majors have 12 bits and minors 20.
    u32::try_from(n)
        .ok()
        .filter(|&n| n <= i32::MAX as u32)
        .ok_or_else(|| {
            CgroupError::InvalidResources(format!("{field}.{which}: {n} is out of range"))
        })
}

fn parse_access(s: &str) -> Option<u8> {
    let mut bits = 0;
    for c in s.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return None,
        };
    }
    Some(bits)
}

fn parse_rule(i: usize, r: &LinuxDeviceCgroup) -> Result<Rule, CgroupError> {
    let field = format!("linux.resources.devices[{i}]");
    let bad =
        |what: &str, why: String| CgroupError::InvalidResources(format!("{field}{what}: {why}"));
    let access = r.access().as_deref().unwrap_or("");
    let bits = parse_access(access).filter(|&b| b != 0).ok_or_else(|| {
        bad(
            ".access",
            format!("{access:?} is not a non-empty mix of r, w, m"),
        )
    })?;
    let kind = match r.typ().unwrap_or_default() {
        LinuxDeviceType::A => None,
        LinuxDeviceType::C | LinuxDeviceType::U => Some(DeviceKind::Char),
        LinuxDeviceType::B => Some(DeviceKind::Block),
        LinuxDeviceType::P => {
            return Err(bad(".type", "\"p\" (FIFO) is not a device class".into()))
        }
    };
    let num = |which: &str, n: Option<i64>| match n {
        None | Some(-1) => Ok(None),
        Some(n) => device_number(&field, which, n).map(Some),
    };
    let major = num("major", r.major())?;
    let minor = num("minor", r.minor())?;
    let target = match kind {
        Some(kind) => Some(DeviceMatch { kind, major, minor }),
        None => {
            // The kernel reads any "a" line as every device with every
            // access; a narrower "a" rule would silently mean more.
            if major.is_some() || minor.is_some() || bits != ACC_ALL {
                return Err(bad(
                    "",
                    "a rule of type \"a\" covers every device: major, minor must be unset and access \"rwm\"".into(),
                ));
            }
            None
        }
    };
    Ok(Rule {
        allow: r.allow(),
        target,
        access: bits,
    })
}

// --- eBPF encoding and bpf(2) ------------------------------------------------

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

const ALU_AND: u8 = 0x50;
const ALU_RSH: u8 = 0x70;

/// One eBPF instruction (struct bpf_insn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }
    /// dst = *(u32 *)(src + off): BPF_LDX | BPF_MEM | BPF_W.
    fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(0x61, dst, src, off, 0)
    }
    /// 32-bit ALU with an immediate: BPF_ALU | op | BPF_K.
    fn alu32_imm(op: u8, dst: u8, imm: i32) -> Insn {
        Insn::new(0x04 | op, dst, 0, 0, imm)
    }
    /// dst = src (32-bit): BPF_ALU | BPF_MOV | BPF_X.
    fn mov32_reg(dst: u8, src: u8) -> Insn {
        Insn::new(0xbc, dst, src, 0, 0)
    }
    /// dst = imm (32-bit): BPF_ALU | BPF_MOV | BPF_K.
    fn mov32_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(0xb4, dst, 0, 0, imm)
    }
    /// if dst != imm goto +off (offset set later): BPF_JMP | BPF_JNE | BPF_K.
    fn jne_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(0x55, dst, 0, 0, imm)
    }
    /// if dst != src goto +off: BPF_JMP | BPF_JNE | BPF_X.
    fn jne_reg(dst: u8, src: u8) -> Insn {
        Insn::new(0x5d, dst, src, 0, 0)
    }
    /// BPF_JMP | BPF_EXIT.
    fn exit() -> Insn {
        Insn::new(0x95, 0, 0, 0, 0)
    }
    fn is_jump(&self) -> bool {
        self.code == 0x55 || self.code == 0x5d
    }
}

/// The BPF_PROG_LOAD part of union bpf_attr (up to expected_attach_type).
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The BPF_PROG_ATTACH part of union bpf_attr.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Loads the program; on failure loads it again with the verifier's log,
/// which goes into the error.
fn bpf_prog_load(insns: &[Insn], dir: &Path) -> Result<OwnedFd, CgroupError> {
    // No GPL-only helpers are called, so any license string is accepted.
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 0];
    for attempt in 0..2 {
        if attempt == 1 {
            log = vec![0u8; 64 * 1024];
        }
        let mut name = [0u8; 16];
        name[..11].copy_from_slice(b"berth_devcg");
        let attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(attempt == 1),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
            prog_ifindex: 0,
            expected_attach_type: BPF_CGROUP_DEVICE,
        };
        // SAFETY: attr is a fully initialized bpf_attr prefix for
        // BPF_PROG_LOAD; the instruction array, the license string and the
        // log buffer it points to outlive the call, and log_size is the
        // buffer's length.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoadAttr,
                std::mem::size_of::<ProgLoadAttr>() as u32,
            )
        };
        if fd >= 0 {
            // SAFETY: a successful BPF_PROG_LOAD returns a new fd that
            // nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let errno = Errno::last();
        // Without privilege there is nothing a verifier log would explain.
        if attempt == 1 || errno == Errno::EPERM {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            return Err(CgroupError::Bpf {
                step: "loading the device filter (BPF_PROG_LOAD) for",
                path: dir.to_path_buf(),
                source: errno,
                log: String::from_utf8_lossy(&log[..end]).trim().to_string(),
            });
        }
    }
    unreachable!("the second attempt always returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        typ: &str,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        serde_json::from_value(serde_json::json!({
            "allow": allow, "type": typ, "major": major, "minor": minor, "access": access
        }))
        .unwrap()
    }

    #[test]
    fn podman_rules_are_a_whitelist_with_the_defaults() {
        let p = DevicePolicy::for_container(
            &[
                rule(false, "a", None, None, "rwm"),
                rule(true, "c", Some(4), None, "rw"),
            ],
            &[],
        )
        .unwrap()
        .unwrap();
        assert!(!p.default_allow);
        assert!(p.allows(DeviceKind::Char, 1, 3, "rw"));
        assert!(p.allows(DeviceKind::Char, 4, 7, "r"));
        // mknod through "c *:* m"; no single exception covers all of rwm.
        assert!(p.allows(DeviceKind::Char, 4, 7, "m"));
        assert!(!p.allows(DeviceKind::Char, 4, 7, "rwm"));
        assert!(!p.allows(DeviceKind::Block, 8, 0, "r"));
        assert!(p.allows(DeviceKind::Block, 8, 0, "m"));
        let w = p.v1_writes();
        assert_eq!(w[0], ("devices.deny", "a".to_string()));
        assert!(w[1..].iter().all(|(f, _)| *f == "devices.allow"));
        assert!(w.contains(&("devices.allow", "c 1:5 rwm".to_string())));
        assert!(w.contains(&("devices.allow", "c *:* m".to_string())));
    }

    #[test]
    fn a_later_deny_removes_a_default_device() {
        let p = DevicePolicy::for_container(
            &[
                rule(false, "a", None, None, "rwm"),
                rule(false, "c", Some(1), Some(5), "rwm"),
            ],
            &[],
        )
        .unwrap()
        .unwrap();
        assert!(!p.allows(DeviceKind::Char, 1, 5, "r"));
        // mknod stays allowed through "c *:* m".
        assert!(p.allows(DeviceKind::Char, 1, 5, "m"));
        assert!(p.allows(DeviceKind::Char, 1, 3, "rw"));
    }

    #[test]
    fn allow_all_with_denials_is_a_blacklist() {
        let p = DevicePolicy::for_container(
            &[
                rule(true, "a", None, None, "rwm"),
                rule(false, "b", Some(8), None, "rw"),
            ],
            &[],
        )
        .unwrap()
        .unwrap();
        assert!(p.default_allow);
        assert!(!p.allows(DeviceKind::Block, 8, 1, "r"));
        assert!(p.allows(DeviceKind::Block, 8, 1, "m"));
        assert!(p.allows(DeviceKind::Char, 10, 229, "rw"));
        assert_eq!(p.v1_writes()[0], ("devices.allow", "a".to_string()));
        assert_eq!(p.v1_writes()[1], ("devices.deny", "b 8:* rw".to_string()));
    }

    #[test]
    fn bad_rules_name_the_field() {
        let e = DevicePolicy::for_container(&[rule(true, "c", Some(1), Some(3), "")], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.resources.devices[0].access"), "{e}");
        let e = DevicePolicy::for_container(&[rule(false, "a", Some(1), None, "rwm")], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.resources.devices[0]"), "{e}");
        // Denying one device inside an allowed wildcard cannot be done.
        let e = DevicePolicy::for_container(
            &[
                rule(false, "a", None, None, "rwm"),
                rule(true, "c", Some(4), None, "rwm"),
                rule(false, "c", Some(4), Some(1), "rw"),
            ],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("punch holes"), "{e}");
        assert!(DevicePolicy::for_container(&[], &[]).unwrap().is_none());
    }

    #[test]
    fn the_program_has_a_block_per_exception_and_valid_jumps() {
        let p = DevicePolicy::for_container(&[rule(false, "a", None, None, "rwm")], &[])
            .unwrap()
            .unwrap();
        let insns = p.bpf_program();
        assert_eq!(insns.last().unwrap().code, 0x95);
        for (i, insn) in insns.iter().enumerate() {
            if insn.is_jump() {
                let target = i as i64 + 1 + i64::from(insn.off);
                assert!(target > i as i64 && (target as usize) < insns.len());
                // Every jump lands right after an exit: the next block.
                assert_eq!(insns[target as usize - 1].code, 0x95);
            }
        }
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }
}
