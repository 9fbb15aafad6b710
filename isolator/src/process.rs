//! Creating the container's first process.
//!
//! clone3(2) with fork semantics (no new stack: the child continues on a
//! copy of the caller's), so that the caller can pass CLONE_INTO_CGROUP and
//! the child is born in its cgroup v2 directory. Migrating a process into a
//! cgroup afterwards takes the kernel's global threadgroup lock, whose write
//! side waits for an RCU grace period (10-20 ms here, the largest single
//! cost of a launch); being born there takes only the read side. Neither
//! nix nor libc wraps clone3, hence the raw syscall.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// Which side of the clone we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Parent { child: Pid },
    Child,
}

/// The outcome of [`clone_fork`]: the side, and whether the child was
/// created directly in the requested cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cloned {
    pub forked: Forked,
    pub in_cgroup: bool,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Creates a child process with `flags` (namespace flags), like fork(2).
/// With `cgroup` (a cgroup v2 directory), tries clone3 with
/// CLONE_INTO_CGROUP first and falls back to plain clone, in which case
/// `in_cgroup` is false and the caller must move the child itself.
///
/// # Safety
/// The caller must be single-threaded: the child is a copy of it with only
/// the calling thread, as after fork(2). The child must end in `_exit` or
/// `execve` and never return into code that assumes it is the parent.
pub unsafe fn clone_fork(flags: CloneFlags, cgroup: Option<BorrowedFd>) -> Result<Cloned, Errno> {
    if let Some(fd) = cgroup {
        let mut args = CloneArgs {
            flags: flags.bits() as u64 | CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: fd.as_raw_fd() as u64,
            ..Default::default()
        };
        // SAFETY: args is a valid clone_args of the size we pass; without
        // CLONE_VM and with stack 0 the child runs on a copy of our stack,
        // exactly like fork(2); the caller guarantees a single thread.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &mut args as *mut CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        match rc {
            0 => {
                return Ok(Cloned {
                    forked: Forked::Child,
                    in_cgroup: true,
                })
            }
            pid if pid > 0 => {
                return Ok(Cloned {
                    forked: Forked::Parent {
                        child: Pid::from_raw(pid as i32),
                    },
                    in_cgroup: true,
                })
            }
            // Old kernel, or not a cgroup2 directory: plain clone below.
            _ => {}
        }
    }
    // SAFETY: as above; clone(2) with a null stack behaves like fork(2).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match rc {
        0 => Ok(Cloned {
            forked: Forked::Child,
            in_cgroup: false,
        }),
        pid if pid > 0 => Ok(Cloned {
            forked: Forked::Parent {
                child: Pid::from_raw(pid as i32),
            },
            in_cgroup: false,
        }),
        _ => Err(Errno::last()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_without_namespaces_behaves_like_fork() {
        // The test harness is multi-threaded: the child only calls _exit.
        // SAFETY: the child does nothing but _exit (async-signal-safe).
        let c = unsafe { clone_fork(CloneFlags::empty(), None) }.unwrap();
        match c.forked {
            // SAFETY: _exit is async-signal-safe.
            Forked::Child => unsafe { libc::_exit(7) },
            Forked::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 7));
                assert!(!c.in_cgroup);
            }
        }
    }
}
