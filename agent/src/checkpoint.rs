//! Durable files for agent recovery: whole documents replaced atomically
//! (temporary file, fsync, rename, fsync of the directory) and append-only
//! logs of JSON lines (append, fsync). A crash can leave at most a torn
//! last line, which readers skip.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A checkpoint that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io { step, path, source }
}

/// fsync of a directory, so that a rename or a new file in it is durable.
fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

/// Creates `dir` and its parents (durably enough: the files written into it
/// are synced with their directory).
pub fn ensure_dir(dir: &Path) -> Result<(), CheckpointError> {
    fs::create_dir_all(dir).map_err(io("creating", dir))
}

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    ensure_dir(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(io("writing", &tmp))?;
    f.write_all(bytes).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(io("renaming", path))?;
    sync_dir(dir)
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), CheckpointError> {
    let body = serde_json::to_vec_pretty(value).map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &body)
}

/// Reads a JSON document.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, CheckpointError> {
    let body = fs::read(path).map_err(io("reading", path))?;
    serde_json::from_slice(&body).map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Appends one JSON line to the log at `path` and syncs it.
pub fn append_json<T: Serialize>(path: &Path, value: &T) -> Result<(), CheckpointError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let new = !path.exists();
    if new {
        ensure_dir(dir)?;
    }
    let mut line = serde_json::to_vec(value).map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io("opening", path))?;
    // One write call: the line lands whole or (after a crash) torn at the end.
    f.write_all(&line).map_err(io("appending to", path))?;
    f.sync_data().map_err(io("syncing", path))?;
    if new {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a log of JSON lines. A torn last line (no newline: the agent died
/// while writing it) is skipped; a bad line anywhere else is corruption.
pub fn read_json_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, CheckpointError> {
    let body = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("reading", path)(e)),
    };
    let complete = match body.iter().rposition(|b| *b == b'\n') {
        Some(i) => &body[..=i],
        None => &[][..],
    };
    complete
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_slice(l).map_err(|e| CheckpointError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("line {}: {e}", n + 1),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_documents_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/x.info");
        write_json(&p, &serde_json::json!({"k": 1})).unwrap();
        write_json(&p, &serde_json::json!({"k": 2})).unwrap();
        let v: serde_json::Value = read_json(&p).unwrap();
        assert_eq!(v["k"], 2);
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn logs_skip_a_torn_last_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t/task.updates");
        assert!(read_json_lines::<u32>(&p).unwrap().is_empty());
        append_json(&p, &1u32).unwrap();
        append_json(&p, &2u32).unwrap();
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"tor").unwrap();
        assert_eq!(read_json_lines::<u32>(&p).unwrap(), vec![1, 2]);
        fs::write(&p, b"1\nx\n2\n").unwrap();
        assert!(read_json_lines::<u32>(&p).is_err());
    }
}
