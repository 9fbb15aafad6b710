//! OCI lifecycle hooks (runtime-spec config.md "POSIX-platform Hooks").
//!
//! A hook is a program run with the container's state JSON on its stdin.
//! Who runs which hook, and where:
//! - `prestart` (deprecated) and `createRuntime`: the supervisor, in the
//!   runtime's namespaces, once init has set up its mounts and waits
//!   before pivot_root (as runc does);
//! - `createContainer`: init, in the container's namespaces, before
//!   pivot_root (the path still resolves in the runtime's filesystem);
//! - `startContainer`: init, after `start`, before the user's program;
//! - `poststart`: `start`, once the user's program runs;
//! - `poststop`: `delete`, once the container is gone.
//!
//! Failure semantics are the spec's: a failing prestart, createRuntime,
//! createContainer or startContainer hook fails the operation (the caller
//! stops the container); a failing poststart or poststop hook is only a
//! warning.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::{Hook, Hooks};

/// The hook points of the runtime spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prestart => "prestart",
            Phase::CreateRuntime => "createRuntime",
            Phase::CreateContainer => "createContainer",
            Phase::StartContainer => "startContainer",
            Phase::Poststart => "poststart",
            Phase::Poststop => "poststop",
        }
    }

    /// The hooks configured for this phase.
    pub fn of(self, hooks: Option<&Hooks>) -> Vec<Hook> {
        let Some(h) = hooks else { return Vec::new() };
        #[allow(deprecated)]
        let v = match self {
            Phase::Prestart => h.prestart(),
            Phase::CreateRuntime => h.create_runtime(),
            Phase::CreateContainer => h.create_container(),
            Phase::StartContainer => h.start_container(),
            Phase::Poststart => h.poststart(),
            Phase::Poststop => h.poststop(),
        };
        v.clone().unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{phase} hook {path}: cannot run it: {source}")]
    Spawn {
        phase: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{phase} hook {path}: timed out after {secs} s (killed)")]
    Timeout {
        phase: &'static str,
        path: PathBuf,
        secs: i64,
    },
    #[error("{phase} hook {path}: {status}{output}")]
    Failed {
        phase: &'static str,
        path: PathBuf,
        status: String,
        output: String,
    },
}

/// Runs the hooks of `phase` one after the other, each with `state` on its
/// stdin; stops at the first failure.
pub fn run_phase(phase: Phase, hooks: Option<&Hooks>, state: &[u8]) -> Result<(), HookError> {
    for h in Phase::of(phase, hooks) {
        run_one(phase, &h, state)?;
    }
    Ok(())
}

/// Runs every hook of `phase` and returns the failures (for poststart and
/// poststop, where a failure must not stop the others).
pub fn run_phase_all(phase: Phase, hooks: Option<&Hooks>, state: &[u8]) -> Vec<HookError> {
    Phase::of(phase, hooks)
        .iter()
        .filter_map(|h| run_one(phase, h, state).err())
        .collect()
}

/// Runs one hook: args[0] becomes argv[0], env replaces the environment
/// (as runc does), stdout and stderr are kept for the error message, and
/// the timeout (seconds, if set) kills it.
pub fn run_one(phase: Phase, hook: &Hook, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().clone();
    let mut cmd = Command::new(&path);
    if let Some(args) = hook.args() {
        if let Some(a0) = args.first() {
            cmd.arg0(a0);
        }
        cmd.args(args.iter().skip(1));
    }
    cmd.env_clear();
    for e in hook.env().clone().unwrap_or_default() {
        match e.split_once('=') {
            Some((k, v)) => cmd.env(k, v),
            None => cmd.env(&e, ""),
        };
    }
    // A memfd keeps the output without a reader thread: a chatty hook can
    // never block on a full pipe and run into its timeout.
    let out = memfd("berth-hook").map_err(|source| HookError::Spawn {
        phase: phase.name(),
        path: path.clone(),
        source,
    })?;
    let out_file = std::fs::File::from(out);
    let clone = |f: &std::fs::File| f.try_clone().map(Stdio::from);
    let spawn = |source| HookError::Spawn {
        phase: phase.name(),
        path: path.clone(),
        source,
    };
    cmd.stdin(Stdio::piped())
        .stdout(clone(&out_file).map_err(spawn)?)
        .stderr(clone(&out_file).map_err(spawn)?);
    let mut child = cmd.spawn().map_err(spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE is ignored).
        let _ = stdin.write_all(state);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let pidfd = crate::container::pidfd_open(child.id() as i32);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(spawn(e)),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // Our own child, killed by its pid.
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout {
                phase: phase.name(),
                path,
                secs: hook.timeout().unwrap_or(0),
            });
        }
        match &pidfd {
            Some(fd) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(100u16));
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut output = String::new();
    let mut f = out_file;
    if f.rewind().is_ok() {
        let mut buf = Vec::new();
        let _ = f.take(4096).read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).trim().to_string();
        if !text.is_empty() {
            output = format!(", output: {text}");
        }
    }
    Err(HookError::Failed {
        phase: phase.name(),
        path,
        status: status.to_string(),
        output,
    })
}

fn memfd(name: &str) -> std::io::Result<OwnedFd> {
    let name = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: memfd_create takes a NUL-terminated name that outlives the
    // call and returns a new descriptor (or -1), which we then own.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn hook(script: &str, timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".to_string(), "-c".into(), script.into()])
            .env(vec!["HOOKVAR=yes".to_string()]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn a_hook_gets_the_state_and_its_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(
            &format!("cat > {0}; echo \" $HOOKVAR\" >> {0}", out.display()),
            None,
        );
        run_one(Phase::Poststop, &h, b"{\"id\":\"x\"}").unwrap();
        assert_eq!(
            std::fs::read_to_string(out).unwrap(),
            "{\"id\":\"x\"} yes\n"
        );
    }

    #[test]
    fn failures_carry_status_and_output() {
        let e = run_one(
            Phase::CreateRuntime,
            &hook("echo bad >&2; exit 3", None),
            b"",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("createRuntime hook /bin/sh"), "{e}");
        assert!(e.contains("exit status: 3") && e.contains("bad"), "{e}");
    }

    #[test]
    fn timeouts_kill_the_hook() {
        let t = Instant::now();
        let e = run_one(Phase::Prestart, &hook("sleep 30", Some(1)), b"").unwrap_err();
        assert!(matches!(e, HookError::Timeout { secs: 1, .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
