//! runc's command line: `berth create|start|run|state|delete|list|pause|
//! resume|events|update|features|spec` here, and runc's forms of `kill`,
//! `ps` and `exec` folded into the existing verbs. Engines (podman's conmon, containerd's shim) drive these
//! with exact container ids, parse `--log` files, and expect runc's exit
//! codes: 1 for any failure, the container's code for a foreground `run`.

pub mod create;
pub mod delete;
pub mod events;
pub mod features;
pub mod list;
pub mod log;
pub mod pause;
pub mod ps;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

use std::path::Path;

use crate::Failure;

/// runc exits with 1 for every failure; Berth's own verbs use 2 for usage
/// errors, which engines would not expect from these verbs.
pub fn fail(e: impl Into<Failure>) -> Failure {
    let mut f = e.into();
    f.code = 1;
    f
}

/// Writes a pid file as runc does: to a temporary name, then renamed, so
/// that an engine polling for it never reads a partial number.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), Failure> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")
    ));
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| fail(anyhow::anyhow!("writing pid file {}: {e}", path.display())))
}

/// Options shared by create and run.
#[derive(clap::Args, Debug, Clone)]
pub struct CreateFlags {
    /// Path to the bundle directory (holding config.json)
    #[arg(long, short = 'b', default_value = ".", value_name = "DIR")]
    pub bundle: std::path::PathBuf,
    /// Unix socket that receives the pty master when process.terminal is set
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<std::path::PathBuf>,
    /// File to write the container's init pid to
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<std::path::PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root (roots on a ramfs)
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N more descriptors (3..3+N) to the container
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
}

impl CreateFlags {
    pub fn request(&self, id: &str) -> launcher::runtime::BundleCreate {
        launcher::runtime::BundleCreate {
            id: id.to_string(),
            bundle: self.bundle.clone(),
            options: launcher::state::RuntimeOptions {
                console_socket: self.console_socket.clone(),
                preserve_fds: self.preserve_fds,
                no_pivot: self.no_pivot,
                no_new_keyring: self.no_new_keyring,
            },
            exe: None,
            rootless: rootless(),
        }
    }
}

/// runc's global `--rootless auto|true|false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rootless {
    /// Rootless when not root, or inside a user namespace that does not
    /// map every id (runc's detection).
    Auto,
    True,
    False,
}

static ROOTLESS: std::sync::OnceLock<Rootless> = std::sync::OnceLock::new();

/// Records `--rootless` for this invocation (main, once); `auto` is
/// resolved only by the verbs that create containers.
pub fn set_rootless(mode: Rootless) {
    let _ = ROOTLESS.set(mode);
}

fn rootless() -> bool {
    match ROOTLESS.get().copied().unwrap_or(Rootless::Auto) {
        Rootless::True => true,
        Rootless::False => false,
        Rootless::Auto => !nix::unistd::geteuid().is_root() || in_partial_user_namespace(),
    }
}

/// True inside a user namespace whose uid map is not the whole range
/// (`0 0 4294967295` is the initial namespace's), where root cannot manage
/// the host's cgroups.
fn in_partial_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
        let fields: Vec<&str> = m.split_whitespace().collect();
        fields != ["0", "0", "4294967295"]
    })
}
