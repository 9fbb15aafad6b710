//! POSIX resource limits from OCI's process.rlimits.

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    #[error("rlimit {name}: soft limit {soft} is above the hard limit {hard}")]
    SoftAboveHard { name: String, soft: u64, hard: u64 },
    #[error("setting {name} to soft={soft} hard={hard}: {errno}{hint}")]
    Set {
        name: String,
        soft: u64,
        hard: u64,
        errno: Errno,
        hint: String,
    },
}

fn resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// The OCI name of a limit ("RLIMIT_NOFILE").
pub fn name(t: PosixRlimitType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{t:?}"))
}

/// Applies every limit. Raising a hard limit above the current one needs
/// CAP_SYS_RESOURCE; without it the kernel says EPERM and the error says why.
pub fn apply(limits: &[PosixRlimit]) -> Result<(), RlimitError> {
    for l in limits {
        let (soft, hard) = (l.soft(), l.hard());
        if soft > hard {
            return Err(RlimitError::SoftAboveHard {
                name: name(l.typ()),
                soft,
                hard,
            });
        }
        let res = resource(l.typ());
        if let Err(errno) = setrlimit(res, soft, hard) {
            let hint = match (errno, getrlimit(res)) {
                (Errno::EPERM, Ok((_, cur_hard))) if hard > cur_hard => format!(
                    " (raising a hard limit above the current {cur_hard} needs CAP_SYS_RESOURCE, which this process lacks)"
                ),
                _ => String::new(),
            };
            return Err(RlimitError::Set {
                name: name(l.typ()),
                soft,
                hard,
                errno,
                hint,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_names() {
        assert_eq!(name(PosixRlimitType::RlimitNofile), "RLIMIT_NOFILE");
    }
}
