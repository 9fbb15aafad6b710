//! Shared by the master's integration tests: a small HTTP/1.1 client written
//! here (chunked decoding, RecordIO event streams) over real sockets, and a
//! master on 127.0.0.1:0.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use master::http::{Master, MasterConfig};
use masterlink::recordio::Decoder;
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Bound on every single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One connection: the response head, then its body (chunked or not).
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    pub chunked: bool,
    done: bool,
}

impl Conn {
    pub async fn open(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (Head, Conn) {
        let mut stream = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        timeout(WAIT, stream.write_all(req.as_bytes()))
            .await
            .expect("write timed out")
            .expect("write");
        let mut conn = Conn {
            stream,
            buf: Vec::new(),
            chunked: false,
            done: false,
        };
        let head_end = loop {
            if let Some(i) = conn.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(conn.fill().await, "connection closed before the head");
        };
        let head_text = String::from_utf8(conn.buf[..head_end].to_vec()).expect("utf-8 head");
        conn.buf.drain(..head_end + 4);
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .expect("status code")
            .parse()
            .expect("numeric status");
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header line");
                (n.trim().to_string(), v.trim().to_string())
            })
            .collect();
        let head = Head { status, headers };
        conn.chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        (head, conn)
    }

    /// Reads more bytes; false at EOF.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .expect("read timed out")
            .expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next piece of body; `None` at its end.
    pub async fn next_body(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        if !self.chunked {
            // Connection: close — the body runs to EOF.
            while self.fill().await {}
            self.done = true;
            return Some(std::mem::take(&mut self.buf));
        }
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = std::str::from_utf8(&self.buf[..i]).expect("chunk size line");
                let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                    .expect("hex chunk size");
                if size == 0 {
                    self.done = true;
                    return None;
                }
                if self.buf.len() >= i + 2 + size + 2 {
                    let data = self.buf[i + 2..i + 2 + size].to_vec();
                    self.buf.drain(..i + 2 + size + 2);
                    return Some(data);
                }
            }
            if !self.fill().await {
                panic!("connection closed inside a chunked body");
            }
        }
    }

    pub async fn body(&mut self) -> String {
        let mut all = Vec::new();
        while let Some(part) = self.next_body().await {
            all.extend(part);
        }
        String::from_utf8(all).expect("utf-8 body")
    }
}

/// Events of a SUBSCRIBE stream.
pub struct Events {
    pub conn: Conn,
    decoder: Decoder,
    pending: Vec<Json>,
}

impl Events {
    /// The next event, `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Json> {
        loop {
            if !self.pending.is_empty() {
                return Some(self.pending.remove(0));
            }
            let part = self.conn.next_body().await?;
            for record in self.decoder.feed(&part).expect("valid RecordIO") {
                self.pending
                    .push(serde_json::from_slice(&record).expect("event is JSON"));
            }
        }
    }
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (Head, String) {
    let (head, mut conn) = Conn::open(addr, method, path, headers, body).await;
    let body = conn.body().await;
    (head, body)
}

pub const JSON_CT: (&str, &str) = ("Content-Type", "application/json");

pub async fn scheduler_call(
    addr: SocketAddr,
    stream_id: Option<&str>,
    call: &Json,
) -> (u16, String) {
    let mut headers = vec![JSON_CT];
    if let Some(id) = stream_id {
        headers.push(("Mesos-Stream-Id", id));
    }
    let (head, body) = request(
        addr,
        "POST",
        "/api/v1/scheduler",
        &headers,
        &call.to_string(),
    )
    .await;
    (head.status, body)
}

pub async fn subscribe(addr: SocketAddr, call: &Json) -> (Head, Events) {
    let (head, conn) = Conn::open(
        addr,
        "POST",
        "/api/v1/scheduler",
        &[JSON_CT, ("Accept", "application/json")],
        &call.to_string(),
    )
    .await;
    let events = Events {
        conn,
        decoder: Decoder::new(),
        pending: Vec::new(),
    };
    (head, events)
}

pub async fn start(dir: &std::path::Path, heartbeat: Duration) -> Master {
    start_with(dir, |c| c.heartbeat_interval = heartbeat).await
}

/// A master on 127.0.0.1:0 with `tune` applied to its configuration.
pub async fn start_with(dir: &std::path::Path, tune: impl FnOnce(&mut MasterConfig)) -> Master {
    let mut config = MasterConfig::new(dir);
    config.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    config.hostname = "test-master".into();
    tune(&mut config);
    timeout(WAIT, Master::start(config))
        .await
        .expect("start timed out")
        .expect("master starts")
}

pub fn subscribe_call(name: &str) -> Json {
    json!({
        "type": "SUBSCRIBE",
        "subscribe": {"framework_info": {"user": "root", "name": name, "roles": ["dev"],
            "capabilities": [{"type": "MULTI_ROLE"}]}}
    })
}

/// POSTs JSON to `path` with extra headers; status and body.
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &Json,
) -> (u16, String) {
    let mut all = vec![JSON_CT];
    all.extend_from_slice(headers);
    let (head, body) = request(addr, "POST", path, &all, &body.to_string()).await;
    (head.status, body)
}

/// An agent speaking the masterlink protocol over its own connection, as
/// `berth agent` does: its stream of master messages and its calls.
pub struct LinkedAgent {
    /// The resources of the last CHECKPOINT_RESOURCES seen at registration.
    pub checkpointed: Json,
    pub addr: SocketAddr,
    pub id: String,
    pub stream_id: String,
    pub messages: Events,
}

impl LinkedAgent {
    /// REGISTERs with `resources` (Mesos text syntax) and reads REGISTERED.
    pub async fn register(addr: SocketAddr, hostname: &str, resources: &str) -> LinkedAgent {
        Self::register_as(addr, hostname, resources, None).await
    }

    /// The same, re-registering as `id` when given.
    pub async fn register_as(
        addr: SocketAddr,
        hostname: &str,
        resources: &str,
        id: Option<&str>,
    ) -> LinkedAgent {
        let resources = masterlink::resources::parse(resources).expect("resources");
        let mut call = json!({
            "type": "REGISTER",
            "protocol_version": masterlink::protocol::PROTOCOL_VERSION,
            "version": "test",
            "boot_id": "boot",
            "agent_info": {"hostname": hostname, "port": 5051, "ip": "127.0.0.1",
                           "resources": resources},
        });
        if let Some(id) = id {
            call["agent_info"]["id"] = json!({"value": id});
        }
        Self::register_call(addr, call).await
    }

    /// REGISTERs with a whole REGISTER call (tasks, frameworks...).
    pub async fn register_call(addr: SocketAddr, call: Json) -> LinkedAgent {
        let (head, conn) = Conn::open(
            addr,
            "POST",
            masterlink::protocol::AGENT_API_PATH,
            &[JSON_CT],
            &call.to_string(),
        )
        .await;
        assert_eq!(head.status, 200);
        let mut messages = Events {
            conn,
            decoder: Decoder::new(),
            pending: Vec::new(),
        };
        let registered = messages.next().await.expect("REGISTERED");
        assert_eq!(registered["type"], "REGISTERED", "{registered}");
        // Then the resources to checkpoint (none for a new agent).
        let checkpoint = messages.next().await.expect("CHECKPOINT_RESOURCES");
        assert_eq!(checkpoint["type"], "CHECKPOINT_RESOURCES", "{checkpoint}");
        LinkedAgent {
            checkpointed: checkpoint["resources"].clone(),
            addr,
            id: registered["agent_id"]["value"]
                .as_str()
                .unwrap()
                .to_string(),
            stream_id: registered["stream_id"].as_str().unwrap().to_string(),
            messages,
        }
    }

    /// The next message that is not a PING (PINGs are answered).
    pub async fn next(&mut self) -> Option<Json> {
        loop {
            let m = self.messages.next().await?;
            if m["type"] == "PING" {
                let pong = json!({"type": "PONG", "agent_id": {"value": self.id}, "ping": m["id"]});
                self.call(&pong).await;
                continue;
            }
            return Some(m);
        }
    }

    /// Posts a call; asserts 202.
    pub async fn call(&self, call: &Json) {
        let (status, body) = post_json(
            self.addr,
            masterlink::protocol::AGENT_API_PATH,
            &[(masterlink::protocol::STREAM_ID_HEADER, &self.stream_id)],
            call,
        )
        .await;
        assert_eq!(status, 202, "{call}: {body}");
    }

    /// Sends a status update for `task` in `state` with a fresh uuid, which it returns.
    pub async fn update(&self, framework: &str, task: &str, state: &str, n: u8) -> String {
        let uuid = masterlink::scheduler::encode_base64(&[n; 16]);
        self.call(&json!({
            "type": "STATUS_UPDATE",
            "agent_id": {"value": self.id},
            "framework_id": {"value": framework},
            "status": {"task_id": {"value": task}, "state": state, "uuid": uuid,
                       "source": "SOURCE_EXECUTOR", "timestamp": 1.0},
        }))
        .await;
        uuid
    }
}

/// A subscribed framework: its id, stream id and events.
pub struct Sched {
    pub addr: SocketAddr,
    pub id: String,
    pub stream_id: String,
    pub events: Events,
}

impl Sched {
    pub async fn subscribe(addr: SocketAddr, info: Json) -> Sched {
        let mut call = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}});
        if !info["id"].is_null() {
            call["framework_id"] = info["id"].clone();
        }
        let (head, mut events) = subscribe(addr, &call).await;
        assert_eq!(head.status, 200);
        let stream_id = head
            .header("mesos-stream-id")
            .expect("stream id")
            .to_string();
        let subscribed = events.next().await.expect("SUBSCRIBED");
        assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");
        let id = subscribed["subscribed"]["framework_id"]["value"]
            .as_str()
            .unwrap()
            .to_string();
        Sched {
            addr,
            id,
            stream_id,
            events,
        }
    }

    /// The next event of `kind`, skipping HEARTBEATs (and other kinds).
    pub async fn next_of(&mut self, kind: &str) -> Json {
        loop {
            let e = self.events.next().await.expect("stream open");
            if e["type"] == kind {
                return e;
            }
        }
    }

    /// Posts a call (framework_id filled in); status and body.
    pub async fn call(&self, mut call: Json) -> (u16, String) {
        call["framework_id"] = json!({"value": self.id});
        scheduler_call(self.addr, Some(&self.stream_id), &call).await
    }
}
