//! Helpers for tests of runc's command line (tests/runtime*.rs,
//! tests/conformance.rs): a bundle made by `berth spec` and edited by the
//! test, a runtime command run with its output captured in files, and runc
//! for side-by-side checks.
#![allow(dead_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::{busybox_rootfs, Berth};

/// A bundle directory with a config.json made by `berth spec`, edited by
/// the test. Its root is the shared busybox rootfs (read-only).
pub struct Bundle {
    pub dir: tempfile::TempDir,
}

impl Bundle {
    pub fn new(b: &Berth, edit: impl FnOnce(&mut Value)) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-bundle-")
            .tempdir()
            .unwrap();
        b.ok(&["spec", "--bundle", dir.path().to_str().unwrap()]);
        let path = dir.path().join("config.json");
        let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        c["root"]["path"] = json!(busybox_rootfs());
        c["root"]["readonly"] = json!(true);
        c["process"]["terminal"] = json!(false);
        edit(&mut c);
        std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        Bundle { dir }
    }

    pub fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }
}

/// What a runtime command did. stdout/stderr go through files, never
/// pipes: a created container keeps the caller's stdio open, as with runc.
pub struct Ran {
    pub code: i32,
    pub out: String,
    pub err: String,
}

pub fn runtime(bin: &Path, root: &Path, args: &[&str]) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let (o, e) = (dir.path().join("out"), dir.path().join("err"));
    let status = Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .status()
        .unwrap();
    Ran {
        code: status.code().unwrap_or(-1),
        out: std::fs::read_to_string(o).unwrap_or_default(),
        err: std::fs::read_to_string(e).unwrap_or_default(),
    }
}

pub fn berth(b: &Berth, args: &[&str]) -> Ran {
    runtime(&super::berth_bin(), b.root.path(), args)
}

pub fn state(b: &Berth, id: &str) -> Value {
    let r = berth(b, &["state", id]);
    assert_eq!(r.code, 0, "state {id}: {}", r.err);
    serde_json::from_str(&r.out).expect("state is JSON")
}

pub fn runc() -> Option<PathBuf> {
    ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

pub fn sh(script: &str) -> Value {
    json!(["sh", "-c", script])
}

/// Receives one descriptor sent over SCM_RIGHTS (a console socket's pty master).
pub fn recv_fd(s: &std::os::unix::net::UnixStream) -> OwnedFd {
    recv_message(s).1
}

/// Receives one message with a descriptor over SCM_RIGHTS: its data (a
/// console socket's pty name) and the descriptor.
pub fn recv_message(s: &std::os::unix::net::UnixStream) -> (String, OwnedFd) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()).unwrap();
    let n = msg.bytes;
    let fd = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            ControlMessageOwned::ScmRights(f) => f.first().copied(),
            _ => None,
        })
        .expect("an fd over SCM_RIGHTS");
    // SAFETY: the descriptor was just received and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    (String::from_utf8_lossy(&buf[..n]).into_owned(), fd)
}

/// runc with a private state root; every container left in it is
/// force-deleted on drop.
pub struct Runc {
    pub bin: PathBuf,
    pub root: tempfile::TempDir,
}

impl Runc {
    /// None (with the reason printed) when runc is not installed: the
    /// caller then checks against the spec alone.
    pub fn new() -> Option<Runc> {
        let Some(bin) = runc() else {
            eprintln!("runc is not installed: comparing with the spec alone");
            return None;
        };
        Some(Runc {
            bin,
            root: tempfile::Builder::new()
                .prefix("runc-test-")
                .tempdir()
                .unwrap(),
        })
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        runtime(&self.bin, self.root.path(), args)
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        for e in std::fs::read_dir(self.root.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = e.file_name().to_string_lossy().into_owned();
            let _ = self.run(&["delete", "--force", &id]);
        }
    }
}
