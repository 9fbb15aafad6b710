//! Berth under a real engine: containerd (Debian's 1.6) drives it through
//! its runc v2 shim, which runs the runtime via go-runc (`--root --log
//! --log-format json create --bundle --pid-file [--console-socket]`,
//! `start`, `state`, `kill [--all]`, `delete [--force]`, `exec --process
//! --detach --pid-file`, `ps --format json`, `pause`, `resume`) and reads
//! the init's cgroups itself for `ctr task metrics`. `ctr --runc-binary`
//! swaps the binary; the same flows run with runc 1.1 to compare outcomes.
//!
//! Each test has a containerd of its own, so it never sees or changes the
//! machine's containerd state:
//! - root, state, temp dir, gRPC and ttrpc sockets, FIFOs and the
//!   runtime's `--runc-root` all sit in a temp dir; the config file turns
//!   off the plugins the tests do not need (CRI, the btrfs, zfs, aufs,
//!   devmapper and native snapshotters, /opt/containerd, tracing);
//! - the daemon runs in a private mount namespace with a tmpfs on
//!   /run/containerd, where containerd 1.6 hard-wires the shims' sockets
//!   (`/run/containerd/s/<hash>`); the overlay mounts of the rootfs live in
//!   that namespace too and go away with its last process. The empty
//!   /run/containerd directory itself is left on the host: it is the
//!   mount point of every concurrent test's tmpfs;
//! - the daemon starts in a cgroup of its own below the test's own cgroup
//!   in every v1 hierarchy (and the controller-less cgroup2 of a hybrid
//!   host), so the shim, Berth and the containers inherit it: everything
//!   they create nests there and the drop kills whatever is left in it
//!   and removes the tree, even when a test fails.
//!
//! cgroupsPath: ctr's default is the absolute `/<namespace>/<id>`, which
//! Berth nests below the caller's (the shim's) own cgroup; runc would put
//! it at the root of every hierarchy, so its runs get the relative
//! `--cgroup berth-test/<id>` (runc nests relative paths the same way).

mod common;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{busybox_rootfs, output_within, stderr, stdout, wait_until};

const IMAGE: &str = "localhost/berth-busybox:latest";
const NAMESPACE: &str = "berth-test";

/// The runtime binary a container runs with.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rt {
    Berth,
    Runc,
}

impl Rt {
    fn bin(self) -> PathBuf {
        match self {
            Rt::Berth => common::berth_bin(),
            Rt::Runc => common::oci::runc().expect("runc"),
        }
    }

    /// Berth, and runc when it is installed (the comparison is skipped
    /// with a printed reason otherwise).
    fn all() -> Vec<Rt> {
        if common::oci::runc().is_some() {
            vec![Rt::Berth, Rt::Runc]
        } else {
            eprintln!("runc is not installed: no comparison with runc");
            vec![Rt::Berth]
        }
    }
}

/// One cgroup hierarchy the daemon was placed in: the directory made for
/// it below the test's own cgroup there.
struct PrivateCgroup {
    /// e.g. "memory", "name=systemd", "" for cgroup2
    controllers: String,
    dir: PathBuf,
    mount_point: PathBuf,
    mount_root: String,
}

struct Containerd {
    dir: tempfile::TempDir,
    daemon: Child,
    cgroups: Vec<PrivateCgroup>,
}

macro_rules! require_containerd {
    () => {{
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (CI runs the integration tests as root)");
            return;
        }
        match Containerd::new() {
            Some(c) => c,
            None => {
                eprintln!("skipped: containerd is not installed (apt-get install containerd)");
                return;
            }
        }
    }};
}

/// Runs `cmd` for at most `secs`, never panicking (for the drop); its
/// stdout must fit in a pipe.
fn run_bounded(mut cmd: Command, secs: u64) -> Option<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().ok()?;
    let done = wait_until(secs, || matches!(child.try_wait(), Ok(Some(_))));
    if !done {
        let _ = child.kill();
    }
    child.wait_with_output().ok()
}

/// The cgroup mounts of this host: (mount point, mount root, super
/// options) for every cgroup and cgroup2 line of our mountinfo.
fn cgroup_mounts() -> Vec<(PathBuf, String, Vec<String>, bool)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let v2 = match *post.first()? {
                "cgroup" => false,
                "cgroup2" => true,
                _ => return None,
            };
            let opts = post.get(2)?.split(',').map(String::from).collect();
            Some((
                PathBuf::from(pre.get(4)?),
                pre.get(3)?.to_string(),
                opts,
                v2,
            ))
        })
        .collect()
}

impl Containerd {
    /// A private containerd with the busybox image imported; None without
    /// containerd.
    fn new() -> Option<Containerd> {
        for bin in ["containerd", "ctr"] {
            Command::new(bin)
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())?;
        }
        let dir = tempfile::Builder::new()
            .prefix("berth-containerd-")
            .tempdir()
            .unwrap();
        let p = |n: &str| dir.path().join(n);
        for d in ["tmp", "fifo", "runtime"] {
            std::fs::create_dir_all(p(d)).unwrap();
        }
        std::fs::write(
            p("config.toml"),
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ntemp = \"{tmp}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\", \
                 \"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.btrfs\", \
                 \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.zfs\", \
                 \"io.containerd.snapshotter.v1.native\", \"io.containerd.internal.v1.opt\", \
                 \"io.containerd.tracing.processor.v1.otlp\", \"io.containerd.internal.v1.tracing\"]\n\
                 [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
                root = p("root").display(),
                state = p("state").display(),
                tmp = p("tmp").display(),
                sock = p("containerd.sock").display(),
            ),
        )
        .unwrap();

        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let cgroups = private_cgroups(&name);
        let log = std::fs::File::create(p("containerd.log")).unwrap();
        let mut cmd = Command::new("unshare");
        // unshare and sh exec in turn: the child's pid is containerd's.
        cmd.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(
                "for f in \"$@\"; do echo $$ > \"$f\" || exit 1; done; \
                 mkdir -p /run/containerd && \
                 mount -t tmpfs -o mode=0711 berth-containerd /run/containerd && \
                 exec containerd --config \"$BERTH_CONTAINERD_CONFIG\"",
            )
            .arg("sh")
            .args(cgroups.iter().map(|c| c.dir.join("cgroup.procs")))
            .env("BERTH_CONTAINERD_CONFIG", p("config.toml"))
            .env("TMPDIR", p("tmp"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let daemon = cmd.spawn().expect("starting containerd");
        let c = Containerd {
            dir,
            daemon,
            cgroups,
        };
        assert!(
            wait_until(30, || c.ctr(&["version"]).status.success()),
            "containerd did not come up: {}",
            c.log()
        );
        c.import_image();
        Some(c)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("containerd.log")).unwrap_or_default()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.path("containerd.sock"))
            .args(["-n", NAMESPACE])
            .args(args);
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        output_within(self.cmd(args), 60)
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?}: {}\n{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// The flags of `ctr run` that pick the runtime, its state root and
    /// the FIFO dir, and (runc) a relative cgroupsPath.
    fn run_flags(&self, rt: Rt, id: &str) -> Vec<String> {
        let mut f = vec![
            "--fifo-dir".to_string(),
            self.path("fifo").display().to_string(),
            "--runc-binary".to_string(),
            rt.bin().display().to_string(),
            "--runc-root".to_string(),
            self.path("runtime").display().to_string(),
        ];
        if rt == Rt::Runc {
            f.extend(["--cgroup".to_string(), format!("{}/{id}", self.parent(rt))]);
        }
        f
    }

    /// The name of the test's private cgroups (and temp dir).
    fn name(&self) -> String {
        self.dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// The cgroup a container's cgroup is made in, relative to the shim's:
    /// ctr's `/berth-test` for Berth; for runc a name of this test's own
    /// (see [`Containerd::run_flags`]): runc 1.1 resolves the relative path
    /// from the root of a hybrid host's cgroup2, where the drop removes it
    /// and no concurrent test shares it.
    fn parent(&self, rt: Rt) -> String {
        match rt {
            Rt::Berth => NAMESPACE.to_string(),
            Rt::Runc => self.name(),
        }
    }

    /// The container's memory cgroup as the host sees it.
    fn memory_cgroup(&self, rt: Rt, id: &str) -> PathBuf {
        self.private_dir("memory")
            .expect("a memory hierarchy")
            .join(self.parent(rt))
            .join(id)
    }

    /// `ctr run FLAGS... IMAGE ID CMD...`, `opts` before the image.
    fn run_cmd(&self, rt: Rt, opts: &[&str], id: &str, cmd: &[&str]) -> Command {
        let mut c = self.cmd(&["run"]);
        c.args(self.run_flags(rt, id))
            .args(opts)
            .arg(IMAGE)
            .arg(id)
            .args(cmd);
        c
    }

    fn run(&self, rt: Rt, opts: &[&str], id: &str, cmd: &[&str]) -> Output {
        output_within(self.run_cmd(rt, opts, id, cmd), 60)
    }

    fn exec(&self, id: &str, exec_id: &str, opts: &[&str], cmd: &[&str]) -> Output {
        let mut c = self.cmd(&["task", "exec", "--fifo-dir"]);
        c.arg(self.path("fifo"))
            .args(["--exec-id", exec_id])
            .args(opts)
            .arg(id)
            .args(cmd);
        output_within(c, 60)
    }

    /// The task's (pid, status) from `ctr task ls`.
    fn task(&self, id: &str) -> Option<(i32, String)> {
        let out = self.ok(&["task", "ls"]);
        out.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| (f[1].parse().unwrap(), f[2].to_string()))
        })
    }

    /// Container state directories in the runtime's root (go-runc adds the
    /// namespace to `--runc-root`).
    fn runtime_ids(&self) -> Vec<String> {
        std::fs::read_dir(self.path("runtime").join(NAMESPACE))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "names")
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pids of this daemon's shims (of container `id`, or all): found by
    /// their command line (`-id ID -address SOCK`): 1.6 leaves no
    /// shim.pid in the task's state dir.
    fn shims(&self, id: Option<&str>) -> Vec<i32> {
        let sock = self.path("containerd.sock").display().to_string();
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            let flag = |name: &str| {
                args.windows(2)
                    .find(|w| w[0] == name.as_bytes())
                    .map(|w| String::from_utf8_lossy(w[1]).into_owned())
            };
            let is_shim = args
                .first()
                .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"));
            if is_shim
                && flag("-address").as_deref() == Some(sock.as_str())
                && id.is_none_or(|id| flag("-id").as_deref() == Some(id))
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// Our daemon's cgroup in the hierarchy with `controller`.
    fn private_dir(&self, controller: &str) -> Option<&Path> {
        self.cgroups
            .iter()
            .find(|c| c.controllers.split(',').any(|x| x == controller))
            .map(|c| c.dir.as_path())
    }

    /// The busybox root filesystem as an OCI image layout archive (one
    /// uncompressed layer, its config, the manifest and the index, named
    /// by their sha256), imported and unpacked into the snapshotter.
    fn import_image(&self) {
        let blobs = self.path("image/blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let sha = |path: &Path| -> (String, u64) {
            let o = Command::new("sha256sum").arg(path).output().unwrap();
            assert!(o.status.success(), "sha256sum: {}", stderr(&o));
            let digest = stdout(&o).split_whitespace().next().unwrap().to_string();
            (digest, std::fs::metadata(path).unwrap().len())
        };
        let add = |tmp: PathBuf| -> (String, u64) {
            let (d, n) = sha(&tmp);
            std::fs::rename(&tmp, blobs.join(&d)).unwrap();
            (d, n)
        };
        let layer = self.path("layer.tar");
        let o = Command::new("tar")
            .arg("-C")
            .arg(busybox_rootfs())
            .arg("-cf")
            .arg(&layer)
            .arg(".")
            .output()
            .unwrap();
        assert!(o.status.success(), "tar: {}", stderr(&o));
        let (layer_digest, layer_size) = add(layer);
        let json = |name: &str, v: serde_json::Value| -> (String, u64) {
            let tmp = self.path(name);
            std::fs::write(&tmp, v.to_string()).unwrap();
            add(tmp)
        };
        let (config_digest, config_size) = json(
            "config.json",
            serde_json::json!({
                "architecture": "amd64",
                "os": "linux",
                "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
                "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
            }),
        );
        let (manifest_digest, manifest_size) = json(
            "manifest.json",
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": format!("sha256:{config_digest}"),
                    "size": config_size,
                },
                "layers": [{
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{layer_digest}"),
                    "size": layer_size,
                }],
            }),
        );
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{manifest_digest}"),
                "size": manifest_size,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": IMAGE},
            }],
        });
        std::fs::write(self.path("image/index.json"), index.to_string()).unwrap();
        std::fs::write(
            self.path("image/oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let archive = self.path("image.tar");
        let o = Command::new("tar")
            .arg("-C")
            .arg(self.path("image"))
            .arg("-cf")
            .arg(&archive)
            .arg(".")
            .output()
            .unwrap();
        assert!(o.status.success(), "tar: {}", stderr(&o));
        self.ok(&["image", "import", &archive.display().to_string()]);
        let images = self.ok(&["image", "ls", "--quiet"]);
        assert_eq!(images.trim(), IMAGE);
    }
}

/// A cgroup named `name` below our own in every v1 hierarchy, and in the
/// cgroup2 of a hybrid host (no controllers there, so no rule against
/// processes in inner nodes). On a pure cgroup v2 host the daemon stays
/// in our own cgroup: a v2 cgroup holding the shim could not enable
/// controllers for the containers below it.
fn private_cgroups(name: &str) -> Vec<PrivateCgroup> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mounts = cgroup_mounts();
    let hybrid = !common::is_cgroup_v2();
    let mut made = Vec::new();
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let mount = mounts.iter().find(|(_, _, opts, v2)| {
            if ctrls.is_empty() {
                *v2
            } else {
                !*v2 && ctrls.split(',').all(|c| opts.iter().any(|o| o == c))
            }
        });
        let Some((point, root, _, v2)) = mount else {
            continue;
        };
        if *v2 && !hybrid {
            continue;
        }
        let Some(rel) = path.strip_prefix(root.as_str()) else {
            continue; // our cgroup is not visible through this mount
        };
        let dir = point.join(rel.trim_start_matches('/')).join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        if ctrls == "cpuset" {
            // A v1 cpuset takes no task before it has cpus and mems.
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let v = std::fs::read_to_string(dir.parent().unwrap().join(file)).unwrap();
                std::fs::write(dir.join(file), v.trim()).unwrap();
            }
        }
        made.push(PrivateCgroup {
            controllers: ctrls.to_string(),
            dir,
            mount_point: point.clone(),
            mount_root: root.clone(),
        });
    }
    made
}

/// Every directory of a cgroup tree, deepest first.
fn cgroup_tree(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                all.extend(cgroup_tree(&e.path()));
            }
        }
    }
    all.push(dir.to_path_buf());
    all
}

fn pids_in(dirs: &[PathBuf]) -> Vec<i32> {
    dirs.iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // The engine's own cleanup first (it runs the runtime's kill and
        // delete, so the runtime's state goes too), bounded.
        if let Some(out) = run_bounded(self.cmd(&["task", "ls", "--quiet"]), 10) {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                // A frozen task takes its SIGKILL only once thawed.
                let _ = run_bounded(self.cmd(&["task", "resume", id]), 10);
                let _ = run_bounded(self.cmd(&["task", "kill", "--all", "-s", "KILL", id]), 10);
                let _ = run_bounded(self.cmd(&["task", "delete", "--force", id]), 10);
            }
        }
        let kill = |pid: i32| {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        };
        kill(self.daemon.id() as i32);
        let _ = self.daemon.wait();
        // Shims and containers outlive the daemon: whatever is left in the
        // daemon's cgroups (frozen ones thawed, or SIGKILL waits), and on a
        // pure v2 host the inits the state dir names and the shims.
        let mut roots: Vec<PathBuf> = self.cgroups.iter().map(|c| c.dir.clone()).collect();
        if !common::is_cgroup_v2() {
            // Where runc 1.1 puts its containers' cgroup2 (`parent`).
            let runc_v2 = Path::new("/sys/fs/cgroup/unified").join(self.name());
            if !roots.contains(&runc_v2) {
                roots.push(runc_v2);
            }
        }
        let trees: Vec<PathBuf> = roots.iter().flat_map(|d| cgroup_tree(d)).collect();
        for d in &trees {
            let _ = std::fs::write(d.join("freezer.state"), "THAWED");
        }
        let tasks = self
            .path("state/io.containerd.runtime.v2.task")
            .join(NAMESPACE);
        for e in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
            if let Ok(pid) = std::fs::read_to_string(e.path().join("init.pid")) {
                if let Ok(pid) = pid.trim().parse() {
                    kill(pid);
                }
            }
        }
        self.shims(None).into_iter().for_each(kill);
        wait_until(10, || {
            let left = pids_in(&trees);
            left.iter().for_each(|&p| kill(p));
            left.is_empty()
        });
        for d in &trees {
            // An exited task leaves its cgroup a moment later.
            wait_until(5, || std::fs::remove_dir(d).is_ok() || !d.exists());
        }
        // Mounts live in the daemon's namespace; any that reached ours
        // would keep the temp dir from being removed.
        let base = self.dir.path().display().to_string();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&base))
            .collect();
        points.reverse();
        for m in points {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The container's cgroup in every hierarchy the daemon has a private
/// cgroup in lies below it (for Berth's absolute `/berth-test/<id>` too),
/// and in the memory hierarchy it is `<private>/<parent>/<id>`.
fn assert_nested(c: &Containerd, rt: Rt, pid: i32, id: &str) {
    // containerd 1.6 leaves the shim in the daemon's cgroup (ctr gives
    // no ShimCgroup option): the caller Berth nests below.
    let shim = c.shims(Some(id));
    assert_eq!(shim.len(), 1, "the shim of {id}: {shim:?}");
    assert_eq!(
        common::v1_cgroup_dir_of(&shim[0].to_string(), "memory").as_deref(),
        c.private_dir("memory"),
        "the shim's memory cgroup"
    );
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for pc in &c.cgroups {
        if rt == Rt::Runc && pc.controllers.is_empty() {
            continue; // runc 1.1 places it from the root (see `parent`)
        }
        let path = text
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                (ctrls == pc.controllers).then_some(path)
            })
            .unwrap_or_else(|| panic!("no {:?} line: {text}", pc.controllers));
        let rel = path.strip_prefix(pc.mount_root.as_str()).unwrap_or(path);
        let dir = pc.mount_point.join(rel.trim_start_matches('/'));
        assert!(
            dir.starts_with(&pc.dir),
            "{:?}: {} is not below {}",
            pc.controllers,
            dir.display(),
            pc.dir.display()
        );
        if pc.controllers == "memory" {
            assert_eq!(dir, c.memory_cgroup(rt, id), "{text}");
        }
    }
}

/// Whether the container of `pid` is frozen, as the host sees it: runc
/// 1.1 uses the v1 freezer on a hybrid host, Berth the cgroup2
/// `cgroup.freeze` where it exists.
fn frozen(pid: i32) -> bool {
    let v1 = common::v1_cgroup_dir_of(&pid.to_string(), "freezer")
        .filter(|_| !common::is_cgroup_v2())
        .and_then(|d| std::fs::read_to_string(d.join("freezer.state")).ok())
        .is_some_and(|s| s.trim() == "FROZEN");
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let v2 = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| {
            let mount = if common::is_cgroup_v2() {
                "/sys/fs/cgroup"
            } else {
                "/sys/fs/cgroup/unified"
            };
            Path::new(mount).join(p.trim_start_matches('/'))
        })
        .and_then(|d| std::fs::read_to_string(d.join("cgroup.events")).ok())
        .is_some_and(|s| s.lines().any(|l| l == "frozen 1"));
    v1 || v2
}

fn id_for(rt: Rt, what: &str) -> String {
    format!("{what}-{}", format!("{rt:?}").to_lowercase())
}

/// `ctr run --rm`: the output on ctr's stdout and stderr, the exit code,
/// and nothing left behind (container, runtime state, cgroups).
#[test]
fn run_rm_returns_output_and_exit_code() {
    let c = require_containerd!();
    let mut outcomes = Vec::new();
    for rt in Rt::all() {
        let id = id_for(rt, "rm");
        let o = c.run(
            rt,
            &["--rm"],
            &id,
            &["sh", "-c", "echo hello from $0; echo to-stderr >&2; exit 3"],
        );
        assert_eq!(
            o.status.code(),
            Some(3),
            "{rt:?}: {}\n{}\n{}",
            stdout(&o),
            stderr(&o),
            c.log()
        );
        assert_eq!(stdout(&o), "hello from sh\n", "{rt:?}");
        assert!(stderr(&o).contains("to-stderr"), "{rt:?}: {}", stderr(&o));
        assert_eq!(c.ok(&["container", "ls", "--quiet"]).trim(), "", "{rt:?}");
        assert!(
            wait_until(10, || c.runtime_ids().is_empty()),
            "{rt:?}: runtime state left: {:?}",
            c.runtime_ids()
        );
        let cg = c.memory_cgroup(rt, &id);
        assert!(!cg.exists(), "{rt:?}: {} left", cg.display());
        // The shim's cleanup runs `delete --force` once more after the
        // container is gone: no warning about a leaked container (runc
        // 1.1.5 gets one here too, exit status 255 with no message, so
        // only Berth's runs are checked).
        if rt == Rt::Berth {
            assert!(
                !c.log().contains("failed to remove runc container"),
                "{}",
                c.log()
            );
        }
        outcomes.push((o.status.code(), stdout(&o)));

        // A create that fails: the runtime's error, read by the shim from
        // the `--log` JSON, reaches ctr's user; --rm still removes it.
        let id = id_for(rt, "rm-fails");
        let o = c.run(rt, &["--rm"], &id, &["no-such-program"]);
        assert_eq!(o.status.code(), Some(1), "{rt:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("OCI runtime create failed") && err.contains("no-such-program"),
            "{rt:?}: {err}"
        );
        assert_eq!(c.ok(&["container", "ls", "--quiet"]).trim(), "", "{rt:?}");
        assert!(c.runtime_ids().is_empty(), "{rt:?}: {:?}", c.runtime_ids());
    }
    outcomes.dedup();
    assert_eq!(outcomes.len(), 1, "berth and runc differ: {outcomes:?}");
}

/// What the shim's cleanup relies on: `delete --force` of an id the
/// runtime does not know succeeds (and without --force fails), as in runc.
#[test]
fn delete_force_of_an_unknown_container_succeeds() {
    require_root!();
    let root = tempfile::tempdir().unwrap();
    let mut bins = vec![common::berth_bin()];
    bins.extend(common::oci::runc());
    for bin in bins {
        let r = common::oci::runtime(&bin, root.path(), &["delete", "--force", "nope"]);
        assert_eq!(r.code, 0, "{}: {}", bin.display(), r.err);
        let r = common::oci::runtime(&bin, root.path(), &["delete", "nope"]);
        assert_eq!(r.code, 1, "{}: {}", bin.display(), r.err);
    }
}

/// What a user sees of the detached flow, compared between runtimes.
#[derive(Debug, PartialEq)]
struct Flow {
    exec_code: Option<i32>,
    exec_out: String,
    missing_program_fails: bool,
    statuses: Vec<String>,
    delete_err_has_code: bool,
}

/// `ctr run -d` + `task exec` (foreground and detached) + `task ps` +
/// `task pause/resume` + `task metrics` + `task kill --all` + `task
/// delete` + `container rm`, checking each step from the host too.
fn detached_flow(c: &Containerd, rt: Rt) -> Flow {
    let id = id_for(rt, "flow");
    let log = c.path(&format!("{id}.log"));
    let uri = format!("file://{}", log.display());
    let o = c.run(
        rt,
        &["-d", "--log-uri", &uri],
        &id,
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo started; while true; do sleep 0.1; done",
        ],
    );
    assert!(o.status.success(), "{rt:?}: {}\n{}", stderr(&o), c.log());
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(20, || logs().contains("started")),
        "{rt:?}: {}",
        logs()
    );
    let (pid, status) = c.task(&id).expect("task listed");
    let mut statuses = vec![status];
    assert_nested(c, rt, pid, &id);

    let e1 = c.exec(
        &id,
        "e1",
        &[],
        &["sh", "-c", "echo in-exec; cat /proc/1/cmdline; exit 4"],
    );
    let exec_out = stdout(&e1).replace('\0', " ");
    assert!(exec_out.starts_with("in-exec\n"), "{rt:?}: {exec_out:?}");
    assert!(
        exec_out.contains("got-term"),
        "{rt:?}: exec sees the init: {exec_out:?}"
    );
    let missing = c.exec(&id, "e2", &[], &["no-such-program"]);

    // A detached exec keeps running: `task ps` (the runtime's `ps
    // --format json`) lists it with the init.
    c.ok(&[
        "task",
        "exec",
        "--fifo-dir",
        &c.path("fifo").display().to_string(),
        "--detach",
        "--exec-id",
        "sleeper",
        &id,
        "sleep",
        "1000",
    ]);
    let sleeper = |ps: &str| {
        ps.lines().skip(1).any(|l| {
            let pid = l.split_whitespace().next().unwrap_or("");
            std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
                == b"sleep\x001000\x00"
        })
    };
    let mut ps = String::new();
    assert!(
        wait_until(10, || {
            ps = c.ok(&["task", "ps", &id]);
            sleeper(&ps)
        }),
        "{rt:?}: {ps}"
    );
    assert!(
        ps.lines()
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "{rt:?}: init {pid} in {ps}"
    );

    c.ok(&["task", "pause", &id]);
    statuses.push(c.task(&id).unwrap().1);
    assert!(frozen(pid), "{rt:?}: paused but not frozen");
    c.ok(&["task", "resume", &id]);
    statuses.push(c.task(&id).unwrap().1);
    assert!(!frozen(pid), "{rt:?}: resumed but frozen");

    // The shim reads the init's cgroups itself.
    let metrics = c.ok(&["task", "metrics", &id]);
    let value = |key: &str| {
        metrics.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(key)).then(|| f.next().unwrap_or("").to_string())
        })
    };
    let pids: u64 = value("pids.current")
        .or_else(|| value("pids.current:"))
        .unwrap_or_else(|| panic!("{rt:?}: {metrics}"))
        .parse()
        .unwrap();
    assert!(pids >= 2, "{rt:?}: init and the sleeper: {metrics}");
    assert!(
        metrics.contains("memory.usage_in_bytes") || metrics.contains("memory.usage"),
        "{rt:?}: {metrics}"
    );

    // --all: TERM to every process; the init's trap answers with 3.
    c.ok(&["task", "kill", "--all", &id]);
    assert!(
        wait_until(20, || c.task(&id).map(|t| t.1) == Some("STOPPED".into())),
        "{rt:?}: {:?}",
        c.task(&id)
    );
    statuses.push("STOPPED".into());
    assert!(logs().contains("got-term"), "{rt:?}: {}", logs());
    let o = c.ctr(&["task", "delete", &id]);
    assert!(o.status.success(), "{rt:?}: {}", stderr(&o));
    c.ok(&["container", "rm", &id]);
    assert_eq!(c.ok(&["container", "ls", "--quiet"]).trim(), "");
    assert!(
        wait_until(10, || !c.runtime_ids().contains(&id)),
        "{rt:?}: {:?}",
        c.runtime_ids()
    );
    let cg = c.memory_cgroup(rt, &id);
    assert!(!cg.exists(), "{rt:?}: {} left", cg.display());
    Flow {
        exec_code: e1.status.code(),
        exec_out,
        missing_program_fails: !missing.status.success(),
        statuses,
        delete_err_has_code: stderr(&o).contains("exit code 3"),
    }
}

#[test]
fn detached_exec_ps_pause_resume_metrics_kill_delete() {
    let c = require_containerd!();
    let flows: Vec<(Rt, Flow)> = Rt::all()
        .into_iter()
        .map(|rt| (rt, detached_flow(&c, rt)))
        .collect();
    let (_, berth) = &flows[0];
    assert_eq!(berth.exec_code, Some(4), "{berth:?}");
    assert!(berth.missing_program_fails, "{berth:?}");
    assert_eq!(
        berth.statuses,
        ["RUNNING", "PAUSED", "RUNNING", "STOPPED"],
        "{berth:?}"
    );
    assert!(berth.delete_err_has_code, "ctr reports the exit code 3");
    if let Some((_, runc)) = flows.get(1) {
        let strip = |f: &Flow| f.exec_out.replace("flow-runc", "flow-berth");
        assert_eq!(strip(berth), strip(runc));
        assert_eq!(berth.exec_code, runc.exec_code);
        assert_eq!(berth.missing_program_fails, runc.missing_program_fails);
        assert_eq!(berth.statuses, runc.statuses);
        assert_eq!(berth.delete_err_has_code, runc.delete_err_has_code);
    }
}

/// Runs `cmd` (a ctr with --tty) on a new pty of 33x101 as its
/// controlling terminal, waits for the shell's prompt, asks whether its
/// stdio is a tty and its size, and exits with 7. Returns ctr's exit code
/// and what the terminal showed.
fn terminal_session(c: &Containerd, rt: Rt, mut cmd: Command) -> (Option<i32>, String) {
    let size = nix::pty::Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let (master, slave): (OwnedFd, OwnedFd) = (pty.master, pty.slave);
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls between fork and exec (setsid,
    // ioctl), on descriptors the child already holds.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            // ctr gets a controlling terminal, as under a real shell.
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = KillOnDrop(cmd.spawn().unwrap());
    drop(cmd); // closes our copies of the slave, so EOF/EIO ends the reads
    let mut child = child;
    let mut seen = String::new();
    let mut read_until =
        |want: &str, secs: u64| common::read_pty_until(&master, &mut seen, want, secs);
    let got = read_until("/ # ", 30);
    assert!(
        got.contains("/ # "),
        "{rt:?}: no prompt: {got:?}\n{}",
        c.log()
    );
    let mut m = std::fs::File::from(master.try_clone().unwrap());
    m.write_all(b"test -t 0 && test -t 1 && echo IS-A-TTY; echo SIZE=$(stty size); exit 7\n")
        .unwrap();
    read_until("SIZE=33 101", 20);
    let exited = wait_until(20, || child.0.try_wait().unwrap().is_some());
    assert!(exited, "{rt:?}: ctr did not exit: {seen:?}");
    (child.0.wait().unwrap().code(), seen)
}

/// `ctr run --tty` and `ctr task exec --tty` on a real terminal: the
/// process's stdio is a tty of the size ctr's terminal has (ctr resizes
/// the runtime's pty, whose master came over the console socket of
/// `create` and of `exec`), and the exit code comes back.
#[test]
fn run_and_exec_with_a_terminal() {
    let c = require_containerd!();
    for rt in Rt::all() {
        let id = id_for(rt, "tty");
        let cmd = c.run_cmd(rt, &["--rm", "--tty"], &id, &["sh"]);
        let (code, seen) = terminal_session(&c, rt, cmd);
        assert!(seen.contains("IS-A-TTY"), "{rt:?}: {seen:?}");
        assert!(seen.contains("SIZE=33 101"), "{rt:?}: {seen:?}");
        assert_eq!(code, Some(7), "{rt:?}: {seen:?}");
        assert!(
            wait_until(10, || c.runtime_ids().is_empty()),
            "{rt:?}: {:?}",
            c.runtime_ids()
        );

        let id = id_for(rt, "exec-tty");
        let o = c.run(rt, &["-d", "--null-io"], &id, &["sleep", "1000"]);
        assert!(o.status.success(), "{rt:?}: {}", stderr(&o));
        let mut cmd = c.cmd(&["task", "exec", "--tty", "--fifo-dir"]);
        cmd.arg(c.path("fifo"))
            .args(["--exec-id", "shell", &id, "sh"]);
        let (code, seen) = terminal_session(&c, rt, cmd);
        assert!(seen.contains("IS-A-TTY"), "{rt:?} exec: {seen:?}");
        assert!(seen.contains("SIZE=33 101"), "{rt:?} exec: {seen:?}");
        assert_eq!(code, Some(7), "{rt:?} exec: {seen:?}");
        c.ok(&["task", "kill", "--signal", "KILL", &id]);
        assert!(
            wait_until(20, || c.task(&id).map(|t| t.1) == Some("STOPPED".into())),
            "{rt:?}"
        );
        c.ok(&["task", "delete", &id]);
        c.ok(&["container", "rm", &id]);
    }
}

/// `--memory-limit`: the limit in the container's memory cgroup, read from
/// the host, from inside (ctr's spec has no /sys/fs/cgroup: a read-only
/// cgroup mount is asked for) and through the shim's `task metrics`.
#[test]
fn memory_limit_seen_inside_outside_and_in_metrics() {
    let c = require_containerd!();
    const LIMIT: &str = "67108864";
    let inside = if common::is_cgroup_v2() {
        "/sys/fs/cgroup/memory.max"
    } else {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    };
    let mut seen = Vec::new();
    for rt in Rt::all() {
        let id = id_for(rt, "mem");
        let o = c.run(
            rt,
            &[
                "-d",
                "--null-io",
                "--memory-limit",
                LIMIT,
                "--mount",
                "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:nodev:noexec",
            ],
            &id,
            &["sleep", "1000"],
        );
        assert!(o.status.success(), "{rt:?}: {}\n{}", stderr(&o), c.log());
        let (pid, _) = c.task(&id).expect("task listed");
        if !common::is_cgroup_v2() {
            let host = common::v1_dir(pid.into(), "memory").join("memory.limit_in_bytes");
            assert_eq!(
                std::fs::read_to_string(&host).unwrap().trim(),
                LIMIT,
                "{rt:?}"
            );
        }
        let o = c.exec(&id, "cat", &[], &["cat", inside]);
        assert_eq!(stdout(&o).trim(), LIMIT, "{rt:?}: {}", stderr(&o));
        let o = c.exec(
            &id,
            "write",
            &[],
            &["sh", "-c", &format!("echo 1 > {inside}")],
        );
        assert!(!o.status.success(), "{rt:?}: the cgroup mount is read-only");
        let metrics = c.ok(&["task", "metrics", &id]);
        let limit_line = metrics
            .lines()
            .find(|l| l.starts_with("memory.limit_in_bytes") || l.starts_with("memory.usage_limit"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "));
        assert!(
            limit_line.as_deref().is_some_and(|l| l.ends_with(LIMIT)),
            "{rt:?}: {metrics}"
        );
        c.ok(&["task", "kill", "--signal", "KILL", &id]);
        assert!(
            wait_until(20, || c.task(&id).map(|t| t.1) == Some("STOPPED".into())),
            "{rt:?}"
        );
        c.ok(&["task", "delete", &id]);
        c.ok(&["container", "rm", &id]);
        seen.push(limit_line);
    }
    seen.dedup();
    assert_eq!(seen.len(), 1, "berth and runc differ: {seen:?}");
}

/// A child process killed (by its pid) and reaped when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shim watches the init's memory cgroup for OOM kills itself: a
/// container past its `--memory-limit` dies with 137 and containerd
/// publishes `/tasks/oom` for it, whichever runtime made the cgroup.
#[test]
fn oom_kill_is_an_event() {
    let c = require_containerd!();
    if std::fs::read_to_string("/proc/swaps").is_ok_and(|s| s.lines().count() > 1) {
        eprintln!("skipped: the host has swap, a container past its memory limit swaps");
        return;
    }
    let mut events = c.cmd(&["events"]);
    events.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut events = KillOnDrop(events.spawn().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = events.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |want: &dyn Fn(&str) -> bool, millis: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(millis);
        while std::time::Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(50)) {
                seen.push(l);
                if want(seen.last().unwrap()) {
                    return true;
                }
            }
        }
        false
    };
    // `ctr events` subscribes asynchronously: label the namespace until
    // it reports one of the updates.
    let mut subscribed = false;
    for i in 0..50 {
        c.ok(&[
            "namespaces",
            "label",
            NAMESPACE,
            &format!("berth-probe={i}"),
        ]);
        if wait_for(&|l: &str| l.contains("/namespaces/update"), 200) {
            subscribed = true;
            break;
        }
    }
    assert!(subscribed, "ctr events saw no namespace update");
    for rt in Rt::all() {
        let id = id_for(rt, "oom");
        let o = c.run(
            rt,
            &["-d", "--null-io", "--memory-limit", "16777216"],
            &id,
            &["sh", "-c", "head -c 256m /dev/zero | tail"],
        );
        assert!(o.status.success(), "{rt:?}: {}\n{}", stderr(&o), c.log());
        let oom = |l: &str| l.contains("/tasks/oom") && l.contains(&format!("\"{id}\""));
        assert!(wait_for(&oom, 30_000), "{rt:?}: no oom event");
        assert!(
            wait_until(20, || c.task(&id).map(|t| t.1) == Some("STOPPED".into())),
            "{rt:?}"
        );
        let o = c.ctr(&["task", "delete", &id]);
        assert!(o.status.success(), "{rt:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("exit code 137"),
            "{rt:?}: {}",
            stderr(&o)
        );
        c.ok(&["container", "rm", &id]);
    }
}
