//! Dynamic reservations and persistent volumes through the master: offer
//! operations in ACCEPT, the operator API and the legacy form endpoints,
//! validation that changes nothing, durability across a master restart.
//! The agent is linked through the masterlink protocol (tests/
//! volumes_cluster.rs runs the same with a real agent and real volumes).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value as Json};

fn fast(c: &mut master::http::MasterConfig) {
    c.allocation_interval = Duration::from_millis(50);
    c.heartbeat_interval = Duration::from_secs(30);
}

fn framework(name: &str, role: &str) -> Json {
    json!({"user": "root", "name": name, "roles": [role], "principal": "ops",
           "capabilities": [{"type": "MULTI_ROLE"}, {"type": "RESERVATION_REFINEMENT"}]})
}

fn scalar(resources: &Json, name: &str, pred: impl Fn(&Json) -> bool) -> f64 {
    resources
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == name && pred(r))
        .map(|r| r["scalar"]["value"].as_f64().unwrap())
        .sum()
}

fn reserved_for(role: &str) -> impl Fn(&Json) -> bool + '_ {
    move |r: &Json| {
        r["reservations"]
            .as_array()
            .and_then(|s| s.last())
            .is_some_and(|l| l["role"] == role)
    }
}

fn is_volume(r: &Json) -> bool {
    r["disk"]["persistence"]["id"].is_string()
}

fn reserved_disk(mb: f64, role: &str) -> Json {
    json!({"name": "disk", "type": "SCALAR", "scalar": {"value": mb},
           "reservations": [{"type": "DYNAMIC", "role": role, "principal": "ops"}]})
}

fn volume(mb: f64, role: &str, id: &str) -> Json {
    let mut v = reserved_disk(mb, role);
    v["disk"] = json!({"persistence": {"id": id, "principal": "ops"},
                       "volume": {"container_path": "data", "mode": "RW"}});
    v
}

fn accept(offer: &Json, operations: Json) -> Json {
    json!({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]], "operations": operations,
           "filters": {"refuse_seconds": 0}}})
}

async fn operator(addr: std::net::SocketAddr, call: Json) -> (u16, String) {
    post_json(addr, "/api/v1", &[], &call).await
}

async fn agent_total(addr: std::net::SocketAddr) -> Json {
    let (_, body) = operator(addr, json!({"type": "GET_AGENTS"})).await;
    let v: Json = serde_json::from_str(&body).unwrap();
    v["get_agents"]["agents"][0]["total_resources"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_reserves_creates_launches_and_gives_back() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), fast).await;
    let addr = master.local_addr();
    let mut agent = LinkedAgent::register(addr, "node1", "cpus:2;mem:512;disk:1000").await;
    let mut fw = Sched::subscribe(addr, framework("f", "dev")).await;
    let offer = fw.next_of("OFFERS").await["offers"]["offers"][0].clone();

    // RESERVE 100 MB of disk, CREATE a 64 MB volume in it, LAUNCH a task
    // that uses the volume: all in one ACCEPT, applied in order.
    let task = json!({"name": "w", "task_id": {"value": "w"}, "agent_id": offer["agent_id"],
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
                      volume(64.0, "dev", "vol1")],
        "command": {"value": "echo data > data/file"}});
    let (code, body) = fw
        .call(accept(
            &offer,
            json!([
            {"type": "RESERVE", "reserve": {"resources": [reserved_disk(100.0, "dev")]}},
            {"type": "CREATE", "create": {"volumes": [volume(64.0, "dev", "vol1")]}},
            {"type": "LAUNCH", "launch": {"task_infos": [task]}}]),
        ))
        .await;
    assert_eq!(code, 202, "{body}");
    let cp = agent.next().await.unwrap();
    assert_eq!(cp["type"], "CHECKPOINT_RESOURCES", "{cp}");
    assert_eq!(scalar(&cp["resources"], "disk", is_volume), 64.0, "{cp}");
    assert_eq!(
        scalar(&cp["resources"], "disk", |r| !is_volume(r)),
        36.0,
        "{cp}"
    );
    let run = agent.next().await.unwrap();
    assert_eq!(run["type"], "RUN_TASK");
    assert!(
        run["task"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(is_volume),
        "{run}"
    );

    // The agent's total now has the reservation and the volume.
    let total = agent_total(addr).await;
    assert_eq!(
        scalar(&total, "disk", |r| r["reservations"].is_null()),
        900.0,
        "{total}"
    );
    assert_eq!(
        scalar(&total, "disk", reserved_for("dev")),
        100.0,
        "{total}"
    );

    // While the task runs the volume is not offered; after it ends it is,
    // with its disk info, to the role.
    let uuid = agent.update(&fw.id, "w", "TASK_FINISHED", 1).await;
    fw.call(json!({"type": "ACKNOWLEDGE", "acknowledge": {
        "agent_id": offer["agent_id"], "task_id": {"value": "w"}, "uuid": uuid}}))
        .await;
    // Collect outstanding offers until together they hold the volume and
    // the rest of the reservation (an ACCEPT may use several offers of one
    // agent); `offer` stands for all of them below.
    let mut held: Vec<Json> = Vec::new();
    let offer = loop {
        held.push(fw.next_of("OFFERS").await["offers"]["offers"][0].clone());
        let all: Vec<Json> = held
            .iter()
            .flat_map(|o| o["resources"].as_array().unwrap().clone())
            .collect();
        let all = Json::Array(all);
        if all.as_array().unwrap().iter().any(is_volume)
            && scalar(&all, "disk", reserved_for("dev")) == 100.0
        {
            break json!({"ids": held.iter().map(|o| o["id"].clone()).collect::<Vec<_>>(),
                         "resources": all});
        }
    };
    let accept = |offer: &Json, operations: Json| -> Json {
        json!({"type": "ACCEPT", "accept": {"offer_ids": offer["ids"], "operations": operations,
               "filters": {"refuse_seconds": 0}}})
    };
    let vol = offer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| is_volume(r))
        .unwrap()
        .clone();
    assert_eq!(vol["disk"]["persistence"]["id"], "vol1");
    assert_eq!(vol["disk"]["volume"]["container_path"], "data");

    // UNRESERVE of disk that still holds a volume is refused, changing nothing.
    let mut plain = vol.clone();
    plain.as_object_mut().unwrap().remove("disk");
    plain.as_object_mut().unwrap().remove("allocation_info");
    let (code, body) = fw
        .call(accept(
            &offer,
            json!([{"type": "UNRESERVE", "unreserve": {"resources": [vol.clone()]}}]),
        ))
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("DESTROY"), "{body}");

    // DESTROY then UNRESERVE: everything back to "*".
    let (code, body) = fw
        .call(accept(
            &offer,
            json!([
            {"type": "DESTROY", "destroy": {"volumes": [vol]}},
            {"type": "UNRESERVE", "unreserve": {"resources": [reserved_disk(100.0, "dev")]}}]),
        ))
        .await;
    assert_eq!(code, 202, "{body}");
    // (The acknowledgement relayed above may come first.)
    let cp = loop {
        let m = agent.next().await.unwrap();
        if m["type"] == "CHECKPOINT_RESOURCES" {
            break m;
        }
    };
    assert!(
        cp["resources"].as_array().is_none_or(|a| a.is_empty()),
        "{cp}"
    );
    let total = agent_total(addr).await;
    assert_eq!(
        scalar(&total, "disk", |r| r["reservations"].is_null()),
        1000.0,
        "{total}"
    );
    master.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_api_and_bad_operations_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), fast).await;
    let addr = master.local_addr();
    let mut agent = LinkedAgent::register(addr, "node1", "cpus:2;mem:512;disk:1000").await;
    let aid = json!({"value": agent.id});

    // Reserve more than the agent has: 409, nothing changes.
    let (code, body) = operator(
        addr,
        json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
        "agent_id": aid, "resources": [reserved_disk(5000.0, "dev")]}}),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    // Unknown agent: 400 as Mesos words it.
    let (code, body) = operator(
        addr,
        json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
        "agent_id": {"value": "nope"}, "resources": [reserved_disk(1.0, "dev")]}}),
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.contains("No agent found"), "{body}");
    // Malformed: names the field.
    let (code, body) = operator(
        addr,
        json!({"type": "CREATE_VOLUMES", "create_volumes": {
        "agent_id": aid, "volumes": 7}}),
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.contains("create_volumes.volumes"), "{body}");
    let total = agent_total(addr).await;
    assert_eq!(
        scalar(&total, "disk", |r| r["reservations"].is_null()),
        1000.0
    );

    // Reserve and create through the operator API.
    let (code, body) = operator(
        addr,
        json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
        "agent_id": aid, "resources": [reserved_disk(200.0, "dev")]}}),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(agent.next().await.unwrap()["type"], "CHECKPOINT_RESOURCES");
    let (code, body) = operator(
        addr,
        json!({"type": "CREATE_VOLUMES", "create_volumes": {
        "agent_id": aid, "volumes": [volume(50.0, "dev", "v")]}}),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let cp = agent.next().await.unwrap();
    assert_eq!(scalar(&cp["resources"], "disk", is_volume), 50.0, "{cp}");
    // Growing past what is reserved, or shrinking to nothing: refused.
    let (code, _) = operator(addr, json!({"type": "GROW_VOLUME", "grow_volume": {
        "agent_id": aid, "volume": volume(50.0, "dev", "v"), "addition": reserved_disk(500.0, "dev")}}))
        .await;
    assert_eq!(code, 409);
    let (code, body) = operator(
        addr,
        json!({"type": "SHRINK_VOLUME", "shrink_volume": {
        "agent_id": aid, "volume": volume(50.0, "dev", "v"), "subtract": {"value": 50}}}),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = operator(addr, json!({"type": "GROW_VOLUME", "grow_volume": {
        "agent_id": aid, "volume": volume(50.0, "dev", "v"), "addition": reserved_disk(30.0, "dev")}}))
        .await;
    assert_eq!(code, 202, "{body}");
    let cp = agent.next().await.unwrap();
    assert_eq!(scalar(&cp["resources"], "disk", is_volume), 80.0, "{cp}");

    // A framework of another role cannot unreserve dev's reservation: it is
    // never offered to it; a forged ACCEPT names the problem.
    let mut other = Sched::subscribe(addr, framework("o", "other")).await;
    let offer = other.next_of("OFFERS").await["offers"]["offers"][0].clone();
    assert_eq!(
        scalar(&offer["resources"], "disk", reserved_for("dev")),
        0.0,
        "{offer}"
    );
    let (code, body) = other
        .call(accept(&offer, json!([{"type": "UNRESERVE", "unreserve": {"resources": [reserved_disk(120.0, "dev")]}}])))
        .await;
    assert_eq!(code, 400, "{body}");

    // Legacy form endpoint.
    let form = format!(
        "slaveId={}&resources={}",
        agent.id,
        urlencode(&json!([reserved_disk(10.0, "ops")]).to_string())
    );
    let (head, body) = request(
        addr,
        "POST",
        "/master/reserve",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    )
    .await;
    assert_eq!(head.status, 202, "{body}");
    let total = agent_total(addr).await;
    assert_eq!(scalar(&total, "disk", reserved_for("ops")), 10.0, "{total}");
    master.shutdown().await.unwrap();
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_and_volumes_survive_a_master_restart() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), fast).await;
    let addr = master.local_addr();
    let agent = LinkedAgent::register(addr, "node1", "cpus:2;mem:512;disk:1000").await;
    let id = agent.id.clone();
    let aid = json!({"value": id});
    for call in [
        json!({"type": "RESERVE_RESOURCES", "reserve_resources": {"agent_id": aid,
              "resources": [reserved_disk(300.0, "dev")]}}),
        json!({"type": "CREATE_VOLUMES", "create_volumes": {"agent_id": aid,
              "volumes": [volume(100.0, "dev", "keep")]}}),
    ] {
        let (code, body) = operator(addr, call).await;
        assert_eq!(code, 202, "{body}");
    }
    drop(agent);
    master.shutdown().await.unwrap();

    // A new master on the same work dir: the re-registering agent is told
    // to keep its reservation and volume, and frameworks are offered them.
    let master = start_with(dir.path(), fast).await;
    let addr = master.local_addr();
    let agent =
        LinkedAgent::register_as(addr, "node1", "cpus:2;mem:512;disk:1000", Some(&id)).await;
    assert_eq!(
        scalar(&agent.checkpointed, "disk", is_volume),
        100.0,
        "{}",
        agent.checkpointed
    );
    assert_eq!(
        scalar(&agent.checkpointed, "disk", |r| !is_volume(r)),
        200.0
    );
    let mut fw = Sched::subscribe(addr, framework("f", "dev")).await;
    let offer = fw.next_of("OFFERS").await["offers"]["offers"][0].clone();
    let vol = offer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| is_volume(r))
        .cloned();
    assert_eq!(vol.unwrap()["disk"]["persistence"]["id"], "keep", "{offer}");
    assert_eq!(
        scalar(&offer["resources"], "disk", |r| reserved_for("dev")(r)
            && !is_volume(r)),
        200.0
    );
    master.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_role_refines_its_parents_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), fast).await;
    let addr = master.local_addr();
    let _agent =
        LinkedAgent::register(addr, "node1", "cpus:2;mem:512;disk(eng):100;disk:100").await;
    let mut fw = Sched::subscribe(addr, framework("b", "eng/backend")).await;
    let offer = fw.next_of("OFFERS").await["offers"]["offers"][0].clone();
    assert_eq!(offer["allocation_info"]["role"], "eng/backend");
    assert_eq!(
        scalar(&offer["resources"], "disk", reserved_for("eng")),
        100.0,
        "{offer}"
    );
    let refined = json!({"name": "disk", "type": "SCALAR", "scalar": {"value": 40},
        "reservations": [{"type": "STATIC", "role": "eng"},
                         {"type": "DYNAMIC", "role": "eng/backend", "principal": "ops"}]});
    let (code, body) = fw
        .call(accept(
            &offer,
            json!([{"type": "RESERVE", "reserve": {"resources": [refined]}}]),
        ))
        .await;
    assert_eq!(code, 202, "{body}");
    let total = agent_total(addr).await;
    assert_eq!(
        scalar(&total, "disk", reserved_for("eng/backend")),
        40.0,
        "{total}"
    );
    assert_eq!(scalar(&total, "disk", reserved_for("eng")), 60.0, "{total}");

    // A framework of the same role that cannot read refined reservations
    // (no RESERVATION_REFINEMENT) is offered everything else, never them.
    fw.call(json!({"type": "TEARDOWN"})).await;
    let legacy = json!({"user": "root", "name": "legacy", "roles": ["eng/backend"],
                        "capabilities": [{"type": "MULTI_ROLE"}]});
    let mut old = Sched::subscribe(addr, legacy).await;
    let offer = old.next_of("OFFERS").await["offers"]["offers"][0].clone();
    assert_eq!(
        scalar(&offer["resources"], "disk", |r| r["role"] == "eng"),
        60.0,
        "{offer}"
    );
    assert!(
        offer["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["role"] != "eng/backend"),
        "{offer}"
    );
    master.shutdown().await.unwrap();
}

fn basic(principal: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        masterlink::scheduler::encode_base64(format!("{principal}:{secret}").as_bytes())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_acls_decide_who_may_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), |c| {
        fast(c);
        c.auth.credentials = Some(
            master::auth::Credentials::parse("ops s3cret\neve evil\n").unwrap(),
        );
        c.auth.acls = serde_json::from_value(json!({
            "permissive": false,
            "reserve_resources": [{"principals": {"values": ["ops"]}, "roles": {"values": ["dev"]}}],
            "unreserve_resources": [{"principals": {"values": ["ops"]}, "reserver_principals": {"type": "ANY"}}],
            // Not permissive: agents (unauthenticated here) need a rule too,
            // as with Mesos.
            "register_agents": [{"principals": {"type": "ANY"}, "agents": {"type": "ANY"}}],
        }))
        .unwrap();
    })
    .await;
    let addr = master.local_addr();
    let agent = LinkedAgent::register(addr, "node1", "cpus:2;mem:512;disk:1000").await;
    let call = json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
        "agent_id": {"value": agent.id}, "resources": [reserved_disk(10.0, "dev")]}});

    // No credentials: 401 with Mesos' challenge; health stays open.
    let (head, _) = request(addr, "POST", "/api/v1", &[JSON_CT], &call.to_string()).await;
    assert_eq!(head.status, 401);
    assert_eq!(
        head.header("www-authenticate"),
        Some("Basic realm=\"mesos\"")
    );
    let (code, _) = operator(addr, json!({"type": "GET_HEALTH"})).await;
    assert_eq!(code, 200);
    // Wrong secret: 401. A principal the ACL does not allow: 403, nothing changes.
    let (code, _) = post_json(
        addr,
        "/api/v1",
        &[("Authorization", &basic("ops", "nope"))],
        &call,
    )
    .await;
    assert_eq!(code, 401);
    let mut eve_call = call.clone();
    eve_call["reserve_resources"]["resources"][0]["reservations"][0]["principal"] = json!("eve");
    let (code, body) = post_json(
        addr,
        "/api/v1",
        &[("Authorization", &basic("eve", "evil"))],
        &eve_call,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("not authorized"), "{body}");
    // A principal claiming someone else's reservation: refused.
    let (code, body) = post_json(
        addr,
        "/api/v1",
        &[("Authorization", &basic("eve", "evil"))],
        &call,
    )
    .await;
    assert!(code == 400 || code == 403, "{code}: {body}");
    let total = {
        let (_, body) = post_json(
            addr,
            "/api/v1",
            &[("Authorization", &basic("ops", "s3cret"))],
            &json!({"type": "GET_AGENTS"}),
        )
        .await;
        let v: Json = serde_json::from_str(&body).unwrap();
        v["get_agents"]["agents"][0]["total_resources"].clone()
    };
    assert_eq!(scalar(&total, "disk", reserved_for("dev")), 0.0, "{total}");
    // The allowed principal.
    let (code, body) = post_json(
        addr,
        "/api/v1",
        &[("Authorization", &basic("ops", "s3cret"))],
        &call,
    )
    .await;
    assert_eq!(code, 202, "{body}");
    // Another role is not in the ACL for ops.
    let mut prod = call.clone();
    prod["reserve_resources"]["resources"][0]["reservations"][0]["role"] = json!("prod");
    let (code, _) = post_json(
        addr,
        "/api/v1",
        &[("Authorization", &basic("ops", "s3cret"))],
        &prod,
    )
    .await;
    assert_eq!(code, 403);

    // Frameworks authenticate too, and their principal must be theirs.
    let sub = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework("f", "dev")}});
    let (head, _) = request(
        addr,
        "POST",
        "/api/v1/scheduler",
        &[JSON_CT],
        &sub.to_string(),
    )
    .await;
    assert_eq!(head.status, 401);
    let (head, body) = request(
        addr,
        "POST",
        "/api/v1/scheduler",
        &[JSON_CT, ("Authorization", &basic("eve", "evil"))],
        &sub.to_string(),
    )
    .await;
    assert_eq!(head.status, 403, "{body}");
    assert!(body.contains("principal"), "{body}");
    master.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_that_do_not_come_back_after_a_restart_become_unreachable_but_may_return() {
    let dir = tempfile::tempdir().unwrap();
    let master = start_with(dir.path(), fast).await;
    let agent = LinkedAgent::register(master.local_addr(), "node1", "cpus:2;mem:512").await;
    let id = agent.id.clone();
    drop(agent);
    master.shutdown().await.unwrap();

    // The new master knows the agent from its registry and waits for it.
    let master = start_with(dir.path(), |c| {
        fast(c);
        c.agent_reregister_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = master.local_addr();
    let (_, body) = operator(addr, json!({"type": "GET_AGENTS"})).await;
    let v: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["get_agents"]["recovered_agents"][0]["id"]["value"],
        id.as_str(),
        "{v}"
    );

    // It does not come back in time: no longer expected (unreachable).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, body) = operator(addr, json!({"type": "GET_AGENTS"})).await;
        let v: Json = serde_json::from_str(&body).unwrap();
        if v["get_agents"]["recovered_agents"]
            .as_array()
            .is_none_or(|a| a.is_empty())
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still expected: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Later it does come back, with its id, and is an agent again.
    let agent = LinkedAgent::register_as(addr, "node1", "cpus:2;mem:512", Some(&id)).await;
    assert_eq!(agent.id, id);
    let (_, body) = operator(addr, json!({"type": "GET_AGENTS"})).await;
    let v: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["get_agents"]["agents"][0]["agent_info"]["id"]["value"],
        id.as_str(),
        "{v}"
    );
    master.shutdown().await.unwrap();
}
