//! `BERTH_TRACE=FILE`: a timeline of a launch, for finding where its
//! milliseconds go (bench/launch.sh measures the whole; this splits it).
//!
//! Every process on the launch path (the CLI, the supervisor, init until
//! its execve) appends `<CLOCK_MONOTONIC seconds> <pid> <event>` lines to
//! FILE. One clock for all processes, so lines from different processes
//! compare directly: `sort -n FILE` is the launch in order. Unset (the
//! normal case), [`mark`] costs one environment lookup per process, then a
//! load of a cached `None`.
//!
//! Lines are written with one `write(2)` each on an `O_APPEND` descriptor,
//! so lines of concurrent processes do not interleave.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::OnceLock;

/// The environment variable naming the trace file.
pub const TRACE_ENV: &str = "BERTH_TRACE";

static SINK: OnceLock<Option<File>> = OnceLock::new();

fn sink() -> Option<&'static File> {
    SINK.get_or_init(|| {
        let path = std::env::var_os(TRACE_ENV)?;
        OpenOptions::new().create(true).append(true).open(path).ok()
    })
    .as_ref()
}

/// Records that `event` happens now (no-op unless `BERTH_TRACE` is set).
pub fn mark(event: &str) {
    let Some(mut f) = sink() else { return };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let line = format!(
        "{}.{:06} {} {event}\n",
        ts.tv_sec,
        ts.tv_nsec / 1000,
        std::process::id()
    );
    let _ = f.write_all(line.as_bytes());
}

/// The trace file's descriptor, if tracing is on: a forked supervisor,
/// which closes the descriptors an exec would have closed, keeps this one
/// so that its trace lines still land in the file.
pub fn raw_fd() -> Option<RawFd> {
    SINK.get().and_then(|s| s.as_ref()).map(|f| f.as_raw_fd())
}
