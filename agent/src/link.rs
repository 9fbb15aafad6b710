//! The agent side of the masterlink protocol over HTTP (see
//! `masterlink::protocol`): the REGISTER stream and the calls posted beside
//! it. It lives here rather than in masterlink so that the protocol crate,
//! which the master links too, stays free of an HTTP client and a runtime.
//!
//! This module only moves messages: [`open_stream`] posts REGISTER and feeds
//! every message of the answer into the agent's event channel, then reports
//! the end of the stream; [`post`] sends one call. When to (re-)register,
//! with which master, the backoff and the ping timeout are the agent's
//! business. A master that does not lead answers REGISTER with a 307 to the
//! leader, reported as [`LinkError::Redirected`] (not followed here, so that
//! the agent knows which master it registered with and posts its calls
//! there).

use std::time::Duration;

use futures_util::StreamExt;
use masterlink::protocol::{AgentCall, MasterMessage, AGENT_API_PATH, STREAM_ID_HEADER};
use masterlink::recordio::Decoder;

use crate::config::Credential;

/// A failure of the link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("cannot reach the master at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the master at {url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("bad stream from the master: {0}")]
    Stream(String),
    #[error("the master closed the stream")]
    Closed,
    #[error("the master at {url} does not lead; the leader is {leader}")]
    Redirected { url: String, leader: String },
}

/// What the stream task reports to the agent.
#[derive(Debug)]
pub enum StreamEvent {
    Message(Box<MasterMessage>),
    Ended(LinkError),
}

/// The HTTP client for the link: connects within 5 s; no overall timeout,
/// since the REGISTER answer is a stream that lasts as long as the link.
/// With a credential, every call carries it (HTTP basic); redirects are
/// followed by the agent itself, so it goes to whichever master leads.
pub fn client(credential: Option<&Credential>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(c) = credential {
        let token = masterlink::scheduler::encode_base64(
            format!("{}:{}", c.principal, c.secret).as_bytes(),
        );
        if let Ok(mut v) = reqwest::header::HeaderValue::from_str(&format!("Basic {token}")) {
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
    }
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// `http://<master><AGENT_API_PATH>`.
pub fn url(master: &str) -> String {
    format!("http://{master}{AGENT_API_PATH}")
}

/// Posts REGISTER and forwards the stream's messages through `deliver`
/// until it ends; the last event is always [`StreamEvent::Ended`].
pub async fn open_stream(
    client: reqwest::Client,
    url: String,
    register: AgentCall,
    deliver: impl Fn(StreamEvent),
) {
    let end = read_stream(&client, &url, &register, &deliver).await;
    deliver(StreamEvent::Ended(end));
}

async fn read_stream(
    client: &reqwest::Client,
    url: &str,
    register: &AgentCall,
    deliver: &impl Fn(StreamEvent),
) -> LinkError {
    let resp = match client
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .json(register)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return LinkError::Unreachable {
                url: url.to_string(),
                reason: error_chain(&e),
            }
        }
    };
    let status = resp.status();
    if status == reqwest::StatusCode::TEMPORARY_REDIRECT {
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return match location_authority(location) {
            Some(leader) => LinkError::Redirected {
                url: url.to_string(),
                leader,
            },
            None => LinkError::Refused {
                url: url.to_string(),
                status: status.as_u16(),
                body: format!("redirect without a usable Location: {location:?}"),
            },
        };
    }
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return LinkError::Refused {
            url: url.to_string(),
            status: status.as_u16(),
            body: body.trim().to_string(),
        };
    }
    let mut decoder = Decoder::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return LinkError::Stream(error_chain(&e)),
        };
        let records = match decoder.feed(&chunk) {
            Ok(r) => r,
            Err(e) => return LinkError::Stream(e.to_string()),
        };
        for record in records {
            match MasterMessage::parse(&record) {
                Ok(msg) => deliver(StreamEvent::Message(Box::new(msg))),
                Err(e) => return LinkError::Stream(format!("unreadable message: {e}")),
            }
        }
    }
    LinkError::Closed
}

/// Posts a call other than REGISTER with the stream id; the master answers
/// 202 Accepted.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    stream_id: &str,
    call: &AgentCall,
) -> Result<(), LinkError> {
    let resp = client
        .post(url)
        .header(STREAM_ID_HEADER, stream_id)
        .timeout(Duration::from_secs(15))
        .json(call)
        .send()
        .await
        .map_err(|e| LinkError::Unreachable {
            url: url.to_string(),
            reason: error_chain(&e),
        })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    Err(LinkError::Refused {
        url: url.to_string(),
        status: status.as_u16(),
        body: resp.text().await.unwrap_or_default().trim().to_string(),
    })
}

/// `HOST:PORT` of a redirect's `Location`: Mesos' protocol-relative
/// `//HOST:PORT/path`, or an absolute `http://HOST:PORT/path`.
pub fn location_authority(location: &str) -> Option<String> {
    let rest = location
        .strip_prefix("http:")
        .unwrap_or(location)
        .strip_prefix("//")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = authority.rsplit_once(':')?;
    (!host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)).then(|| authority.to_string())
}

/// The innermost cause of a reqwest error ("Connection refused (os error
/// 111)"): the outer layers repeat the URL, which the caller names already.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        last = c.to_string();
        cause = c.source();
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use masterlink::protocol::{AgentInfo, Register, PROTOCOL_VERSION};
    use masterlink::scheduler::{AgentID, MasterInfo};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn register() -> AgentCall {
        AgentCall::Register(Register {
            protocol_version: PROTOCOL_VERSION,
            version: "0.1.0".into(),
            agent_info: AgentInfo {
                hostname: "h".into(),
                port: 5051,
                ip: "127.0.0.1".into(),
                resources: Default::default(),
                attributes: Vec::new(),
                id: None,
            },
            boot_id: "b".into(),
            tasks: Vec::new(),
            frameworks: Vec::new(),
            checkpointed_resources: Default::default(),
            previous_agent_id: None,
        })
    }

    /// A one-shot HTTP server answering with a chunked body made of `chunks`.
    async fn serve(chunks: Vec<Vec<u8>>) -> (String, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head and the (small) JSON body.
            loop {
                let n = s.read(&mut buf).await.unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if req.len() >= i + 4 + len {
                        break;
                    }
                }
            }
            s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
            )
            .await
            .unwrap();
            for c in chunks {
                s.write_all(format!("{:x}\r\n", c.len()).as_bytes())
                    .await
                    .unwrap();
                s.write_all(&c).await.unwrap();
                s.write_all(b"\r\n").await.unwrap();
                s.flush().await.unwrap();
            }
            s.write_all(b"0\r\n\r\n").await.unwrap();
            String::from_utf8_lossy(&req).to_string()
        });
        (addr, h)
    }

    #[tokio::test]
    async fn stream_messages_split_across_chunks_are_decoded() {
        let registered = MasterMessage::Registered {
            agent_id: AgentID::new("M-S0"),
            stream_id: "s1".into(),
            master_info: MasterInfo {
                id: "m".into(),
                ip: 16777343,
                port: 5050,
                pid: None,
                hostname: None,
                version: None,
                address: None,
                domain: None,
                capabilities: Vec::new(),
            },
            ping_interval_secs: 1.0,
        }
        .to_record();
        let ping = MasterMessage::Ping { id: 7 }.to_record();
        let mut all = registered.clone();
        all.extend_from_slice(&ping);
        let (a, b) = all.split_at(registered.len() + 3);
        let (addr, server) = serve(vec![a.to_vec(), b.to_vec()]).await;
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        open_stream(client(None), url(&addr), register(), move |e| {
            sink.lock().unwrap().push(format!("{e:?}"))
        })
        .await;
        let req = server.await.unwrap();
        assert!(req.starts_with("POST /masterlink/v1/agent "), "{req}");
        assert!(req.contains("\"type\":\"REGISTER\""), "{req}");
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].contains("Registered"));
        assert!(got[1].contains("Ping { id: 7 }"));
        assert!(got[2].contains("Ended(Closed)"));
    }

    #[test]
    fn redirect_locations() {
        assert_eq!(
            location_authority("//127.0.0.1:5051/masterlink/v1/agent").as_deref(),
            Some("127.0.0.1:5051")
        );
        assert_eq!(
            location_authority("http://m2:5050").as_deref(),
            Some("m2:5050")
        );
        assert_eq!(location_authority("/masterlink/v1/agent"), None);
        assert_eq!(location_authority("//m2/x"), None);
    }

    #[tokio::test]
    async fn an_unreachable_master_is_reported() {
        // A port nobody listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        open_stream(
            client(None),
            url(&format!("127.0.0.1:{port}")),
            register(),
            move |e| sink.lock().unwrap().push(e),
        )
        .await;
        let got = got.lock().unwrap();
        assert!(matches!(
            got.as_slice(),
            [StreamEvent::Ended(LinkError::Unreachable { .. })]
        ));
    }
}
