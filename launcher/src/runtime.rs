//! The lifecycle as runc's command line has it (runtime-spec runtime.md):
//! create from a bundle the caller owns, start, state, kill, delete, with
//! the bundle's hooks at each step.
//!
//! A container created here differs from a `berth launch` one (see
//! [`RuntimeOptions`]): its stdio is the caller's (or a terminal of the
//! container's devpts whose master goes to `--console-socket`, or, for a
//! foreground `run`, back to the caller, which relays it as runc does:
//! [`Launcher::create_foreground`]), and its supervisor exits once init
//! is created, so that init is reparented to the caller's subreaper (an
//! engine's conmon or shim reaps it, as with runc). Its status is derived
//! from init's liveness.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use isolator::cgroups::{Cgroup, Stats};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::{Hooks, LinuxResources, Spec};
use serde::{Deserialize, Serialize};

use crate::container::{new_state, rootfs_of, CreateOptions, Created, Launcher};
use crate::error::{Error, Result};
use crate::hooks::{self, Phase};
use crate::state::{self, ContainerDir, ContainerState, RuntimeOptions, Status};

/// The runtime-spec version Berth implements (its `state` and hooks' stdin).
pub const OCI_VERSION: &str = "1.2.0";

/// The state of a container (runtime-spec runtime.md "State"), as `state`
/// prints it and hooks read it on stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    /// Init's pid on the host; 0 once stopped (as runc prints it).
    pub pid: i32,
    pub bundle: PathBuf,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl OciState {
    pub fn of(st: &ContainerState, status: Status) -> Self {
        let pid = match status {
            Status::Stopped => 0,
            _ => st.init.map(|p| p.pid).unwrap_or(0),
        };
        OciState {
            oci_version: OCI_VERSION.to_string(),
            id: st.id.clone(),
            status,
            pid,
            bundle: st.bundle.clone(),
            annotations: st.annotations.clone(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What `berth create|run` asks for beyond the bundle.
#[derive(Debug, Clone, Default)]
pub struct BundleCreate {
    pub id: String,
    pub bundle: PathBuf,
    pub options: RuntimeOptions,
    /// The berth binary to run as supervisor (default: this executable).
    pub exe: Option<PathBuf>,
    /// runc's --rootless: cgroup limits that cannot be applied (no
    /// permission, no delegation) become warnings, and device cgroup rules
    /// are not set, instead of failing the create.
    pub rootless: bool,
}

impl Launcher {
    /// Creates a container from an OCI bundle: checks that Berth can honour
    /// every field of its config.json, records it, and has a supervisor
    /// create init, which then waits for `start`. createRuntime and
    /// createContainer hooks (and prestart) run on the way.
    /// A terminal needs `--console-socket` here (runc's create / run -d).
    pub fn create_from_bundle(&self, req: &BundleCreate) -> Result<Created> {
        self.create_bundle(req, false).map(|(created, _)| created)
    }

    /// [`Launcher::create_from_bundle`] for a foreground `run`: a terminal
    /// without `--console-socket` is allowed, and its pty master is
    /// returned for the caller to relay ([`crate::console::relay`]). It
    /// comes over a socket in the container's state directory, bound
    /// before the supervisor starts and connected by it before init enters
    /// the container (runc uses a socket pair the same way).
    pub fn create_foreground(&self, req: &BundleCreate) -> Result<(Created, Option<OwnedFd>)> {
        self.create_bundle(req, true)
    }

    fn create_bundle(
        &self,
        req: &BundleCreate,
        foreground: bool,
    ) -> Result<(Created, Option<OwnedFd>)> {
        if !state::is_valid_id(&req.id) {
            return Err(Error::invalid(
                "container id",
                format!("{:?}: use letters, digits, '_', '+', '-', '.'", req.id),
            ));
        }
        crate::trace::mark("create: begin");
        let bundle = std::fs::canonicalize(&req.bundle)
            .map_err(|e| Error::io("opening bundle", &req.bundle, e))?;
        let config = bundle.join("config.json");
        // Read once, parsed twice from memory: the model, and (below) the
        // raw JSON. Spec::load parses through a BufReader, which serde_json
        // reads a byte at a time, markedly slower than from a slice.
        let bytes = std::fs::read(&config)
            .map_err(|e| Error::Spec(format!("loading {}: {e}", config.display())))?;
        let mut spec = crate::state::parse_spec(&config, &bytes)?;
        crate::support::check(&spec)?;
        // Fields the model drops on parsing are checked on the raw JSON.
        let raw: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Spec(format!("loading {}: {e}", config.display())))?;
        crate::support::check_raw_parsed(&raw, &spec)?;
        crate::trace::mark("create: config checked");
        let terminal = spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        check_terminal(
            "process.terminal",
            terminal,
            !foreground,
            req.options.console_socket.as_deref(),
        )?;
        let relay = terminal && req.options.console_socket.is_none();
        let mut listener = None;
        // The copy in the state directory is what exec and inspect read
        // later; it must not depend on the bundle's location.
        if let Some(root) = spec.root().clone() {
            let mut root = root;
            root.set_path(rootfs_of(&bundle, root.path()));
            spec.set_root(Some(root));
        }
        nest_cgroups_path(&mut spec);
        let dir = self.root.create_container_dir(&req.id)?;
        let result = (|| {
            std::fs::create_dir_all(dir.bundle())
                .map_err(|e| Error::io("creating", &dir.bundle(), e))?;
            spec.save(dir.config())
                .map_err(|e| Error::Spec(format!("writing {}: {e}", dir.config().display())))?;
            let opts = CreateOptions {
                id: Some(req.id.clone()),
                exe: req.exe.clone(),
                ..Default::default()
            };
            let mut st = new_state(&req.id, bundle.clone(), &opts, req.rootless);
            st.annotations = spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            let mut options = req.options.clone();
            if relay {
                let path = dir.dir.join("console.sock");
                listener = Some(
                    std::os::unix::net::UnixListener::bind(&path)
                        .map_err(|e| Error::io("binding the internal console socket", &path, e))?,
                );
                options.console_socket = Some(path);
            }
            st.runtime = Some(options);
            self.spawn(&dir, st, &opts)
        })();
        let mut created = match result {
            Ok(c) => c,
            Err(e) => {
                let _ = self.root.remove(&req.id, None);
                return Err(e);
            }
        };
        let Some(listener) = listener else {
            return Ok((created, None));
        };
        // Init connected (through the supervisor) and sent the master
        // before it reported itself created: both are already queued.
        let received = listener
            .set_nonblocking(true)
            .and_then(|()| listener.accept())
            .map_err(|e| {
                Error::io(
                    "accepting on the internal console socket",
                    &dir_sock(self, &req.id),
                    e,
                )
            })
            .and_then(|(stream, _)| {
                crate::console::recv_master(stream.as_fd()).map_err(Error::from)
            });
        let _ = std::fs::remove_file(dir_sock(self, &req.id));
        match received {
            Ok((_, master)) => Ok((created, Some(master))),
            Err(e) => {
                created.wait_supervisor();
                let _ = self.delete_runtime(&req.id, true);
                Err(e)
            }
        }
    }

    /// The runtime-spec state of a container.
    pub fn oci_state(&self, id: &str) -> Result<(OciState, ContainerState)> {
        let (_, st, status) = self.load_exact(id)?;
        Ok((OciState::of(&st, status), st))
    }

    /// Looks a container up by its exact id (runc's verbs take no prefixes
    /// or names: an engine must never hit a different container).
    pub fn load_exact(&self, id: &str) -> Result<(ContainerDir, ContainerState, Status)> {
        if !state::is_valid_id(id) || !self.root.container(id).state().exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        let dir = self.root.container(id);
        let st = dir.read_state()?;
        let mut status = self.status_of(&dir, &st);
        // A frozen cgroup is runc's "paused"; only these verbs say so.
        if status == Status::Running {
            if let Some(cg) = &st.cgroup {
                if cg.is_frozen()? {
                    status = Status::Paused;
                }
            }
        }
        Ok((dir, st, status))
    }

    /// `pause`: freezes every process of a running container (runc's
    /// error for any other status).
    pub fn pause_runtime(&self, id: &str) -> Result<()> {
        let (_, st, status) = self.load_exact(id)?;
        if status != Status::Running {
            return Err(Error::WrongState {
                id: id.to_string(),
                status,
                hint: "container not running".into(),
            });
        }
        Ok(Self::cgroup_of(id, &st)?.freeze()?)
    }

    /// `resume`: thaws a paused container.
    pub fn resume_runtime(&self, id: &str) -> Result<()> {
        let (_, st, status) = self.load_exact(id)?;
        if status != Status::Paused {
            return Err(Error::WrongState {
                id: id.to_string(),
                status,
                hint: "container not paused".into(),
            });
        }
        Ok(Self::cgroup_of(id, &st)?.thaw()?)
    }

    /// `update`: applies new resource limits to a created, running or
    /// paused container's cgroup and records them in its config.json, so
    /// `state`/`inspect` and later updates see them. A limit that cannot be
    /// applied is an error naming it; nothing is recorded then.
    pub fn update_runtime(&self, id: &str, res: &LinuxResources) -> Result<()> {
        let (dir, st, status) = self.load_exact(id)?;
        if matches!(status, Status::Stopped | Status::Creating) {
            return Err(Error::WrongState {
                id: id.to_string(),
                status,
                hint: "container not running".into(),
            });
        }
        let cg = Self::cgroup_of(id, &st)?;
        let unapplied = cg.apply(res)?;
        if !unapplied.is_empty() {
            let list: Vec<String> = unapplied.iter().map(|u| u.to_string()).collect();
            return Err(Error::invalid("linux.resources", list.join("; ")));
        }
        let mut spec = Spec::load(dir.config()).map_err(|e| Error::Spec(e.to_string()))?;
        let mut linux = spec.linux().clone().unwrap_or_default();
        let merged = merge_resources(linux.resources().as_ref(), res)?;
        linux.set_resources(Some(merged));
        spec.set_linux(Some(linux));
        spec.save(dir.config())
            .map_err(|e| Error::Spec(format!("writing {}: {e}", dir.config().display())))
    }

    /// `events --stats`: the container's live usage and limits.
    pub fn stats_runtime(&self, id: &str) -> Result<(Status, Stats)> {
        let (_, st, status) = self.load_exact(id)?;
        if status == Status::Stopped {
            return Err(Error::WrongState {
                id: id.to_string(),
                status,
                hint: "container not running".into(),
            });
        }
        Ok((status, Self::cgroup_of(id, &st)?.stats()?))
    }

    fn cgroup_of<'a>(id: &str, st: &'a ContainerState) -> Result<&'a Cgroup> {
        st.cgroup
            .as_ref()
            .ok_or_else(|| Error::Reported(format!("container {id} has no cgroup of its own")))
    }

    /// `start`: lets init run the user's program, then runs the poststart
    /// hooks (their failures are returned as warnings).
    pub fn start_runtime(&self, id: &str) -> Result<Vec<String>> {
        let (dir, st, status) = self.load_exact(id)?;
        if status != Status::Created {
            return Err(Error::WrongState {
                id: id.to_string(),
                status,
                hint: match status {
                    Status::Stopped => "cannot start a container that has stopped".into(),
                    Status::Running => "cannot start an already running container".into(),
                    _ => "only a created container can be started".into(),
                },
            });
        }
        crate::trace::mark("start: begin");
        self.start(id)?;
        crate::trace::mark("start: init answered on the fifo");
        let config_hooks = load_hooks(&dir.config())?;
        let state = OciState::of(&st, Status::Running).to_json();
        Ok(
            hooks::run_phase_all(Phase::Poststart, config_hooks.as_ref(), &state)
                .into_iter()
                .map(|e| e.to_string())
                .collect(),
        )
    }

    /// `kill [--all] ID SIGNAL`: signals init, or every process of the
    /// container's cgroup. Signalling a stopped container is an error.
    pub fn kill_runtime(&self, id: &str, signal: Signal, all: bool) -> Result<()> {
        let (_, st, status) = self.load_exact(id)?;
        let init = match (status, st.init) {
            (Status::Created | Status::Running, Some(p)) => p,
            _ => {
                return Err(Error::WrongState {
                    id: id.to_string(),
                    status,
                    hint: "container not running".into(),
                })
            }
        };
        if all {
            if let Some(cg) = &st.cgroup {
                for pid in cg.pids()? {
                    let _ = kill(Pid::from_raw(pid), signal);
                }
                return Ok(());
            }
        }
        kill(Pid::from_raw(init.pid), signal)
            .map_err(|e| Error::sys(format!("sending {signal} to pid {}", init.pid), e))
    }

    /// `delete [--force] ID`: a stopped or created container is removed
    /// (a created one is killed first, as runc does); a running one only
    /// with `force`. The poststop hooks run afterwards; their failures are
    /// returned as warnings.
    pub fn delete_runtime(&self, id: &str, force: bool) -> Result<Vec<String>> {
        crate::trace::mark("delete: begin");
        let (dir, st, status) = self.load_exact(id)?;
        if matches!(status, Status::Running | Status::Creating) && !force {
            return Err(Error::WrongState {
                id: id.to_string(),
                status,
                hint: format!("cannot delete container {id} that is not stopped: {status}"),
            });
        }
        let config_hooks = load_hooks(&dir.config()).ok().flatten();
        if status == Status::Paused {
            // Frozen processes take their SIGKILL only once thawed.
            if let Some(cg) = &st.cgroup {
                cg.kill_all()?;
                cg.thaw()?;
            }
        }
        self.remove(id, true)?;
        let state = OciState::of(&st, Status::Stopped).to_json();
        Ok(
            hooks::run_phase_all(Phase::Poststop, config_hooks.as_ref(), &state)
                .into_iter()
                .map(|e| e.to_string())
                .collect(),
        )
    }
}

fn dir_sock(l: &Launcher, id: &str) -> PathBuf {
    l.root.container(id).dir.join("console.sock")
}

/// runc's checkTerminal, in its words: a terminal (`what`: process.terminal
/// or exec's --tty) needs a console socket when berth detaches, and a
/// console socket is only for a terminal of a detached container or
/// process (in the foreground berth relays the terminal itself).
pub fn check_terminal(
    what: &str,
    terminal: bool,
    detach: bool,
    console_socket: Option<&Path>,
) -> Result<()> {
    if detach && terminal && console_socket.is_none() {
        return Err(Error::invalid(
            "--console-socket",
            format!(
                "cannot allocate tty if berth will detach without setting console socket \
                 ({what} is true)"
            ),
        ));
    }
    if (!detach || !terminal) && console_socket.is_some() {
        return Err(Error::invalid(
            "--console-socket",
            format!(
                "cannot use console socket if berth will not detach or allocate tty \
                 ({what} is {terminal}{})",
                if detach { "" } else { ", in the foreground" }
            ),
        ));
    }
    Ok(())
}

/// The hooks of a container's config.json (the copy in its state dir,
/// written by Berth from a checked spec). `start` and `delete` need nothing
/// else from it: deserializing only `hooks` lets serde skip the rest
/// instead of building a whole `Spec` (process, mounts, linux, ...) that
/// is dropped at once; both run on every `berth run`.
fn load_hooks(config: &Path) -> Result<Option<Hooks>> {
    #[derive(Deserialize)]
    struct HooksOnly {
        #[serde(default)]
        hooks: Option<Hooks>,
    }
    let bytes = std::fs::read(config).map_err(|e| Error::io("reading", config, e))?;
    serde_json::from_slice::<HooksOnly>(&bytes)
        .map(|h| h.hooks)
        .map_err(|e| Error::Spec(format!("loading {}: {e}", config.display())))
}

/// `old` with every field `new` sets replaced (runc's update semantics:
/// what the request leaves out keeps its value).
fn merge_resources(old: Option<&LinuxResources>, new: &LinuxResources) -> Result<LinuxResources> {
    fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
        match (into, from) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    if v.is_null() {
                        continue;
                    }
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }
    let json = |e: serde_json::Error| Error::Spec(format!("linux.resources: {e}"));
    let mut base = serde_json::to_value(old.cloned().unwrap_or_default()).map_err(json)?;
    merge(&mut base, serde_json::to_value(new).map_err(json)?);
    serde_json::from_value(base).map_err(json)
}

/// Every cgroup Berth creates sits under the creating process's own cgroup:
/// an absolute linux.cgroupsPath (an engine's `/machine/libpod-ID`) is
/// placed below it as if it were relative, never at a hierarchy's root.
fn nest_cgroups_path(spec: &mut Spec) {
    let Some(mut linux) = spec.linux().clone() else {
        return;
    };
    if let Some(p) = linux.cgroups_path().clone() {
        let s = p.display().to_string();
        if let Some(rel) = s.strip_prefix('/') {
            let rel = rel.trim_start_matches('/');
            linux.set_cgroups_path(if rel.is_empty() {
                None
            } else {
                Some(PathBuf::from(rel))
            });
            spec.set_linux(Some(linux));
        }
    }
}
