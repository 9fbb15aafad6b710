//! OCI bundles and the container lifecycle for Berth.
//!
//! - [`spec`] turns a launch request into a config.json (oci-spec).
//! - [`state`] is the on-disk state directory of every container.
//! - [`container`] creates, starts, signals, waits for and removes containers.
//! - [`supervisor`] is the small per-container process that outlives the CLI.
//! - [`init`] is the container's first process: the set-up procedure.
//! - [`attach`] runs a container in the foreground; [`exec`] joins one;
//!   [`inspect`] reports on one.
//! - [`runtime`] is the lifecycle as runc's command line has it, with the
//!   bundle's [`hooks`]; [`support`] refuses config fields Berth cannot honour.

pub mod attach;
pub mod console;
pub mod container;
pub mod error;
pub mod exec;
pub mod hooks;
pub mod init;
pub mod inspect;
pub mod runtime;
pub mod spec;
pub mod state;
pub mod supervisor;
pub mod support;
pub mod trace;

pub use container::{CreateOptions, Created, Launcher};
pub use error::{Error, Result};
