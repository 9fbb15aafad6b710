//! The contract of `master::registry::Registry`, run against every backend
//! (`registry.rs`: SQLite; `etcd.rs`: a real etcd). Each function gets a
//! fresh, empty store; `Store::open` opens another handle on that same store
//! (what a restarted master, or a second master, would get).
#![allow(dead_code)]

use std::sync::Barrier;

use master::registry::{AgentRecord, FrameworkRecord, KvEntry, Registry, RegistryError};
use serde_json::json;

pub trait Store: Sync {
    fn open(&self) -> Box<dyn Registry>;
}

/// `registry_contract_tests!(fresh)`: one `#[test]` per contract function,
/// each on the store `fresh` makes (an `Option<impl Store>`: `None` skips).
#[macro_export]
macro_rules! registry_contract_tests {
    ($fresh:expr) => {
        $crate::registry_contract_tests!(@each $fresh;
            agents_admit_list_remove,
            frameworks_put_update_remove,
            survives_reopen,
            cas_put,
            list_prefix_ordering,
            two_handles_share_one_store,
            concurrent_writers_serialise,
        );
    };
    (@each $fresh:expr; $($name:ident),* $(,)?) => {
        mod contract {
            use super::*;
            $(
                #[test]
                fn $name() {
                    let Some(store) = $fresh else { return };
                    registry_contract::$name(&store);
                }
            )*
        }
    };
}

pub fn agent(id: &str, port: u16) -> AgentRecord {
    AgentRecord {
        id: id.to_string(),
        hostname: format!("{id}.example"),
        port,
        resources: json!([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 4.0}}]),
        attributes: json!([{"name": "rack", "type": "TEXT", "text": {"value": "r1"}}]),
        registered_at: 1_700_000_000.5,
    }
}

pub fn framework(id: &str, failover: f64) -> FrameworkRecord {
    FrameworkRecord {
        id: id.to_string(),
        info: json!({"user": "root", "name": id, "id": {"value": id}, "roles": ["web"]}),
        failover_timeout_secs: failover,
        registered_at: 1_700_000_001.25,
        unregistered_at: None,
    }
}

pub fn agents_admit_list_remove(store: &dyn Store) {
    let mut reg = store.open();
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

pub fn frameworks_put_update_remove(store: &dyn Store) {
    let mut reg = store.open();
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

pub fn survives_reopen(store: &dyn Store) {
    let info = {
        let mut reg = store.open();
        reg.admit_agent(&agent("a", 5051)).unwrap();
        reg.put_framework(&framework("f", 10.0)).unwrap();
        assert_eq!(reg.put("k", b"v1", None).unwrap(), 1);
        assert_eq!(reg.put("k", b"v2", Some(1)).unwrap(), 2);
        reg.info()
    };
    let reg = store.open();
    assert_eq!(reg.agents().unwrap(), vec![agent("a", 5051)]);
    assert_eq!(reg.frameworks().unwrap(), vec![framework("f", 10.0)]);
    assert_eq!(reg.get("k").unwrap(), Some((b"v2".to_vec(), 2)));
    assert_eq!(reg.info(), info);
}

pub fn cas_put(store: &dyn Store) {
    let mut reg = store.open();
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
    // Expecting a version of a missing key conflicts too (0 included: no
    // key ever has version 0).
    for expected in [Some(1), Some(0)] {
        assert!(matches!(
            reg.put("missing", b"x", expected),
            Err(RegistryError::Conflict { actual: None, .. })
        ));
    }
    assert_eq!(reg.get("missing").unwrap(), None);

    assert_eq!(reg.put("k", b"two", Some(1)).unwrap(), 2);
    assert_eq!(reg.get("k").unwrap(), Some((b"two".to_vec(), 2)));

    assert!(reg.delete("k").unwrap());
    assert!(!reg.delete("k").unwrap());
    assert_eq!(reg.get("k").unwrap(), None);
    assert_eq!(reg.put("k", b"again", None).unwrap(), 1);
    // Values are bytes, not text.
    assert_eq!(reg.put("bin", &[0, 0xff, 0x80], None).unwrap(), 1);
    assert_eq!(reg.get("bin").unwrap(), Some((vec![0, 0xff, 0x80], 1)));
}

pub fn list_prefix_ordering(store: &dyn Store) {
    let mut reg = store.open();
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

pub fn two_handles_share_one_store(store: &dyn Store) {
    let mut one = store.open();
    let mut two = store.open();
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
    let reopened = store.open();
    assert_eq!(reopened.agents().unwrap().len(), 2);
    assert_eq!(reopened.get("k").unwrap(), Some((b"2".to_vec(), 2)));
}

pub fn concurrent_writers_serialise(store: &dyn Store) {
    // Two handles in two threads race on one counter; CAS keeps it exact.
    store.open().put("counter", b"0", None).unwrap();
    const PER_THREAD: u64 = 20;
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        for t in 0..2 {
            let barrier = &barrier;
            s.spawn(move || {
                let mut reg = store.open();
                barrier.wait();
                for i in 0..PER_THREAD {
                    reg.admit_agent(&agent(&format!("t{t}-{i}"), 1)).unwrap();
                    loop {
                        let (value, version) = reg.get("counter").unwrap().unwrap();
                        let n: u64 = String::from_utf8(value).unwrap().parse().unwrap();
                        match reg.put("counter", (n + 1).to_string().as_bytes(), Some(version)) {
                            Ok(_) => break,
                            Err(RegistryError::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
    });
    let reg = store.open();
    assert_eq!(
        reg.get("counter").unwrap(),
        Some((
            (2 * PER_THREAD).to_string().into_bytes(),
            2 * PER_THREAD + 1
        ))
    );
    assert_eq!(reg.agents().unwrap().len(), 2 * PER_THREAD as usize);
}
