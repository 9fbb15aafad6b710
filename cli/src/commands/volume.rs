//! `berth volume`: persistent volumes with an enforced size.

use std::path::{Path, PathBuf};

use launcher::Launcher;
use serde::Serialize;
use volumes::{BackendChoice, CreateRequest, Volume, VolumeKey, VolumeStore};

use crate::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Create a volume of a given size
    Create(CreateArgs),
    /// List volumes
    Ls {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show one volume
    Inspect {
        /// Print JSON
        #[arg(long)]
        json: bool,
        name: String,
    },
    /// Change a volume's size (shrinking below its usage is refused)
    Resize {
        name: String,
        /// New size, e.g. 128MiB
        #[arg(long)]
        size: String,
    },
    /// Remove volumes and their data (refused while a container uses them)
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    name: String,
    /// Size, e.g. 64MiB, 1GiB
    #[arg(long)]
    size: String,
    /// How the size is enforced: auto picks XFS or ext4 project quota, else a loop image
    #[arg(long, default_value = "auto", value_name = "auto|xfs|ext4|loop|dir")]
    backend: String,
    /// Owner of the volume's root directory
    #[arg(long, value_name = "UID:GID")]
    owner: Option<String>,
    /// Mode of the volume's root directory (octal)
    #[arg(long, default_value = "755")]
    mode: String,
    /// With --backend dir: kill containers that use more than the size
    #[arg(long)]
    kill_over_size: bool,
}

fn usage(field: &str, reason: impl Into<String>) -> Failure {
    Failure::from(launcher::Error::invalid(field, reason))
}

fn vol_err(e: volumes::VolumeError) -> Failure {
    let code = if e.is_usage() { 2 } else { 1 };
    Failure {
        code,
        message: e.to_string(),
    }
}

/// The store for this user: /var/lib/berth/volumes as root,
/// $XDG_DATA_HOME/berth/volumes (or ~/.local/share/...) otherwise.
pub fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/berth/volumes");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|x| !x.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    data.join("berth/volumes")
}

pub fn open_store(root: &Path) -> Result<VolumeStore, Failure> {
    VolumeStore::open(root).map_err(vol_err)
}

fn key(name: &str) -> Result<VolumeKey, Failure> {
    volumes::validate_name(name).map_err(vol_err)?;
    Ok(VolumeKey::Name(name.to_string()))
}

/// Containers (created or running) whose bundle mounts `path`.
pub fn users_of(l: &Launcher, path: &Path) -> Vec<String> {
    l.list()
        .into_iter()
        .filter(|(_, _, status)| {
            matches!(
                status,
                launcher::state::Status::Created
                    | launcher::state::Status::Running
                    | launcher::state::Status::Creating
            )
        })
        .filter(|(dir, _, _)| {
            oci_spec::runtime::Spec::load(dir.config())
                .ok()
                .and_then(|s| s.mounts().clone())
                .unwrap_or_default()
                .iter()
                .any(|m| m.source().as_deref() == Some(path))
        })
        .map(|(_, st, _)| match st.name {
            Some(n) => format!("{n} ({})", &st.id[..12]),
            None => st.id[..12].to_string(),
        })
        .collect()
}

#[derive(Serialize)]
struct Row<'a> {
    /// The key as users type it: the name, or role/persistence_id.
    name: String,
    #[serde(flatten)]
    volume: &'a Volume,
    used_by: Vec<String>,
}

pub fn run(l: &Launcher, store_root: &Path, a: Args) -> CmdResult {
    let store = open_store(store_root)?;
    match a.command {
        Command::Create(c) => {
            let size = volumes::parse_size(&c.size).map_err(vol_err)?;
            let backend: BackendChoice = c.backend.parse().map_err(vol_err)?;
            let owner = match &c.owner {
                Some(o) => {
                    let bad = || usage("--owner", format!("{o:?} is not UID:GID (numbers)"));
                    let (u, g) = o.split_once(':').ok_or_else(bad)?;
                    Some((u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?))
                }
                None => None,
            };
            let mode = u32::from_str_radix(&c.mode, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| {
                    usage(
                        "--mode",
                        format!("{:?} is not an octal mode such as 755", c.mode),
                    )
                })?;
            let v = store
                .create(&CreateRequest {
                    key: key(&c.name)?,
                    size_bytes: size,
                    backend,
                    owner,
                    mode,
                    kill_over_size: c.kill_over_size,
                })
                .map_err(vol_err)?;
            println!("{}", v.key);
            Ok(0)
        }
        Command::Ls { json } => {
            let list = store.list().map_err(vol_err)?;
            if json {
                let rows: Vec<Row> = list
                    .iter()
                    .map(|v| Row {
                        name: v.key.to_string(),
                        volume: v,
                        used_by: users_of(l, &v.path),
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).map_err(anyhow::Error::from)?
                );
                return Ok(0);
            }
            println!(
                "{:<24}  {:>10}  {:>10}  {:<22}  {:<10}  USED BY",
                "NAME", "SIZE", "USED", "ENFORCEMENT", "STATE"
            );
            for v in &list {
                println!(
                    "{:<24}  {:>10}  {:>10}  {:<22}  {:<10}  {}",
                    v.key.to_string(),
                    super::human_bytes(v.size_bytes),
                    v.usage_bytes
                        .map(super::human_bytes)
                        .unwrap_or_else(|| "-".into()),
                    enforcement_name(v),
                    format!("{:?}", v.state).to_lowercase(),
                    users_of(l, &v.path).join(", ")
                );
            }
            Ok(0)
        }
        Command::Inspect { json, name } => {
            let v = store.get(&key(&name)?).map_err(vol_err)?;
            let used_by = users_of(l, &v.path);
            if json {
                let row = Row {
                    name: v.key.to_string(),
                    volume: &v,
                    used_by,
                };
                println!(
                    "{}",
                    serde_json::to_string_pretty(&row).map_err(anyhow::Error::from)?
                );
                return Ok(0);
            }
            println!("Name:         {}", v.key);
            println!(
                "Size:         {} ({} bytes)",
                super::human_bytes(v.size_bytes),
                v.size_bytes
            );
            println!(
                "Used:         {}",
                v.usage_bytes
                    .map(|u| format!("{} ({u} bytes)", super::human_bytes(u)))
                    .unwrap_or_else(|| "-".into())
            );
            println!("Enforcement:  {}", enforcement_name(&v));
            println!("State:        {}", format!("{:?}", v.state).to_lowercase());
            println!("Path:         {}", v.path.display());
            println!("Owner:        {}:{} mode {:o}", v.uid, v.gid, v.mode);
            println!(
                "Created:      {}",
                launcher::inspect::rfc3339(v.created * 1_000_000_000)
            );
            println!(
                "Used by:      {}",
                if used_by.is_empty() {
                    "-".into()
                } else {
                    used_by.join(", ")
                }
            );
            Ok(0)
        }
        Command::Resize { name, size } => {
            let size = volumes::parse_size(&size).map_err(vol_err)?;
            let v = store.resize(&key(&name)?, size).map_err(vol_err)?;
            println!("{} {}", v.key, super::human_bytes(v.size_bytes));
            Ok(0)
        }
        Command::Rm { names } => {
            let mut failed = None;
            for name in &names {
                let result = (|| -> Result<(), Failure> {
                    let k = key(name)?;
                    if let Ok(v) = store.get(&k) {
                        let users = users_of(l, &v.path);
                        if !users.is_empty() {
                            return Err(Failure {
                                code: 1,
                                message: format!(
                                    "volume {name:?} is in use by container {}: remove the container first",
                                    users.join(", ")
                                ),
                            });
                        }
                    }
                    store.destroy(&k).map_err(vol_err)
                })();
                if let Err(f) = result {
                    if names.len() == 1 {
                        return Err(f);
                    }
                    eprintln!("berth: {}", f.message);
                    failed.get_or_insert(f.code);
                }
            }
            match failed {
                Some(code) => Err(Failure {
                    code,
                    message: "some volumes were not removed".into(),
                }),
                None => Ok(0),
            }
        }
    }
}

fn enforcement_name(v: &Volume) -> String {
    match &v.enforcement {
        volumes::Enforcement::XfsProjectQuota { project_id } => {
            format!("xfs project quota {project_id}")
        }
        volumes::Enforcement::Ext4ProjectQuota { project_id } => {
            format!("ext4 project quota {project_id}")
        }
        volumes::Enforcement::LoopImage { fs, .. } => format!("loop image ({fs})"),
        volumes::Enforcement::Unenforced => "none (dir)".into(),
    }
}

/// A `--volume` flag resolved: the flag with the volume's path as source,
/// and for a named volume its name and (for an unenforced volume whose
/// users are killed over it) the size to watch.
pub struct ResolvedVolume {
    pub flag: String,
    pub name: Option<String>,
    pub kill_over: Option<u64>,
}

/// Resolves `--volume NAME:/ctr[:ro]` to the volume's path; a source that
/// starts with '/' is a host path and is returned unchanged.
pub fn resolve_volume_flag(store_root: &Path, spec: &str) -> Result<ResolvedVolume, Failure> {
    let plain = || ResolvedVolume {
        flag: spec.to_string(),
        name: None,
        kill_over: None,
    };
    let Some((source, rest)) = spec.split_once(':') else {
        return Ok(plain());
    };
    if source.starts_with('/') || source.is_empty() {
        return Ok(plain());
    }
    let store = open_store(store_root)?;
    let k = key(source).map_err(|f| usage("--volume", f.message))?;
    let v = store
        .get(&k)
        .map_err(|e| usage("--volume", format!("{spec:?}: {e}")))?;
    Ok(ResolvedVolume {
        flag: format!("{}:{rest}", v.path.display()),
        name: Some(source.to_string()),
        kill_over: v.kill_over_size.then_some(v.size_bytes),
    })
}
