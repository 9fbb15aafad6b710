//! Clients of Mesos' public v1 HTTP APIs, JSON flavour, as any Mesos 1.x
//! framework or operator tool speaks them (facts in MESOS-API.md §1, §5):
//!
//! * [`scheduler::SchedulerClient`]: `POST /api/v1/scheduler`: SUBSCRIBE with
//!   its RecordIO event stream ([`scheduler::EventStream`]), then every other
//!   call on separate requests carrying `Mesos-Stream-Id`;
//! * [`operator::OperatorClient`]: `POST /api/v1` calls (GET_AGENTS, ...).
//!
//! Plain HTTP only (no TLS backend is compiled in). A `307` from a
//! non-leading master is followed, and the scheduler client keeps talking to
//! the leader it was redirected to.

use std::fmt;
use std::str::FromStr;

pub mod operator;
pub mod scheduler;

/// The default master address: what `berth up` listens on.
pub const DEFAULT_MASTER: &str = "127.0.0.1:5050";

/// Mesos' master port, used when an address has none.
pub const DEFAULT_PORT: u16 = 5050;

/// A master's `HOST:PORT`, parsed from `HOST[:PORT]` or `http://HOST[:PORT][/]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterAddr {
    host: String,
    port: u16,
    /// HTTP basic credentials for a master that authenticates.
    credentials: Option<Credentials>,
}

/// A principal and its secret (Mesos' HTTP basic authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The principal.
    pub principal: String,
    /// Its secret.
    pub secret: String,
}

impl MasterAddr {
    /// The host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The same master, calls authenticated as `credentials`.
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> MasterAddr {
        self.credentials = credentials;
        self
    }

    /// `req` with the basic credentials, if any.
    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credentials {
            Some(c) => req.basic_auth(&c.principal, Some(&c.secret)),
            None => req,
        }
    }

    /// POSTs to `url` the request `build` makes (headers, body), with this
    /// master's credentials, following `307`/`308` to the leader. The
    /// redirects are followed here, not by reqwest, because reqwest drops
    /// the `Authorization` header when a redirect changes host or port, and
    /// a follower's `Location` names the leader's (the credentials are the
    /// cluster's, meant for whichever master leads).
    pub(crate) async fn post(
        &self,
        http: &reqwest::Client,
        mut url: reqwest::Url,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        let mut redirects = 0;
        loop {
            let resp = build(self.authorize(http.post(url.clone()))).send().await?;
            let status = resp.status();
            if redirects == MAX_REDIRECTS
                || !matches!(
                    status,
                    reqwest::StatusCode::TEMPORARY_REDIRECT
                        | reqwest::StatusCode::PERMANENT_REDIRECT
                )
            {
                return Ok(resp);
            }
            // Mesos' Location is scheme-relative (`//host:port/path`).
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .filter(|u| u.scheme() == "http");
            match next {
                Some(next) => url = next,
                // The caller reports the 307 it cannot follow.
                None => return Ok(resp),
            }
            redirects += 1;
        }
    }

    /// `http://HOST:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{self}{path}")
    }
}

impl fmt::Display for MasterAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for MasterAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<MasterAddr, String> {
        let s = s.trim();
        if s.starts_with("https://") {
            return Err("https is not supported (plain HTTP only)".into());
        }
        if s.starts_with("zk://") {
            return Err("ZooKeeper master detection is not supported; give HOST:PORT".into());
        }
        let rest = s.strip_prefix("http://").unwrap_or(s);
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err("empty address (expected HOST:PORT)".into());
        }
        if rest.contains('/') || rest.contains('@') || rest.contains(char::is_whitespace) {
            return Err(format!("{s:?} is not HOST:PORT"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed '[' in an IPv6 address"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| format!("{s:?} is not [HOST]:PORT"))?,
                    ),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(format!("{s:?}: write IPv6 addresses as [ADDR]:PORT"))
                }
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{s:?} has no host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(format!("{s:?}: {p:?} is not a port (1-65535)")),
                Ok(n) => n,
            },
        };
        Ok(MasterAddr {
            host: host.to_string(),
            port,
            credentials: None,
        })
    }
}

/// What went wrong talking to a master.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No TCP connection (refused, unreachable, DNS failure, connect timeout).
    #[error("cannot connect to the master at {master}: {reason}")]
    Connect {
        /// Where.
        master: String,
        /// The innermost cause, e.g. "Connection refused (os error 111)".
        reason: String,
    },
    /// The request failed after connecting (reset, timeout, bad HTTP).
    #[error("{what} to {master}: {reason}")]
    Http {
        /// Which call.
        what: String,
        /// Where.
        master: String,
        /// The innermost cause.
        reason: String,
    },
    /// The master answered with an unexpected HTTP status.
    #[error("{what}: the master answered {status}{}", body_suffix(.body))]
    Status {
        /// Which call.
        what: String,
        /// The HTTP status code.
        status: u16,
        /// The response body (Mesos explains 4xx answers in it).
        body: String,
    },
    /// The answer does not follow the protocol (RecordIO, event JSON,
    /// missing headers, wrong response type).
    #[error("{what}: {message}")]
    Protocol {
        /// Which call or stream.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// SUBSCRIBE was answered with an ERROR event (bad roles, removed
    /// framework ID, ...).
    #[error("the master refused the subscription: {0}")]
    Refused(String),
    /// Nothing, not even a HEARTBEAT, arrived on the event stream for this
    /// long: the connection is considered dead.
    #[error("no event from the master for {0} s (heartbeats stopped)")]
    HeartbeatTimeout(u64),
}

fn body_suffix(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl ClientError {
    /// True when no connection could be made at all (the master is probably
    /// not running at that address).
    pub fn is_connect(&self) -> bool {
        matches!(self, ClientError::Connect { .. })
    }

    /// Classifies a reqwest error of request `what` to `master`.
    fn from_reqwest(what: &str, master: &str, e: reqwest::Error) -> ClientError {
        let reason = root_cause(&e);
        if e.is_connect() {
            ClientError::Connect {
                master: master.to_string(),
                reason,
            }
        } else if e.is_timeout() {
            ClientError::Http {
                what: what.to_string(),
                master: master.to_string(),
                reason: format!("timed out ({reason})"),
            }
        } else {
            ClientError::Http {
                what: what.to_string(),
                master: master.to_string(),
                reason,
            }
        }
    }
}

/// The innermost error of a chain: reqwest's own message is "error sending
/// request for url (...)", the useful part is at the bottom.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The `host:port` part of a URL, for messages.
fn authority(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => url.to_string(),
    }
}

/// Redirects followed for one call: a follower names the leader, so one is
/// the norm; a few more cover an election in between.
const MAX_REDIRECTS: usize = 5;

/// The HTTP client both APIs use: plain HTTP/1.1, a bounded connect time;
/// redirects are followed by [`MasterAddr::post`] (a non-leading master
/// answers `307` with the leader in `Location`).
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .http1_only()
        .build()
        .expect("a plain-HTTP reqwest client always builds")
}

/// Reads an error response's body for a message, bounded so that a master
/// that never finishes it cannot hang the caller.
async fn error_body(resp: reqwest::Response) -> String {
    match tokio::time::timeout(std::time::Duration::from_secs(5), resp.text()).await {
        Ok(Ok(t)) => t.chars().take(2000).collect(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_addresses() {
        let a: MasterAddr = "127.0.0.1:5050".parse().unwrap();
        assert_eq!((a.host(), a.port()), ("127.0.0.1", 5050));
        assert_eq!(a.url("/api/v1"), "http://127.0.0.1:5050/api/v1");
        let a: MasterAddr = "http://master.example:8080/".parse().unwrap();
        assert_eq!(a.to_string(), "master.example:8080");
        let a: MasterAddr = "node1".parse().unwrap();
        assert_eq!(a.to_string(), "node1:5050");
        let a: MasterAddr = "[::1]:5051".parse().unwrap();
        assert_eq!(
            (a.host(), a.port(), a.to_string().as_str()),
            ("::1", 5051, "[::1]:5051")
        );
        for bad in [
            "",
            "https://m:5050",
            "zk://z:2181/mesos",
            "m:0",
            "m:99999",
            "m:port",
            ":5050",
            "m:5050/api",
            "::1",
            "[::1",
        ] {
            assert!(bad.parse::<MasterAddr>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn status_errors_show_the_body() {
        let e = ClientError::Status {
            what: "ACCEPT".into(),
            status: 400,
            body: "Framework cannot be found\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "ACCEPT: the master answered 400: Framework cannot be found"
        );
        let e = ClientError::Status {
            what: "KILL".into(),
            status: 503,
            body: String::new(),
        };
        assert_eq!(e.to_string(), "KILL: the master answered 503");
    }
}
