//! `berth logs`: the container's stdout and stderr from its log files.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use launcher::state::Status;
use launcher::Launcher;

use crate::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Keep printing new output until the container stops
    #[arg(short = 'f', long = "follow")]
    follow: bool,
    /// Container id, id prefix or name
    container: String,
}

/// Copies what was added to `path` since `pos` to `out`; returns the new position.
fn copy_from(path: &std::path::Path, pos: u64, out: &mut dyn Write) -> u64 {
    let Ok(mut f) = std::fs::File::open(path) else {
        return pos;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // Rotated: start over on the new file.
    let pos = if len < pos { 0 } else { pos };
    if f.seek(SeekFrom::Start(pos)).is_err() {
        return pos;
    }
    let mut buf = Vec::new();
    let n = f.read_to_end(&mut buf).unwrap_or(0);
    let _ = out.write_all(&buf);
    let _ = out.flush();
    pos + n as u64
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    let (dir, st, _) = l.load(&a.container)?;
    // Agent tasks keep their logs in the task's sandbox.
    let (stdout, stderr) = (st.stdout_log(&dir), st.stderr_log(&dir));
    let (mut out_pos, mut err_pos) = (0u64, 0u64);
    loop {
        out_pos = copy_from(&stdout, out_pos, &mut std::io::stdout());
        err_pos = copy_from(&stderr, err_pos, &mut std::io::stderr());
        if !a.follow {
            return Ok(0);
        }
        match l.load(&a.container) {
            Ok((_, _, Status::Stopped)) | Err(_) => {
                copy_from(&stdout, out_pos, &mut std::io::stdout());
                copy_from(&stderr, err_pos, &mut std::io::stderr());
                return Ok(0);
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
