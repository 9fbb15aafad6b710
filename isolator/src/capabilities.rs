//! Capabilities, user switching and no_new_privs for the container's init.
//!
//! The order matters and follows runc's finalizeNamespace: shrink the
//! bounding set while we still have CAP_SETPCAP, keep the permitted set
//! across the uid change (PR_SET_KEEPCAPS), switch groups and user, then
//! set the final effective/permitted/inheritable/ambient sets.

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("unknown capability {name:?} (expected a name such as CAP_NET_ADMIN or NET_ADMIN; see capabilities(7))")]
    Unknown { name: String },
    #[error("{step}: {source}")]
    Caps {
        step: &'static str,
        source: caps::errors::CapsError,
    },
    #[error("{step}: {errno}")]
    Sys { step: String, errno: Errno },
}

/// The five capability sets of OCI's process.capabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilitySets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

/// Parses a capability name, with or without the CAP_ prefix, in any case.
pub fn parse_capability(name: &str) -> Result<Capability, CapsError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    Capability::from_str(&full).map_err(|_| CapsError::Unknown {
        name: name.to_string(),
    })
}

/// Parses a list of capability names into a set.
pub fn parse_set<S: AsRef<str>>(names: &[S]) -> Result<CapsHashSet, CapsError> {
    names.iter().map(|n| parse_capability(n.as_ref())).collect()
}

/// Every capability this kernel knows (the bounding set of a full-capability
/// process), as the caps crate reports it.
pub fn all_known() -> CapsHashSet {
    caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all())
}

/// Canonical names of a set, sorted by capability number.
pub fn names(set: &CapsHashSet) -> Vec<String> {
    let mut v: Vec<&Capability> = set.iter().collect();
    v.sort_by_key(|c| c.index());
    v.into_iter().map(|c| c.to_string()).collect()
}

/// The user and groups the command runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserSpec {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Drops the bounding set to `sets.bounding`, switches to `user`, and sets
/// the remaining capability sets. Runs in the container's init after the
/// filesystem is set up and before the seccomp filter is loaded.
pub fn apply(sets: &CapabilitySets, user: &UserSpec, set_groups: bool) -> Result<(), CapsError> {
    // 1. Bounding set: needs CAP_SETPCAP, which we still have.
    let current_bounding =
        caps::read(None, CapSet::Bounding).map_err(|source| CapsError::Caps {
            step: "reading the bounding set",
            source,
        })?;
    for cap in current_bounding.difference(&sets.bounding) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(|source| CapsError::Caps {
            step: "dropping a capability from the bounding set",
            source,
        })?;
    }

    // 2. Keep the permitted set across setresuid() to a non-root user.
    nix::sys::prctl::set_keepcaps(true).map_err(|errno| CapsError::Sys {
        step: "prctl(PR_SET_KEEPCAPS)".into(),
        errno,
    })?;

    // 3. Groups, then gid, then uid (after setuid we could not setgid).
    if set_groups {
        let gids: Vec<Gid> = user
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        setgroups(&gids).map_err(|errno| CapsError::Sys {
            step: format!("setting supplementary groups {:?}", user.additional_gids),
            errno,
        })?;
    }
    let gid = Gid::from_raw(user.gid);
    setresgid(gid, gid, gid).map_err(|errno| CapsError::Sys {
        step: format!("setting gid {}", user.gid),
        errno,
    })?;
    let uid = Uid::from_raw(user.uid);
    setresuid(uid, uid, uid).map_err(|errno| CapsError::Sys {
        step: format!(
            "setting uid {} (is it mapped in the user namespace?)",
            user.uid
        ),
        errno,
    })?;
    nix::sys::prctl::set_keepcaps(false).map_err(|errno| CapsError::Sys {
        step: "prctl(PR_SET_KEEPCAPS)".into(),
        errno,
    })?;

    // 4. The final sets. Inheritable first, while permitted is still full
    // (raising inheritable is limited by permitted); effective must stay
    // within permitted at every step, so it shrinks before permitted does.
    let set = |which: CapSet, value: &CapsHashSet, step: &'static str| {
        caps::set(None, which, value).map_err(|source| CapsError::Caps { step, source })
    };
    let effective: CapsHashSet = sets
        .effective
        .intersection(&sets.permitted)
        .copied()
        .collect();
    set(
        CapSet::Inheritable,
        &sets.inheritable,
        "setting the inheritable set",
    )?;
    set(CapSet::Effective, &effective, "setting the effective set")?;
    set(
        CapSet::Permitted,
        &sets.permitted,
        "setting the permitted set",
    )?;
    caps::clear(None, CapSet::Ambient).map_err(|source| CapsError::Caps {
        step: "clearing the ambient set",
        source,
    })?;
    for cap in &sets.ambient {
        // Ambient capabilities must be both permitted and inheritable; the
        // kernel refuses others, which would fail the launch for a typo in
        // an otherwise valid spec, so skip them as runc does.
        if sets.permitted.contains(cap) && sets.inheritable.contains(cap) {
            caps::raise(None, CapSet::Ambient, *cap).map_err(|source| CapsError::Caps {
                step: "raising an ambient capability",
                source,
            })?;
        }
    }
    Ok(())
}

/// Sets no_new_privs: execve can then never grant privileges (setuid bits,
/// file capabilities), and an unprivileged process may load seccomp filters.
pub fn set_no_new_privs() -> Result<(), CapsError> {
    nix::sys::prctl::set_no_new_privs().map_err(|errno| CapsError::Sys {
        step: "prctl(PR_SET_NO_NEW_PRIVS)".into(),
        errno,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_prefix() {
        assert_eq!(
            parse_capability("NET_ADMIN").unwrap(),
            Capability::CAP_NET_ADMIN
        );
        assert_eq!(parse_capability("cap_kill").unwrap(), Capability::CAP_KILL);
        assert_eq!(
            parse_capability("CAP_SYS_ADMIN").unwrap(),
            Capability::CAP_SYS_ADMIN
        );
    }

    #[test]
    fn unknown_name_is_an_error_naming_it() {
        let e = parse_capability("CAP_FLY").unwrap_err().to_string();
        assert!(e.contains("CAP_FLY"), "{e}");
    }

    #[test]
    fn names_are_sorted_by_number() {
        let set = parse_set(&["SYS_ADMIN", "CHOWN", "KILL"]).unwrap();
        assert_eq!(names(&set), vec!["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"]);
    }
}
