//! The default registry backend: one embedded SQLite database file.

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{
    params, Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior,
};

use super::{AgentRecord, FrameworkRecord, KvEntry, Registry, RegistryError, RegistryInfo};

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
    //! What only SQLite has (files, modes, schema migrations). The contract
    //! every backend honours runs in master/tests/registry.rs.
    use super::*;
    use serde_json::json;

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
