//! `berth spec [--bundle DIR] [--rootless]`: writes a default config.json,
//! as `runc spec` does (a `sh` on a terminal, rootfs "rootfs").

use std::path::PathBuf;

use oci_spec::runtime::Spec;

use super::fail;
use crate::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write config.json
    #[arg(long, short = 'b', default_value = ".", value_name = "DIR")]
    pub bundle: PathBuf,
    /// A spec for an unprivileged user (user namespace, no cgroup limits)
    #[arg(long)]
    pub rootless: bool,
}

pub fn run(a: Args) -> CmdResult {
    let path = a.bundle.join("config.json");
    if path.exists() {
        return Err(fail(anyhow::anyhow!(
            "File {} exists. Remove it first",
            path.display()
        )));
    }
    let mut spec = if a.rootless {
        Spec::rootless(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    } else {
        let mut spec = Spec::default();
        // As `runc spec`: "deny all" devices; the runtime's default devices
        // stay usable (see isolator::cgroups::DevicePolicy).
        if let Some(mut linux) = spec.linux().clone() {
            let mut res = linux.resources().clone().unwrap_or_default();
            let deny_all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .map_err(|e| fail(anyhow::anyhow!("building the device rule: {e}")))?;
            res.set_devices(Some(vec![deny_all]));
            linux.set_resources(Some(res));
            spec.set_linux(Some(linux));
        }
        spec
    };
    spec.set_version(launcher::runtime::OCI_VERSION.to_string());
    spec.set_hostname(Some("berth".to_string()));
    if let Some(mut p) = spec.process().clone() {
        p.set_terminal(Some(true));
        spec.set_process(Some(p));
    }
    spec.save(&path)
        .map_err(|e| fail(anyhow::anyhow!("writing {}: {e}", path.display())))?;
    Ok(0)
}
