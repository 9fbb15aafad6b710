//! `berth state ID`: the runtime-spec state document, with runc's extra
//! fields (rootfs, created, owner).

use std::path::PathBuf;

use launcher::runtime::OciState;
use launcher::state::ContainerState;
use launcher::Launcher;
use serde::Serialize;

use super::fail;
use crate::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The container id
    pub id: String,
}

/// What runc prints for `state` and `list --format json`.
#[derive(Serialize)]
pub struct RuncState {
    #[serde(flatten)]
    pub state: OciState,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
}

impl RuncState {
    pub fn new(l: &Launcher, state: OciState, st: &ContainerState) -> Self {
        let rootfs = oci_spec::runtime::Spec::load(l.root.container(&st.id).config())
            .ok()
            .and_then(|s| s.root().clone())
            .map(|r| r.path().clone())
            .unwrap_or_default();
        RuncState {
            state,
            rootfs,
            created: launcher::inspect::rfc3339(st.created),
            owner: String::new(),
        }
    }
}

pub fn run(l: &Launcher, a: Args) -> CmdResult {
    let (state, st) = l.oci_state(&a.id).map_err(fail)?;
    let doc = RuncState::new(l, state, &st);
    println!(
        "{}",
        serde_json::to_string_pretty(&doc).map_err(|e| fail(anyhow::Error::from(e)))?
    );
    Ok(0)
}
