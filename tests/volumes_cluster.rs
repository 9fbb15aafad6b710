//! Dynamic reservations and persistent volumes end to end (issue 8): `berth
//! master` and `berth agent` as processes, a framework on the scheduler API,
//! real volumes (the agent's volume store makes a loop-mounted ext4 image per
//! volume, which enforces the size).
//!
//! A framework reserves cpus, mem and disk, creates a volume and launches a
//! task that writes to it in one ACCEPT; a second task reads the data back;
//! writing past the volume's size fails with ENOSPC inside a task;
//! GROW_VOLUME grows it in place (data kept, the new size usable) and
//! SHRINK_VOLUME shrinks it (unmounted, data kept); the agent
//! is killed (SIGKILL) and started again with the same work dir, and the
//! volume, its data and the reservation are still there and offered; DESTROY
//! then UNRESERVE give everything back to "*" and the volume is gone from the
//! agent's store.
//!
//! Needs root and mkfs.ext4 (prints "skipped: ..." otherwise). The agent's
//! volume store is a directory of the test's own (`--volume-root`); every
//! volume in it is destroyed (its loop mount undone) when the test ends,
//! after the agent has stopped, even when the test fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{walk, Cluster, Framework, WAIT};
use common::{output_within, pymesos_python, stderr, stdout, wait_until};
use masterlink::resources::{Resource, ResourceValue};
use masterlink::scheduler::{Filters, Offer, Operation, Reason, TaskInfo, TaskState};
use serde_json::{json, Value as Json};

const RESOURCES: &str = "cpus:2;mem:1024;disk:1024";
const ROLE: &str = "dev";

/// The agent's volume store: destroyed volume by volume on drop (declare it
/// before the cluster, so that the agent has stopped by then).
struct VolumeRoot {
    dir: tempfile::TempDir,
}

impl VolumeRoot {
    fn new() -> VolumeRoot {
        VolumeRoot {
            dir: tempfile::Builder::new()
                .prefix("berth-volumes-")
                .tempdir()
                .unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The volumes the store holds.
    fn volumes(&self) -> Vec<volumes::Volume> {
        volumes::VolumeStore::open(self.path())
            .and_then(|s| s.list())
            .unwrap_or_default()
    }
}

impl Drop for VolumeRoot {
    fn drop(&mut self) {
        let Ok(store) = volumes::VolumeStore::open(self.path()) else {
            return;
        };
        for v in store.list().unwrap_or_default() {
            if let Err(e) = store.destroy(&v.key) {
                eprintln!("cleanup: destroying volume {}: {e}", v.key);
            }
        }
    }
}

fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (containers and loop-mounted volumes)");
        return false;
    }
    if !["/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        eprintln!("skipped: mkfs.ext4 not installed (apt-get install e2fsprogs)");
        return false;
    }
    true
}

fn reserved(name: &str, value: f64) -> Json {
    json!({"name": name, "type": "SCALAR", "scalar": {"value": value},
           "reservations": [{"type": "DYNAMIC", "role": ROLE, "principal": "ops"}]})
}

fn volume(mb: f64, id: &str) -> Json {
    let mut v = reserved("disk", mb);
    v["disk"] = json!({"persistence": {"id": id, "principal": "ops"},
                       "volume": {"container_path": "data", "mode": "RW"}});
    v
}

fn op(v: Json) -> Operation {
    serde_json::from_value(v).unwrap()
}

fn is_reserved_for_role(r: &Resource) -> bool {
    r.owner_role() == Some(ROLE)
}

/// A task on the offer's agent with reserved cpus and mem and `volume`
/// (a resource as offered, or as created in the same ACCEPT).
fn volume_task(id: &str, offer: &Offer, volume: Json, cmd: &str) -> TaskInfo {
    serde_json::from_value(json!({
        "name": id, "task_id": {"value": id}, "agent_id": offer.agent_id,
        "resources": [reserved("cpus", 0.1), reserved("mem", 32.0), volume],
        "command": {"value": cmd},
    }))
    .unwrap()
}

async fn accept(fw: &Framework, offer: &Offer, ops: Vec<Operation>) {
    fw.sub
        .client
        .accept(
            vec![offer.id.clone()],
            ops,
            Some(Filters {
                refuse_seconds: 0.0,
            }),
        )
        .await
        .expect("ACCEPT");
}

/// The next offer that satisfies `pred` (others are declined for no time).
async fn offer_where(fw: &mut Framework, what: &str, pred: impl Fn(&Offer) -> bool) -> Offer {
    let deadline = Instant::now() + WAIT;
    loop {
        let o = fw.offer().await;
        if pred(&o) {
            return o;
        }
        assert!(
            Instant::now() < deadline,
            "no offer with {what}; the last: {}",
            o.resources
        );
        fw.sub.client.decline(vec![o.id], 0.0).await.unwrap();
    }
}

fn offered_volume(o: &Offer) -> Option<&Resource> {
    o.resources.iter().find(|r| r.is_persistent_volume())
}

/// Runs `task`'s updates to the end (acknowledged); its terminal state and
/// message.
async fn finish(fw: &mut Framework, task: &str) -> (TaskState, String) {
    let all = fw.ack_until(task, |s| s.is_terminal()).await;
    let last = all.last().unwrap();
    (last.state, last.message.clone().unwrap_or_default())
}

/// Launches task `id` using the offered volume (in an offer that also
/// satisfies `pred`); its terminal state and message. An offer that went
/// stale meanwhile (rescinded when the agent re-registered: the task comes
/// back TASK_LOST, REASON_INVALID_OFFERS) is retried with the next one.
async fn run_on_volume(
    fw: &mut Framework,
    id: &str,
    cmd: &str,
    pred: impl Fn(&Offer) -> bool,
) -> (TaskState, String) {
    for _ in 0..5 {
        let offer = offer_where(fw, "the volume", |o| offered_volume(o).is_some() && pred(o)).await;
        let vol = serde_json::to_value(offered_volume(&offer).unwrap()).unwrap();
        let task = volume_task(id, &offer, vol, cmd);
        accept(
            fw,
            &offer,
            vec![op(
                json!({"type": "LAUNCH", "launch": {"task_infos": [task]}}),
            )],
        )
        .await;
        let all = fw.ack_until(id, |s| s.is_terminal()).await;
        let last = all.last().unwrap();
        if last.reason == Some(Reason::InvalidOffers) {
            continue;
        }
        return (last.state, last.message.clone().unwrap_or_default());
    }
    panic!("task {id}: every offer was stale");
}

/// The sandbox file `name` of the task whose sandbox is under `work`.
fn sandbox_file(work: &Path, task: &str, name: &str) -> String {
    let path: PathBuf = common::cluster::walk(work)
        .into_iter()
        .find(|p| {
            p.ends_with(name)
                && p.components()
                    .any(|c| c.as_os_str() == std::ffi::OsStr::new(task))
                && !p.components().any(|c| c.as_os_str() == "meta")
        })
        .unwrap_or_else(|| panic!("no {name} of task {task} under {}", work.display()));
    std::fs::read_to_string(&path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_create_use_restart_destroy_unreserve() {
    if !can_run() {
        return;
    }
    // Before the cluster: dropped after it.
    let root = VolumeRoot::new();
    let mut c = Cluster::start(
        RESOURCES,
        &[],
        &[&format!("--volume-root={}", root.path().display())],
    );
    let mut fw = Framework::new(
        c.subscribe_json(json!({
            "user": "root", "name": "volumes", "roles": [ROLE], "principal": "ops",
            "checkpoint": true,
            "capabilities": [{"type": "MULTI_ROLE"}, {"type": "RESERVATION_REFINEMENT"}],
        }))
        .await,
    );

    // RESERVE, CREATE a 16 MB volume, LAUNCH a writer that uses it: one ACCEPT.
    let offer = fw.offer().await;
    let writer = volume_task(
        "writer",
        &offer,
        volume(16.0, "vol1"),
        "echo persisted > data/file && sync",
    );
    accept(
        &fw,
        &offer,
        vec![
            op(json!({"type": "RESERVE", "reserve": {"resources": [
                reserved("cpus", 1.0), reserved("mem", 256.0), reserved("disk", 100.0)]}})),
            op(json!({"type": "CREATE", "create": {"volumes": [volume(16.0, "vol1")]}})),
            op(json!({"type": "LAUNCH", "launch": {"task_infos": [writer]}})),
        ],
    )
    .await;
    let (state, msg) = finish(&mut fw, "writer").await;
    assert_eq!(state, TaskState::Finished, "writer: {msg}");
    let vols = root.volumes();
    assert_eq!(vols.len(), 1, "{vols:?}");
    assert_eq!(vols[0].size_bytes, 16 << 20);
    assert_eq!(
        std::fs::read_to_string(vols[0].path.join("file")).unwrap(),
        "persisted\n"
    );
    assert!(c
        .agent_work()
        .join("meta/resources/resources.info")
        .exists());

    // The volume is offered again, with its disk info; a reader gets the data.
    let offer = offer_where(&mut fw, "the volume", |o| offered_volume(o).is_some()).await;
    let vol = serde_json::to_value(offered_volume(&offer).unwrap()).unwrap();
    assert_eq!(vol["disk"]["persistence"]["id"], "vol1", "{vol}");
    assert_eq!(vol["scalar"]["value"], 16.0, "{vol}");
    fw.sub.client.decline(vec![offer.id], 0.0).await.unwrap();
    let (state, msg) = run_on_volume(&mut fw, "reader", "cat data/file", |_| true).await;
    assert_eq!(state, TaskState::Finished, "reader: {msg}");
    assert_eq!(
        sandbox_file(&c.agent_work(), "reader", "stdout"),
        "persisted\n"
    );

    // Past the size: ENOSPC inside the task (the task checks dd's error).
    let (state, msg) = run_on_volume(
        &mut fw,
        "filler",
        "dd if=/dev/zero of=data/big bs=1M count=64 2>dd.err; s=$?; cat dd.err >&2; \
         rm -f data/big; [ $s -ne 0 ] && grep -q 'No space left on device' dd.err",
        |_| true,
    )
    .await;
    let err = sandbox_file(&c.agent_work(), "filler", "stderr");
    assert_eq!(state, TaskState::Finished, "filler: {msg}; stderr: {err}");
    assert!(err.contains("No space left on device"), "{err}");

    // GROW_VOLUME by 8 MB of the reservation (which stays 100 MB in all):
    // the image grows (online), the data stays, and the larger volume is
    // what is offered from then on.
    let offer = offer_where(&mut fw, "the volume to grow", |o| {
        offered_volume(o).is_some()
    })
    .await;
    let vol = serde_json::to_value(offered_volume(&offer).unwrap()).unwrap();
    accept(
        &fw,
        &offer,
        vec![op(json!({"type": "GROW_VOLUME", "grow_volume": {
            "volume": vol, "addition": reserved("disk", 8.0)}}))],
    )
    .await;
    assert!(
        wait_until(30, || root
            .volumes()
            .first()
            .is_some_and(|v| v.size_bytes == 24 << 20)),
        "the volume did not grow: {:?}",
        root.volumes()
    );
    let (state, msg) = run_on_volume(
        &mut fw,
        "grown",
        "cat data/file && dd if=/dev/zero of=data/more bs=1M count=18 && rm data/more",
        |o| {
            offered_volume(o)
                .is_some_and(|v| matches!(v.value, ResourceValue::Scalar(s) if s.value() == 24.0))
        },
    )
    .await;
    assert_eq!(state, TaskState::Finished, "grown: {msg}");
    assert_eq!(
        sandbox_file(&c.agent_work(), "grown", "stdout"),
        "persisted\n"
    );

    // SHRINK_VOLUME: the agent shrinks the image unmounted (ext4 cannot
    // shrink online) and mounts it again; the data stays.
    let offer = offer_where(&mut fw, "the volume to shrink", |o| {
        offered_volume(o)
            .is_some_and(|v| matches!(v.value, ResourceValue::Scalar(s) if s.value() == 24.0))
    })
    .await;
    let vol = serde_json::to_value(offered_volume(&offer).unwrap()).unwrap();
    accept(
        &fw,
        &offer,
        vec![op(json!({"type": "SHRINK_VOLUME", "shrink_volume": {
            "volume": vol, "subtract": {"value": 4}}}))],
    )
    .await;
    assert!(
        wait_until(30, || root
            .volumes()
            .first()
            .is_some_and(|v| v.size_bytes == 20 << 20)),
        "the volume did not shrink: {:?}",
        root.volumes()
    );
    let (state, msg) = run_on_volume(&mut fw, "shrunk", "cat data/file", |o| {
        offered_volume(o)
            .is_some_and(|v| matches!(v.value, ResourceValue::Scalar(s) if s.value() == 20.0))
    })
    .await;
    assert_eq!(state, TaskState::Finished, "shrunk: {msg}");
    assert_eq!(
        sandbox_file(&c.agent_work(), "shrunk", "stdout"),
        "persisted\n"
    );

    // SIGKILL the agent and start it again on the same work dir.
    c.agent.kill9();
    c.restart_agent();
    c.agent.line("re-registered with master");
    let state_json = c.agent_get("/state").await;
    let dev = &state_json["reserved_resources_full"][ROLE];
    assert!(
        dev.as_array()
            .unwrap()
            .iter()
            .any(|r| r["disk"]["persistence"]["id"] == "vol1"),
        "{state_json}"
    );
    assert_eq!(state_json["reserved_resources"][ROLE]["disk"], 100.0);
    assert_eq!(state_json["reserved_resources"][ROLE]["cpus"], 1.0);
    assert_eq!(state_json["resources"]["disk"], 1024.0);

    // SIGKILL the master and start it again: the agent re-registers with
    // it, and its registry still has the reservation and the volume; a
    // scheduler subscribing again is offered them.
    c.restart_master();
    c.agent.nth_line("re-registered with master", 2);
    let mut fw = Framework::new(
        c.subscribe_json(json!({
            "user": "root", "name": "volumes-after-failover", "roles": [ROLE], "principal": "ops",
            "checkpoint": true,
            "capabilities": [{"type": "MULTI_ROLE"}, {"type": "RESERVATION_REFINEMENT"}],
        }))
        .await,
    );

    // Still offered after both restarts (with the whole reservation), data
    // intact.
    let (state, msg) = run_on_volume(&mut fw, "reader2", "cat data/file", |o| {
        o.resources
            .filter(is_reserved_for_role)
            .scalar("disk")
            .value()
            == 100.0
    })
    .await;
    assert_eq!(state, TaskState::Finished, "reader2: {msg}");
    assert_eq!(
        sandbox_file(&c.agent_work(), "reader2", "stdout"),
        "persisted\n"
    );

    // DESTROY, then UNRESERVE everything: back to "*".
    let offer = offer_where(&mut fw, "the volume to destroy", |o| {
        offered_volume(o).is_some()
    })
    .await;
    let vol = serde_json::to_value(offered_volume(&offer).unwrap()).unwrap();
    accept(
        &fw,
        &offer,
        vec![
            op(json!({"type": "DESTROY", "destroy": {"volumes": [vol]}})),
            op(json!({"type": "UNRESERVE", "unreserve": {"resources": [
                reserved("cpus", 1.0), reserved("mem", 256.0), reserved("disk", 100.0)]}})),
        ],
    )
    .await;
    assert!(
        wait_until(30, || root.volumes().is_empty()),
        "the volume is still in the agent's store: {:?}",
        root.volumes()
    );
    let offer = offer_where(&mut fw, "everything unreserved", |o| {
        o.resources.iter().all(|r| r.is_unreserved())
            && o.resources.scalar("disk").value() == 1024.0
            && o.resources.scalar("cpus").value() == 2.0
    })
    .await;
    fw.sub.client.decline(vec![offer.id], 0.0).await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let s = c.agent_get("/state").await;
        if s["reserved_resources"]
            .as_object()
            .is_some_and(|m| m.is_empty())
        {
            assert_eq!(s["checkpointed_resources"], json!([]), "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "still reserved: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The same flow from the Python client Mesos users have: pymesos reserves,
/// creates a volume and launches a writer in one ACCEPT, a reader reads the
/// data back, then it destroys and unreserves.
#[test]
fn pymesos_reserves_creates_uses_and_destroys_a_volume() {
    if !can_run() {
        return;
    }
    let Some(python) = pymesos_python() else {
        eprintln!("skipped: pymesos is not installed (bash tests/py/setup-pymesos.sh; CI runs it)");
        return;
    };
    let root = VolumeRoot::new();
    let c = Cluster::start(
        RESOURCES,
        &[],
        &[&format!("--volume-root={}", root.path().display())],
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/py/pymesos_volumes.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script).arg("--master").arg(&c.addr);
    let out = output_within(cmd, 120);
    let stdout = stdout(&out);
    assert!(
        out.status.success(),
        "pymesos_volumes failed: {stdout}\n{}",
        stderr(&out)
    );
    assert!(
        stdout.contains("\"offered_back_unreserved\": true"),
        "{stdout}"
    );
    let read = walk(&c.agent_work())
        .into_iter()
        .find(|p| p.ends_with("stdout") && p.to_string_lossy().contains("/executors/reader-"))
        .expect("the reader's sandbox");
    assert_eq!(
        std::fs::read_to_string(read).unwrap(),
        "written-by-pymesos\n"
    );
    assert!(
        wait_until(30, || root.volumes().is_empty()),
        "the volume is still in the agent's store: {:?}",
        root.volumes()
    );
}
