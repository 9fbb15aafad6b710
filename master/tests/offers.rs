//! The master's offer cycle over real sockets: an agent linked through the
//! masterlink protocol (as `berth agent` speaks it), frameworks on the v1
//! scheduler API. Covers offers, LAUNCH, status updates and their
//! acknowledgement, DECLINE filters, KILL, RECONCILE, reservations, and the
//! loss of an agent. (tests/cluster.rs runs the same with real agents.)

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value as Json};
use tokio::time::timeout;

fn fast(c: &mut master::http::MasterConfig) {
    c.allocation_interval = Duration::from_millis(50);
    c.heartbeat_interval = Duration::from_secs(30);
}

fn framework(name: &str, role: &str, capabilities: &[&str]) -> Json {
    let mut caps: Vec<Json> = capabilities.iter().map(|c| json!({"type": c})).collect();
    caps.push(json!({"type": "MULTI_ROLE"}));
    json!({"user": "root", "name": name, "roles": [role], "capabilities": caps})
}

fn scalar(resources: &Json, name: &str) -> f64 {
    resources
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == name)
        .map(|r| r["scalar"]["value"].as_f64().unwrap())
        .sum()
}

fn task(id: &str, agent: &str, cpus: f64, mem: f64) -> Json {
    json!({
        "name": id, "task_id": {"value": id}, "agent_id": {"value": agent},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}],
        "command": {"value": "true"}
    })
}

fn launch(offer: &Json, tasks: Vec<Json>) -> Json {
    json!({"type": "ACCEPT", "accept": {
        "offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
        "filters": {"refuse_seconds": 0}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_launch_update_acknowledge() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), fast).await;
    let addr = master.local_addr();
    let mut agent =
        LinkedAgent::register(addr, "node1", "cpus:4;mem:1024;ports:[31000-31009]").await;
    let mut fw = Sched::subscribe(addr, framework("f", "dev", &[])).await;

    let offers = fw.next_of("OFFERS").await;
    let offer = offers["offers"]["offers"][0].clone();
    assert_eq!(offer["agent_id"]["value"], agent.id.as_str(), "{offer}");
    assert_eq!(offer["hostname"], "node1");
    assert_eq!(offer["allocation_info"]["role"], "dev");
    assert_eq!(offer["url"]["address"]["port"], 5051);
    assert_eq!(scalar(&offer["resources"], "cpus"), 4.0);
    assert_eq!(scalar(&offer["resources"], "mem"), 1024.0);
    assert!(offer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["allocation_info"]["role"] == "dev"));

    let (status, body) = fw
        .call(launch(&offer, vec![task("t1", &agent.id, 1.0, 128.0)]))
        .await;
    assert_eq!(status, 202, "{body}");
    let run = agent.next().await.unwrap();
    assert_eq!(run["type"], "RUN_TASK", "{run}");
    assert_eq!(run["task"]["task_id"]["value"], "t1");
    assert_eq!(run["framework_info"]["id"]["value"], fw.id.as_str());

    // The unused 3 cpus come back at once (refuse_seconds 0).
    let again = fw.next_of("OFFERS").await;
    assert_eq!(
        scalar(&again["offers"]["offers"][0]["resources"], "cpus"),
        3.0
    );

    let uuid = agent.update(&fw.id, "t1", "TASK_RUNNING", 1).await;
    let update = fw.next_of("UPDATE").await;
    let status = &update["update"]["status"];
    assert_eq!(status["state"], "TASK_RUNNING");
    assert_eq!(status["uuid"], uuid.as_str());
    assert_eq!(status["agent_id"]["value"], agent.id.as_str());

    let (code, body) = fw
        .call(json!({"type": "ACKNOWLEDGE", "acknowledge": {
            "agent_id": {"value": agent.id}, "task_id": {"value": "t1"}, "uuid": uuid}}))
        .await;
    assert_eq!(code, 202, "{body}");
    let ack = agent.next().await.unwrap();
    assert_eq!(ack["type"], "ACKNOWLEDGE", "{ack}");
    assert_eq!(ack["uuid"], uuid.as_str());

    // A bad uuid is a 400 naming the field.
    let (code, body) = fw
        .call(json!({"type": "ACKNOWLEDGE", "acknowledge": {
            "agent_id": {"value": agent.id}, "task_id": {"value": "t1"}, "uuid": "AAAA"}}))
        .await;
    assert_eq!(code, 400);
    assert!(body.contains("acknowledge.uuid"), "{body}");

    // Operator view while it runs.
    let (code, body) = post_json(addr, "/api/v1", &[], &json!({"type": "GET_TASKS"})).await;
    assert_eq!(code, 200);
    let tasks: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(
        tasks["get_tasks"]["tasks"][0]["state"], "TASK_RUNNING",
        "{tasks}"
    );

    let uuid = agent.update(&fw.id, "t1", "TASK_FINISHED", 2).await;
    let update = fw.next_of("UPDATE").await;
    assert_eq!(update["update"]["status"]["state"], "TASK_FINISHED");
    fw.call(json!({"type": "ACKNOWLEDGE", "acknowledge": {
        "agent_id": {"value": agent.id}, "task_id": {"value": "t1"}, "uuid": uuid}}))
        .await;
    let (_, body) = post_json(addr, "/api/v1", &[], &json!({"type": "GET_TASKS"})).await;
    let tasks: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(
        tasks["get_tasks"]["completed_tasks"][0]["state"], "TASK_FINISHED",
        "{tasks}"
    );
    assert!(tasks["get_tasks"]["tasks"]
        .as_array()
        .is_none_or(|t| t.is_empty()));

    // Legacy /master/state, /metrics/snapshot and Prometheus /metrics agree.
    let (_, body) = request(addr, "GET", "/master/state", &[], "").await;
    let state: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(state["slaves"][0]["id"], agent.id.as_str());
    assert_eq!(state["slaves"][0]["resources"]["cpus"], 4.0);
    assert_eq!(state["slaves"][0]["resources"]["ports"], "[31000-31009]");
    assert_eq!(
        state["frameworks"][0]["completed_tasks"][0]["state"],
        "TASK_FINISHED"
    );
    let (_, body) = request(addr, "GET", "/metrics/snapshot", &[], "").await;
    let metrics: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(metrics["master/tasks_finished"], 1.0);
    assert_eq!(metrics["master/slaves_active"], 1.0);
    assert_eq!(metrics["master/cpus_total"], 4.0);
    let (head, body) = request(addr, "GET", "/metrics", &[], "").await;
    assert!(head
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert!(body.contains("\nberth_master_tasks_finished 1\n"), "{body}");
    master.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_offers_and_tasks_are_reported_not_launched() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), fast).await;
    let addr = master.local_addr();
    let mut agent = LinkedAgent::register(addr, "node1", "cpus:2;mem:512").await;
    let mut fw = Sched::subscribe(addr, framework("f", "dev", &["PARTITION_AWARE"])).await;
    let offer = fw.next_of("OFFERS").await["offers"]["offers"][0].clone();

    // An offer id that does not exist: TASK_DROPPED (partition-aware),
    // REASON_INVALID_OFFERS, from the master, without uuid.
    let bogus = json!({"id": {"value": "nope"}});
    fw.call(launch(&bogus, vec![task("x", &agent.id, 1.0, 32.0)]))
        .await;
    let u = fw.next_of("UPDATE").await;
    assert_eq!(u["update"]["status"]["state"], "TASK_DROPPED", "{u}");
    assert_eq!(u["update"]["status"]["reason"], "REASON_INVALID_OFFERS");
    assert_eq!(u["update"]["status"]["source"], "SOURCE_MASTER");
    assert!(u["update"]["status"]["uuid"].is_null());

    // More than offered and a duplicate id: TASK_ERROR, REASON_TASK_INVALID;
    // the valid task in the same ACCEPT still launches.
    let (code, _) = fw
        .call(launch(
            &offer,
            vec![
                task("big", &agent.id, 8.0, 32.0),
                task("ok", &agent.id, 1.0, 32.0),
                task("ok", &agent.id, 0.5, 32.0),
            ],
        ))
        .await;
    assert_eq!(code, 202);
    let mut errors = Vec::new();
    while errors.len() < 2 {
        let u = fw.next_of("UPDATE").await;
        assert_eq!(u["update"]["status"]["state"], "TASK_ERROR", "{u}");
        assert_eq!(u["update"]["status"]["reason"], "REASON_TASK_INVALID");
        errors.push(
            u["update"]["status"]["message"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert!(errors[0].contains("more resources"), "{errors:?}");
    assert!(errors[1].contains("duplicate"), "{errors:?}");
    let run = agent.next().await.unwrap();
    assert_eq!(run["task"]["task_id"]["value"], "ok");

    // An operation this master does not apply is refused as a whole (400).
    let offer = fw.next_of("OFFERS").await["offers"]["offers"][0].clone();
    let (code, body) = fw
        .call(
            json!({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]],
            "operations": [{"type": "RESERVE", "reserve": {"resources": []}}]}}),
        )
        .await;
    assert_eq!(code, 400);
    assert!(body.contains("RESERVE"), "{body}");

    // Malformed calls: 400 naming the problem; the master keeps serving.
    let (code, body) = fw
        .call(json!({"type": "ACCEPT", "accept": {"offer_ids": 5}}))
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("offer_ids"), "{body}");
    let (code, body) = fw.call(json!({"type": "DANCE"})).await;
    assert_eq!(code, 400, "{body}");
    let (code, _) = post_json(addr, "/api/v1", &[], &json!({"type": "GET_HEALTH"})).await;
    assert_eq!(code, 200);
    master.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decline_filters_until_revive() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), fast).await;
    let addr = master.local_addr();
    let _agent = LinkedAgent::register(addr, "node1", "cpus:2;mem:512").await;
    let mut fw = Sched::subscribe(addr, framework("f", "dev", &[])).await;
    let offer = fw.next_of("OFFERS").await["offers"]["offers"][0].clone();
    let (code, _) = fw
        .call(
            json!({"type": "DECLINE", "decline": {"offer_ids": [offer["id"]],
            "filters": {"refuse_seconds": 3600}}}),
        )
        .await;
    assert_eq!(code, 202);
    // Many allocation cycles pass without an offer.
    let quiet = timeout(Duration::from_millis(600), fw.next_of("OFFERS")).await;
    assert!(
        quiet.is_err(),
        "offered again despite the filter: {quiet:?}"
    );
    fw.call(json!({"type": "REVIVE"})).await;
    let again = timeout(WAIT, fw.next_of("OFFERS"))
        .await
        .expect("offer after REVIVE");
    assert_eq!(
        scalar(&again["offers"]["offers"][0]["resources"], "cpus"),
        2.0
    );
    master.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), fast).await;
    let addr = master.local_addr();
    let mut agent = LinkedAgent::register(addr, "node1", "cpus:2;mem:512").await;
    let mut fw = Sched::subscribe(addr, framework("f", "dev", &[])).await;
    let offer = fw.next_of("OFFERS").await["offers"]["offers"][0].clone();
    fw.call(launch(&offer, vec![task("t1", &agent.id, 1.0, 64.0)]))
        .await;
    assert_eq!(agent.next().await.unwrap()["type"], "RUN_TASK");
    agent.update(&fw.id, "t1", "TASK_RUNNING", 1).await;
    fw.next_of("UPDATE").await;

    // Implicit reconciliation: the latest state, from the master, no uuid.
    fw.call(json!({"type": "RECONCILE", "reconcile": {"tasks": []}}))
        .await;
    let u = fw.next_of("UPDATE").await;
    assert_eq!(u["update"]["status"]["state"], "TASK_RUNNING", "{u}");
    assert_eq!(u["update"]["status"]["reason"], "REASON_RECONCILIATION");
    assert!(u["update"]["status"]["uuid"].is_null());

    // Explicit, unknown task on a registered agent: TASK_GONE, seen as
    // TASK_LOST by this framework (not PARTITION_AWARE).
    fw.call(json!({"type": "RECONCILE", "reconcile": {"tasks": [
        {"task_id": {"value": "ghost"}, "agent_id": {"value": agent.id}}]}}))
        .await;
    let u = fw.next_of("UPDATE").await;
    assert_eq!(u["update"]["status"]["task_id"]["value"], "ghost");
    assert_eq!(u["update"]["status"]["state"], "TASK_LOST", "{u}");

    // KILL of a known task goes to its agent with the kill policy.
    fw.call(json!({"type": "KILL", "kill": {"task_id": {"value": "t1"},
        "kill_policy": {"grace_period": {"nanoseconds": 1000000000}}}}))
        .await;
    let kill = agent.next().await.unwrap();
    assert_eq!(kill["type"], "KILL_TASK", "{kill}");
    assert_eq!(kill["task_id"]["value"], "t1");
    assert_eq!(
        kill["kill_policy"]["grace_period"]["nanoseconds"],
        1000000000
    );
    // KILL of an unknown task is answered like an explicit reconciliation.
    fw.call(json!({"type": "KILL", "kill": {"task_id": {"value": "ghost2"}}}))
        .await;
    let u = fw.next_of("UPDATE").await;
    assert_eq!(u["update"]["status"]["task_id"]["value"], "ghost2");
    assert_eq!(u["update"]["status"]["state"], "TASK_LOST");
    master.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_reservations_reach_only_their_role() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), fast).await;
    let addr = master.local_addr();
    let _agent =
        LinkedAgent::register(addr, "node1", "cpus(ops):1;mem(ops):256;cpus:2;mem:512").await;
    let mut dev = Sched::subscribe(addr, framework("dev", "dev", &[])).await;
    let offer = dev.next_of("OFFERS").await["offers"]["offers"][0].clone();
    assert_eq!(scalar(&offer["resources"], "cpus"), 2.0, "{offer}");
    assert!(offer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["role"] == "*" || r["reservations"].is_null()));

    let mut ops = Sched::subscribe(addr, framework("ops", "ops", &[])).await;
    let offer = ops.next_of("OFFERS").await["offers"]["offers"][0].clone();
    assert_eq!(offer["allocation_info"]["role"], "ops");
    assert_eq!(scalar(&offer["resources"], "cpus"), 1.0, "{offer}");
    assert!(
        offer["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["role"] == "ops"),
        "{offer}"
    );
    master.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_agent_rescinds_offers_and_marks_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), |c| {
        fast(c);
        c.agent_ping_interval = Duration::from_millis(100);
        c.max_agent_ping_timeouts = 3;
    })
    .await;
    let addr = master.local_addr();
    let mut agent = LinkedAgent::register(addr, "node1", "cpus:2;mem:512").await;
    let mut fw = Sched::subscribe(addr, framework("f", "dev", &[])).await;
    let offer = fw.next_of("OFFERS").await["offers"]["offers"][0].clone();
    fw.call(launch(&offer, vec![task("t1", &agent.id, 1.0, 64.0)]))
        .await;
    // The unused resources come back as a new offer.
    let outstanding = fw.next_of("OFFERS").await["offers"]["offers"][0]["id"].clone();
    assert_eq!(agent.next().await.unwrap()["type"], "RUN_TASK");
    agent.update(&fw.id, "t1", "TASK_RUNNING", 1).await;
    fw.next_of("UPDATE").await;

    // The agent goes silent: its offer is rescinded.
    drop(agent);
    let rescind = fw.next_of("RESCIND").await;
    assert_eq!(rescind["rescind"]["offer_id"], outstanding);
    // After the missed pings: TASK_LOST (not partition-aware), then FAILURE.
    let u = timeout(WAIT, fw.next_of("UPDATE")).await.expect("update");
    assert_eq!(u["update"]["status"]["state"], "TASK_LOST", "{u}");
    assert_eq!(u["update"]["status"]["reason"], "REASON_AGENT_REMOVED");
    let f = fw.next_of("FAILURE").await;
    assert!(f["failure"]["agent_id"]["value"].is_string(), "{f}");
    let (_, body) = request(addr, "GET", "/metrics/snapshot", &[], "").await;
    let metrics: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(metrics["master/slaves_unreachable"], 1.0, "{metrics}");
    master.shutdown().await.unwrap();
}

/// A partitioned agent (silent past its pings) that comes back: Mesos'
/// semantics for PARTITION_AWARE frameworks and the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_agent_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), |c| {
        fast(c);
        c.agent_ping_interval = Duration::from_millis(100);
        c.max_agent_ping_timeouts = 3;
    })
    .await;
    let addr = master.local_addr();
    let mut agent = LinkedAgent::register(addr, "node1", "cpus:2;mem:512").await;
    let aware_info = framework("aware", "dev", &["PARTITION_AWARE"]);
    let plain_info = framework("plain", "dev", &[]);
    let mut aware = Sched::subscribe(addr, aware_info.clone()).await;
    let offer = aware.next_of("OFFERS").await["offers"]["offers"][0].clone();
    let t1 = task("t1", &agent.id, 1.0, 64.0);
    aware.call(launch(&offer, vec![t1.clone()])).await;
    assert_eq!(agent.next().await.unwrap()["type"], "RUN_TASK");
    // The rest goes to the other framework once declined.
    let rest = aware.next_of("OFFERS").await["offers"]["offers"][0]["id"].clone();
    aware
        .call(json!({"type": "DECLINE", "decline": {"offer_ids": [rest],
            "filters": {"refuse_seconds": 3600}}}))
        .await;
    let mut plain = Sched::subscribe(addr, plain_info.clone()).await;
    let offer = plain.next_of("OFFERS").await["offers"]["offers"][0].clone();
    let t2 = task("t2", &agent.id, 1.0, 64.0);
    plain.call(launch(&offer, vec![t2.clone()])).await;
    assert_eq!(agent.next().await.unwrap()["type"], "RUN_TASK");
    agent.update(&aware.id, "t1", "TASK_RUNNING", 1).await;
    agent.update(&plain.id, "t2", "TASK_RUNNING", 2).await;
    assert_eq!(
        aware.next_of("UPDATE").await["update"]["status"]["state"],
        "TASK_RUNNING"
    );
    assert_eq!(
        plain.next_of("UPDATE").await["update"]["status"]["state"],
        "TASK_RUNNING"
    );

    // Partitioned: UNREACHABLE (with its time) to the partition-aware
    // framework, LOST to the other.
    let aid = agent.id.clone();
    drop(agent);
    let u = timeout(WAIT, aware.next_of("UPDATE"))
        .await
        .expect("update");
    let s = &u["update"]["status"];
    assert_eq!(s["state"], "TASK_UNREACHABLE", "{u}");
    assert_eq!(s["reason"], "REASON_AGENT_REMOVED", "{u}");
    assert!(
        s["unreachable_time"]["nanoseconds"].as_i64().unwrap() > 0,
        "{u}"
    );
    let u = timeout(WAIT, plain.next_of("UPDATE"))
        .await
        .expect("update");
    assert_eq!(u["update"]["status"]["state"], "TASK_LOST", "{u}");

    // Explicit reconciliation while it is away: UNREACHABLE (LOST for the
    // other), for a known task and for one the master never heard of.
    for (fw, expect) in [(&mut aware, "TASK_UNREACHABLE"), (&mut plain, "TASK_LOST")] {
        let tid = if expect == "TASK_LOST" { "t2" } else { "t1" };
        fw.call(json!({"type": "RECONCILE", "reconcile": {"tasks": [
            {"task_id": {"value": tid}, "agent_id": {"value": aid}},
            {"task_id": {"value": "never"}, "agent_id": {"value": aid}}]}}))
            .await;
        for _ in 0..2 {
            let u = fw.next_of("UPDATE").await;
            let s = &u["update"]["status"];
            assert_eq!(s["state"], expect, "{u}");
            assert_eq!(s["reason"], "REASON_RECONCILIATION", "{u}");
            if expect == "TASK_UNREACHABLE" {
                assert!(
                    s["unreachable_time"]["nanoseconds"].as_i64().unwrap() > 0,
                    "{u}"
                );
            }
        }
    }

    // Back with both tasks running: the partition-aware framework is told
    // the current state (REASON_AGENT_REREGISTERED); the other framework is
    // shut down on the agent and hears nothing more.
    let running = |fid: &str, t: &Json| json!({"framework_id": {"value": fid}, "task": t, "state": "TASK_RUNNING"});
    let mut aware_fi = aware_info.clone();
    aware_fi["id"] = json!({"value": aware.id});
    let mut plain_fi = plain_info.clone();
    plain_fi["id"] = json!({"value": plain.id});
    let resources = masterlink::resources::parse("cpus:2;mem:512").unwrap();
    let mut agent = LinkedAgent::register_call(
        addr,
        json!({
            "type": "REGISTER",
            "protocol_version": masterlink::protocol::PROTOCOL_VERSION,
            "version": "test", "boot_id": "boot",
            "agent_info": {"hostname": "node1", "port": 5051, "ip": "127.0.0.1",
                           "resources": resources, "id": {"value": aid}},
            "tasks": [running(&aware.id, &t1), running(&plain.id, &t2)],
            "frameworks": [aware_fi, plain_fi],
        }),
    )
    .await;
    let m = agent.next().await.unwrap();
    assert_eq!(m["type"], "SHUTDOWN_FRAMEWORK", "{m}");
    assert_eq!(m["framework_id"]["value"], plain.id.as_str(), "{m}");
    let u = timeout(WAIT, aware.next_of("UPDATE"))
        .await
        .expect("update");
    let s = &u["update"]["status"];
    assert_eq!(s["state"], "TASK_RUNNING", "{u}");
    assert_eq!(s["reason"], "REASON_AGENT_REREGISTERED", "{u}");
    assert_eq!(s["source"], "SOURCE_MASTER", "{u}");
    assert!(s["uuid"].is_null(), "{u}");
    let (_, body) = post_json(addr, "/api/v1", &[], &json!({"type": "GET_TASKS"})).await;
    let tasks: Json = serde_json::from_str(&body).unwrap();
    let running: Vec<&str> = tasks["get_tasks"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"]["value"].as_str().unwrap())
        .collect();
    assert_eq!(running, ["t1"], "{body}");
    assert!(
        tasks["get_tasks"]["unreachable_tasks"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{body}"
    );
    // Only t1's resources are in use: the other cpu is offered again.
    let offer = timeout(WAIT, plain.next_of("OFFERS")).await.expect("offer");
    assert_eq!(
        scalar(&offer["offers"]["offers"][0]["resources"], "cpus"),
        1.0,
        "{offer}"
    );
    master.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_framework_keeps_its_tasks_until_its_failover_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), fast).await;
    let addr = master.local_addr();
    let mut agent = LinkedAgent::register(addr, "node1", "cpus:2;mem:512").await;
    let mut info = framework("f", "dev", &[]);
    info["failover_timeout"] = json!(1.0);
    let mut fw = Sched::subscribe(addr, info.clone()).await;
    let offer = fw.next_of("OFFERS").await["offers"]["offers"][0].clone();
    fw.call(launch(&offer, vec![task("t1", &agent.id, 1.0, 64.0)]))
        .await;
    assert_eq!(agent.next().await.unwrap()["type"], "RUN_TASK");
    let id = fw.id.clone();

    // The scheduler goes away; a new one subscribes with the same id within
    // the timeout and gets the framework back, task included.
    drop(fw);
    tokio::time::sleep(Duration::from_millis(300)).await;
    info["id"] = json!({"value": id});
    let fw = Sched::subscribe(addr, info.clone()).await;
    assert_eq!(fw.id, id);
    let (_, body) = post_json(addr, "/api/v1", &[], &json!({"type": "GET_TASKS"})).await;
    assert!(body.contains("\"t1\""), "{body}");

    // Gone for longer than the timeout: removed, its tasks killed on the agent.
    drop(fw);
    let shutdown = timeout(WAIT, agent.next()).await.unwrap().unwrap();
    assert_eq!(shutdown["type"], "SHUTDOWN_FRAMEWORK", "{shutdown}");
    assert_eq!(shutdown["framework_id"]["value"], id.as_str());
    let (_, body) = post_json(addr, "/api/v1", &[], &json!({"type": "GET_FRAMEWORKS"})).await;
    let v: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["get_frameworks"]["completed_frameworks"][0]["framework_info"]["id"]["value"],
        id.as_str(),
        "{v}"
    );
    // A removed framework cannot subscribe again with its id.
    let call = json!({"type": "SUBSCRIBE", "framework_id": {"value": id},
                      "subscribe": {"framework_info": info}});
    let (head, mut events) = subscribe(addr, &call).await;
    assert_eq!(head.status, 200);
    let e = events.next().await.unwrap();
    assert_eq!(e["type"], "ERROR", "{e}");
    master.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_whitelist_refuses_other_roles() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), |c| {
        fast(c);
        c.roles = Some(["dev".to_string()].into_iter().collect());
    })
    .await;
    let addr = master.local_addr();
    let call =
        json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework("o", "other", &[])}});
    let (head, mut events) = subscribe(addr, &call).await;
    assert_eq!(head.status, 200);
    let e = events.next().await.unwrap();
    assert_eq!(e["type"], "ERROR", "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("--roles"),
        "{e}"
    );
    let fw = Sched::subscribe(addr, framework("d", "dev", &[])).await;
    assert!(!fw.id.is_empty());
    master.shutdown().await.unwrap();
}
