//! A framework's side of the v1 scheduler API (`POST /api/v1/scheduler`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), berth::mesos::ClientError> {
//! use berth::mesos::{scheduler::SchedulerClient, MasterAddr};
//! use masterlink::scheduler::{EventType, FrameworkInfo};
//! let master: MasterAddr = "127.0.0.1:5050".parse().unwrap();
//! let mut sub = SchedulerClient::subscribe(&master, FrameworkInfo::new("root", "demo")).await?;
//! println!("framework {}", sub.client.framework_id());
//! while let Some(event) = sub.events.next().await? {
//!     if event.event_type == EventType::Offers { /* accept or decline */ }
//! }
//! sub.client.teardown().await
//! # }
//! ```
//!
//! [`SchedulerClient::subscribe`] opens the event stream and waits for its
//! first event (SUBSCRIBED, or ERROR as [`ClientError::Refused`]); every other
//! call goes on its own request with the stream's `Mesos-Stream-Id`, as Mesos
//! requires. Resources inside calls are sent in the framework's format
//! (PRE-refinement unless it has RESERVATION_REFINEMENT), the format a Mesos
//! master expects from it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use masterlink::recordio;
use masterlink::scheduler::{
    Acknowledge, AgentID, Call, CallType, Decline, Event, EventType, Filters, FrameworkID,
    FrameworkInfo, Kill, Operation, Reconcile, ReconcileTask, Roles, Subscribed, TaskID,
    TaskStatus,
};
use masterlink::{ResourceFormat, Resources};
use serde_json::Value as Json;

use super::{authority, error_body, http_client, ClientError, MasterAddr};

/// The scheduler endpoint's path.
pub const SCHEDULER_PATH: &str = "/api/v1/scheduler";

/// How long one call (not the SUBSCRIBE stream) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// How long SUBSCRIBE may take to produce its first event.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Mesos' default heartbeat interval, for a SUBSCRIBED without one.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// Heartbeats that may be missed before the stream is declared dead.
const MISSED_HEARTBEATS: u32 = 3;

/// The SUBSCRIBE response body as a stream of chunks.
type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send + 'static>>;

/// A subscribed framework: the client for calls, what SUBSCRIBED said, and
/// the event stream (whose first event, SUBSCRIBED, is already consumed).
pub struct Subscription {
    /// Makes calls on behalf of the framework.
    pub client: SchedulerClient,
    /// The SUBSCRIBED payload (framework ID, heartbeat interval, master).
    pub subscribed: Subscribed,
    /// The first event's JSON as received.
    pub subscribed_json: Json,
    /// Every later event.
    pub events: EventStream,
}

/// Makes calls for one subscribed framework. Cheap to clone (the HTTP
/// connection pool is shared).
#[derive(Clone)]
pub struct SchedulerClient {
    http: reqwest::Client,
    /// The endpoint of the master that accepted SUBSCRIBE (after redirects).
    endpoint: reqwest::Url,
    stream_id: String,
    framework_id: FrameworkID,
    resource_format: ResourceFormat,
    /// Where it subscribed, with the credentials its calls carry.
    addr: MasterAddr,
}

impl SchedulerClient {
    /// SUBSCRIBEs `framework_info` at `master` (following a redirect to the
    /// leader) and waits for the first event. A `framework_info.id` makes it a
    /// re-subscription of that framework.
    pub async fn subscribe(
        master: &MasterAddr,
        framework_info: FrameworkInfo,
    ) -> Result<Subscription, ClientError> {
        let http = http_client();
        let resource_format = framework_info.resource_format();
        let body = call_json(&Call::subscribe(framework_info), resource_format)?;
        let url = reqwest::Url::parse(&master.url(SCHEDULER_PATH)).map_err(|e| {
            ClientError::Protocol {
                what: "SUBSCRIBE".into(),
                message: format!("bad master address: {e}"),
            }
        })?;
        let resp = master
            .post(&http, url, |req| {
                req.header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(reqwest::header::ACCEPT, "application/json")
                    .body(body.clone())
            })
            .await
            .map_err(|e| ClientError::from_reqwest("SUBSCRIBE", &master.to_string(), e))?;
        if resp.status() != reqwest::StatusCode::OK {
            let status = resp.status().as_u16();
            return Err(ClientError::Status {
                what: "SUBSCRIBE".into(),
                status,
                body: error_body(resp).await,
            });
        }
        let protocol = |message: String| ClientError::Protocol {
            what: "SUBSCRIBE".into(),
            message,
        };
        // Checked after the first event: a refusal (200 with one ERROR
        // event) may come without a stream id.
        let stream_id = resp
            .headers()
            .get("Mesos-Stream-Id")
            .map(|v| v.to_str().map(str::to_string));
        let endpoint = resp.url().clone();
        // Chunks become Vec<u8> only to name the stream's type without a
        // direct dependency on the bytes crate; they are small.
        let body: ByteStream = Box::pin(resp.bytes_stream().map(|c| c.map(|b| b.to_vec())));
        let mut events = EventStream {
            body,
            decoder: recordio::Decoder::new(),
            queue: VecDeque::new(),
            ended: false,
            idle_limit: SUBSCRIBE_TIMEOUT,
            source: authority(&endpoint),
        };
        let (first, json) = events
            .next_with_json()
            .await?
            .ok_or_else(|| protocol("the stream ended before SUBSCRIBED".into()))?;
        let subscribed = match first.event_type {
            EventType::Subscribed => first.subscribed.expect("Event::parse checks the payload"),
            EventType::Error => {
                return Err(ClientError::Refused(
                    first
                        .error
                        .expect("Event::parse checks the payload")
                        .message,
                ))
            }
            other => return Err(protocol(format!("first event is {other}, not SUBSCRIBED"))),
        };
        let stream_id = stream_id
            .ok_or_else(|| protocol("no Mesos-Stream-Id header in the answer".into()))?
            .map_err(|_| protocol("Mesos-Stream-Id is not ASCII".into()))?;
        let heartbeat = subscribed
            .heartbeat_interval_seconds
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_HEARTBEAT);
        events.idle_limit = heartbeat * MISSED_HEARTBEATS;
        Ok(Subscription {
            client: SchedulerClient {
                http,
                endpoint,
                stream_id,
                framework_id: subscribed.framework_id.clone(),
                resource_format,
                addr: master.clone(),
            },
            subscribed,
            subscribed_json: json,
            events,
        })
    }

    /// The framework's ID (assigned by the master on first SUBSCRIBE).
    pub fn framework_id(&self) -> &FrameworkID {
        &self.framework_id
    }

    /// The `Mesos-Stream-Id` of the subscription.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// `host:port` of the master that accepted the subscription.
    pub fn master(&self) -> String {
        authority(&self.endpoint)
    }

    /// Sends `call` (its `framework_id` filled in when absent); Ok on any 2xx.
    pub async fn call(&self, mut call: Call) -> Result<(), ClientError> {
        if call.framework_id.is_none() {
            call.framework_id = Some(self.framework_id.clone());
        }
        let what = call.call_type.to_string();
        let body = call_json(&call, self.resource_format)?;
        let resp = self
            .addr
            .post(&self.http, self.endpoint.clone(), |req| {
                req.header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(reqwest::header::ACCEPT, "application/json")
                    .header("Mesos-Stream-Id", &self.stream_id)
                    .timeout(CALL_TIMEOUT)
                    .body(body.clone())
            })
            .await
            .map_err(|e| ClientError::from_reqwest(&what, &self.master(), e))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            return Err(ClientError::Status {
                what,
                status,
                body: error_body(resp).await,
            });
        }
        Ok(())
    }

    /// ACCEPT `offer_ids` with `operations`; unused resources are refused for
    /// `filters.refuse_seconds` (Mesos' default 5 s when `None`).
    pub async fn accept(
        &self,
        offer_ids: Vec<masterlink::scheduler::OfferID>,
        operations: Vec<Operation>,
        filters: Option<Filters>,
    ) -> Result<(), ClientError> {
        self.call(Call {
            accept: Some(masterlink::scheduler::Accept {
                offer_ids,
                operations,
                filters,
            }),
            ..Call::new(CallType::Accept)
        })
        .await
    }

    /// DECLINE `offer_ids`, refusing them for `refuse_seconds`.
    pub async fn decline(
        &self,
        offer_ids: Vec<masterlink::scheduler::OfferID>,
        refuse_seconds: f64,
    ) -> Result<(), ClientError> {
        self.call(Call {
            decline: Some(Decline {
                offer_ids,
                filters: Some(Filters { refuse_seconds }),
            }),
            ..Call::new(CallType::Decline)
        })
        .await
    }

    /// KILL a task.
    pub async fn kill(
        &self,
        task_id: TaskID,
        agent_id: Option<AgentID>,
    ) -> Result<(), ClientError> {
        self.call(Call {
            kill: Some(Kill {
                task_id,
                agent_id,
                kill_policy: None,
            }),
            ..Call::new(CallType::Kill)
        })
        .await
    }

    /// ACKNOWLEDGEs `status` if it carries a uuid (master-generated updates
    /// have none and must not be acknowledged). Returns whether it did.
    pub async fn acknowledge(&self, status: &TaskStatus) -> Result<bool, ClientError> {
        let Some(uuid) = status.uuid.clone() else {
            return Ok(false);
        };
        let agent_id = status
            .agent_id
            .clone()
            .ok_or_else(|| ClientError::Protocol {
                what: "ACKNOWLEDGE".into(),
                message: format!(
                    "the update of task {} has a uuid but no agent_id",
                    status.task_id
                ),
            })?;
        self.call(Call {
            acknowledge: Some(Acknowledge {
                agent_id,
                task_id: status.task_id.clone(),
                uuid,
            }),
            ..Call::new(CallType::Acknowledge)
        })
        .await?;
        Ok(true)
    }

    /// RECONCILE `tasks` (empty = implicit: every task the master knows).
    pub async fn reconcile(&self, tasks: Vec<ReconcileTask>) -> Result<(), ClientError> {
        self.call(Call {
            reconcile: Some(Reconcile { tasks }),
            ..Call::new(CallType::Reconcile)
        })
        .await
    }

    /// SUPPRESS offers for `roles` (empty = all the framework's roles).
    pub async fn suppress(&self, roles: Vec<String>) -> Result<(), ClientError> {
        self.call(Call {
            suppress: Some(Roles { roles }),
            ..Call::new(CallType::Suppress)
        })
        .await
    }

    /// REVIVE offers for `roles` (empty = all), clearing refusal filters.
    pub async fn revive(&self, roles: Vec<String>) -> Result<(), ClientError> {
        self.call(Call {
            revive: Some(Roles { roles }),
            ..Call::new(CallType::Revive)
        })
        .await
    }

    /// TEARDOWN: the master removes the framework and kills its tasks.
    pub async fn teardown(&self) -> Result<(), ClientError> {
        self.call(Call::new(CallType::Teardown)).await
    }
}

/// The SUBSCRIBE stream's events after SUBSCRIBED.
pub struct EventStream {
    body: ByteStream,
    decoder: recordio::Decoder,
    /// Complete records not yet returned.
    queue: VecDeque<Vec<u8>>,
    ended: bool,
    /// Longest silence tolerated (a few heartbeat intervals).
    idle_limit: Duration,
    /// The master, for messages.
    source: String,
}

impl EventStream {
    /// The next event; `Ok(None)` when the master closed the stream cleanly.
    /// Cancel-safe: dropping the future loses no event.
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        Ok(self.next_with_json().await?.map(|(e, _)| e))
    }

    /// [`EventStream::next`] with the event's JSON as received (unknown
    /// fields included), for printing it.
    pub async fn next_with_json(&mut self) -> Result<Option<(Event, Json)>, ClientError> {
        loop {
            if let Some(record) = self.queue.pop_front() {
                return self.parse(&record).map(Some);
            }
            if self.ended {
                return Ok(None);
            }
            // Only the read is awaited; a record is queued synchronously once
            // a chunk arrives, which is what makes this cancel-safe.
            let chunk = match tokio::time::timeout(self.idle_limit, self.body.next()).await {
                Err(_) => return Err(ClientError::HeartbeatTimeout(self.idle_limit.as_secs())),
                Ok(None) => {
                    self.ended = true;
                    self.decoder
                        .finish()
                        .map_err(|e| self.protocol(e.to_string()))?;
                    continue;
                }
                Ok(Some(Err(e))) => {
                    self.ended = true;
                    return Err(ClientError::from_reqwest("event stream", &self.source, e));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            let records = self
                .decoder
                .feed(&chunk)
                .map_err(|e| self.protocol(e.to_string()))?;
            self.queue.extend(records);
        }
    }

    fn parse(&self, record: &[u8]) -> Result<(Event, Json), ClientError> {
        let json: Json = serde_json::from_slice(record)
            .map_err(|e| self.protocol(format!("an event is not JSON: {e}")))?;
        let event = Event::parse(record).map_err(|e| {
            self.protocol(format!(
                "bad event {}: {e}",
                String::from_utf8_lossy(&record[..record.len().min(200)])
            ))
        })?;
        Ok((event, json))
    }

    fn protocol(&self, message: String) -> ClientError {
        ClientError::Protocol {
            what: format!("event stream from {}", self.source),
            message,
        }
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("source", &self.source)
            .field("queued", &self.queue.len())
            .field("ended", &self.ended)
            .finish()
    }
}

/// `call` as JSON with the resources of its operations in `format`. Serde
/// writes [`Resources`] POST-refinement; a framework without
/// RESERVATION_REFINEMENT talks PRE-refinement to a Mesos master (`role:"*"`
/// on unreserved resources, `role` + `reservation` on reserved ones).
pub fn call_json(call: &Call, format: ResourceFormat) -> Result<Vec<u8>, ClientError> {
    let mut v = serde_json::to_value(call).expect("a call is always serialisable");
    let bad = |e: masterlink::ResourcesError| ClientError::Protocol {
        what: call.call_type.to_string(),
        message: format!("resources cannot be sent in the {format:?} format: {e}"),
    };
    // Only non-empty resources are rewritten: indexing a missing key would
    // insert a null, which no master accepts where a list is expected.
    let set = |parent: &mut Json, key: &str, r: &Resources| -> Result<(), ClientError> {
        if !r.is_empty() {
            parent[key] = r.to_json(format).map_err(bad)?;
        }
        Ok(())
    };
    if let Some(accept) = &call.accept {
        for (i, op) in accept.operations.iter().enumerate() {
            let o = &mut v["accept"]["operations"][i];
            if let Some(l) = &op.launch {
                for (j, t) in l.task_infos.iter().enumerate() {
                    let tj = &mut o["launch"]["task_infos"][j];
                    set(tj, "resources", &t.resources)?;
                    if let Some(e) = &t.executor {
                        set(&mut tj["executor"], "resources", &e.resources)?;
                    }
                }
            }
            if let Some(g) = &op.launch_group {
                set(
                    &mut o["launch_group"]["executor"],
                    "resources",
                    &g.executor.resources,
                )?;
                for (j, t) in g.task_group.tasks.iter().enumerate() {
                    set(
                        &mut o["launch_group"]["task_group"]["tasks"][j],
                        "resources",
                        &t.resources,
                    )?;
                }
            }
            if let Some(r) = &op.reserve {
                set(&mut o["reserve"], "resources", &r.resources)?;
                set(&mut o["reserve"], "source", &r.source)?;
            }
            if let Some(u) = &op.unreserve {
                set(&mut o["unreserve"], "resources", &u.resources)?;
            }
            if let Some(c) = &op.create {
                set(&mut o["create"], "volumes", &c.volumes)?;
            }
            if let Some(d) = &op.destroy {
                set(&mut o["destroy"], "volumes", &d.volumes)?;
            }
        }
    }
    Ok(serde_json::to_vec(&v).expect("JSON is serialisable"))
}

/// A task to reconcile explicitly.
pub fn reconcile_task(task_id: TaskID, agent_id: Option<AgentID>) -> ReconcileTask {
    ReconcileTask { task_id, agent_id }
}

#[cfg(test)]
mod tests {
    use super::*;
    use masterlink::scheduler::{CommandInfo, OfferID, TaskInfo};
    use masterlink::Resource;

    fn launch_call(resources: Resources) -> Call {
        let task = TaskInfo {
            resources,
            command: Some(CommandInfo::shell("echo hi")),
            ..serde_json::from_value(serde_json::json!({
                "name": "t", "task_id": {"value": "t1"}, "agent_id": {"value": "a1"}
            }))
            .unwrap()
        };
        Call {
            framework_id: Some(FrameworkID::new("f1")),
            accept: Some(masterlink::scheduler::Accept {
                offer_ids: vec![OfferID::new("o1")],
                operations: vec![Operation::launch(vec![task])],
                filters: None,
            }),
            ..Call::new(CallType::Accept)
        }
    }

    #[test]
    fn launch_resources_go_out_pre_refinement() {
        let mut r = Resources::new();
        r.push(Resource::scalar("cpus", 0.1).unwrap().allocated_to("dev"));
        r.push(
            Resource::scalar("mem", 32.0)
                .unwrap()
                .reserved_static("dev")
                .allocated_to("dev"),
        );
        let call = launch_call(r);
        let v: Json =
            serde_json::from_slice(&call_json(&call, ResourceFormat::PreRefinement).unwrap())
                .unwrap();
        let res = &v["accept"]["operations"][0]["launch"]["task_infos"][0]["resources"];
        assert_eq!(res[0]["role"], "*");
        assert_eq!(res[0]["allocation_info"]["role"], "dev");
        assert_eq!(res[1]["role"], "dev");
        assert!(res[1].get("reservations").is_none());
        // The rest of the call is serde's, and Mesos' parser reads it back.
        assert_eq!(
            v["accept"]["operations"][0]["launch"]["task_infos"][0]["command"]["shell"],
            true
        );
        let back = Call::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(back, call);
    }

    #[test]
    fn empty_executor_resources_stay_absent() {
        let mut call = launch_call(Resources::new());
        let task = &mut call.accept.as_mut().unwrap().operations[0]
            .launch
            .as_mut()
            .unwrap()
            .task_infos[0];
        task.command = None;
        task.executor = Some(
            serde_json::from_value(serde_json::json!({
                "executor_id": {"value": "e"}, "command": {"value": "run-me"}
            }))
            .unwrap(),
        );
        let bytes = call_json(&call, ResourceFormat::PreRefinement).unwrap();
        let v: Json = serde_json::from_slice(&bytes).unwrap();
        let t = &v["accept"]["operations"][0]["launch"]["task_infos"][0];
        assert!(
            !matches!(t["executor"].get("resources"), Some(Json::Null)),
            "{t}"
        );
        assert!(!matches!(t.get("resources"), Some(Json::Null)), "{t}");
        assert_eq!(Call::parse(&bytes).unwrap(), call);
    }
}
