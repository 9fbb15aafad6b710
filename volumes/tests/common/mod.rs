//! Helpers for the privileged tests: loop-mounted test filesystems and cleanup guards
//! that unmount and detach only what the test made (everything under its temp dir).

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const MIB: u64 = 1 << 20;

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn have_tool(name: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(name).exists())
}

/// Prints why a test is skipped and returns false, or returns true.
pub fn require(root: bool, tools: &[&str]) -> bool {
    if root && !is_root() {
        eprintln!("SKIPPED: needs root");
        return false;
    }
    for t in tools {
        if !have_tool(t) {
            eprintln!("SKIPPED: {t} is not installed");
            return false;
        }
    }
    true
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    v.dedup();
    v
}

/// Loop devices whose backing file is below `dir`.
pub fn loops_backed_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            let b = b.trim().trim_end_matches(" (deleted)");
            if Path::new(b).starts_with(dir) {
                out.push(format!("/dev/{name}"));
            }
        }
    }
    out
}

/// Waits (bounded) until no loop device is backed by a file below `dir`.
pub fn wait_no_loops_under(dir: &Path) -> Vec<String> {
    for _ in 0..50 {
        let l = loops_backed_under(dir);
        if l.is_empty() {
            return l;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    loops_backed_under(dir)
}

/// Owns a temp dir; on drop unmounts every mount below it (deepest first, bounded
/// retries, lazily as a last resort) and detaches loop devices backed by files in it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        // Under /tmp: an ext4 root without prjquota on this machine.
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("berth-volumes-test")
                .tempdir()
                .unwrap(),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let dir = self.dir.path().to_path_buf();
        for _ in 0..3 {
            let mounts = mounts_under(&dir);
            if mounts.is_empty() {
                break;
            }
            for m in mounts {
                let mut done = false;
                for _ in 0..10 {
                    if nix::mount::umount2(&m, nix::mount::MntFlags::empty()).is_ok() {
                        done = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                if !done {
                    let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
                }
            }
        }
        for dev in wait_no_loops_under(&dir) {
            let _ = run("losetup", &["-d", &dev]);
        }
    }
}

/// A loop-mounted test filesystem (XFS or ext4 with project quotas) inside a sandbox.
pub struct TestFs {
    pub mnt: PathBuf,
    pub image: PathBuf,
    pub sandbox: Sandbox,
}

impl TestFs {
    fn make(size: u64, mkfs: &str, mkfs_args: &[&str], opts: &str) -> Result<TestFs, String> {
        let sandbox = Sandbox::new();
        let image = sandbox.path().join("fs.img");
        let mnt = sandbox.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(size).unwrap();
        drop(f);
        let image_s = image.to_string_lossy().into_owned();
        let mut args: Vec<&str> = mkfs_args.to_vec();
        args.push(&image_s);
        run(mkfs, &args)?;
        // `mount -o loop` attaches with autoclear: the device goes when unmounted.
        run("mount", &["-o", opts, &image_s, &mnt.to_string_lossy()])?;
        Ok(TestFs {
            mnt,
            image,
            sandbox,
        })
    }

    /// XFS needs at least 300 MiB; the image is sparse.
    pub fn xfs() -> Result<TestFs, String> {
        Self::make(512 * MIB, "mkfs.xfs", &["-q", "-f"], "loop,prjquota")
    }

    /// XFS without quotas.
    pub fn xfs_noquota() -> Result<TestFs, String> {
        Self::make(512 * MIB, "mkfs.xfs", &["-q", "-f"], "loop")
    }

    pub fn ext4() -> Result<TestFs, String> {
        Self::make(
            128 * MIB,
            "mkfs.ext4",
            &["-q", "-F", "-I", "256", "-O", "quota,project", "-m", "0"],
            "loop,prjquota",
        )
    }
}

/// Writes zeros to `path` in 1 MiB chunks up to `limit` bytes, then fsyncs. Returns the
/// bytes written and the first error (errno) hit.
pub fn fill(path: &Path, limit: u64) -> (u64, Option<std::io::Error>) {
    let mut f = match std::fs::File::create(path) {
        Ok(f) => f,
        Err(e) => return (0, Some(e)),
    };
    let chunk = vec![0x5au8; MIB as usize];
    let mut written = 0;
    while written < limit {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => return (written, Some(e)),
        }
    }
    if let Err(e) = f.sync_all() {
        return (written, Some(e));
    }
    (written, None)
}

pub fn errno_name(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::EDQUOT) => "EDQUOT",
        _ => "other",
    }
}

/// Writes `mib` MiB with a `dd` child running as `uid:gid` (quota limits do not bind
/// processes with CAP_SYS_RESOURCE, so the test itself, as root, would not be limited).
/// Returns the file size afterwards and the errno name dd reported, if any.
pub fn dd_as(uid: u32, gid: u32, path: &Path, mib: u64) -> (u64, Option<&'static str>) {
    use std::os::unix::process::CommandExt;
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", path.display()))
        .args([
            "bs=1M",
            &format!("count={mib}"),
            "conv=fsync",
            "status=none",
        ])
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run dd");
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let err = if out.status.success() {
        None
    } else if stderr.contains("No space left on device") {
        Some("ENOSPC")
    } else if stderr.contains("Disk quota exceeded") {
        Some("EDQUOT")
    } else {
        panic!("dd failed otherwise: {stderr}")
    };
    (size, err)
}
