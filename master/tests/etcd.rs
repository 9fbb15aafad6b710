//! The etcd registry backend and leader election against a real etcd that
//! each test starts itself (etcd_harness). Skipped with "skipped: etcd not
//! installed" where there is no etcd binary; CI (.ci/run) installs it.

mod etcd_harness;
mod registry_contract;

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_harness::Etcd;
use master::election::{Election, ElectionOptions, State};
use master::registry::{
    EtcdConfig, EtcdRegistry, Fence, Registry, RegistryError, RegistryLocation,
};
use registry_contract::{agent, framework, Store};
use serde_json::json;

/// The lease TTL the election tests use: short, but not so short that a
/// busy 2-core CI machine makes a healthy leader miss its renewals.
const TTL: Duration = Duration::from_secs(3);

struct EtcdStore {
    etcd: Etcd,
    prefix: String,
}

impl EtcdStore {
    fn config(&self) -> EtcdConfig {
        EtcdConfig::new([self.etcd.endpoint()]).with_prefix(&self.prefix)
    }
}

impl Store for EtcdStore {
    fn open(&self) -> Box<dyn Registry> {
        Box::new(EtcdRegistry::open(&self.config()).unwrap())
    }
}

fn fresh() -> Option<EtcdStore> {
    Some(EtcdStore {
        etcd: Etcd::start()?,
        prefix: "/berth-test/".to_string(),
    })
}

registry_contract_tests!(fresh());

/// Runs `f` with a plain etcd client of its own (what an operator's etcdctl
/// would do), on a throwaway runtime.
fn raw<T, F: Future<Output = T>>(etcd: &Etcd, f: impl FnOnce(etcd_client::Client) -> F) -> T {
    let endpoint = etcd.url();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let client = etcd_client::Client::connect([endpoint], None)
                .await
                .unwrap();
            f(client).await
        })
}

fn raw_get(etcd: &Etcd, key: &str) -> Option<Vec<u8>> {
    let key = key.to_string();
    raw(etcd, |mut c| async move {
        let mut resp = c.get(key, None).await.unwrap();
        resp.take_kvs()
            .into_iter()
            .next()
            .map(|kv| kv.value().to_vec())
    })
}

/// Polls `cond` every 20 ms until it holds; false after `within`.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn records_are_json_under_the_prefix_and_prefixes_are_separate() {
    let Some(etcd) = Etcd::start() else { return };
    let config = EtcdConfig::new([etcd.endpoint()]).with_prefix("/cluster-a");
    let mut a = EtcdRegistry::open(&config).unwrap();
    a.admit_agent(&agent("a1", 5051)).unwrap();
    a.put_framework(&framework("f1", 5.0)).unwrap();
    a.put("reservations/r", br#"{"role":"web"}"#, None).unwrap();

    let stored: serde_json::Value =
        serde_json::from_slice(&raw_get(&etcd, "/cluster-a/agents/a1").unwrap()).unwrap();
    assert_eq!(stored["hostname"], "a1.example");
    assert_eq!(stored["port"], 5051);
    let stored: serde_json::Value =
        serde_json::from_slice(&raw_get(&etcd, "/cluster-a/frameworks/f1").unwrap()).unwrap();
    assert_eq!(stored["failover_timeout_secs"], 5.0);
    assert_eq!(
        raw_get(&etcd, "/cluster-a/kv/reservations/r").unwrap(),
        br#"{"role":"web"}"#
    );
    assert_eq!(
        raw_get(&etcd, "/cluster-a/meta/schema_version").unwrap(),
        b"1"
    );
    assert_eq!(
        a.info().path,
        format!("etcd://127.0.0.1:{}/cluster-a/", etcd.client_port)
    );
    assert_eq!(a.info().backend, "etcd");

    // Another prefix is another registry.
    let b = EtcdRegistry::open(&config.clone().with_prefix("/cluster-b/")).unwrap();
    assert!(b.agents().unwrap().is_empty());
    assert!(b.list_prefix("").unwrap().is_empty());
    assert_eq!(a.agents().unwrap().len(), 1);
}

#[test]
fn the_registry_flag_opens_etcd_and_the_trait_fences_it() {
    let Some(etcd) = Etcd::start() else { return };
    let url = format!("etcd://{}/flagged", etcd.endpoint());
    let location = RegistryLocation::parse(Some(&url), std::path::Path::new("/unused")).unwrap();
    let mut reg: Box<dyn Registry> = location.open().unwrap();
    assert_eq!(reg.info().backend, "etcd");
    reg.admit_agent(&agent("a", 1)).unwrap();
    // A fence whose leader key does not exist: no term holds, no write.
    reg.set_fence(Some(Fence {
        key: "/flagged/leader".to_string(),
        term: 1,
    }));
    let err = reg.put("k", b"v", None).unwrap_err();
    assert!(
        matches!(err, RegistryError::NotLeader { term: 1, .. }),
        "{err:?}"
    );
    assert_eq!(reg.get("k").unwrap(), None);
    reg.set_fence(None);
    assert_eq!(reg.put("k", b"v", None).unwrap(), 1);
}

#[test]
fn long_listings_are_paged_at_one_revision() {
    let Some(etcd) = Etcd::start() else { return };
    let mut reg = EtcdRegistry::open(&EtcdConfig::new([etcd.endpoint()])).unwrap();
    // More than one page (500 keys) of agents and of kv entries.
    for i in 0..1203 {
        reg.admit_agent(&agent(&format!("agent-{i:05}"), 1))
            .unwrap();
    }
    let agents = reg.agents().unwrap();
    assert_eq!(agents.len(), 1203);
    assert!(agents.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(agents[1202].id, "agent-01202");
}

#[test]
fn newer_layout_is_refused() {
    let Some(etcd) = Etcd::start() else { return };
    raw(&etcd, |mut c| async move {
        c.put("/berth/meta/schema_version", "7", None)
            .await
            .unwrap();
    });
    let err = EtcdRegistry::open(&EtcdConfig::new([etcd.endpoint()])).unwrap_err();
    assert!(
        matches!(err, RegistryError::SchemaTooNew { found: 7, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "registry etcd://127.0.0.1:{}/berth/: schema version 7 is newer than this berth (1)",
            etcd.client_port
        )
    );
}

#[test]
fn state_survives_an_etcd_restart_and_the_client_reconnects() {
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let config = EtcdConfig::new([etcd.endpoint()]).with_request_timeout(Duration::from_secs(2));
    let mut reg = EtcdRegistry::open(&config).unwrap();
    reg.admit_agent(&agent("a", 1)).unwrap();
    assert_eq!(reg.put("k", b"v", None).unwrap(), 1);

    // While etcd is down a call fails with a typed error within the request
    // timeout instead of hanging the master.
    etcd.kill();
    let started = Instant::now();
    let err = reg.admit_agent(&agent("b", 2)).unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Etcd { .. } | RegistryError::Timeout { .. }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4), "{err}");
    assert!(err.to_string().contains("cannot admit agent b"), "{err}");

    etcd.restart();
    // The same handle reconnects by itself (the channel redials).
    assert!(
        eventually(Duration::from_secs(15), || reg.agents().is_ok()),
        "the registry did not reconnect after the etcd restart"
    );
    assert_eq!(reg.agents().unwrap(), vec![agent("a", 1)]);
    assert_eq!(reg.get("k").unwrap(), Some((b"v".to_vec(), 1)));
    assert_eq!(reg.put("k", b"w", Some(1)).unwrap(), 2);
    // And a new client (a restarted master) sees the same state.
    let fresh = EtcdRegistry::open(&config).unwrap();
    assert_eq!(fresh.get("k").unwrap(), Some((b"w".to_vec(), 2)));
}

fn info(id: &str) -> serde_json::Value {
    json!({"id": id, "hostname": "127.0.0.1", "port": 5050, "pid": format!("master@127.0.0.1:{id}")})
}

fn campaign(etcd: &Etcd, prefix: &str, id: &str) -> Election {
    let config = EtcdConfig::new([etcd.endpoint()]).with_prefix(prefix);
    Election::campaign(&config, info(id), ElectionOptions { ttl: TTL }).unwrap()
}

fn refs(c: &[Option<Election>]) -> Vec<&Election> {
    c.iter().flatten().collect()
}

/// The candidates that believe they lead right now.
fn leaders(candidates: &[&Election]) -> Vec<usize> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_leader())
        .map(|(i, _)| i)
        .collect()
}

/// Waits for exactly one leader among `candidates`, checking all the while
/// that there is never more than one.
fn wait_for_one_leader(candidates: &[&Election], within: Duration) -> usize {
    let mut leader = None;
    let ok = eventually(within, || {
        let now = leaders(candidates);
        assert!(now.len() <= 1, "two leaders at once: {now:?}");
        leader = now.first().copied();
        leader.is_some()
    });
    assert!(ok, "no leader within {within:?}: {candidates:?}");
    leader.unwrap()
}

#[test]
fn one_leader_among_three_and_resigning_hands_over() {
    let Some(etcd) = Etcd::start() else { return };
    let observer = Election::observe(&EtcdConfig::new([etcd.endpoint()])).unwrap();
    let mut candidates: Vec<Option<Election>> = ["m1", "m2", "m3"]
        .iter()
        .map(|id| Some(campaign(&etcd, "/berth/", id)))
        .collect();
    let live = |c: &[Option<Election>]| -> Vec<usize> {
        (0..c.len()).filter(|&i| c[i].is_some()).collect()
    };

    let first = wait_for_one_leader(&refs(&candidates), Duration::from_secs(10));
    let first_idx = live(&candidates)[first];
    let first_leader = candidates[first_idx].as_ref().unwrap().leader().unwrap();
    assert_eq!(first_leader.info["id"], format!("m{}", first_idx + 1));
    // Everyone, the observer included, learns who leads.
    assert!(eventually(Duration::from_secs(5), || {
        refs(&candidates)
            .iter()
            .all(|c| c.leader().as_ref() == Some(&first_leader))
            && observer.leader().as_ref() == Some(&first_leader)
    }));
    let fence = candidates[first_idx].as_ref().unwrap().fence().unwrap();
    assert_eq!(fence.key, "/berth/leader");
    assert_eq!(fence.term, first_leader.term);

    // The leader resigns: its lease is revoked and another takes over at
    // once, not after a TTL.
    let resigned = Instant::now();
    candidates[first_idx].take().unwrap().resign().unwrap();
    let second = wait_for_one_leader(&refs(&candidates), Duration::from_secs(2));
    println!("handover after resign: {:?}", resigned.elapsed());
    let second_idx = live(&candidates)[second];
    assert_ne!(second_idx, first_idx);
    let second_leader = candidates[second_idx].as_ref().unwrap().leader().unwrap();
    assert!(second_leader.term > first_leader.term);
    assert!(eventually(Duration::from_secs(5), || {
        observer.leader().as_ref() == Some(&second_leader)
            && refs(&candidates)
                .iter()
                .all(|c| c.leader().as_ref() == Some(&second_leader))
    }));
    // Exactly one leader for a while longer (renewals keep it, nobody else
    // steals it).
    let until = Instant::now() + TTL + Duration::from_secs(1);
    while Instant::now() < until {
        let now = leaders(&refs(&candidates));
        assert_eq!(now, vec![second], "leadership moved: {candidates:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn revoked_lease_makes_the_leader_step_down_and_fences_its_writes() {
    let Some(etcd) = Etcd::start() else { return };
    let a = campaign(&etcd, "/berth/", "a");
    assert!(matches!(
        a.wait_state(Duration::from_secs(10), |s| matches!(
            s,
            State::Leading { .. }
        )),
        State::Leading { .. }
    ));
    let b = campaign(&etcd, "/berth/", "b");
    let config = EtcdConfig::new([etcd.endpoint()]);
    let mut reg_a = EtcdRegistry::open(&config).unwrap();
    reg_a.set_fence(a.fence());
    reg_a.admit_agent(&agent("x", 1)).unwrap();
    assert_eq!(reg_a.put("k", b"1", None).unwrap(), 1);

    // Someone revokes a's lease (what etcd does when it expires).
    let lease = a.leader().unwrap().lease;
    let revoked = Instant::now();
    raw(&etcd, |mut c| async move {
        c.lease_revoke(lease).await.unwrap();
    });
    let state = a.wait_state(Duration::from_secs(2), |s| matches!(s, State::Lost { .. }));
    assert!(matches!(state, State::Lost { .. }), "{state:?}");
    println!("a stepped down after {:?}: {state:?}", revoked.elapsed());
    assert!(a.fence().is_none());
    assert!(matches!(
        b.wait_state(Duration::from_secs(2), |s| matches!(
            s,
            State::Leading { .. }
        )),
        State::Leading { .. }
    ));

    // a's registry handle still carries a's term: every write is refused,
    // CAS included, and nothing changes.
    let err = reg_a.admit_agent(&agent("y", 2)).unwrap_err();
    assert!(matches!(err, RegistryError::NotLeader { .. }), "{err:?}");
    assert!(err.to_string().contains("not the leader any more"), "{err}");
    assert!(matches!(
        reg_a.put("k", b"2", Some(1)),
        Err(RegistryError::NotLeader { .. })
    ));
    assert!(matches!(
        reg_a.remove_agent("x"),
        Err(RegistryError::NotLeader { .. })
    ));
    // Reads still work (a may show what it knew), and b's fenced writes go
    // through.
    assert_eq!(reg_a.agents().unwrap(), vec![agent("x", 1)]);
    let mut reg_b = EtcdRegistry::open(&config).unwrap();
    reg_b.set_fence(b.fence());
    assert_eq!(reg_b.put("k", b"2", Some(1)).unwrap(), 2);
    // A CAS conflict under a valid fence is still a conflict.
    assert!(matches!(
        reg_b.put("k", b"3", Some(1)),
        Err(RegistryError::Conflict {
            actual: Some(2),
            ..
        })
    ));
    assert!(reg_b.remove_agent("x").unwrap());
}

/// Not a test on its own: the candidate process of
/// `sigkilled_leader_process_is_replaced_within_the_ttl`, which runs this
/// test binary again with BERTH_TEST_ELECTION_CHILD set.
#[test]
fn election_child_process() {
    let Ok(spec) = std::env::var("BERTH_TEST_ELECTION_CHILD") else {
        return;
    };
    let (endpoint, id) = spec.split_once(' ').unwrap();
    let config = EtcdConfig::new([endpoint]);
    let _election = Election::campaign(&config, info(id), ElectionOptions { ttl: TTL }).unwrap();
    // Campaign until killed.
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

struct ChildCandidate(Child);

impl ChildCandidate {
    fn start(etcd: &Etcd, id: &str) -> ChildCandidate {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "election_child_process", "--nocapture"])
            .env(
                "BERTH_TEST_ELECTION_CHILD",
                format!("{} {id}", etcd.endpoint()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: prctl is async-signal-safe and touches no memory of the
        // parent; it runs in the forked child before exec. (The candidate
        // dies with the test thread even if the test binary is killed.)
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        ChildCandidate(cmd.spawn().unwrap())
    }

    fn sigkill(&mut self) {
        // Child::kill is SIGKILL, sent to this child's pid only.
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for ChildCandidate {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigkilled_leader_process_is_replaced_within_the_ttl() {
    let Some(etcd) = Etcd::start() else { return };
    let observer = Election::observe(&EtcdConfig::new([etcd.endpoint()])).unwrap();
    let mut child = ChildCandidate::start(&etcd, "child");
    assert!(
        eventually(Duration::from_secs(20), || observer
            .leader()
            .is_some_and(|l| l.info["id"] == "child")),
        "the child process did not become leader"
    );
    let old_term = observer.leader().unwrap().term;
    let b = campaign(&etcd, "/berth/", "b");
    let c = campaign(&etcd, "/berth/", "c");
    assert!(eventually(Duration::from_secs(5), || b.leader().is_some()
        && c.leader().is_some()));
    assert_eq!(b.leader().unwrap().info["id"], "child");
    assert_eq!(leaders(&[&b, &c]), Vec::<usize>::new());

    let killed = Instant::now();
    child.sigkill();
    // etcd expires the lease at most a TTL after the last renewal (checked
    // every 500 ms); the others win at once after that.
    let bound = TTL + Duration::from_secs(2);
    let winner = wait_for_one_leader(&[&b, &c], bound);
    let took = killed.elapsed();
    println!("new leader {took:?} after SIGKILL of the leader (TTL {TTL:?})");
    assert!(took <= bound, "{took:?}");
    let new = [&b, &c][winner].leader().unwrap();
    assert!(new.term > old_term);
    assert!(eventually(Duration::from_secs(5), || observer
        .leader()
        .as_ref()
        == Some(&new)));
}

#[test]
fn leader_steps_down_when_etcd_is_unreachable_and_a_follower_wins_later() {
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let a = campaign(&etcd, "/berth/", "a");
    assert!(matches!(
        a.wait_state(Duration::from_secs(10), |s| matches!(
            s,
            State::Leading { .. }
        )),
        State::Leading { .. }
    ));
    let b = campaign(&etcd, "/berth/", "b");
    assert!(eventually(Duration::from_secs(5), || b.leader().is_some()));

    // With etcd gone, a cannot renew: it must give up before the lease
    // could have expired on etcd's side (at most a TTL after the kill).
    let killed = Instant::now();
    etcd.kill();
    let state = a.wait_state(TTL + Duration::from_secs(1), |s| {
        matches!(s, State::Lost { .. })
    });
    let took = killed.elapsed();
    assert!(
        matches!(state, State::Lost { .. }),
        "{state:?} after {took:?}"
    );
    assert!(took <= TTL, "stepped down only after {took:?}");
    println!("leader stepped down {took:?} after etcd went away: {state:?}");
    assert!(!b.is_leader());

    // etcd comes back; b, which kept campaigning, takes over once a's lease
    // (restored with etcd, and refreshed by it) runs out.
    etcd.restart();
    assert!(
        matches!(
            b.wait_state(TTL * 3 + Duration::from_secs(5), |s| matches!(
                s,
                State::Leading { .. }
            )),
            State::Leading { .. }
        ),
        "b did not take over: {b:?}"
    );
}

#[test]
fn leader_steps_down_within_the_ttl_when_etcd_stops_answering() {
    let Some(etcd) = Etcd::start() else { return };
    let a = campaign(&etcd, "/berth/", "a");
    assert!(matches!(
        a.wait_state(Duration::from_secs(10), |s| matches!(
            s,
            State::Leading { .. }
        )),
        State::Leading { .. }
    ));
    let b = campaign(&etcd, "/berth/", "b");
    assert!(eventually(Duration::from_secs(5), || b.leader().is_some()));

    // A frozen etcd keeps its connections but never answers (a partition):
    // a's renewals hang, and it must still step down within the TTL, not
    // after its request timeout (5 s, longer than the TTL).
    let frozen = Instant::now();
    etcd.freeze();
    let state = a.wait_state(TTL + Duration::from_secs(1), |s| {
        matches!(s, State::Lost { .. })
    });
    let took = frozen.elapsed();
    etcd.thaw();
    assert!(
        matches!(state, State::Lost { .. }),
        "{state:?} after {took:?}"
    );
    assert!(took <= TTL, "stepped down only after {took:?}");
    println!("leader stepped down {took:?} after etcd froze: {state:?}");
    assert!(!b.is_leader());
    assert!(
        matches!(
            b.wait_state(TTL * 3 + Duration::from_secs(5), |s| matches!(
                s,
                State::Leading { .. }
            )),
            State::Leading { .. }
        ),
        "b did not take over: {b:?}"
    );
}
