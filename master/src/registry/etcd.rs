//! The etcd v3 registry backend, for several masters sharing one state.
//!
//! Layout under the configured prefix `P` (default `/berth/`):
//!
//! | key | value |
//! |---|---|
//! | `P` `meta/schema_version` | JSON number: the layout version ([`ETCD_SCHEMA_VERSION`]) |
//! | `P` `agents/<id>` | JSON [`AgentRecord`] |
//! | `P` `frameworks/<id>` | JSON [`FrameworkRecord`] |
//! | `P` `kv/<key>` | the caller's bytes (the master stores JSON) |
//! | `P` `leader` | the elected master's info (written by [`crate::election`]) |
//!
//! The compare-and-swap area maps onto etcd's own per-key `version` (1 at
//! creation, +1 per put, gone on delete), which is exactly the registry's
//! version rule, so a CAS is one transaction comparing `version` and nothing
//! has to be stored beside the value.
//!
//! Writes can be fenced by a leadership term ([`Fence`]): every write
//! transaction then also requires that the leader key still has the create
//! revision this master won it with. A master that lost its lease (paused,
//! partitioned) but has not noticed yet cannot overwrite what its successor
//! wrote; its writes fail with [`RegistryError::NotLeader`].
//!
//! The [`Registry`] trait is synchronous (the master calls it under a std
//! mutex, as it does SQLite), while etcd-client is async. Each
//! `EtcdRegistry` therefore owns a one-worker tokio runtime on which the
//! client and its connections live; a call spawns its request there and
//! blocks the caller until the answer or the request timeout. This works
//! from plain threads and from inside the master's own runtime alike (a
//! nested `block_on` would panic there), and a call can never hang forever.

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse, TxnResponse,
};

use super::{AgentRecord, FrameworkRecord, KvEntry, Registry, RegistryError, RegistryInfo};

/// The version of the key layout above that this berth writes.
pub const ETCD_SCHEMA_VERSION: u32 = 1;

/// The key prefix when a URL names none.
pub const DEFAULT_PREFIX: &str = "/berth/";

/// etcd's client port when a URL names none.
pub const DEFAULT_PORT: u16 = 2379;

/// How long one registry call waits for etcd. A write that etcd cannot
/// commit (no quorum) fails after this instead of stalling the master.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Listings are read in pages of this many keys (all pages at the same
/// revision), which keeps each response far below gRPC's message limit.
const PAGE: i64 = 500;

/// Where the etcd cluster is and which part of its key space Berth uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs, `http://HOST:PORT`.
    pub endpoints: Vec<String>,
    /// Every key Berth writes starts with this; ends with `/`.
    pub prefix: String,
    /// Bound on every request (and on connecting).
    pub request_timeout: Duration,
}

/// An `etcd://` URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid etcd URL {url:?}: {detail} (expected etcd://HOST:PORT[,HOST:PORT...][/PREFIX])")]
pub struct InvalidEtcdUrl {
    pub url: String,
    pub detail: String,
}

impl EtcdConfig {
    /// `endpoints` as `HOST:PORT` or full `http://HOST:PORT` URLs; the
    /// default prefix and timeout.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints
                .into_iter()
                .map(|e| {
                    let e = e.into();
                    if e.starts_with("http://") || e.starts_with("https://") {
                        e
                    } else {
                        format!("http://{e}")
                    }
                })
                .collect(),
            prefix: DEFAULT_PREFIX.to_string(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Uses `prefix` (a trailing `/` is added if missing) for every key.
    pub fn with_prefix(mut self, prefix: &str) -> EtcdConfig {
        self.prefix = normalize_prefix(prefix);
        self
    }

    pub fn with_request_timeout(mut self, timeout: Duration) -> EtcdConfig {
        self.request_timeout = timeout;
        self
    }

    /// Parses `etcd://HOST[:PORT][,HOST[:PORT]...][/PREFIX]`, the form of
    /// `berth master --registry`. IPv6 hosts go in brackets. Without a
    /// prefix the keys go under `/berth/`.
    pub fn from_url(url: &str) -> Result<EtcdConfig, InvalidEtcdUrl> {
        let bad = |detail: &str| InvalidEtcdUrl {
            url: url.to_string(),
            detail: detail.to_string(),
        };
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("it does not start with etcd://"))?;
        let (hosts, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            if host.is_empty() {
                return Err(bad("an empty host"));
            }
            // The port is after the last ':' unless that ':' is inside an
            // IPv6 address in brackets.
            let (name, port) = match host.rfind(':') {
                Some(i) if !host[i..].contains(']') => (&host[..i], Some(&host[i + 1..])),
                _ => (host, None),
            };
            if name.is_empty() {
                return Err(bad(&format!("{host:?} has no host name")));
            }
            if name.contains('[') != name.contains(']') || name.contains('@') {
                return Err(bad(&format!("{host:?} is not a host name")));
            }
            let port = match port {
                None => DEFAULT_PORT,
                Some(p) => match p.parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => return Err(bad(&format!("{host:?} has an invalid port"))),
                },
            };
            endpoints.push(format!("http://{name}:{port}"));
        }
        let config = EtcdConfig::new(endpoints);
        Ok(if prefix.is_empty() || prefix == "/" {
            config
        } else {
            config.with_prefix(prefix)
        })
    }

    /// `etcd://HOST:PORT,...` plus the prefix: how logs and errors name it.
    pub fn display(&self) -> String {
        let hosts: Vec<&str> = self
            .endpoints
            .iter()
            .map(|e| {
                e.trim_start_matches("http://")
                    .trim_start_matches("https://")
            })
            .collect();
        format!("etcd://{}{}", hosts.join(","), self.prefix)
    }

    pub(crate) fn connect_options(&self) -> ConnectOptions {
        ConnectOptions::new()
            .with_connect_timeout(self.request_timeout)
            .with_timeout(self.request_timeout)
            // HTTP/2 pings find a dead connection (a SIGKILLed or partitioned
            // etcd member) long before TCP would.
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true)
    }
}

fn normalize_prefix(prefix: &str) -> String {
    let mut p = prefix.to_string();
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    if !p.ends_with('/') {
        p.push('/');
    }
    p
}

/// A leadership term that writes must still hold: the leader key and the
/// revision at which this master created it. Get it from
/// [`crate::election::Election::fence`] once elected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The full etcd key of the leader.
    pub key: String,
    /// Its create revision when this master won it.
    pub term: i64,
}

/// A small tokio runtime owned by a synchronous facade (the registry, the
/// election handle). Dropping it never blocks and never panics, even inside
/// another runtime.
pub(crate) struct BackgroundRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl BackgroundRuntime {
    pub(crate) fn new(name: &str) -> std::io::Result<BackgroundRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()?;
        Ok(BackgroundRuntime {
            runtime: Some(runtime),
        })
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime is only taken in drop")
            .handle()
    }

    /// Runs `fut` on this runtime and blocks the calling thread until it
    /// finishes; `None` if it did not within `timeout` (it is then dropped).
    pub(crate) fn block<T: Send + 'static>(
        &self,
        timeout: Duration,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle().spawn(async move {
            if let Ok(value) = tokio::time::timeout(timeout, fut).await {
                let _ = tx.send(value);
            }
        });
        // The sender is dropped without a value on timeout: recv fails.
        rx.recv().ok()
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // A plain drop waits for blocking tasks and panics when called
            // from async code (where the master may drop its registry).
            runtime.shutdown_background();
        }
    }
}

/// The registry in etcd v3. See the module docs for the layout.
pub struct EtcdRegistry {
    config: EtcdConfig,
    shown: String,
    client: Client,
    fence: Option<Fence>,
    // Last: dropped after the client, whose connections live on it.
    runtime: BackgroundRuntime,
}

impl std::fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("at", &self.shown)
            .field("fence", &self.fence)
            .finish()
    }
}

/// What a write transaction found when its comparisons failed.
enum Refused {
    /// The fence's leader key is gone or belongs to another term.
    NotLeader,
    /// The compared key's actual version (for a CAS).
    Conflict(Option<u64>),
}

impl EtcdRegistry {
    /// Connects to etcd and checks (or, on an empty prefix, writes) the
    /// layout version. Fails if etcd does not answer within the config's
    /// request timeout.
    pub fn open(config: &EtcdConfig) -> Result<EtcdRegistry, RegistryError> {
        let shown = config.display();
        let runtime =
            BackgroundRuntime::new("berth-etcd-registry").map_err(|source| RegistryError::Io {
                path: shown.clone(),
                what: "start the etcd client's runtime".to_string(),
                source,
            })?;
        let endpoints = config.endpoints.clone();
        let options = config.connect_options();
        let client = match runtime.block(config.request_timeout, async move {
            Client::connect(endpoints, Some(options)).await
        }) {
            Some(Ok(client)) => client,
            Some(Err(source)) => {
                return Err(RegistryError::Etcd {
                    path: shown,
                    what: "connect".to_string(),
                    source,
                })
            }
            None => {
                return Err(RegistryError::Timeout {
                    path: shown,
                    what: "connect".to_string(),
                    after: config.request_timeout,
                })
            }
        };
        let registry = EtcdRegistry {
            config: config.clone(),
            shown,
            client,
            fence: None,
            runtime,
        };
        registry.check_schema()?;
        Ok(registry)
    }

    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    fn key(&self, area: &str, name: &str) -> String {
        format!("{}{area}/{name}", self.config.prefix)
    }

    /// Runs one request on the registry's runtime with the request timeout.
    fn call<T, F>(&self, what: &str, request: impl FnOnce(Client) -> F) -> Result<T, RegistryError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let fut = request(self.client.clone());
        match self.runtime.block(self.config.request_timeout, fut) {
            Some(Ok(value)) => Ok(value),
            Some(Err(source)) => Err(RegistryError::Etcd {
                path: self.shown.clone(),
                what: what.to_string(),
                source,
            }),
            None => Err(RegistryError::Timeout {
                path: self.shown.clone(),
                what: what.to_string(),
                after: self.config.request_timeout,
            }),
        }
    }

    fn check_schema(&self) -> Result<(), RegistryError> {
        let key = self.key("meta", "schema_version");
        let what = "check the layout version";
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                ETCD_SCHEMA_VERSION.to_string(),
                None,
            )])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = self.call(what, |mut c| async move { c.txn(txn).await })?;
        if resp.succeeded() {
            return Ok(());
        }
        let stored = first_get(&resp, 0).map(|kv| kv.value().to_vec());
        let found: i64 =
            serde_json::from_slice(stored.as_deref().unwrap_or_default()).map_err(|source| {
                RegistryError::Decode {
                    path: self.shown.clone(),
                    what: format!("layout version at {key}"),
                    source,
                }
            })?;
        if found > i64::from(ETCD_SCHEMA_VERSION) {
            return Err(RegistryError::SchemaTooNew {
                path: self.shown.clone(),
                found,
                known: ETCD_SCHEMA_VERSION,
            });
        }
        if found < 1 {
            return Err(RegistryError::Unusable {
                path: self.shown.clone(),
                detail: format!("layout version {found} at {key} is invalid"),
            });
        }
        Ok(())
    }

    /// One write transaction: `compares` (after the fence's) guard `ops`;
    /// when they fail, `or_else` reads (after the fence key's read) tell why.
    /// Returns the response when it succeeded.
    fn write(
        &self,
        what: &str,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        or_else: Vec<TxnOp>,
    ) -> Result<Result<TxnResponse, (Refused, TxnResponse)>, RegistryError> {
        let mut all_compares = Vec::new();
        let mut else_ops = Vec::new();
        if let Some(fence) = &self.fence {
            all_compares.push(Compare::create_revision(
                fence.key.as_str(),
                CompareOp::Equal,
                fence.term,
            ));
            else_ops.push(TxnOp::get(fence.key.as_str(), None));
        }
        let fenced = self.fence.is_some();
        all_compares.extend(compares);
        else_ops.extend(or_else);
        let txn = Txn::new()
            .when(all_compares)
            .and_then(ops)
            .or_else(else_ops);
        let resp = self.call(what, |mut c| async move { c.txn(txn).await })?;
        if resp.succeeded() {
            return Ok(Ok(resp));
        }
        if let Some(fence) = &self.fence {
            let holds = first_get(&resp, 0).is_some_and(|kv| kv.create_revision() == fence.term);
            if !holds {
                return Ok(Err((Refused::NotLeader, resp)));
            }
        }
        let actual = first_get(&resp, usize::from(fenced)).map(|kv| kv.version() as u64);
        Ok(Err((Refused::Conflict(actual), resp)))
    }

    fn not_leader(&self, what: &str) -> RegistryError {
        let fence = self.fence.clone().unwrap_or(Fence {
            key: String::new(),
            term: 0,
        });
        RegistryError::NotLeader {
            path: self.shown.clone(),
            what: what.to_string(),
            leader_key: fence.key,
            term: fence.term,
        }
    }

    /// An unconditional put (but for the fence).
    fn put_plain(&self, what: &str, key: String, value: Vec<u8>) -> Result<(), RegistryError> {
        match self.write(what, vec![], vec![TxnOp::put(key, value, None)], vec![])? {
            Ok(_) => Ok(()),
            Err(_) => Err(self.not_leader(what)),
        }
    }

    /// A delete (but for the fence); whether the key existed.
    fn delete_plain(&self, what: &str, key: String) -> Result<bool, RegistryError> {
        match self.write(what, vec![], vec![TxnOp::delete(key, None)], vec![])? {
            Ok(resp) => Ok(resp.op_responses().iter().any(|r| match r {
                TxnOpResponse::Delete(d) => d.deleted() > 0,
                _ => false,
            })),
            Err(_) => Err(self.not_leader(what)),
        }
    }

    /// Every key under `prefix`, in key order, read at one revision.
    fn range(&self, what: &str, prefix: String) -> Result<Vec<KeyValue>, RegistryError> {
        let range_end = prefix_end(prefix.as_bytes());
        self.call(what, move |mut c| async move {
            let mut out = Vec::new();
            let mut start = prefix.into_bytes();
            let mut revision = 0;
            loop {
                let mut options = GetOptions::new()
                    .with_range(range_end.clone())
                    .with_sort(SortTarget::Key, SortOrder::Ascend)
                    .with_limit(PAGE);
                if revision > 0 {
                    options = options.with_revision(revision);
                }
                let mut resp = c.get(start.clone(), Some(options)).await?;
                if revision == 0 {
                    revision = resp.header().map_or(0, |h| h.revision());
                }
                let more = resp.more();
                let kvs = resp.take_kvs();
                if let Some(last) = kvs.last() {
                    // The next page starts just after the last key.
                    start = last.key().to_vec();
                    start.push(0);
                }
                let done = !more || kvs.is_empty();
                out.extend(kvs);
                if done {
                    return Ok(out);
                }
            }
        })
    }

    fn get_one(&self, what: &str, key: String) -> Result<Option<KeyValue>, RegistryError> {
        self.call(what, |mut c| async move {
            let mut resp = c.get(key, None).await?;
            Ok(resp.take_kvs().into_iter().next())
        })
    }

    fn encode<T: serde::Serialize>(&self, what: &str, value: &T) -> Result<Vec<u8>, RegistryError> {
        serde_json::to_vec(value).map_err(|source| RegistryError::Decode {
            path: self.shown.clone(),
            what: what.to_string(),
            source,
        })
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, kv: &KeyValue) -> Result<T, RegistryError> {
        serde_json::from_slice(kv.value()).map_err(|source| RegistryError::Decode {
            path: self.shown.clone(),
            what: format!("key {}", String::from_utf8_lossy(kv.key())),
            source,
        })
    }
}

/// The first key-value of the `index`th operation's response, if it was a
/// get that found something.
fn first_get(resp: &TxnResponse, index: usize) -> Option<KeyValue> {
    match resp.op_responses().into_iter().nth(index)? {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's
/// range end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): to the end of the key space.
    vec![0]
}

impl Registry for EtcdRegistry {
    fn info(&self) -> RegistryInfo {
        RegistryInfo {
            backend: "etcd".to_string(),
            path: self.shown.clone(),
            schema_version: ETCD_SCHEMA_VERSION,
        }
    }

    fn admit_agent(&mut self, agent: &AgentRecord) -> Result<(), RegistryError> {
        let what = format!("admit agent {}", agent.id);
        let value = self.encode(&what, agent)?;
        self.put_plain(&what, self.key("agents", &agent.id), value)
    }

    fn remove_agent(&mut self, agent_id: &str) -> Result<bool, RegistryError> {
        self.delete_plain(
            &format!("remove agent {agent_id}"),
            self.key("agents", agent_id),
        )
    }

    fn agents(&self) -> Result<Vec<AgentRecord>, RegistryError> {
        self.range("list the agents", self.key("agents", ""))?
            .iter()
            .map(|kv| self.decode(kv))
            .collect()
    }

    fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, RegistryError> {
        let what = format!("read agent {agent_id}");
        self.get_one(&what, self.key("agents", agent_id))?
            .map(|kv| self.decode(&kv))
            .transpose()
    }

    fn put_framework(&mut self, framework: &FrameworkRecord) -> Result<(), RegistryError> {
        let what = format!("put framework {}", framework.id);
        let value = self.encode(&what, framework)?;
        self.put_plain(&what, self.key("frameworks", &framework.id), value)
    }

    fn remove_framework(&mut self, framework_id: &str) -> Result<bool, RegistryError> {
        self.delete_plain(
            &format!("remove framework {framework_id}"),
            self.key("frameworks", framework_id),
        )
    }

    fn frameworks(&self) -> Result<Vec<FrameworkRecord>, RegistryError> {
        self.range("list the frameworks", self.key("frameworks", ""))?
            .iter()
            .map(|kv| self.decode(kv))
            .collect()
    }

    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, RegistryError> {
        Ok(self
            .get_one(&format!("get key {key:?}"), self.key("kv", key))?
            .map(|kv| (kv.value().to_vec(), kv.version() as u64)))
    }

    fn put(
        &mut self,
        key: &str,
        value: &[u8],
        expected_version: Option<u64>,
    ) -> Result<u64, RegistryError> {
        let what = format!("put key {key:?}");
        let full = self.key("kv", key);
        let conflict = |actual| RegistryError::Conflict {
            path: self.shown.clone(),
            key: key.to_string(),
            expected: expected_version,
            actual,
        };
        // etcd reports a missing key as version 0, so comparing with 0 would
        // create the key; no existing key has version 0, so expecting it is
        // always a conflict, as in every backend.
        if expected_version == Some(0) {
            let actual = self.get_one(&what, full)?.map(|kv| kv.version() as u64);
            return Err(conflict(actual));
        }
        let expected = expected_version.map_or(0, |v| v as i64);
        match self.write(
            &what,
            vec![Compare::version(full.as_str(), CompareOp::Equal, expected)],
            vec![TxnOp::put(full.as_str(), value, None)],
            vec![TxnOp::get(full.as_str(), None)],
        )? {
            // The comparison held, so the put made exactly the next version.
            Ok(_) => Ok(expected_version.map_or(1, |v| v + 1)),
            Err((Refused::NotLeader, _)) => Err(self.not_leader(&what)),
            Err((Refused::Conflict(actual), _)) => Err(conflict(actual)),
        }
    }

    fn delete(&mut self, key: &str) -> Result<bool, RegistryError> {
        self.delete_plain(&format!("delete key {key:?}"), self.key("kv", key))
    }

    /// From now on every write also requires `fence`'s leadership term; a
    /// write after the term ended fails with [`RegistryError::NotLeader`].
    fn set_fence(&mut self, fence: Option<Fence>) {
        self.fence = fence;
    }

    fn list_prefix(&self, prefix: &str) -> Result<Vec<KvEntry>, RegistryError> {
        let area = self.key("kv", "");
        self.range(
            &format!("list keys with prefix {prefix:?}"),
            format!("{area}{prefix}"),
        )?
        .into_iter()
        .map(|kv| {
            let key = String::from_utf8_lossy(&kv.key()[area.len()..]).into_owned();
            Ok(KvEntry {
                key,
                version: kv.version() as u64,
                value: kv.value().to_vec(),
            })
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let c = EtcdConfig::from_url("etcd://127.0.0.1:2379").unwrap();
        assert_eq!(c.endpoints, ["http://127.0.0.1:2379"]);
        assert_eq!(c.prefix, "/berth/");
        assert_eq!(c.display(), "etcd://127.0.0.1:2379/berth/");

        let c = EtcdConfig::from_url("etcd://a:1,b,[::1]:3,[fe80::1]/cluster-a").unwrap();
        assert_eq!(
            c.endpoints,
            [
                "http://a:1",
                "http://b:2379",
                "http://[::1]:3",
                "http://[fe80::1]:2379"
            ]
        );
        assert_eq!(c.prefix, "/cluster-a/");
        assert_eq!(
            EtcdConfig::from_url("etcd://h:1/x/y/").unwrap().prefix,
            "/x/y/"
        );
        assert_eq!(
            EtcdConfig::from_url("etcd://h:1/").unwrap().prefix,
            "/berth/"
        );

        for bad in [
            "http://h:1",
            "etcd://",
            "etcd://a:1,,b:2",
            "etcd://:1",
            "etcd://h:0",
            "etcd://h:99999",
            "etcd://h:x",
            "etcd://user@h:1",
        ] {
            let err = EtcdConfig::from_url(bad).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid etcd URL {bad:?}")),
                "{err}"
            );
        }
    }

    #[test]
    fn config_from_endpoints() {
        let c = EtcdConfig::new(["127.0.0.1:1", "http://h:2"]).with_prefix("p");
        assert_eq!(c.endpoints, ["http://127.0.0.1:1", "http://h:2"]);
        assert_eq!(c.prefix, "/p/");
        assert_eq!(c.display(), "etcd://127.0.0.1:1,h:2/p/");
    }

    #[test]
    fn prefix_range_end() {
        assert_eq!(prefix_end(b"/berth/kv/"), b"/berth/kv0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn unreachable_etcd_is_a_typed_error() {
        // A port nothing listens on: connection refused, reported as an etcd
        // error (or a timeout), never a hang.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = EtcdConfig::new([format!("127.0.0.1:{port}")])
            .with_request_timeout(Duration::from_millis(1500));
        let started = std::time::Instant::now();
        let err = EtcdRegistry::open(&config).unwrap_err();
        assert!(
            matches!(
                err,
                RegistryError::Etcd { .. } | RegistryError::Timeout { .. }
            ),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            err.to_string()
                .starts_with(&format!("registry etcd://127.0.0.1:{port}/berth/: cannot ")),
            "{err}"
        );
    }
}
