//! The master's durable state: the registry.
//!
//! Everything the master must remember across a restart (admitted agents,
//! frameworks' failover information, and, through the generic versioned
//! key/value area, whatever later parts add: reservations, persistent volumes,
//! the maintenance schedule) goes through the [`Registry`] trait. Every write
//! is applied atomically and is durable before the call returns, so the master
//! answers a request only after what it promised is on disk.
//!
//! [`SqliteRegistry`] is the default backend: one embedded SQLite database file
//! in the master's work dir, no server needed. An etcd backend for several
//! masters will implement the same trait.

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{
    params, Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior,
};
use serde::{Deserialize, Serialize};

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
    /// "sqlite" (later also "etcd").
    pub backend: String,
    /// Where the state lives: the database file for sqlite.
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
}

/// How long an operation waits for another connection (another process)
/// holding the database lock before it fails.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Migrations in order: `MIGRATIONS[i]` takes the schema from version `i` to
/// `i + 1`. Append only; never edit a released one.
const MIGRATIONS: &[&str] = &[
    // 1: agents, frameworks, the generic key/value area.
    "CREATE TABLE agents (
         id TEXT PRIMARY KEY NOT NULL,
         hostname TEXT NOT NULL,
         port INTEGER NOT NULL,
         resources TEXT NOT NULL,
         attributes TEXT NOT NULL,
         registered_at REAL NOT NULL
     );
     CREATE TABLE frameworks (
         id TEXT PRIMARY KEY NOT NULL,
         info TEXT NOT NULL,
         failover_timeout_secs REAL NOT NULL,
         registered_at REAL NOT NULL,
         unregistered_at REAL
     );
     CREATE TABLE kv (
         key TEXT PRIMARY KEY NOT NULL,
         value BLOB NOT NULL,
         version INTEGER NOT NULL
     );",
];

/// The schema version this berth writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The default registry: an embedded SQLite database file.
///
/// Several instances (in one or several processes) may open the same file;
/// SQLite's locking serialises their writes and each sees the others'
/// committed writes.
#[derive(Debug)]
pub struct SqliteRegistry {
    conn: Connection,
    path: PathBuf,
}

impl SqliteRegistry {
    /// Opens (creating if needed, mode 0600) the registry database at `path`
    /// and brings its schema up to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let shown = path.display().to_string();
        let io = |what: &str| {
            let shown = shown.clone();
            let what = what.to_string();
            move |source| RegistryError::Io {
                path: shown,
                what,
                source,
            }
        };
        // Create it ourselves so that it is never readable by others, even
        // for a moment; SQLite gives its -wal and -shm files the same mode.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io("open the database file"))?;
        let mode = file
            .metadata()
            .map_err(io("stat the database file"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            file.set_permissions(Permissions::from_mode(0o600))
                .map_err(io("make the database file mode 0600"))?;
        }
        drop(file);

        let conn = Connection::open(path).map_err(sql_err(&shown, "open the database"))?;
        let mut registry = SqliteRegistry {
            conn,
            path: path.to_path_buf(),
        };
        registry.configure()?;
        registry.migrate()?;
        Ok(registry)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    fn err(&self, what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> RegistryError {
        sql_err(&self.shown(), what)
    }

    /// Runs a parameterless query and maps every row; errors name `what`.
    fn query_all<T>(
        &self,
        what: &str,
        sql: &str,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, RegistryError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.err(what))?;
        let rows = stmt
            .query_map([], row)
            .map_err(self.err(what))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err(what))?;
        Ok(rows)
    }

    fn configure(&mut self) -> Result<(), RegistryError> {
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(self.err("set the busy timeout"))?;
        // The first read of the file: garbage shows up here as "not a database".
        let mode: String = self
            .conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(self.err("switch to WAL journal mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(RegistryError::Unusable {
                path: self.shown(),
                detail: format!("cannot switch to WAL journal mode: it stayed {mode}"),
            });
        }
        // Every commit is fsynced before it returns.
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(self.err("set synchronous=FULL"))?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<(), RegistryError> {
        let shown = self.shown();
        let tx = self.begin("start the schema migration")?;
        let has_meta: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
                [],
                |row| row.get(0),
            )
            .map_err(sql_err(&shown, "read the schema"))?;
        if !has_meta {
            let objects: i64 = tx
                .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
                .map_err(sql_err(&shown, "read the schema"))?;
            if objects > 0 {
                return Err(RegistryError::NotARegistry { path: shown });
            }
            tx.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value NOT NULL);
                 INSERT INTO meta (key, value) VALUES ('schema_version', 0);",
            )
            .map_err(sql_err(&shown, "create the meta table"))?;
        }
        let found: i64 = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .map_err(sql_err(&shown, "read the schema version"))?;
        if found > i64::from(SCHEMA_VERSION) {
            return Err(RegistryError::SchemaTooNew {
                path: shown,
                found,
                known: SCHEMA_VERSION,
            });
        }
        if found < 0 {
            return Err(RegistryError::Unusable {
                path: shown,
                detail: format!("schema version {found} is invalid"),
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let to = index + 1;
            tx.execute_batch(sql).map_err(sql_err(
                &shown,
                format!("migrate the schema to version {to}"),
            ))?;
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                [to as i64],
            )
            .map_err(sql_err(
                &shown,
                format!("migrate the schema to version {to}"),
            ))?;
        }
        tx.commit()
            .map_err(sql_err(&shown, "commit the schema migration"))
    }

    /// A write transaction that takes the write lock at once (waiting up to
    /// [`BUSY_TIMEOUT`]), so that read-then-write never deadlocks with
    /// another writer.
    fn begin(&mut self, what: &str) -> Result<Transaction<'_>, RegistryError> {
        let shown = self.shown();
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(&shown, what))
    }

    /// Runs one statement in its own immediate transaction; returns the
    /// number of rows changed.
    fn write(
        &mut self,
        what: &str,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<usize, RegistryError> {
        let shown = self.shown();
        let tx = self.begin(what)?;
        let n = tx.execute(sql, args).map_err(sql_err(&shown, what))?;
        tx.commit().map_err(sql_err(&shown, what))?;
        Ok(n)
    }

    fn decode(&self, what: String, text: &str) -> Result<serde_json::Value, RegistryError> {
        serde_json::from_str(text).map_err(|source| RegistryError::Decode {
            path: self.shown(),
            what,
            source,
        })
    }
}

fn sql_err(path: &str, what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> RegistryError {
    let path = path.to_string();
    let what = what.into();
    move |source| {
        let corrupt = matches!(
            source.sqlite_error_code(),
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
        );
        if corrupt {
            RegistryError::Corrupt { path, what, source }
        } else {
            RegistryError::Sqlite { path, what, source }
        }
    }
}

impl Registry for SqliteRegistry {
    fn info(&self) -> RegistryInfo {
        RegistryInfo {
            backend: "sqlite".to_string(),
            path: self.shown(),
            schema_version: SCHEMA_VERSION,
        }
    }

    fn admit_agent(&mut self, agent: &AgentRecord) -> Result<(), RegistryError> {
        self.write(
            &format!("admit agent {}", agent.id),
            "INSERT INTO agents (id, hostname, port, resources, attributes, registered_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname,
                 port = excluded.port, resources = excluded.resources,
                 attributes = excluded.attributes, registered_at = excluded.registered_at",
            params![
                agent.id,
                agent.hostname,
                agent.port,
                agent.resources.to_string(),
                agent.attributes.to_string(),
                agent.registered_at
            ],
        )?;
        Ok(())
    }

    fn remove_agent(&mut self, agent_id: &str) -> Result<bool, RegistryError> {
        let n = self.write(
            &format!("remove agent {agent_id}"),
            "DELETE FROM agents WHERE id = ?1",
            params![agent_id],
        )?;
        Ok(n > 0)
    }

    fn agents(&self) -> Result<Vec<AgentRecord>, RegistryError> {
        let rows = self.query_all(
            "list the agents",
            "SELECT id, hostname, port, resources, attributes, registered_at
             FROM agents ORDER BY id",
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, u16>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, f64>(5)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(
                |(id, hostname, port, resources, attributes, registered_at)| {
                    Ok(AgentRecord {
                        resources: self.decode(format!("agent {id}: resources"), &resources)?,
                        attributes: self.decode(format!("agent {id}: attributes"), &attributes)?,
                        id,
                        hostname,
                        port,
                        registered_at,
                    })
                },
            )
            .collect()
    }

    fn put_framework(&mut self, framework: &FrameworkRecord) -> Result<(), RegistryError> {
        self.write(
            &format!("put framework {}", framework.id),
            "INSERT INTO frameworks (id, info, failover_timeout_secs, registered_at, unregistered_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET info = excluded.info,
                 failover_timeout_secs = excluded.failover_timeout_secs,
                 registered_at = excluded.registered_at,
                 unregistered_at = excluded.unregistered_at",
            params![
                framework.id,
                framework.info.to_string(),
                framework.failover_timeout_secs,
                framework.registered_at,
                framework.unregistered_at
            ],
        )?;
        Ok(())
    }

    fn remove_framework(&mut self, framework_id: &str) -> Result<bool, RegistryError> {
        let n = self.write(
            &format!("remove framework {framework_id}"),
            "DELETE FROM frameworks WHERE id = ?1",
            params![framework_id],
        )?;
        Ok(n > 0)
    }

    fn frameworks(&self) -> Result<Vec<FrameworkRecord>, RegistryError> {
        let rows = self.query_all(
            "list the frameworks",
            "SELECT id, info, failover_timeout_secs, registered_at, unregistered_at
             FROM frameworks ORDER BY id",
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, f64>(2)?,
                    row.get::<_, f64>(3)?,
                    row.get::<_, Option<f64>>(4)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(
                |(id, info, failover_timeout_secs, registered_at, unregistered_at)| {
                    Ok(FrameworkRecord {
                        info: self.decode(format!("framework {id}: info"), &info)?,
                        id,
                        failover_timeout_secs,
                        registered_at,
                        unregistered_at,
                    })
                },
            )
            .collect()
    }

    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, RegistryError> {
        self.conn
            .prepare_cached("SELECT value, version FROM kv WHERE key = ?1")
            .and_then(|mut stmt| {
                stmt.query_row([key], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(self.err(format!("get key {key:?}")))
    }

    fn put(
        &mut self,
        key: &str,
        value: &[u8],
        expected_version: Option<u64>,
    ) -> Result<u64, RegistryError> {
        let shown = self.shown();
        let what = format!("put key {key:?}");
        let tx = self.begin(&what)?;
        let actual: Option<u64> = tx
            .query_row("SELECT version FROM kv WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(sql_err(&shown, what.as_str()))?;
        if actual != expected_version {
            // Dropping the transaction rolls it back: nothing changes.
            return Err(RegistryError::Conflict {
                path: shown,
                key: key.to_string(),
                expected: expected_version,
                actual,
            });
        }
        let version = actual.map_or(1, |v| v + 1);
        tx.execute(
            "INSERT INTO kv (key, value, version) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version",
            params![key, value, version],
        )
        .map_err(sql_err(&shown, what.as_str()))?;
        tx.commit().map_err(sql_err(&shown, what.as_str()))?;
        Ok(version)
    }

    fn delete(&mut self, key: &str) -> Result<bool, RegistryError> {
        let n = self.write(
            &format!("delete key {key:?}"),
            "DELETE FROM kv WHERE key = ?1",
            params![key],
        )?;
        Ok(n > 0)
    }

    fn list_prefix(&self, prefix: &str) -> Result<Vec<KvEntry>, RegistryError> {
        // Keys sharing a prefix are contiguous in key order (BINARY collation
        // compares UTF-8 bytes), so scan from the prefix and stop at the first
        // key that does not start with it.
        let mut entries = Vec::new();
        self.conn
            .prepare_cached("SELECT key, value, version FROM kv WHERE key >= ?1 ORDER BY key")
            .and_then(|mut stmt| {
                let mut rows = stmt.query([prefix])?;
                while let Some(row) = rows.next()? {
                    let key: String = row.get(0)?;
                    if !key.starts_with(prefix) {
                        break;
                    }
                    entries.push(KvEntry {
                        key,
                        value: row.get(1)?,
                        version: row.get(2)?,
                    });
                }
                Ok(())
            })
            .map_err(self.err(format!("list keys with prefix {prefix:?}")))?;
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::{Arc, Barrier};

    fn agent(id: &str, port: u16) -> AgentRecord {
        AgentRecord {
            id: id.to_string(),
            hostname: format!("{id}.example"),
            port,
            resources: json!([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 4.0}}]),
            attributes: json!([{"name": "rack", "type": "TEXT", "text": {"value": "r1"}}]),
            registered_at: 1_700_000_000.5,
        }
    }

    fn framework(id: &str, failover: f64) -> FrameworkRecord {
        FrameworkRecord {
            id: id.to_string(),
            info: json!({"user": "root", "name": id, "id": {"value": id}, "roles": ["web"]}),
            failover_timeout_secs: failover,
            registered_at: 1_700_000_001.25,
            unregistered_at: None,
        }
    }

    fn db(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("registry.db")
    }

    #[test]
    fn agents_admit_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = SqliteRegistry::open(&db(&dir)).unwrap();
        assert!(reg.agents().unwrap().is_empty());
        reg.admit_agent(&agent("b", 5051)).unwrap();
        reg.admit_agent(&agent("a", 5052)).unwrap();
        assert_eq!(
            reg.agents().unwrap(),
            vec![agent("a", 5052), agent("b", 5051)]
        );
        // Admitting again replaces the record.
        let mut moved = agent("a", 6000);
        moved.hostname = "elsewhere".to_string();
        reg.admit_agent(&moved).unwrap();
        assert_eq!(reg.agents().unwrap(), vec![moved, agent("b", 5051)]);
        assert!(reg.remove_agent("a").unwrap());
        assert!(!reg.remove_agent("a").unwrap());
        assert_eq!(reg.agents().unwrap(), vec![agent("b", 5051)]);
    }

    #[test]
    fn frameworks_put_update_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = SqliteRegistry::open(&db(&dir)).unwrap();
        reg.put_framework(&framework("f1", 60.0)).unwrap();
        reg.put_framework(&framework("f2", 0.0)).unwrap();
        assert_eq!(
            reg.frameworks().unwrap(),
            vec![framework("f1", 60.0), framework("f2", 0.0)]
        );
        let mut gone = framework("f1", 120.0);
        gone.unregistered_at = Some(1_700_000_100.0);
        reg.put_framework(&gone).unwrap();
        assert_eq!(
            reg.frameworks().unwrap(),
            vec![gone.clone(), framework("f2", 0.0)]
        );
        assert!(reg.remove_framework("f2").unwrap());
        assert!(!reg.remove_framework("f2").unwrap());
        assert_eq!(reg.frameworks().unwrap(), vec![gone]);
    }

    #[test]
    fn registry_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        {
            let mut reg = SqliteRegistry::open(&path).unwrap();
            reg.admit_agent(&agent("a", 5051)).unwrap();
            reg.put_framework(&framework("f", 10.0)).unwrap();
            assert_eq!(reg.put("k", b"v1", None).unwrap(), 1);
            assert_eq!(reg.put("k", b"v2", Some(1)).unwrap(), 2);
        }
        let reg = SqliteRegistry::open(&path).unwrap();
        assert_eq!(reg.agents().unwrap(), vec![agent("a", 5051)]);
        assert_eq!(reg.frameworks().unwrap(), vec![framework("f", 10.0)]);
        assert_eq!(reg.get("k").unwrap(), Some((b"v2".to_vec(), 2)));
        assert_eq!(
            reg.info(),
            RegistryInfo {
                backend: "sqlite".to_string(),
                path: path.display().to_string(),
                schema_version: SCHEMA_VERSION,
            }
        );
    }

    #[test]
    fn registry_cas_put() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = SqliteRegistry::open(&db(&dir)).unwrap();
        assert_eq!(reg.get("k").unwrap(), None);
        assert_eq!(reg.put("k", b"one", None).unwrap(), 1);
        assert_eq!(reg.get("k").unwrap(), Some((b"one".to_vec(), 1)));

        // Creating again, or a stale version, conflicts and changes nothing.
        for stale in [None, Some(0), Some(2)] {
            let err = reg.put("k", b"bad", stale).unwrap_err();
            match &err {
                RegistryError::Conflict {
                    key,
                    expected,
                    actual,
                    ..
                } => {
                    assert_eq!(key, "k");
                    assert_eq!(*expected, stale);
                    assert_eq!(*actual, Some(1));
                }
                other => panic!("expected a conflict, got {other:?}"),
            }
            assert!(
                err.to_string().contains("key \"k\": version conflict"),
                "{err}"
            );
            assert_eq!(reg.get("k").unwrap(), Some((b"one".to_vec(), 1)));
        }
        // Expecting a version of a missing key conflicts too.
        assert!(matches!(
            reg.put("missing", b"x", Some(1)),
            Err(RegistryError::Conflict { actual: None, .. })
        ));
        assert_eq!(reg.get("missing").unwrap(), None);

        assert_eq!(reg.put("k", b"two", Some(1)).unwrap(), 2);
        assert_eq!(reg.get("k").unwrap(), Some((b"two".to_vec(), 2)));

        assert!(reg.delete("k").unwrap());
        assert!(!reg.delete("k").unwrap());
        assert_eq!(reg.get("k").unwrap(), None);
        assert_eq!(reg.put("k", b"again", None).unwrap(), 1);
    }

    #[test]
    fn registry_list_prefix_ordering() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = SqliteRegistry::open(&db(&dir)).unwrap();
        for key in [
            "volumes/b",
            "volumes/a",
            "volumes/a/1",
            "volumes",
            "volumes0",
            "reservations/x",
            "volumes/é",
            "volumes/Z",
            "w",
        ] {
            reg.put(key, key.as_bytes(), None).unwrap();
        }
        reg.put("volumes/a", b"updated", Some(1)).unwrap();
        let listed = reg.list_prefix("volumes/").unwrap();
        let keys: Vec<&str> = listed.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "volumes/Z",
                "volumes/a",
                "volumes/a/1",
                "volumes/b",
                "volumes/é"
            ]
        );
        assert_eq!(
            listed[1],
            KvEntry {
                key: "volumes/a".to_string(),
                value: b"updated".to_vec(),
                version: 2
            }
        );
        assert_eq!(reg.list_prefix("").unwrap().len(), 9);
        assert!(reg.list_prefix("nothing/").unwrap().is_empty());
        let keys: Vec<String> = reg
            .list_prefix("volumes")
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys.len(), 7);
        assert_eq!(keys[0], "volumes");
        assert_eq!(keys[6], "volumes0");
    }

    #[test]
    fn registry_two_instances_share_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        let mut one = SqliteRegistry::open(&path).unwrap();
        let mut two = SqliteRegistry::open(&path).unwrap();
        one.admit_agent(&agent("a", 1)).unwrap();
        two.admit_agent(&agent("b", 2)).unwrap();
        assert_eq!(one.agents().unwrap().len(), 2);
        assert_eq!(two.agents().unwrap().len(), 2);
        assert_eq!(one.put("k", b"1", None).unwrap(), 1);
        assert_eq!(two.put("k", b"2", Some(1)).unwrap(), 2);
        // `one` has not seen version 2 through its own writes: its stale CAS fails.
        assert!(matches!(
            one.put("k", b"x", Some(1)),
            Err(RegistryError::Conflict {
                actual: Some(2),
                ..
            })
        ));
        assert_eq!(one.get("k").unwrap(), Some((b"2".to_vec(), 2)));
        two.put_framework(&framework("f", 1.0)).unwrap();
        assert!(one.remove_framework("f").unwrap());
        assert!(two.frameworks().unwrap().is_empty());
        drop(one);
        drop(two);
        let reopened = SqliteRegistry::open(&path).unwrap();
        assert_eq!(reopened.agents().unwrap().len(), 2);
        assert_eq!(reopened.get("k").unwrap(), Some((b"2".to_vec(), 2)));
    }

    #[test]
    fn registry_concurrent_writers_serialise() {
        // Two instances on one file in two threads contend for the write lock;
        // busy_timeout makes them wait, and CAS keeps the counter exact.
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        SqliteRegistry::open(&path)
            .unwrap()
            .put("counter", b"0", None)
            .unwrap();
        const PER_THREAD: u64 = 20;
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let path = path.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let mut reg: Box<dyn Registry> = Box::new(SqliteRegistry::open(&path).unwrap());
                    barrier.wait();
                    for i in 0..PER_THREAD {
                        reg.admit_agent(&agent(&format!("t{t}-{i}"), 1)).unwrap();
                        loop {
                            let (value, version) = reg.get("counter").unwrap().unwrap();
                            let n: u64 = String::from_utf8(value).unwrap().parse().unwrap();
                            match reg.put("counter", (n + 1).to_string().as_bytes(), Some(version))
                            {
                                Ok(_) => break,
                                Err(RegistryError::Conflict { .. }) => continue,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let reg = SqliteRegistry::open(&path).unwrap();
        assert_eq!(
            reg.get("counter").unwrap(),
            Some((
                (2 * PER_THREAD).to_string().into_bytes(),
                2 * PER_THREAD + 1
            ))
        );
        assert_eq!(reg.agents().unwrap().len(), 2 * PER_THREAD as usize);
    }

    #[test]
    fn registry_corrupted_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        std::fs::write(&path, b"this is not a database at all ".repeat(200)).unwrap();
        let err = SqliteRegistry::open(&path).unwrap_err();
        assert!(matches!(err, RegistryError::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "registry {}: not a valid database file",
                path.display()
            )),
            "{msg}"
        );

        // A real registry whose header was overwritten.
        let path = dir.path().join("damaged.db");
        {
            let mut reg = SqliteRegistry::open(&path).unwrap();
            reg.admit_agent(&agent("a", 1)).unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..64].fill(0xAB);
        std::fs::write(&path, bytes).unwrap();
        let err = SqliteRegistry::open(&path).unwrap_err();
        assert!(matches!(err, RegistryError::Corrupt { .. }), "{err:?}");
    }

    #[test]
    fn registry_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        drop(SqliteRegistry::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE meta SET value = 7 WHERE key = 'schema_version'", [])
            .unwrap();
        let err = SqliteRegistry::open(&path).unwrap_err();
        assert!(
            matches!(err, RegistryError::SchemaTooNew { found: 7, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "registry {}: schema version 7 is newer than this berth ({SCHEMA_VERSION})",
                path.display()
            )
        );
    }

    #[test]
    fn registry_refuses_a_foreign_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE something (x);")
            .unwrap();
        let err = SqliteRegistry::open(&path).unwrap_err();
        assert!(matches!(err, RegistryError::NotARegistry { .. }), "{err:?}");
    }

    #[test]
    fn registry_file_is_private_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let mut reg = SqliteRegistry::open(&path).unwrap();
        reg.put("k", b"v", None).unwrap();
        for file in [path.clone(), dir.path().join("registry.db-wal")] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
        let mode: String = reg
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = reg
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    #[test]
    fn registry_missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/registry.db");
        let err = SqliteRegistry::open(&path).unwrap_err();
        assert!(matches!(err, RegistryError::Io { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("no/such/dir/registry.db: cannot open the database file"),
            "{err}"
        );
    }
}
