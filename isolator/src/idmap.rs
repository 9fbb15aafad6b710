//! uid/gid maps of a new user namespace, written by the parent.
//!
//! Mapping only the caller's own id needs no privilege (after "deny" in
//! setgroups for the gid map); wider ranges from /etc/subuid go through the
//! setuid helpers newuidmap/newgidmap from Debian's uidmap package.

use std::fs;
use std::path::Path;
use std::process::Command;

use oci_spec::runtime::LinuxIdMapping;

#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    /// The kernel refused a map: names the config field and says what the
    /// kernel allows.
    #[error("{field}: writing {file}: {source} (the kernel allows at most 340 ranges, none overlapping in the container or on the host, each host range mapped in the runtime's own user namespace, and sizes above 0)")]
    Write {
        field: &'static str,
        file: String,
        source: std::io::Error,
    },
    #[error("{helper} for pid {pid} failed: {detail}")]
    Helper {
        helper: &'static str,
        pid: i32,
        detail: String,
    },
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// True when `maps` only maps the given host id once (no helper needed).
fn only_self(maps: &[LinuxIdMapping], host_id: u32) -> bool {
    maps.len() == 1 && maps[0].host_id() == host_id && maps[0].size() == 1
}

/// Writes the uid and gid maps of process `pid`'s user namespace.
/// `privileged` is true when the caller is root in the parent namespace.
pub fn write_maps(
    proc_root: &Path,
    pid: i32,
    uid_maps: &[LinuxIdMapping],
    gid_maps: &[LinuxIdMapping],
    privileged: bool,
) -> Result<(), IdMapError> {
    let base = proc_root.join(pid.to_string());
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let write = |field: &'static str, name: &str, text: &str| {
        let file = base.join(name);
        fs::write(&file, text).map_err(|source| IdMapError::Write {
            field,
            file: file.display().to_string(),
            source,
        })
    };
    if privileged || only_self(uid_maps, euid) {
        write("linux.uidMappings", "uid_map", &map_text(uid_maps))?;
    } else {
        run_helper("newuidmap", pid, uid_maps)?;
    }
    if privileged {
        write("linux.gidMappings", "gid_map", &map_text(gid_maps))?;
    } else if only_self(gid_maps, egid) {
        // An unprivileged process may map its own gid only after giving up
        // setgroups(2) in the namespace (CVE-2014-8989).
        write("linux.gidMappings", "setgroups", "deny")?;
        write("linux.gidMappings", "gid_map", &map_text(gid_maps))?;
    } else {
        run_helper("newgidmap", pid, gid_maps)?;
    }
    Ok(())
}

fn run_helper(helper: &'static str, pid: i32, maps: &[LinuxIdMapping]) -> Result<(), IdMapError> {
    let mut cmd = Command::new(helper);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.arg(m.container_id().to_string())
            .arg(m.host_id().to_string())
            .arg(m.size().to_string());
    }
    let out = cmd.output().map_err(|e| IdMapError::Helper {
        helper,
        pid,
        detail: format!("{e} (install Debian's uidmap package)"),
    })?;
    if !out.status.success() {
        return Err(IdMapError::Helper {
            helper,
            pid,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The first subordinate id range of `user` (name or uid) in /etc/subuid or
/// /etc/subgid: (start, count).
pub fn subordinate_range(file: &Path, user_name: &str, id: u32) -> Option<(u32, u32)> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who == user_name || who == id.to_string() {
            Some((start.parse().ok()?, count.parse().ok()?))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subuid_lookup_by_name_and_id() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("subuid");
        fs::write(&f, "alice:100000:65536\n1001:200000:1000\n").unwrap();
        assert_eq!(subordinate_range(&f, "alice", 1000), Some((100000, 65536)));
        assert_eq!(subordinate_range(&f, "bob", 1001), Some((200000, 1000)));
        assert_eq!(subordinate_range(&f, "carol", 1002), None);
    }
}
