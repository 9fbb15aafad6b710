use super::*;
use serde_json::json;

/// Numbers compared by value: Mesos writes doubles (`100.0`) where a client
/// may have sent integers (`100`).
fn normalize(v: &Json) -> Json {
    match v {
        Json::Number(n) => json!(n.as_f64().expect("finite")),
        Json::Array(a) => Json::Array(a.iter().map(normalize).collect()),
        Json::Object(o) => Json::Object(o.iter().map(|(k, v)| (k.clone(), normalize(v))).collect()),
        other => other.clone(),
    }
}

fn assert_same_json(got: &Json, want: &Json) {
    assert_eq!(
        normalize(got),
        normalize(want),
        "\n got: {got}\nwant: {want}"
    );
}

// --- The examples of MESOS-API.md §1, copied literally. ---

const PYMESOS_SUBSCRIBE: &str = r#"{"type":"SUBSCRIBE","framework_id":{"value":"FWID"},
 "subscribe":{"framework_info":{"user":"root","name":"demo","id":{"value":"FWID"},
   "roles":["dev"],"failover_timeout":100,"checkpoint":true,
   "capabilities":[{"type":"MULTI_ROLE"},{"type":"GPU_RESOURCES"}]}}}"#;

const SUBSCRIBED: &str = r#"{"type":"SUBSCRIBED","subscribed":{"framework_id":{"value":"FWID"},
 "heartbeat_interval_seconds":15.0,
 "master_info":{"id":"<uuid>","ip":16777343,"port":5050,"hostname":"m1",
  "pid":"master@127.0.0.1:5050","version":"1.11.0",
  "address":{"hostname":"m1","ip":"127.0.0.1","port":5050},
  "capabilities":[{"type":"AGENT_UPDATE"}]}}}"#;

const OFFERS: &str = r#"{"type":"OFFERS","offers":{"offers":[{
 "id":{"value":"<mid>-O12"},"framework_id":{"value":"<mid>-0000"},
 "agent_id":{"value":"<mid>-S0"},"hostname":"node1",
 "url":{"scheme":"http","address":{"hostname":"node1","ip":"10.0.0.5","port":5051},"path":"/slave(1)"},
 "allocation_info":{"role":"dev"},
 "resources":[
  {"name":"cpus","type":"SCALAR","scalar":{"value":2.0},"role":"*","allocation_info":{"role":"dev"}},
  {"name":"mem","type":"SCALAR","scalar":{"value":1024.0},"role":"*","allocation_info":{"role":"dev"}},
  {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]},"role":"*","allocation_info":{"role":"dev"}},
  {"name":"disk","type":"SCALAR","scalar":{"value":512.0},"role":"dev",
   "reservation":{"principal":"ops"},
   "disk":{"persistence":{"id":"vol-1","principal":"ops"},"volume":{"container_path":"data","mode":"RW"}},
   "allocation_info":{"role":"dev"}}],
 "attributes":[{"name":"rack","type":"TEXT","text":{"value":"r1"}}],
 "executor_ids":[{"value":"my-executor"}],
 "unavailability":{"start":{"nanoseconds":1700000000000000000}}}]}}"#;

const HEARTBEAT_RECORD: &[u8] = b"20\n{\"type\":\"HEARTBEAT\"}";

fn parse_json(text: &str) -> Json {
    serde_json::from_str(text).unwrap()
}

#[test]
fn pymesos_subscribe_round_trips() {
    let call = Call::parse(PYMESOS_SUBSCRIBE.as_bytes()).unwrap();
    assert_eq!(call.call_type, CallType::Subscribe);
    assert_eq!(call.framework_id, Some(FrameworkID::new("FWID")));
    let info = &call.subscribe.as_ref().unwrap().framework_info;
    assert_eq!(info.user, "root");
    assert_eq!(info.failover_timeout, 100.0);
    assert!(info.checkpoint);
    assert!(info.has_capability(&FrameworkCapabilityType::MultiRole));
    assert!(info.has_capability(&FrameworkCapabilityType::GpuResources));
    assert_eq!(info.effective_roles(), vec!["dev".to_string()]);
    assert_eq!(info.resource_format(), ResourceFormat::PreRefinement);
    info.validate_roles().unwrap();
    assert_same_json(
        &serde_json::to_value(&call).unwrap(),
        &parse_json(PYMESOS_SUBSCRIBE),
    );
}

#[test]
fn first_subscribe_without_ids_writes_proto_defaults() {
    // A first SUBSCRIBE: no framework_id anywhere, and failover_timeout /
    // checkpoint left out — Mesos writes them back with their defaults.
    let body = r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n"}}}"#;
    let call = Call::parse(body.as_bytes()).unwrap();
    assert_eq!(call.framework_id, None);
    assert_same_json(
        &serde_json::to_value(&call).unwrap(),
        &json!({"type":"SUBSCRIBE","subscribe":{"framework_info":{
            "user":"u","name":"n","failover_timeout":0.0,"checkpoint":false}}}),
    );
    let info = &call.subscribe.unwrap().framework_info;
    assert_eq!(info.effective_roles(), vec!["*".to_string()]);
    assert_eq!(Call::subscribe(info.clone()).framework_id, None);
}

#[test]
fn subscribed_round_trips() {
    let event = Event::parse(SUBSCRIBED.as_bytes()).unwrap();
    let sub = event.subscribed.as_ref().unwrap();
    assert_eq!(sub.heartbeat_interval_seconds, Some(15.0));
    let master = sub.master_info.as_ref().unwrap();
    assert_eq!(master.ip_addr(), std::net::Ipv4Addr::LOCALHOST);
    assert_eq!(MasterInfo::ip_from(std::net::Ipv4Addr::LOCALHOST), 16777343);
    assert_eq!(
        master.capabilities[0].capability_type,
        MasterCapabilityType::AgentUpdate
    );
    for format in [
        ResourceFormat::PreRefinement,
        ResourceFormat::PostRefinement,
    ] {
        assert_same_json(&event.to_json(format).unwrap(), &parse_json(SUBSCRIBED));
    }
    assert_same_json(
        &serde_json::to_value(&event).unwrap(),
        &parse_json(SUBSCRIBED),
    );
}

#[test]
fn offers_round_trip_in_pre_refinement_format() {
    let event = Event::parse(OFFERS.as_bytes()).unwrap();
    let offer = &event.offers.as_ref().unwrap().offers[0];
    assert_eq!(offer.id, OfferID::new("<mid>-O12"));
    assert_eq!(offer.resources.len(), 4);
    assert_eq!(offer.attributes.len(), 1);
    assert_eq!(
        offer.unavailability.as_ref().unwrap().start.nanoseconds,
        1_700_000_000_000_000_000
    );
    assert_same_json(
        &event.to_json(ResourceFormat::PreRefinement).unwrap(),
        &parse_json(OFFERS),
    );
    // The record pymesos reads: length, newline, the JSON.
    let record = event.to_record(ResourceFormat::PreRefinement).unwrap();
    let mut dec = recordio::Decoder::new();
    let got = dec.feed(&record).unwrap();
    assert_eq!(got.len(), 1);
    assert_same_json(
        &serde_json::from_slice(&got[0]).unwrap(),
        &parse_json(OFFERS),
    );
    // POST-refinement (RESERVATION_REFINEMENT frameworks): `reservations`
    // instead of `role`/`reservation`.
    let post = event.to_json(ResourceFormat::PostRefinement).unwrap();
    let res = &post["offers"]["offers"][0]["resources"];
    assert!(res[0].get("role").is_none());
    assert_eq!(
        res[3]["reservations"],
        json!([{"type":"DYNAMIC","role":"dev","principal":"ops"}])
    );
    // Serde's own output is POST-refinement too, and parses back equal.
    let back: Event = serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
    assert_eq!(back, event);
}

#[test]
fn heartbeat_record() {
    assert_eq!(
        Event::heartbeat()
            .to_record(ResourceFormat::PreRefinement)
            .unwrap(),
        HEARTBEAT_RECORD
    );
    let mut dec = recordio::Decoder::new();
    let recs = dec.feed(HEARTBEAT_RECORD).unwrap();
    assert_eq!(Event::parse(&recs[0]).unwrap(), Event::heartbeat());
}

// --- Calls of the §1 table. ---

fn round_trip_call(v: Json) -> Call {
    let call = Call::parse(v.to_string().as_bytes()).unwrap_or_else(|e| panic!("{v}: {e}"));
    assert_same_json(&serde_json::to_value(&call).unwrap(), &v);
    call
}

#[test]
fn every_call_type_round_trips() {
    let fw = json!({"value":"FW"});
    let uuid = encode_base64(&[7u8; 16]);
    let calls = vec![
        json!({"type":"TEARDOWN","framework_id":fw}),
        json!({"type":"ACCEPT","framework_id":fw,"accept":{
            "offer_ids":[{"value":"O1"}],
            "operations":[
              {"type":"RESERVE","id":{"value":"op1"},"reserve":{"resources":[
                {"name":"cpus","type":"SCALAR","scalar":{"value":1.0},
                 "reservations":[{"type":"DYNAMIC","role":"dev","principal":"ops"}]}]}},
              {"type":"CREATE","create":{"volumes":[
                {"name":"disk","type":"SCALAR","scalar":{"value":64.0},
                 "reservations":[{"type":"DYNAMIC","role":"dev"}],
                 "disk":{"persistence":{"id":"v1"},"volume":{"container_path":"data","mode":"RW"}}}]}},
              {"type":"LAUNCH","launch":{"task_infos":[{
                "name":"t1","task_id":{"value":"t1"},"agent_id":{"value":"S0"},
                "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}}],
                "command":{"value":"sleep 10","shell":true,
                  "environment":{"variables":[{"name":"A","type":"VALUE","value":"1"}]},
                  "uris":[{"value":"http://x/y.tgz","extract":true,"executable":false}]},
                "kill_policy":{"grace_period":{"nanoseconds":3000000000i64}},
                "labels":{"labels":[{"key":"k","value":"v"}]},
                "health_check":{"type":"TCP","tcp":{"port":80},"delay_seconds":15.0,
                  "interval_seconds":10.0,"timeout_seconds":20.0,
                  "consecutive_failures":3,"grace_period_seconds":10.0},
                "container":{"type":"DOCKER","docker":{"image":"busybox","network":"BRIDGE",
                  "privileged":false,"port_mappings":[{"host_port":31000,"container_port":80}]},
                  "volumes":[{"container_path":"/d","host_path":"/tmp","mode":"RO"}]}}]}},
              {"type":"LAUNCH_GROUP","launch_group":{
                "executor":{"type":"DEFAULT","executor_id":{"value":"E"},
                  "resources":[{"name":"mem","type":"SCALAR","scalar":{"value":32.0}}]},
                "task_group":{"tasks":[{"name":"g","task_id":{"value":"g"},"agent_id":{"value":"S0"}}]}}},
              {"type":"UNRESERVE","unreserve":{"resources":[
                {"name":"mem","type":"SCALAR","scalar":{"value":8.0},
                 "reservations":[{"type":"DYNAMIC","role":"dev"}]}]}},
              {"type":"DESTROY","destroy":{"volumes":[
                {"name":"disk","type":"SCALAR","scalar":{"value":64.0},
                 "reservations":[{"type":"DYNAMIC","role":"dev"}],
                 "disk":{"persistence":{"id":"v1"},"volume":{"container_path":"data","mode":"RW"}}}]}},
              {"type":"SHRINK_VOLUME","shrink_volume":{
                "volume":{"name":"disk","type":"SCALAR","scalar":{"value":64.0},
                 "reservations":[{"type":"DYNAMIC","role":"dev"}],
                 "disk":{"persistence":{"id":"v1"},"volume":{"container_path":"data","mode":"RW"}}},
                "subtract":{"value":16.0}}},
              {"type":"GROW_VOLUME","grow_volume":{
                "volume":{"name":"disk","type":"SCALAR","scalar":{"value":48.0},
                 "reservations":[{"type":"DYNAMIC","role":"dev"}],
                 "disk":{"persistence":{"id":"v1"},"volume":{"container_path":"data","mode":"RW"}}},
                "addition":{"name":"disk","type":"SCALAR","scalar":{"value":16.0},
                 "reservations":[{"type":"DYNAMIC","role":"dev"}]}}}],
            "filters":{"refuse_seconds":5.0}}}),
        json!({"type":"DECLINE","framework_id":fw,"decline":{"offer_ids":[{"value":"O1"}],"filters":{"refuse_seconds":60.0}}}),
        json!({"type":"ACCEPT_INVERSE_OFFERS","framework_id":fw,"accept_inverse_offers":{"inverse_offer_ids":[{"value":"I1"}]}}),
        json!({"type":"DECLINE_INVERSE_OFFERS","framework_id":fw,"decline_inverse_offers":{"inverse_offer_ids":[{"value":"I1"}],"filters":{"refuse_seconds":1.0}}}),
        json!({"type":"REVIVE","framework_id":fw}),
        json!({"type":"REVIVE","framework_id":fw,"revive":{"roles":["dev"]}}),
        json!({"type":"SUPPRESS","framework_id":fw,"suppress":{"roles":["dev","ops"]}}),
        json!({"type":"KILL","framework_id":fw,"kill":{"task_id":{"value":"t1"},"agent_id":{"value":"S0"},"kill_policy":{"grace_period":{"nanoseconds":1}}}}),
        json!({"type":"SHUTDOWN","framework_id":fw,"shutdown":{"executor_id":{"value":"E"},"agent_id":{"value":"S0"}}}),
        json!({"type":"ACKNOWLEDGE","framework_id":fw,"acknowledge":{"agent_id":{"value":"S0"},"task_id":{"value":"t1"},"uuid":uuid}}),
        json!({"type":"ACKNOWLEDGE_OPERATION_STATUS","framework_id":fw,"acknowledge_operation_status":{"agent_id":{"value":"S0"},"uuid":uuid,"operation_id":{"value":"op1"}}}),
        json!({"type":"RECONCILE","framework_id":fw,"reconcile":{}}),
        json!({"type":"RECONCILE","framework_id":fw,"reconcile":{"tasks":[{"task_id":{"value":"t1"},"agent_id":{"value":"S0"}},{"task_id":{"value":"t2"}}]}}),
        json!({"type":"RECONCILE_OPERATIONS","framework_id":fw,"reconcile_operations":{"operations":[{"operation_id":{"value":"op1"}}]}}),
        json!({"type":"MESSAGE","framework_id":fw,"message":{"agent_id":{"value":"S0"},"executor_id":{"value":"E"},"data":"aGVsbG8="}}),
        json!({"type":"REQUEST","framework_id":fw,"request":{"requests":[{"agent_id":{"value":"S0"},"resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":1.0}}]}]}}),
        json!({"type":"UPDATE_FRAMEWORK","framework_id":fw,"update_framework":{"framework_info":{"user":"u","name":"n","id":fw,"failover_timeout":0.0,"checkpoint":false,"roles":["a"],"capabilities":[{"type":"MULTI_ROLE"}]},"suppressed_roles":["a"]}}),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for v in calls {
        seen.insert(round_trip_call(v).call_type);
    }
    seen.insert(CallType::Subscribe);
    assert_eq!(seen.len(), CallType::ALL.len(), "every call type covered");
}

#[test]
fn accept_parses_into_typed_operations() {
    let call = Call::parse(
        br#"{"type":"ACCEPT","framework_id":{"value":"FW"},"accept":{"offer_ids":[{"value":"O1"}],
        "operations":[{"type":"LAUNCH","launch":{"task_infos":[{"name":"t","task_id":{"value":"t"},
        "agent_id":{"value":"S0"},"resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":1},"role":"*"}],
        "command":{"value":"true"}}]}}],"filters":{}}}"#,
    )
    .unwrap();
    let accept = call.accept.unwrap();
    // Filters default to 5 s, written back explicitly.
    assert_eq!(accept.filters.unwrap().refuse_seconds, 5.0);
    let task = &accept.operations[0].launch.as_ref().unwrap().task_infos[0];
    // PRE-refinement `role:"*"` upgrades to unreserved.
    assert!(task.resources.iter().all(|r| r.is_unreserved()));
    let cmd = task.command.as_ref().unwrap();
    assert!(cmd.shell, "shell defaults to true");
    assert_eq!(
        serde_json::to_value(cmd).unwrap(),
        json!({"shell":true,"value":"true"})
    );
}

#[test]
fn unknown_fields_are_ignored_and_strings_are_lenient() {
    let call = Call::parse(
        br#"{"type":"SUBSCRIBE","future_field":[1,2],"subscribe":{"framework_info":{
        "user":"u","name":"n","failover_timeout":"100","checkpoint":"true","shiny":{}}}}"#,
    )
    .unwrap();
    let info = call.subscribe.unwrap().framework_info;
    assert_eq!(info.failover_timeout, 100.0);
    assert!(info.checkpoint);
}

// --- Validation errors name the field. ---

fn err(body: &str) -> CallError {
    Call::parse(body.as_bytes()).unwrap_err()
}

#[test]
fn malformed_json_reports_line_and_column() {
    let e = err("{\"type\":\n \"ACCEPT\",,}");
    assert!(
        matches!(e, CallError::MalformedJson { line: 2, .. }),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.starts_with("malformed JSON at line 2 column 11: "),
        "{text}"
    );
    assert!(!text.ends_with("column 11"), "{text}");
    assert_eq!(
        err("").to_string(),
        "malformed JSON at line 1 column 0: EOF while parsing a value"
    );
    assert_eq!(
        err("[1]").to_string(),
        "expecting a JSON object for scheduler::Call, got an array"
    );
}

#[test]
fn wrong_field_types_name_the_path() {
    let e = err(
        r#"{"type":"ACCEPT","framework_id":{"value":"F"},"accept":{"offer_ids":[{"value":5}]}}"#,
    );
    assert_eq!(e.field(), Some("accept.offer_ids[0].value"));
    assert_eq!(
        e.to_string(),
        "field 'accept.offer_ids[0].value': invalid type: integer `5`, expected a string"
    );
    let e = err(
        r#"{"type":"ACCEPT","framework_id":{"value":"F"},"accept":{"offer_ids":{"value":"O"}}}"#,
    );
    assert_eq!(e.field(), Some("accept.offer_ids"));
    assert!(e
        .to_string()
        .starts_with("field 'accept.offer_ids': invalid type: map"));
    // Inside resources.
    let e = err(
        r#"{"type":"ACCEPT","framework_id":{"value":"F"},"accept":{"offer_ids":[],"operations":[
        {"type":"RESERVE","reserve":{"resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":"x"}}]}}]}}"#,
    );
    assert!(
        e.field()
            .unwrap()
            .starts_with("accept.operations[0].reserve.resources[0]"),
        "{e}"
    );
    // A missing required field inside a message.
    let e = err(r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"name":"n"}}}"#);
    assert_eq!(
        e.to_string(),
        "field 'subscribe.framework_info': missing field `user`"
    );
    // An unknown enum inside a message names the value.
    let e = err(
        r#"{"type":"ACCEPT","framework_id":{"value":"F"},"accept":{"operations":[{"type":"EXPLODE"}]}}"#,
    );
    assert_eq!(
        e.to_string(),
        "field 'accept.operations[0].type': unknown Offer.Operation.Type 'EXPLODE'"
    );
    let e = err(r#"{"type":"TEARDOWN","framework_id":"F"}"#);
    assert_eq!(e.field(), Some("framework_id"));
}

#[test]
fn call_type_errors() {
    assert_eq!(
        err(r#"{"type":"LAUNCH_ROCKETS"}"#),
        CallError::UnknownCallType("LAUNCH_ROCKETS".into())
    );
    assert_eq!(
        err(r#"{"type":"LAUNCH_ROCKETS"}"#).to_string(),
        "field 'type': unknown Call.Type 'LAUNCH_ROCKETS'"
    );
    assert_eq!(
        err(r#"{"subscribe":{}}"#).to_string(),
        "Expecting 'type' to be present"
    );
    assert_eq!(
        err(r#"{"type":3}"#).to_string(),
        "field 'type': expected a string, got a number"
    );
}

#[test]
fn missing_payloads_use_mesos_wording() {
    for t in CallType::ALL {
        let body = json!({"type": t.as_str(), "framework_id": {"value": "F"}}).to_string();
        let result = Call::parse(body.as_bytes());
        if t.requires_payload() {
            assert_eq!(
                result.unwrap_err().to_string(),
                format!("Expecting '{}' to be present", t.payload_field()),
                "{t}"
            );
        } else {
            result.unwrap();
        }
    }
    assert_eq!(
        err(r#"{"type":"ACCEPT","framework_id":{"value":"F"}}"#).to_string(),
        "Expecting 'accept' to be present"
    );
    // An operation without its body.
    assert_eq!(
        err(r#"{"type":"ACCEPT","framework_id":{"value":"F"},"accept":{"offer_ids":[],"operations":[{"type":"LAUNCH"}]}}"#)
            .to_string(),
        "Expecting 'accept.operations[0].launch' to be present"
    );
}

#[test]
fn framework_id_is_required_except_for_subscribe() {
    for t in CallType::ALL.iter().filter(|t| **t != CallType::Subscribe) {
        let mut call = Call::new(*t);
        call.revive = Some(Roles::default());
        let mut v = serde_json::to_value(&call).unwrap();
        // Give every call its payload so that framework_id is what fails.
        v[t.payload_field()] = match t {
            CallType::Kill => json!({"task_id":{"value":"t"}}),
            CallType::Shutdown => json!({"executor_id":{"value":"e"},"agent_id":{"value":"a"}}),
            CallType::Acknowledge => {
                json!({"agent_id":{"value":"a"},"task_id":{"value":"t"},"uuid":"AAAAAAAAAAAAAAAAAAAAAA=="})
            }
            CallType::AcknowledgeOperationStatus => {
                json!({"uuid":"AAAAAAAAAAAAAAAAAAAAAA==","operation_id":{"value":"o"}})
            }
            CallType::Message => {
                json!({"agent_id":{"value":"a"},"executor_id":{"value":"e"},"data":""})
            }
            CallType::UpdateFramework => json!({"framework_info":{"user":"u","name":"n"}}),
            _ => json!({}),
        };
        let e = Call::parse(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(e, CallError::Missing("framework_id".into()), "{t}");
        assert_eq!(e.to_string(), "Expecting 'framework_id' to be present");
        v["framework_id"] = json!({"value":"F"});
        Call::parse(v.to_string().as_bytes()).unwrap_or_else(|e| panic!("{t}: {e}"));
    }
}

#[test]
fn subscribe_ids_must_agree() {
    let e = err(
        r#"{"type":"SUBSCRIBE","framework_id":{"value":"A"},"subscribe":{"framework_info":{"user":"u","name":"n","id":{"value":"B"}}}}"#,
    );
    assert_eq!(
        e.to_string(),
        "'framework_id' differs from 'subscribe.framework_info.id'"
    );
    let e = err(
        r#"{"type":"SUBSCRIBE","framework_id":{"value":"A"},"subscribe":{"framework_info":{"user":"u","name":"n"}}}"#,
    );
    assert_eq!(e, CallError::FrameworkIdMismatch);
    assert_eq!(
        err(r#"{"type":"SUBSCRIBE"}"#).to_string(),
        "Expecting 'subscribe' to be present"
    );
}

#[test]
fn acknowledge_uuid_and_message_data_are_checked() {
    let e = err(
        r#"{"type":"ACKNOWLEDGE","framework_id":{"value":"F"},"acknowledge":{"agent_id":{"value":"a"},"task_id":{"value":"t"},"uuid":"!!"}}"#,
    );
    assert_eq!(e.to_string(), "field 'acknowledge.uuid': not valid Base64");
    let e = err(
        r#"{"type":"ACKNOWLEDGE","framework_id":{"value":"F"},"acknowledge":{"agent_id":{"value":"a"},"task_id":{"value":"t"},"uuid":"aGVsbG8="}}"#,
    );
    assert_eq!(
        e.to_string(),
        "field 'acknowledge.uuid': not a UUID: expected 16 bytes, got 5"
    );
    let e = err(
        r#"{"type":"MESSAGE","framework_id":{"value":"F"},"message":{"agent_id":{"value":"a"},"executor_id":{"value":"e"},"data":"a"}}"#,
    );
    assert_eq!(e.field(), Some("message.data"));
    // pymesos acks operation statuses with the whole `uuid:{value}` object.
    let call = Call::parse(
        br#"{"type":"ACKNOWLEDGE_OPERATION_STATUS","framework_id":{"value":"F"},"acknowledge_operation_status":{"uuid":{"value":"AAAAAAAAAAAAAAAAAAAAAA=="},"operation_id":{"value":"o"}}}"#,
    )
    .unwrap();
    assert_eq!(
        call.acknowledge_operation_status.unwrap().uuid,
        "AAAAAAAAAAAAAAAAAAAAAA=="
    );
}

#[test]
fn base64() {
    for data in [
        &b""[..],
        b"f",
        b"fo",
        b"foo",
        b"foob",
        b"fooba",
        b"foobar",
        &[0xff; 16],
    ] {
        let enc = encode_base64(data);
        assert_eq!(decode_base64(&enc).unwrap(), data, "{enc}");
    }
    assert_eq!(encode_base64(b"hello"), "aGVsbG8=");
    assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
    assert!(decode_base64("aGVsbG8==").is_none());
    assert!(decode_base64("a").is_none());
    assert!(decode_base64("a-b_").is_none());
}

// --- Task states and statuses. ---

#[test]
fn terminal_task_states() {
    let terminal: Vec<&str> = TaskState::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str())
        .collect();
    assert_eq!(
        terminal,
        [
            "TASK_FINISHED",
            "TASK_FAILED",
            "TASK_KILLED",
            "TASK_ERROR",
            "TASK_LOST",
            "TASK_DROPPED",
            "TASK_GONE",
            "TASK_GONE_BY_OPERATOR"
        ]
    );
    assert_eq!(TaskState::ALL.len(), 14);
    assert_eq!(
        TaskState::Unreachable.for_partition_unaware(),
        TaskState::Lost
    );
    assert_eq!(
        TaskState::Running.for_partition_unaware(),
        TaskState::Running
    );
    assert!("TASK_BOGUS".parse::<TaskState>().is_err());
}

#[test]
fn unknown_reason_keeps_its_string() {
    let status: TaskStatus = serde_json::from_value(json!({
        "task_id":{"value":"t"},"state":"TASK_FAILED","reason":"REASON_FROM_THE_FUTURE"}))
    .unwrap();
    assert_eq!(
        status.reason,
        Some(Reason::Unknown("REASON_FROM_THE_FUTURE".into()))
    );
    assert!(status.reason.as_ref().unwrap().is_unknown());
    assert_eq!(
        serde_json::to_value(&status).unwrap()["reason"],
        "REASON_FROM_THE_FUTURE"
    );
    let known: Reason =
        serde_json::from_value(json!("REASON_CONTAINER_LIMITATION_MEMORY")).unwrap();
    assert_eq!(known, Reason::ContainerLimitationMemory);
    assert_eq!(Reason::KNOWN.len(), 35);
    // Unknown capabilities survive too.
    let cap: FrameworkCapability = serde_json::from_value(json!({"type":"TELEPATHY"})).unwrap();
    assert_eq!(
        cap.capability_type,
        FrameworkCapabilityType::Unknown("TELEPATHY".into())
    );
}

#[test]
fn update_event_round_trips() {
    let uuid = encode_base64(&[1u8; 16]);
    let v = json!({"type":"UPDATE","update":{"status":{
        "task_id":{"value":"t1"},"state":"TASK_RUNNING","message":"ok",
        "source":"SOURCE_EXECUTOR","reason":"REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
        "data":"aGVsbG8=","agent_id":{"value":"S0"},"executor_id":{"value":"t1"},
        "timestamp":1700000000.25,"uuid":uuid,"healthy":true,
        "labels":{"labels":[{"key":"k"}]},
        "container_status":{"container_id":{"value":"c","parent":{"value":"p"}},"executor_pid":42}}}});
    let event = Event::parse(v.to_string().as_bytes()).unwrap();
    let status = &event.update.as_ref().unwrap().status;
    assert_eq!(status.uuid_bytes().unwrap(), vec![1u8; 16]);
    assert_eq!(status.source, Some(TaskSource::Executor));
    assert_same_json(&event.to_json(ResourceFormat::PreRefinement).unwrap(), &v);
    // A master-generated reconciliation update: no uuid.
    let mut st = TaskStatus::new(TaskID::new("t2"), TaskState::Lost);
    st.source = Some(TaskSource::Master);
    st.reason = Some(Reason::Reconciliation);
    assert_eq!(
        serde_json::to_value(Event::update(st)).unwrap(),
        json!({"type":"UPDATE","update":{"status":{"task_id":{"value":"t2"},
            "state":"TASK_LOST","source":"SOURCE_MASTER","reason":"REASON_RECONCILIATION"}}})
    );
}

#[test]
fn other_events_round_trip() {
    let events = vec![
        json!({"type":"RESCIND","rescind":{"offer_id":{"value":"O1"}}}),
        json!({"type":"RESCIND_INVERSE_OFFER","rescind_inverse_offer":{"inverse_offer_id":{"value":"I1"}}}),
        json!({"type":"INVERSE_OFFERS","inverse_offers":{"inverse_offers":[{"id":{"value":"I1"},
            "framework_id":{"value":"F"},"agent_id":{"value":"S0"},
            "unavailability":{"start":{"nanoseconds":5},"duration":{"nanoseconds":10}}}]}}),
        json!({"type":"UPDATE_OPERATION_STATUS","update_operation_status":{"status":{
            "operation_id":{"value":"op"},"state":"OPERATION_FINISHED",
            "uuid":{"value":"AAAAAAAAAAAAAAAAAAAAAA=="},"agent_id":{"value":"S0"},
            "converted_resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":1.0},"role":"dev"}]}}}),
        json!({"type":"MESSAGE","message":{"agent_id":{"value":"S0"},"executor_id":{"value":"E"},"data":"aGk="}}),
        json!({"type":"FAILURE","failure":{"agent_id":{"value":"S0"}}}),
        json!({"type":"FAILURE","failure":{"agent_id":{"value":"S0"},"executor_id":{"value":"E"},"status":9}}),
        json!({"type":"ERROR","error":{"message":"Framework failed over"}}),
        json!({"type":"HEARTBEAT"}),
    ];
    for v in events {
        let e = Event::parse(v.to_string().as_bytes()).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_same_json(&e.to_json(ResourceFormat::PreRefinement).unwrap(), &v);
        // pymesos: the payload key is the type lower-cased.
        if let Some(key) = e.event_type.payload_field() {
            assert_eq!(key, e.event_type.as_str().to_lowercase());
            assert!(v.get(key).is_some());
        }
    }
    assert_eq!(
        serde_json::to_value(Event::error("Framework failed over")).unwrap(),
        json!({"type":"ERROR","error":{"message":"Framework failed over"}})
    );
    assert_eq!(
        Event::parse(br#"{"type":"OFFERS"}"#)
            .unwrap_err()
            .to_string(),
        "Expecting 'offers' to be present"
    );
    assert_eq!(
        Event::parse(br#"{"type":"NOPE"}"#).unwrap_err().to_string(),
        "field 'type': unknown Event.Type 'NOPE'"
    );
}

#[test]
fn framework_role_rules() {
    let mut info = FrameworkInfo::new("u", "n");
    info.roles = vec!["a".into()];
    assert!(info.validate_roles().is_err(), "roles without MULTI_ROLE");
    info.capabilities.push(FrameworkCapability {
        capability_type: FrameworkCapabilityType::MultiRole,
    });
    info.validate_roles().unwrap();
    info.roles.push("a".into());
    assert!(info.validate_roles().unwrap_err().contains("duplicate"));
    info.roles = vec!["/bad".into()];
    assert!(info.validate_roles().is_err());
    info.capabilities.push(FrameworkCapability {
        capability_type: FrameworkCapabilityType::ReservationRefinement,
    });
    assert_eq!(info.resource_format(), ResourceFormat::PostRefinement);
}

#[test]
fn client_ids() {
    validate_client_id("task-1.a_b").unwrap();
    for bad in ["", ".", "..", "a/b", "a\\b", "a\nb"] {
        assert!(validate_client_id(bad).is_err(), "{bad:?}");
    }
    assert!(validate_client_id(&"x".repeat(256)).is_err());
    validate_client_id(&"x".repeat(255)).unwrap();
}
