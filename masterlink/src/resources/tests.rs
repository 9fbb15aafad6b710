use serde_json::json;

use super::*;
use crate::value::Scalar;

fn res(text: &str) -> Resources {
    parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn sc(v: f64) -> Scalar {
    Scalar::from_f64(v).unwrap()
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

/// The offer resources of MESOS-API.md §1 (pre-refinement format).
fn offer_example() -> serde_json::Value {
    json!([
      {"name":"cpus","type":"SCALAR","scalar":{"value":2.0},"role":"*","allocation_info":{"role":"dev"}},
      {"name":"mem","type":"SCALAR","scalar":{"value":1024.0},"role":"*","allocation_info":{"role":"dev"}},
      {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]},"role":"*","allocation_info":{"role":"dev"}},
      {"name":"disk","type":"SCALAR","scalar":{"value":512.0},"role":"dev",
       "reservation":{"principal":"ops"},
       "disk":{"persistence":{"id":"vol-1","principal":"ops"},"volume":{"container_path":"data","mode":"RW"}},
       "allocation_info":{"role":"dev"}}
    ])
}

#[test]
fn parse_doc_example_with_static_roles() {
    let r = res("cpus(ops):2;cpus:6;mem(ops):1024;mem:7000;disk:40000;ports:[31000-32000]");
    assert_eq!(r.scalar("cpus"), sc(8.0));
    assert_eq!(r.scalar("mem"), sc(8024.0));
    assert_eq!(r.scalar("disk"), sc(40000.0));
    assert_eq!(r.ranges("ports"), Ranges::single(31000, 32000).unwrap());
    assert_eq!(r.reserved("ops").scalar("cpus"), sc(2.0));
    assert_eq!(r.reserved("ops").scalar("mem"), sc(1024.0));
    assert_eq!(r.unreserved().scalar("cpus"), sc(6.0));
    assert_eq!(r.unreserved().scalar("mem"), sc(7000.0));
    let ops = r.reserved("ops");
    assert!(ops.iter().all(|x| x.reservations
        == vec![ResourceReservation {
            reservation_type: ReservationType::Static,
            role: "ops".into(),
            principal: None,
            labels: None
        }]));
    assert_eq!(
        r.to_string(),
        "cpus(ops):2;cpus:6;mem(ops):1024;mem:7000;disk:40000;ports:[31000-32000]"
    );
    // Text round trip.
    assert_eq!(res(&r.to_string()), r);
    // JSON round trips, every format.
    for f in [
        ResourceFormat::PostRefinement,
        ResourceFormat::PreRefinement,
        ResourceFormat::Endpoint,
    ] {
        assert_eq!(
            Resources::from_json(&r.to_json(f).unwrap()).unwrap(),
            r,
            "{f:?}"
        );
    }
    // serde goes through the post-refinement format.
    let back: Resources = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn parse_doc_example_with_ads() {
    let r = res("cpus:4;mem:2048;cpus(ads):8;mem(ads):4096;ports:[31000-32000]");
    assert_eq!(r.scalar("cpus"), sc(12.0));
    assert_eq!(r.reserved("ads").scalar("mem"), sc(4096.0));
    assert_eq!(r.len(), 5);
    assert_eq!(
        r.to_json(ResourceFormat::PreRefinement).unwrap(),
        json!([
            {"name":"cpus","type":"SCALAR","scalar":{"value":4.0},"role":"*"},
            {"name":"mem","type":"SCALAR","scalar":{"value":2048.0},"role":"*"},
            {"name":"cpus","type":"SCALAR","scalar":{"value":8.0},"role":"ads"},
            {"name":"mem","type":"SCALAR","scalar":{"value":4096.0},"role":"ads"},
            {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]},"role":"*"}
        ])
    );
    assert_eq!(
        r.reserved("ads")
            .to_json(ResourceFormat::PostRefinement)
            .unwrap(),
        json!([
            {"name":"cpus","type":"SCALAR","scalar":{"value":8.0},"reservations":[{"type":"STATIC","role":"ads"}]},
            {"name":"mem","type":"SCALAR","scalar":{"value":4096.0},"reservations":[{"type":"STATIC","role":"ads"}]}
        ])
    );
}

#[test]
fn parse_forms_and_whitespace() {
    let r =
        res(" cpus ( * ) : 1.5 ; gpus:{a, b ,c};  ports:[ 21000-24000 , 30000-34000 ];;disk:0;");
    assert_eq!(r.scalar("cpus"), sc(1.5));
    assert!(r.unreserved().scalar("cpus") == sc(1.5));
    assert_eq!(r.set("gpus").to_string(), "{a, b, c}");
    assert_eq!(r.ranges("ports").to_string(), "[21000-24000, 30000-34000]");
    // disk:0 is empty and dropped.
    assert!(!r.names().contains("disk"));
    // Overlapping ranges coalesce, duplicate entries add up.
    let r = res("ports:[1-10,5-20];ports:[21-30];cpus:1;cpus:0.5");
    assert_eq!(r.ranges("ports").to_string(), "[1-30]");
    assert_eq!(r.scalar("cpus"), sc(1.5));
    assert_eq!(r.len(), 2);
    // --default_role applies only where no (role) is given.
    let r = parse_with_default_role("cpus:1;mem(*):2;disk(x):3", Some("dflt")).unwrap();
    assert_eq!(r.reserved("dflt").scalar("cpus"), sc(1.0));
    assert_eq!(r.unreserved().scalar("mem"), sc(2.0));
    assert_eq!(r.reserved("x").scalar("disk"), sc(3.0));
}

#[test]
fn parse_errors_name_token_and_rule() {
    assert_eq!(
        err("cpus:-1"),
        "invalid resource \"cpus:-1\": scalar values must be non-negative"
    );
    assert_eq!(
        err("mem:1;ports:[5-1]"),
        "invalid resource \"ports:[5-1]\": range begin 5 is after end 1"
    );
    assert_eq!(
        err("cpus(a//b):1"),
        "invalid role \"a//b\" in \"cpus(a//b):1\": role names must not contain \"//\" (path components are separated by one '/')"
    );
    assert_eq!(
        err("mem:lots"),
        "unknown value syntax in \"mem:lots\": expected a number (scalar, e.g. 1.5), [begin-end,...] (ranges) or {item,...} (set)"
    );
    assert_eq!(
        err("cpus:nan"),
        "invalid resource \"cpus:nan\": scalar values must be finite numbers"
    );
    assert_eq!(
        err("cpus:inf"),
        "invalid resource \"cpus:inf\": scalar values must be finite numbers"
    );
    assert_eq!(
        err("cpus:-inf"),
        "invalid resource \"cpus:-inf\": scalar values must be finite numbers"
    );
    assert_eq!(
        err("cpus:1e400"),
        "invalid resource \"cpus:1e400\": scalar values must be finite numbers"
    );
    assert_eq!(
        err(":1"),
        "invalid resource \":1\": resource names must not be empty"
    );
    assert_eq!(
        err("(ops):1"),
        "invalid resource \"(ops):1\": resource names must not be empty"
    );
    assert_eq!(
        err("cpus"),
        "invalid resource \"cpus\": expected name[(role)]:value"
    );
    assert_eq!(
        err("cpus:"),
        "invalid resource \"cpus:\": values must not be empty"
    );
    assert_eq!(
        err("cpus(ops:1"),
        "invalid resource \"cpus(ops:1\": expected name(role) with the role in parentheses right before ':'"
    );
    assert_eq!(
        err("my cpus:1"),
        "invalid resource \"my cpus:1\": resource names must not contain whitespace or any of ()[]{}:;,"
    );
    assert_eq!(
        err("ports:[1-2"),
        "invalid resource \"ports:[1-2\": missing closing ']': ranges are written [a-b,...] and sets {x,y,...}"
    );
    assert_eq!(
        err("ports:[1-2,x]"),
        "invalid resource \"ports:[1-2,x]\": invalid range \"x\": ranges are written begin-end with unsigned integers, e.g. [31000-32000]"
    );
    assert_eq!(
        err("ports:[-1-5]"),
        "invalid resource \"ports:[-1-5]\": invalid range \"-1-5\": ranges are written begin-end with unsigned integers, e.g. [31000-32000]"
    );
    assert_eq!(
        err("gpus:{a,,b}"),
        "invalid resource \"gpus:{a,,b}\": set items must not be empty: sets are written {x,y,...}"
    );
    assert_eq!(
        err("cpus(ops):1;cpus:[1-2]"),
        "resource \"cpus\" is given as both SCALAR and RANGES: a name has a single type"
    );
    assert_eq!(
        err("cpus(-x):1"),
        "invalid role \"-x\" in \"cpus(-x):1\": role path component \"-x\" must not start with '-'"
    );
    assert_eq!(
        err("cpus(a b):1"),
        "invalid role \"a b\" in \"cpus(a b):1\": role names must not contain whitespace or control characters"
    );
    assert_eq!(
        err("cpus(eng/..):1"),
        "invalid role \"eng/..\" in \"cpus(eng/..):1\": role path components must not be \"..\" (\".\", \"..\" and \"*\" are reserved)"
    );
    assert_eq!(
        err("cpus(/eng):1"),
        "invalid role \"/eng\" in \"cpus(/eng):1\": role names must not start with '/'"
    );
    assert_eq!(
        err("cpus():1"),
        "invalid role \"\" in \"cpus():1\": role names must not be empty"
    );
    assert!(matches!(
        parse("cpus:-1").unwrap_err(),
        ResourcesError::InvalidResource {
            problem: ResourceProblem::Negative,
            ..
        }
    ));
}

#[test]
fn scalar_arithmetic_is_fixed_point() {
    let a = res("cpus:0.1");
    let b = res("cpus:0.2");
    let sum = &a + &b;
    assert_eq!(sum.scalar("cpus"), sc(0.3));
    assert_eq!(sum, res("cpus:0.3"));
    assert_eq!(sum.scalar("cpus").value(), 0.3);
    assert_eq!(res("cpus:0.0004").len(), 0, "rounds to 0 and is dropped");
    assert_eq!(res("mem:1.23456").scalar("mem"), sc(1.235));
    let diff = &res("cpus:1") - &res("cpus:0.7");
    assert_eq!(diff.scalar("cpus"), sc(0.3));
}

#[test]
fn ranges_and_sets_arithmetic() {
    let total = res("ports:[31000-32000];gpus:{g0,g1,g2}");
    let used = res("ports:[31100-31200,31500-31500];gpus:{g1}");
    let left = total.checked_sub(&used).unwrap();
    assert_eq!(
        left.ranges("ports").to_string(),
        "[31000-31099, 31201-31499, 31501-32000]"
    );
    assert_eq!(left.set("gpus").to_string(), "{g0, g2}");
    assert_eq!(&left + &used, total);
    assert!(total.contains(&used));
    assert!(!left.contains(&used));
    // Removing everything leaves nothing.
    assert!(total.checked_sub(&total).unwrap().is_empty());
}

#[test]
fn subtraction_checked_and_saturating() {
    let have = res("cpus(ops):2;cpus:1;ports:[1-10]");
    let e = have.checked_sub(&res("cpus(ops):3")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot subtract \"cpus(ops):3\": only \"cpus(ops):2\" is available"
    );
    let e = have.checked_sub(&res("mem:1")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot subtract \"mem:1\": only \"\" is available"
    );
    assert!(have.checked_sub(&res("ports:[5-12]")).is_err());
    // Saturating `-`: missing parts ignored, nothing negative.
    let s = &have - &res("cpus(ops):3;mem:1;ports:[5-12]");
    assert_eq!(s, res("cpus:1;ports:[1-4]"));
    // Reservations matter: unreserved cpus do not pay for ops' cpus.
    assert_eq!(&have - &res("cpus:5"), res("cpus(ops):2;ports:[1-10]"));
}

#[test]
fn contains_requires_same_reservation_and_disk() {
    let have = res("cpus(ops):2;cpus:6;mem:100");
    assert!(have.contains(&res("cpus(ops):2;cpus:1")));
    assert!(!have.contains(&res("cpus(ops):3")));
    assert!(!have.contains(&res("cpus(dev):1")));
    assert!(!have.contains(&res("mem(ops):1")));
    assert!(have.contains(&Resources::new()));
    let dynamic: Resources = Resource::scalar("cpus", 1.0)
        .unwrap()
        .reserved(ResourceReservation::dynamic_for("ops", None))
        .into();
    assert!(!have.contains(&dynamic), "static and dynamic stacks differ");
    let disk = res("disk(ops):100");
    let mut vol = Resource::scalar("disk", 10.0)
        .unwrap()
        .reserved_static("ops");
    vol.disk = Some(DiskInfo {
        persistence: Some(Persistence {
            id: "v1".into(),
            principal: None,
        }),
        volume: Some(DiskVolume {
            container_path: "data".into(),
            mode: VolumeMode::Rw,
        }),
        source: None,
    });
    assert!(!disk.contains(&vol.clone().into()), "disk info must match");
    // Persistent volumes are whole: never merged, never split.
    let two: Resources = [vol.clone(), vol.clone()].into_iter().collect();
    assert_eq!(two.len(), 2);
    assert_eq!(two.scalar("disk"), sc(20.0));
    let mut smaller = vol.clone();
    smaller.value = ResourceValue::Scalar(sc(5.0));
    assert!(!two.contains(&smaller.into()));
    let one = two.checked_sub(&vol.clone().into()).unwrap();
    assert_eq!(one, Resources::from(vol.clone()));
    assert!(!one.contains(&two));
    // Equality ignores order.
    assert_eq!(res("mem:1;cpus:2"), res("cpus:2;mem:1"));
    assert_ne!(res("mem:1;cpus:2"), res("cpus:2;mem:2"));
}

#[test]
fn json_formats_match_offer_example() {
    let input = offer_example();
    let r = Resources::from_json(&input).unwrap();
    assert_eq!(r.len(), 4);
    let disk = r.iter().find(|x| x.name == "disk").unwrap();
    assert_eq!(
        disk.reservations,
        vec![ResourceReservation::dynamic_for("dev", Some("ops".into()))]
    );
    assert!(disk.is_persistent_volume());
    assert_eq!(disk.to_string(), "disk(dev)[vol-1:data]:512");
    assert_eq!(r.unreserved().scalar("cpus"), sc(2.0));
    // PRE-refinement output is the literal input again.
    assert_eq!(r.to_json(ResourceFormat::PreRefinement).unwrap(), input);
    // POST-refinement: only `reservations`, nothing for unreserved.
    let post = json!([
      {"name":"cpus","type":"SCALAR","scalar":{"value":2.0},"allocation_info":{"role":"dev"}},
      {"name":"mem","type":"SCALAR","scalar":{"value":1024.0},"allocation_info":{"role":"dev"}},
      {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]},"allocation_info":{"role":"dev"}},
      {"name":"disk","type":"SCALAR","scalar":{"value":512.0},
       "reservations":[{"type":"DYNAMIC","role":"dev","principal":"ops"}],
       "disk":{"persistence":{"id":"vol-1","principal":"ops"},"volume":{"container_path":"data","mode":"RW"}},
       "allocation_info":{"role":"dev"}}
    ]);
    assert_eq!(r.to_json(ResourceFormat::PostRefinement).unwrap(), post);
    assert_eq!(serde_json::to_value(&r).unwrap(), post);
    // ENDPOINT: both.
    let endpoint = json!([
      {"name":"cpus","type":"SCALAR","scalar":{"value":2.0},"role":"*","allocation_info":{"role":"dev"}},
      {"name":"mem","type":"SCALAR","scalar":{"value":1024.0},"role":"*","allocation_info":{"role":"dev"}},
      {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]},"role":"*","allocation_info":{"role":"dev"}},
      {"name":"disk","type":"SCALAR","scalar":{"value":512.0},"role":"dev",
       "reservation":{"principal":"ops"},
       "reservations":[{"type":"DYNAMIC","role":"dev","principal":"ops"}],
       "disk":{"persistence":{"id":"vol-1","principal":"ops"},"volume":{"container_path":"data","mode":"RW"}},
       "allocation_info":{"role":"dev"}}
    ]);
    assert_eq!(r.to_json(ResourceFormat::Endpoint).unwrap(), endpoint);
    // Every format reads back to the same resources.
    assert_eq!(Resources::from_json(&post).unwrap(), r);
    assert_eq!(Resources::from_json(&endpoint).unwrap(), r);
    assert_eq!(r.unallocate().allocate("dev"), r);
}

#[test]
fn json_upgrade_rules() {
    let r = Resources::from_json(&json!([
        {"name":"cpus","type":"SCALAR","scalar":{"value":1}},
        {"name":"mem","type":"SCALAR","scalar":{"value":"64.5"},"role":"ops"},
        {"name":"disk","type":"SCALAR","scalar":{"value":10},"role":"ops","reservation":{}},
        {"name":"gpus","type":"SCALAR","scalar":{"value":1},"role":"*","unknown_key":true,"revocable":{}}
    ]))
    .unwrap();
    assert_eq!(r.unreserved().scalar("cpus"), sc(1.0));
    let mem = r.iter().find(|x| x.name == "mem").unwrap();
    assert_eq!(
        mem.reservations,
        vec![ResourceReservation::static_for("ops")]
    );
    assert_eq!(mem.value, ResourceValue::Scalar(sc(64.5)));
    let disk = r.iter().find(|x| x.name == "disk").unwrap();
    assert_eq!(
        disk.reservations,
        vec![ResourceReservation::dynamic_for("ops", None)]
    );
    // A dynamic reservation without principal still emits `reservation:{}`.
    assert_eq!(
        disk.to_json(ResourceFormat::PreRefinement).unwrap(),
        json!({"name":"disk","type":"SCALAR","scalar":{"value":10.0},"role":"ops","reservation":{}})
    );
    let gpus = r.iter().find(|x| x.name == "gpus").unwrap();
    assert!(gpus.revocable && gpus.is_unreserved());
    assert_eq!(gpus.to_string(), "gpus{REV}:1");
    assert_eq!(
        gpus.to_json(ResourceFormat::PostRefinement).unwrap(),
        json!({"name":"gpus","type":"SCALAR","scalar":{"value":1.0},"revocable":{}})
    );

    let bad = |v: serde_json::Value| Resources::from_json(&v).unwrap_err().to_string();
    assert_eq!(
        bad(json!([{"name":"cpus","type":"SCALAR","scalar":{"value":-1}}])),
        "invalid resource \"cpus\": scalar values must be non-negative"
    );
    assert_eq!(
        bad(
            json!([{"name":"cpus","type":"SCALAR","scalar":{"value":1},"reservation":{"principal":"p"}}])
        ),
        "invalid resource \"cpus\": \"reservation\" requires a \"role\" other than \"*\""
    );
    assert_eq!(
        bad(
            json!([{"name":"cpus","type":"SCALAR","scalar":{"value":1},"reservations":[{"type":"STATIC","role":"*"}]}])
        ),
        "invalid role \"*\" in \"cpus\": resources cannot be reserved for the default role \"*\""
    );
    assert_eq!(
        bad(json!([{"name":"cpus","type":"SCALAR","scalar":{"value":1},"role":"a//b"}])),
        "invalid role \"a//b\" in \"cpus\": role names must not contain \"//\" (path components are separated by one '/')"
    );
    assert_eq!(
        bad(json!([{"name":"cpus","type":"RANGES","scalar":{"value":1}}])),
        "invalid resource \"cpus\": type RANGES requires its value field (scalar, ranges or set)"
    );
    assert_eq!(
        bad(json!([{"name":"os","type":"TEXT","text":{"value":"x"}}])),
        "invalid resource \"os\": resources must be SCALAR, RANGES or SET, not TEXT"
    );
    assert_eq!(
        bad(json!([{"name":"","type":"SCALAR","scalar":{"value":1}}])),
        "invalid resource \"\": resource names must not be empty"
    );
    assert!(bad(json!([{"name":"cpus"}]))
        .starts_with("invalid resources json: resource 0: missing field `type`"));
    assert!(
        bad(json!([{"name":"p","type":"RANGES","ranges":{"range":[{"begin":5,"end":1}]}}]))
            .contains("range begin 5 is after end 1")
    );
    assert_eq!(
        bad(json!({"name":"cpus"})),
        "invalid resources json: expected an array of Resource"
    );
    assert_eq!(
        bad(json!([{"name":"cpus","type":"SCALAR","scalar":{"value":1},
            "reservations":[{"type":"STATIC","role":"eng"},{"type":"DYNAMIC","role":"ops"}]}])),
        "invalid resource \"cpus\": reservation for \"ops\" cannot refine one for \"eng\": refinements must be for a descendant role"
    );
}

#[test]
fn refined_reservations() {
    let refined = Resource::scalar("cpus", 4.0)
        .unwrap()
        .reserved_static("eng")
        .reserved(ResourceReservation::dynamic_for(
            "eng/backend",
            Some("fw".into()),
        ));
    let r: Resources = [refined.clone(), Resource::scalar("mem", 64.0).unwrap()]
        .into_iter()
        .collect();
    assert_eq!(refined.owner_role(), Some("eng/backend"));
    assert_eq!(
        r.to_json(ResourceFormat::PreRefinement).unwrap_err().to_string(),
        "cannot convert \"cpus(eng/backend):4\" to the pre-refinement format: refined reservations cannot be downgraded"
    );
    let endpoint = r.to_json(ResourceFormat::Endpoint).unwrap();
    assert_eq!(
        endpoint,
        json!([
            {"name":"cpus","type":"SCALAR","scalar":{"value":4.0},
             "reservations":[{"type":"STATIC","role":"eng"},{"type":"DYNAMIC","role":"eng/backend","principal":"fw"}]},
            {"name":"mem","type":"SCALAR","scalar":{"value":64.0},"role":"*"}
        ])
    );
    assert_eq!(Resources::from_json(&endpoint).unwrap(), r);
    assert_eq!(r.reserved("eng/backend").scalar("cpus"), sc(4.0));
    assert!(r.reserved("eng").is_empty());
    assert_eq!(r.flatten(), res("cpus:4;mem:64"));
}

#[test]
fn allocatable_to_follows_the_hierarchy() {
    let r = res("cpus:1;cpus(eng):2;cpus(eng/backend):4;cpus(eng/frontend):8;cpus(ops):16;cpus(engineering):32");
    assert_eq!(r.allocatable_to("eng/backend").scalar("cpus"), sc(7.0));
    assert_eq!(r.allocatable_to("eng/backend/db").scalar("cpus"), sc(7.0));
    assert_eq!(r.allocatable_to("eng").scalar("cpus"), sc(3.0));
    assert_eq!(r.allocatable_to("ops").scalar("cpus"), sc(17.0));
    assert_eq!(r.allocatable_to("dev").scalar("cpus"), sc(1.0));
    assert_eq!(r.allocatable_to("*").scalar("cpus"), sc(1.0));
    let by_role = r.reservations_by_role();
    assert_eq!(by_role.len(), 5);
    assert_eq!(by_role["eng/frontend"].scalar("cpus"), sc(8.0));
    assert_eq!(r.flatten().len(), 1);
    assert_eq!(r.flatten().scalar("cpus"), sc(63.0));
}

#[test]
fn shared_resources_are_counted_copies() {
    let mut s = Resource::scalar("disk", 10.0)
        .unwrap()
        .reserved_static("ops");
    s.shared = true;
    let two: Resources = [s.clone(), s.clone()].into_iter().collect();
    assert_eq!(two.len(), 2);
    assert_eq!(s.to_string(), "disk(ops)<SHARED>:10");
    let one = &two - &Resources::from(s.clone());
    assert_eq!(one.len(), 1);
    assert!(two.contains(&one));
    assert!(!one.contains(&two));
}

#[test]
fn flag_text_json_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().join("res.txt");
    std::fs::write(&text_file, "cpus(ops):2;mem:512\n").unwrap();
    let json_file = dir.path().join("res.json");
    let json_text = r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":2},"role":"ops"},
                        {"name":"mem","type":"SCALAR","scalar":{"value":512},"role":"*"}]"#;
    std::fs::write(&json_file, json_text).unwrap();
    let want = res("cpus(ops):2;mem:512");
    assert_eq!(parse_flag("cpus(ops):2;mem:512").unwrap(), want);
    assert_eq!(parse_flag(json_text).unwrap(), want);
    assert_eq!(
        parse_flag(&format!("file://{}", text_file.display())).unwrap(),
        want
    );
    assert_eq!(
        parse_flag(&format!("file://{}", json_file.display())).unwrap(),
        want
    );
    let missing = dir.path().join("nope");
    let e = parse_flag(&format!("file://{}", missing.display())).unwrap_err();
    assert!(matches!(e, ResourcesError::File { .. }));
    assert!(e.to_string().starts_with(&format!(
        "cannot read resources file \"{}\": ",
        missing.display()
    )));
    assert!(parse_flag("[not json")
        .unwrap_err()
        .to_string()
        .starts_with("invalid resources json: "));
    assert_eq!(
        parse_flag(r#"[{"name":"c","type":"SCALAR","scalar":{"value":1}},{"name":"c","type":"SET","set":{"item":["a"]}}]"#)
            .unwrap_err()
            .to_string(),
        "resource \"c\" is given as both SCALAR and SET: a name has a single type"
    );
}

#[test]
fn detection_rules() {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    assert_eq!(mem_mb_for_total(16 * GIB), 15 * 1024);
    assert_eq!(mem_mb_for_total(2 * GIB), 1024);
    assert_eq!(mem_mb_for_total(2 * GIB - 1), 1023);
    assert_eq!(mem_mb_for_total(GIB), 512);
    assert_eq!(disk_mb_for_total(100 * GIB), 95 * 1024);
    assert_eq!(disk_mb_for_total(10 * GIB), 5 * 1024);
    assert_eq!(disk_mb_for_total(8 * GIB + 3 * MIB + 5), 4 * 1024 + 1);
    assert_eq!(
        parse_meminfo_total("MemTotal:       16314188 kB\nMemFree: 1 kB\n"),
        Some(16314188 * 1024)
    );
    assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);

    let d = detect_from(HostInfo {
        cpus: Some(2),
        mem_total_bytes: Some(4 * GIB),
        disk_total_bytes: Some(20 * GIB),
    });
    assert_eq!(d, res("cpus:2;mem:3072;disk:15360;ports:[31000-32000]"));
    let fallback = detect_from(HostInfo::default());
    assert_eq!(
        fallback,
        res("cpus:1;mem:1024;disk:10240;ports:[31000-32000]")
    );
}

#[test]
fn detect_this_host() {
    let dir = tempfile::tempdir().unwrap();
    let d = detect(dir.path());
    assert!(d.scalar("cpus") >= sc(1.0), "{d}");
    assert!(d.scalar("mem") > Scalar::ZERO, "{d}");
    assert!(d.scalar("disk") > Scalar::ZERO, "{d}");
    assert_eq!(d.ranges("ports"), Ranges::single(31000, 32000).unwrap());
    assert_eq!(d.unreserved(), d);
    let host = host_info(dir.path());
    assert!(
        host.cpus.is_some() && host.mem_total_bytes.is_some() && host.disk_total_bytes.is_some()
    );
}

#[test]
fn explicit_resources_override_detected_by_name() {
    let detected = res("cpus:8;mem:15000;disk:90000;ports:[31000-32000]");
    let explicit = res("cpus(ops):2;mem:512;gpus:1");
    let merged = merge_detected(&explicit, &detected);
    assert_eq!(
        merged,
        res("cpus(ops):2;mem:512;gpus:1;disk:90000;ports:[31000-32000]")
    );
    let dir = tempfile::tempdir().unwrap();
    let total = agent_resources(Some("ports:[1000-2000]"), dir.path()).unwrap();
    assert_eq!(total.ranges("ports"), Ranges::single(1000, 2000).unwrap());
    assert!(total.scalar("cpus") >= sc(1.0));
    assert!(agent_resources(Some("cpus:-1"), dir.path()).is_err());
}
