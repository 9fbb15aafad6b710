//! The master's durable state: the registry.
//!
//! Everything the master must remember across a restart (admitted agents,
//! frameworks' failover information, and, through the generic versioned
//! key/value area, whatever later parts add: reservations, persistent volumes,
//! the maintenance schedule) goes through the [`Registry`] trait. Every write
//! is applied atomically and is durable before the call returns, so the master
//! answers a request only after what it promised is on disk.
//!
//! [`SqliteRegistry`] (`sqlite.rs`) is the default backend: one embedded
//! SQLite database file in the master's work dir, no server needed.
//! [`EtcdRegistry`] (`etcd.rs`) keeps the same state in etcd v3 so that
//! several masters share it: the one elected leader (see
//! [`crate::election`]) writes, and a successor reads it back after a
//! failover. Both honour the same contract (`master/tests/registry_contract`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod etcd;
mod sqlite;

pub(crate) use etcd::BackgroundRuntime;
pub use etcd::{
    EtcdConfig, EtcdRegistry, Fence, InvalidEtcdUrl, DEFAULT_PORT, DEFAULT_PREFIX,
    DEFAULT_REQUEST_TIMEOUT, ETCD_SCHEMA_VERSION,
};
pub use sqlite::{SqliteRegistry, BUSY_TIMEOUT, SCHEMA_VERSION};

/// An agent the master has admitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: String,
    pub hostname: String,
    pub port: u16,
    /// The agent's total resources in Mesos JSON; opaque to the registry.
    pub resources: serde_json::Value,
    /// The agent's attributes in Mesos JSON; opaque to the registry.
    pub attributes: serde_json::Value,
    /// Seconds since the Unix epoch.
    pub registered_at: f64,
}

/// A framework the master knows, kept so that it can fail over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRecord {
    pub id: String,
    /// The framework's FrameworkInfo in Mesos JSON; opaque to the registry.
    pub info: serde_json::Value,
    pub failover_timeout_secs: f64,
    /// Seconds since the Unix epoch.
    pub registered_at: f64,
    /// When the framework disconnected or was torn down, if it was.
    pub unregistered_at: Option<f64>,
}

/// One entry of the generic key/value area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    pub key: String,
    pub value: Vec<u8>,
    /// Starts at 1 when the key is created and grows by one with each put.
    pub version: u64,
}

/// What backs a registry, for logs and the operator API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryInfo {
    /// "sqlite" or "etcd".
    pub backend: String,
    /// Where the state lives: the database file for sqlite; for etcd
    /// `etcd://HOST:PORT[,HOST:PORT...]` followed by the key prefix.
    pub path: String,
    pub schema_version: u32,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {path}: cannot {what}: {source}")]
    Io {
        path: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("registry {path}: not a valid database file (corrupted, or not a berth registry) while trying to {what}: {source}")]
    Corrupt {
        path: String,
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "registry {path}: the database has tables but no berth meta table: not a berth registry"
    )]
    NotARegistry { path: String },
    #[error("registry {path}: schema version {found} is newer than this berth ({known})")]
    SchemaTooNew {
        path: String,
        found: i64,
        known: u32,
    },
    #[error("registry {path}: key {key:?}: version conflict: expected {}, found {}", show_version(.expected), show_version(.actual))]
    Conflict {
        path: String,
        key: String,
        expected: Option<u64>,
        actual: Option<u64>,
    },
    #[error("registry {path}: {what}: stored json is invalid: {source}")]
    Decode {
        path: String,
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("registry {path}: {detail}")]
    Unusable { path: String, detail: String },
    #[error("registry {path}: cannot {what}: {source}")]
    Sqlite {
        path: String,
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    /// etcd answered with an error, or could not be reached.
    #[error("registry {path}: cannot {what}: {source}")]
    Etcd {
        path: String,
        what: String,
        #[source]
        source: etcd_client::Error,
    },
    /// etcd did not answer in time (down, partitioned, or without quorum).
    #[error("registry {path}: cannot {what}: etcd did not answer within {after:?}")]
    Timeout {
        path: String,
        what: String,
        after: Duration,
    },
    /// A write was refused because the registry is fenced by a leadership
    /// term that has ended: another master leads now and this one must not
    /// write (see [`Fence`]).
    #[error("registry {path}: cannot {what}: not the leader any more (leader key {leader_key:?} is no longer the one created at revision {term})")]
    NotLeader {
        path: String,
        what: String,
        leader_key: String,
        term: i64,
    },
}

fn show_version(v: &Option<u64>) -> String {
    match v {
        Some(v) => format!("version {v}"),
        None => "no key".to_string(),
    }
}

/// The master's durable state store. Object-safe: the master holds a
/// `Box<dyn Registry>`.
///
/// Every write is atomic and durable before it returns `Ok`.
pub trait Registry: Send {
    /// Backend, location and schema version.
    fn info(&self) -> RegistryInfo;

    /// Records an admitted agent; admitting the same id again replaces the
    /// record (an idempotent retry or a re-registration).
    fn admit_agent(&mut self, agent: &AgentRecord) -> Result<(), RegistryError>;
    /// Forgets an agent; `Ok(false)` if it was not admitted.
    fn remove_agent(&mut self, agent_id: &str) -> Result<bool, RegistryError>;
    /// All admitted agents, ordered by id.
    fn agents(&self) -> Result<Vec<AgentRecord>, RegistryError>;
    /// One admitted agent (registration reads only its own record, so that
    /// a failover with many agents stays linear).
    fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, RegistryError> {
        Ok(self.agents()?.into_iter().find(|a| a.id == agent_id))
    }

    /// Inserts or updates a framework.
    fn put_framework(&mut self, framework: &FrameworkRecord) -> Result<(), RegistryError>;
    /// Forgets a framework; `Ok(false)` if it was not known.
    fn remove_framework(&mut self, framework_id: &str) -> Result<bool, RegistryError>;
    /// All known frameworks, ordered by id.
    fn frameworks(&self) -> Result<Vec<FrameworkRecord>, RegistryError>;

    /// The value and version of `key`, if it exists.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, RegistryError>;
    /// Compare-and-swap: writes `value` only if the key's current version is
    /// `expected_version` (`None`: the key must not exist yet) and returns
    /// the new version (1 for a new key). Otherwise nothing changes and the
    /// error is [`RegistryError::Conflict`] with the version found.
    ///
    /// A deleted key starts again at version 1 when it is created again.
    fn put(
        &mut self,
        key: &str,
        value: &[u8],
        expected_version: Option<u64>,
    ) -> Result<u64, RegistryError>;
    /// Deletes `key`; `Ok(false)` if it did not exist.
    fn delete(&mut self, key: &str) -> Result<bool, RegistryError>;
    /// All entries whose key starts with `prefix`, ordered by key (bytewise,
    /// UTF-8).
    fn list_prefix(&self, prefix: &str) -> Result<Vec<KvEntry>, RegistryError>;

    /// Fences every later write by a leadership term (`None`: no fence);
    /// see [`Fence`]. Only a backend that several masters share can be
    /// fenced (etcd); for the others, which one master owns alone, this does
    /// nothing.
    fn set_fence(&mut self, fence: Option<Fence>) {
        let _ = fence;
    }
}

/// The registry `berth master --registry` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryLocation {
    /// The default for a single master: `<work dir>/registry.db`.
    Sqlite(PathBuf),
    /// `etcd://HOST[:PORT][,HOST[:PORT]...][/PREFIX]`: several masters.
    Etcd(EtcdConfig),
}

impl RegistryLocation {
    /// `None` -> the SQLite file in `work_dir`; `etcd://...` -> etcd.
    pub fn parse(flag: Option<&str>, work_dir: &Path) -> Result<RegistryLocation, RegistryError> {
        match flag {
            None => Ok(RegistryLocation::Sqlite(work_dir.join("registry.db"))),
            Some(url) if url.starts_with("etcd://") => EtcdConfig::from_url(url)
                .map(RegistryLocation::Etcd)
                .map_err(|e| RegistryError::Unusable {
                    path: url.to_string(),
                    detail: e.to_string(),
                }),
            Some(other) => Err(RegistryError::Unusable {
                path: other.to_string(),
                detail: "unknown registry: expected etcd://HOST:PORT[,HOST:PORT...][/PREFIX] \
                         (without --registry the master keeps registry.db in its work dir)"
                    .to_string(),
            }),
        }
    }

    /// Opens it (connecting to etcd for an etcd location).
    pub fn open(&self) -> Result<Box<dyn Registry>, RegistryError> {
        Ok(match self {
            RegistryLocation::Sqlite(path) => Box::new(SqliteRegistry::open(path)?),
            RegistryLocation::Etcd(config) => Box::new(EtcdRegistry::open(config)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_from_the_flag() {
        let work = Path::new("/var/lib/berth");
        assert_eq!(
            RegistryLocation::parse(None, work).unwrap(),
            RegistryLocation::Sqlite(work.join("registry.db"))
        );
        assert_eq!(
            RegistryLocation::parse(Some("etcd://10.0.0.1:2379,10.0.0.2:2379/prod"), work).unwrap(),
            RegistryLocation::Etcd(
                EtcdConfig::new(["10.0.0.1:2379", "10.0.0.2:2379"]).with_prefix("/prod/")
            )
        );
        let err = RegistryLocation::parse(Some("etcd://:1"), work).unwrap_err();
        assert!(err.to_string().contains("invalid etcd URL"), "{err}");
        let err = RegistryLocation::parse(Some("zk://h:2181"), work).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("registry zk://h:2181: unknown registry: expected etcd://"),
            "{err}"
        );
    }
}
