//! The master's HTTP APIs over real sockets: a server on 127.0.0.1:0 and a
//! small HTTP/1.1 client written here (chunked decoding, RecordIO).

mod common;

use std::time::Duration;

use common::*;
use master::registry::{Registry, SqliteRegistry};
use serde_json::{json, Value as Json};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_heartbeat_calls_and_teardown() {
    let dir = tempfile::tempdir().unwrap();
    let master = start(dir.path(), Duration::from_millis(300)).await;
    let addr = master.local_addr();

    let (head, mut events) = subscribe(addr, &subscribe_call("demo")).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert!(head.header("content-length").is_none());
    assert!(events.conn.chunked, "SUBSCRIBE answer must be chunked");
    let stream_id = head
        .header("mesos-stream-id")
        .expect("stream id")
        .to_string();
    assert_eq!(stream_id.len(), 36, "{stream_id}");

    let subscribed = events.next().await.expect("SUBSCRIBED");
    assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");
    let framework_id = subscribed["subscribed"]["framework_id"]["value"]
        .as_str()
        .expect("framework id")
        .to_string();
    assert!(!framework_id.is_empty());
    assert_eq!(subscribed["subscribed"]["heartbeat_interval_seconds"], 0.3);
    let info = &subscribed["subscribed"]["master_info"];
    assert_eq!(info["port"], addr.port());
    assert_eq!(info["ip"], 16777343);
    assert_eq!(info["hostname"], "test-master");
    assert_eq!(info["version"], "1.11.0");

    let heartbeat = events.next().await.expect("HEARTBEAT");
    assert_eq!(heartbeat, json!({"type": "HEARTBEAT"}));

    // The framework was persisted before the answer.
    let registry = SqliteRegistry::open(&dir.path().join("registry.db")).unwrap();
    let frameworks = registry.frameworks().unwrap();
    assert_eq!(frameworks.len(), 1);
    assert_eq!(frameworks[0].id, framework_id);
    assert_eq!(frameworks[0].info["name"], "demo");
    assert_eq!(frameworks[0].info["id"]["value"], framework_id.as_str());

    let fw = json!({"value": framework_id});

    // Missing and wrong stream ids.
    let (status, body) =
        scheduler_call(addr, None, &json!({"type": "SUPPRESS", "framework_id": fw})).await;
    assert_eq!(status, 400);
    assert!(body.contains("Mesos-Stream-Id"), "{body}");
    let (status, body) = scheduler_call(
        addr,
        Some("not-the-stream"),
        &json!({"type": "SUPPRESS", "framework_id": fw}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("Mesos-Stream-Id"), "{body}");

    // Unknown framework.
    let (status, body) = scheduler_call(
        addr,
        Some(&stream_id),
        &json!({"type": "REVIVE", "framework_id": {"value": "nobody"}}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("Framework cannot be found"), "{body}");

    // Implemented calls.
    for call in [
        json!({"type": "SUPPRESS", "framework_id": fw}),
        json!({"type": "REVIVE", "framework_id": fw, "revive": {"roles": ["dev"]}}),
    ] {
        let (status, body) = scheduler_call(addr, Some(&stream_id), &call).await;
        assert_eq!(status, 202, "{call}: {body}");
    }

    // A known call type this master does not implement yet.
    let (status, body) = scheduler_call(
        addr,
        Some(&stream_id),
        &json!({"type": "SHUTDOWN", "framework_id": fw,
                "shutdown": {"executor_id": {"value": "e"}, "agent_id": {"value": "a"}}}),
    )
    .await;
    assert_eq!(status, 501);
    assert!(body.contains("SHUTDOWN"), "{body}");
    assert!(body.contains("not supported"), "{body}");

    // TEARDOWN ends the stream and forgets the framework.
    let (status, body) = scheduler_call(
        addr,
        Some(&stream_id),
        &json!({"type": "TEARDOWN", "framework_id": fw}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    while let Some(event) = events.next().await {
        assert_eq!(event["type"], "HEARTBEAT", "{event}");
    }
    assert!(registry.frameworks().unwrap().is_empty());
    let (status, body) = scheduler_call(
        addr,
        Some(&stream_id),
        &json!({"type": "REVIVE", "framework_id": fw}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("Framework cannot be found"), "{body}");

    timeout(WAIT, master.shutdown())
        .await
        .expect("shutdown timed out")
        .expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribe_fails_the_old_stream_over() {
    let dir = tempfile::tempdir().unwrap();
    let master = start(dir.path(), Duration::from_secs(60)).await;
    let addr = master.local_addr();

    let (_, mut first) = subscribe(addr, &subscribe_call("fo")).await;
    let subscribed = first.next().await.expect("SUBSCRIBED");
    let id = subscribed["subscribed"]["framework_id"]["value"]
        .as_str()
        .unwrap()
        .to_string();

    let mut again = subscribe_call("fo");
    again["framework_id"] = json!({"value": id});
    again["subscribe"]["framework_info"]["id"] = json!({"value": id});
    let (head, mut second) = subscribe(addr, &again).await;
    assert_eq!(head.status, 200);
    let new_stream = head.header("mesos-stream-id").unwrap().to_string();
    let subscribed = second.next().await.expect("SUBSCRIBED");
    assert_eq!(
        subscribed["subscribed"]["framework_id"]["value"],
        id.as_str()
    );

    let error = first.next().await.expect("ERROR on the old stream");
    assert_eq!(
        error,
        json!({"type": "ERROR", "error": {"message": "Framework failed over"}})
    );
    assert!(first.next().await.is_none(), "old stream must end");

    let registry = SqliteRegistry::open(&dir.path().join("registry.db")).unwrap();
    assert_eq!(registry.frameworks().unwrap().len(), 1);

    // The new stream id is the one that counts.
    let (status, _) = scheduler_call(
        addr,
        Some(&new_stream),
        &json!({"type": "SUPPRESS", "framework_id": {"value": id}}),
    )
    .await;
    assert_eq!(status, 202);

    // Shutdown closes the open stream.
    timeout(WAIT, master.shutdown())
        .await
        .expect("shutdown timed out")
        .expect("clean shutdown");
    assert!(second.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_scheduler_requests() {
    let dir = tempfile::tempdir().unwrap();
    let master = start(dir.path(), Duration::from_secs(60)).await;
    let addr = master.local_addr();

    // Malformed JSON: 400 naming the problem, and the master keeps serving.
    let (head, body) = request(
        addr,
        "POST",
        "/api/v1/scheduler",
        &[JSON_CT],
        "{\"type\": \"SUBSCRIBE\",",
    )
    .await;
    assert_eq!(head.status, 400);
    assert!(body.contains("malformed JSON"), "{body}");
    let (head, _) = request(addr, "GET", "/health", &[], "").await;
    assert_eq!(head.status, 200);

    // Unknown call type.
    let (status, body) = scheduler_call(
        addr,
        None,
        &json!({"type": "FLY", "framework_id": {"value": "x"}}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("FLY"), "{body}");

    // A field with the wrong type is named.
    let (status, body) = scheduler_call(
        addr,
        None,
        &json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": 5, "name": "x"}}}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("user"), "{body}");

    // SUBSCRIBE must not carry a stream id.
    let (status, body) = scheduler_call(addr, Some("abc"), &subscribe_call("x")).await;
    assert_eq!(status, 400);
    assert!(body.contains("Mesos-Stream-Id"), "{body}");

    // Content types.
    let (head, body) = request(
        addr,
        "POST",
        "/api/v1/scheduler",
        &[("Content-Type", "application/x-protobuf")],
        "",
    )
    .await;
    assert_eq!(head.status, 415);
    assert!(body.contains("not supported"), "{body}");
    let (head, _) = request(
        addr,
        "POST",
        "/api/v1/scheduler",
        &[("Content-Type", "text/plain")],
        "{}",
    )
    .await;
    assert_eq!(head.status, 415);
    let (head, body) = request(addr, "POST", "/api/v1/scheduler", &[], "{}").await;
    assert_eq!(head.status, 400);
    assert!(body.contains("Content-Type"), "{body}");
    let (head, _) = request(
        addr,
        "POST",
        "/api/v1/scheduler",
        &[("Content-Type", "application/json; charset=utf-8")],
        &json!({"type": "TEARDOWN", "framework_id": {"value": "x"}}).to_string(),
    )
    .await;
    assert_eq!(head.status, 400, "JSON with a charset is accepted");

    // Invalid roles: 200 with a single ERROR event (as Mesos).
    let (head, mut events) = subscribe(
        addr,
        &json!({"type": "SUBSCRIBE", "subscribe": {"framework_info":
            {"user": "u", "name": "n", "roles": ["dev"]}}}),
    )
    .await;
    assert_eq!(head.status, 200);
    let error = events.next().await.expect("ERROR");
    assert_eq!(error["type"], "ERROR", "{error}");
    assert!(events.next().await.is_none());

    timeout(WAIT, master.shutdown())
        .await
        .expect("shutdown timed out")
        .expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_and_legacy_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let master = start(dir.path(), Duration::from_secs(60)).await;
    let addr = master.local_addr();

    for path in ["/health", "/master/health"] {
        let (head, body) = request(addr, "GET", path, &[], "").await;
        assert_eq!(head.status, 200, "{path}");
        assert!(body.is_empty());
    }
    let (head, body) = request(addr, "GET", "/version", &[], "").await;
    assert_eq!(head.status, 200);
    let version: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(version["version"], "1.11.0");
    assert_eq!(version["berth_version"], env!("CARGO_PKG_VERSION"));

    for path in ["/api/v1", "/api/v1/operator", "/master/api/v1"] {
        let (head, body) =
            request(addr, "POST", path, &[JSON_CT], r#"{"type":"GET_HEALTH"}"#).await;
        assert_eq!(head.status, 200, "{path}");
        assert_eq!(head.header("content-type"), Some("application/json"));
        let reply: Json = serde_json::from_str(&body).unwrap();
        assert_eq!(
            reply,
            json!({"type": "GET_HEALTH", "get_health": {"healthy": true}})
        );
    }
    let (head, body) = request(
        addr,
        "POST",
        "/api/v1",
        &[JSON_CT],
        r#"{"type":"GET_VERSION"}"#,
    )
    .await;
    assert_eq!(head.status, 200);
    let reply: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["type"], "GET_VERSION");
    assert_eq!(reply["get_version"]["version_info"]["version"], "1.11.0");

    let (head, body) = request(
        addr,
        "POST",
        "/api/v1",
        &[JSON_CT],
        r#"{"type":"GET_STATE"}"#,
    )
    .await;
    assert_eq!(head.status, 200, "{body}");
    let reply: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["type"], "GET_STATE");
    assert!(
        reply["get_state"]["get_agents"]["agents"].is_array(),
        "{body}"
    );

    let (head, body) = request(
        addr,
        "POST",
        "/api/v1",
        &[JSON_CT],
        r#"{"type":"GET_MAINTENANCE_STATUS"}"#,
    )
    .await;
    assert_eq!(head.status, 501);
    assert!(body.contains("GET_MAINTENANCE_STATUS"), "{body}");

    for bad in [r#"{"type":"NOPE"}"#, "[1]", "{\"type\":", "{}"] {
        let (head, body) = request(addr, "POST", "/api/v1", &[JSON_CT], bad).await;
        assert_eq!(head.status, 400, "{bad}: {body}");
        assert!(!body.is_empty());
    }

    let (head, _) = request(addr, "GET", "/api/v1/scheduler", &[], "").await;
    assert_eq!(head.status, 405);

    timeout(WAIT, master.shutdown())
        .await
        .expect("shutdown timed out")
        .expect("clean shutdown");
}
