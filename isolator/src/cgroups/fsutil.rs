//! Small cgroupfs file helpers. Writes never create files: a missing file is
//! an error (or, through [`exists`], a reason to report a limit as unapplied),
//! both on a real cgroupfs and on a fake one in a tempdir.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

use super::error::CgroupError;

/// Reads a file as a string.
pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a file; `Ok(None)` if it (or its directory) does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `value` to an existing file in one `write(2)`.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let err = |source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

/// Whether `path` exists (errors other than ENOENT count as "exists" so that
/// the following read or write reports them).
pub(crate) fn exists(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// Parses one integer value of a single-value file; `Ok(None)` if missing.
pub(crate) fn read_u64(path: &Path) -> Result<Option<u64>, CgroupError> {
    match read_opt(path)? {
        None => Ok(None),
        Some(s) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| parse_err(path, &s)),
    }
}

/// Like [`read_u64`] but `"max"` yields `Ok(Some(None))`.
pub(crate) fn read_u64_or_max(path: &Path) -> Result<Option<Option<u64>>, CgroupError> {
    match read_opt(path)? {
        None => Ok(None),
        Some(s) if s.trim() == "max" => Ok(Some(None)),
        Some(s) => s
            .trim()
            .parse::<u64>()
            .map(|v| Some(Some(v)))
            .map_err(|_| parse_err(path, &s)),
    }
}

/// Reads a flat-keyed file (`key value` per line, e.g. cpu.stat,
/// memory.events, memory.oom_control) and returns the value of `key`.
/// `Ok(None)` if the file or key is missing.
pub(crate) fn read_key(path: &Path, key: &str) -> Result<Option<u64>, CgroupError> {
    let Some(s) = read_opt(path)? else {
        return Ok(None);
    };
    Ok(flat_key(&s, key))
}

/// Value of `key` in flat-keyed text.
pub(crate) fn flat_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        if it.next() == Some(key) {
            it.next().and_then(|v| v.parse().ok())
        } else {
            None
        }
    })
}

pub(crate) fn parse_err(path: &Path, content: &str) -> CgroupError {
    CgroupError::Parse {
        path: path.to_path_buf(),
        content: content.trim().chars().take(200).collect(),
    }
}

/// Parses a `cgroup.procs` file into pids.
pub(crate) fn parse_pids(path: &Path, text: &str) -> Result<Vec<i32>, CgroupError> {
    text.split_whitespace()
        .map(|t| t.parse::<i32>().map_err(|_| parse_err(path, text)))
        .collect()
}
