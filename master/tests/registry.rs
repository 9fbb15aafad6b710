//! The registry contract on the default backend, SQLite (the etcd backend
//! runs the same functions in etcd.rs).

mod registry_contract;

use master::registry::{Registry, SqliteRegistry};
use registry_contract::Store;

struct SqliteStore {
    dir: tempfile::TempDir,
}

impl Store for SqliteStore {
    fn open(&self) -> Box<dyn Registry> {
        Box::new(SqliteRegistry::open(&self.dir.path().join("registry.db")).unwrap())
    }
}

fn fresh() -> Option<SqliteStore> {
    Some(SqliteStore {
        dir: tempfile::tempdir().unwrap(),
    })
}

registry_contract_tests!(fresh());
