use super::*;

fn res(text: &str) -> Resources {
    masterlink::resources::parse(text).unwrap()
}

fn roles(rs: &[&str]) -> Vec<String> {
    rs.iter().map(|r| r.to_string()).collect()
}

fn allocator() -> Allocator {
    Allocator::new(AllocatorConfig::default()).unwrap()
}

fn cpus(r: &Resources) -> f64 {
    r.scalar("cpus").value()
}

/// Offers as (framework, agent, role) triples.
fn who(offers: &[Offer]) -> Vec<(&str, &str, &str)> {
    offers
        .iter()
        .map(|o| (o.framework.as_str(), o.agent.as_str(), o.role.as_str()))
        .collect()
}

#[test]
fn single_framework_gets_the_whole_agent() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("f1", &roles(&["dev"])).unwrap();
    let total = res("cpus:4;mem:1024;disk:100;ports:[31000-32000]");
    a.add_agent("a1", total.clone(), &[]).unwrap();
    let offers = a.allocate(t0);
    assert_eq!(who(&offers), [("f1", "a1", "dev")]);
    assert_eq!(offers[0].resources, total.allocate("dev"));
    assert!(offers[0].resources.iter().all(|r| r
        .allocation_info
        .as_ref()
        .and_then(|i| i.role.as_deref())
        == Some("dev")));
    assert_eq!(a.available("a1"), Some(Resources::new()));
    assert_eq!(a.allocated("f1"), total.allocate("dev"));
    assert_eq!(a.shares(), vec![("dev".to_string(), 1.0)]);
    // Nothing left: the next cycle offers nothing.
    assert!(a.allocate(t0).is_empty());
}

#[test]
fn two_frameworks_in_one_role_get_one_agent_each() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("f1", &roles(&["dev"])).unwrap();
    a.add_framework("f2", &roles(&["dev"])).unwrap();
    a.add_agent("a1", res("cpus:4;mem:1024"), &[]).unwrap();
    a.add_agent("a2", res("cpus:4;mem:1024"), &[]).unwrap();
    let offers = a.allocate(t0);
    assert_eq!(who(&offers), [("f1", "a1", "dev"), ("f2", "a2", "dev")]);
    assert_eq!(cpus(&a.allocated("f1")), 4.0);
    assert_eq!(cpus(&a.allocated("f2")), 4.0);
}

#[test]
fn weights_one_and_three_converge_to_one_to_three() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.set_weight("light", 1.0).unwrap();
    a.set_weight("heavy", 3.0).unwrap();
    a.add_framework("fl", &roles(&["light"])).unwrap();
    a.add_framework("fh", &roles(&["heavy"])).unwrap();
    for i in 0..400 {
        a.add_agent(&format!("a{i:03}"), res("cpus:1;mem:256"), &[])
            .unwrap();
    }
    let offers = a.allocate(t0);
    assert_eq!(offers.len(), 400);
    let light = cpus(&a.allocated("fl"));
    let heavy = cpus(&a.allocated("fh"));
    assert_eq!(light + heavy, 400.0);
    assert!((light - 100.0).abs() <= 1.0, "light got {light}");
    assert!((heavy - 300.0).abs() <= 1.0, "heavy got {heavy}");
    // Weighted shares end up equal (within one agent).
    let shares = a.shares();
    assert_eq!(shares.len(), 2);
    assert!(
        (shares[0].1 - shares[1].1).abs() <= 1.0 / 400.0,
        "{shares:?}"
    );
}

#[test]
fn weights_given_in_config_apply() {
    let mut config = AllocatorConfig::default();
    config.weights.insert("heavy".into(), 2.0);
    let mut a = Allocator::new(config).unwrap();
    a.add_framework("fl", &roles(&["light"])).unwrap();
    a.add_framework("fh", &roles(&["heavy"])).unwrap();
    for i in 0..30 {
        a.add_agent(&format!("a{i:02}"), res("cpus:1;mem:256"), &[])
            .unwrap();
    }
    a.allocate(Instant::now());
    assert_eq!(cpus(&a.allocated("fl")), 10.0);
    assert_eq!(cpus(&a.allocated("fh")), 20.0);
}

#[test]
fn static_reservation_goes_only_to_its_role_subtree() {
    let t0 = Instant::now();
    for (fw_role, gets_reserved) in [("ops", true), ("ops/child", true), ("dev", false)] {
        let mut a = allocator();
        a.add_framework("f", &roles(&[fw_role])).unwrap();
        a.add_agent("a1", res("cpus(ops):1;cpus:2;mem:512"), &[])
            .unwrap();
        let offers = a.allocate(t0);
        assert_eq!(offers.len(), 1, "{fw_role}");
        let o = &offers[0];
        assert_eq!(o.role, fw_role);
        let reserved = o.resources.iter().any(|r| r.owner_role() == Some("ops"));
        assert_eq!(reserved, gets_reserved, "{fw_role}");
        assert_eq!(cpus(&o.resources), if gets_reserved { 3.0 } else { 2.0 });
        if !gets_reserved {
            // The reservation stays available; nobody else may have it.
            assert_eq!(a.available("a1"), Some(res("cpus(ops):1")));
            assert!(a.allocate(t0).is_empty());
        }
    }
}

#[test]
fn reserved_and_unreserved_with_two_roles() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("fops", &roles(&["ops"])).unwrap();
    a.add_framework("fdev", &roles(&["dev"])).unwrap();
    // Two unreserved agents: one each. A third with only an ops reservation.
    a.add_agent("a1", res("cpus:2;mem:512"), &[]).unwrap();
    a.add_agent("a2", res("cpus:2;mem:512"), &[]).unwrap();
    a.add_agent("a3", res("cpus(ops):1;mem(ops):128"), &[])
        .unwrap();
    let offers = a.allocate(t0);
    // dev < ops by name at equal shares, so dev takes a1, ops a2 then a3.
    assert_eq!(
        who(&offers),
        [
            ("fdev", "a1", "dev"),
            ("fops", "a2", "ops"),
            ("fops", "a3", "ops")
        ]
    );
    assert!(offers[2]
        .resources
        .iter()
        .all(|r| r.owner_role() == Some("ops")));
    // Unreserved resources are shared: dev got some.
    assert_eq!(cpus(&a.allocated("fdev")), 2.0);
}

#[test]
fn reserved_resources_are_offered_even_to_a_role_with_a_high_share() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("fops", &roles(&["ops"])).unwrap();
    a.add_framework("fdev", &roles(&["dev"])).unwrap();
    a.add_agent("a1", res("cpus:8;mem:2048"), &[]).unwrap();
    let first = a.allocate(t0);
    assert_eq!(who(&first), [("fdev", "a1", "dev")]);
    // ops has nothing, dev everything; an agent with reserved and unreserved
    // parts: ops goes first and takes both.
    a.add_agent("a2", res("cpus(ops):1;mem(ops):64;cpus:1;mem:64"), &[])
        .unwrap();
    let second = a.allocate(t0);
    assert_eq!(who(&second), [("fops", "a2", "ops")]);
    assert_eq!(cpus(&second[0].resources), 2.0);
}

#[test]
fn hierarchical_reservation_reaches_descendants_only() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("back", &roles(&["eng/backend"])).unwrap();
    a.add_framework("other", &roles(&["engineering"])).unwrap();
    a.add_agent("a1", res("cpus(eng):2;mem(eng):256"), &[])
        .unwrap();
    let offers = a.allocate(t0);
    assert_eq!(who(&offers), [("back", "a1", "eng/backend")]);
    let o = &offers[0];
    assert!(o.resources.iter().all(|r| r.owner_role() == Some("eng")
        && r.allocation_info.as_ref().and_then(|i| i.role.as_deref()) == Some("eng/backend")));
    assert_eq!(cpus(&a.allocated("other")), 0.0);
    // Given back, it still never reaches "engineering".
    a.recover("back", "a1", &o.resources, None, t0).unwrap();
    a.suppress("back", None);
    assert!(a.allocate(t0).is_empty());
}

#[test]
fn refuse_filter_holds_for_its_duration_and_others_get_the_resources() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("f1", &roles(&["dev"])).unwrap();
    a.add_agent("a1", res("cpus:4;mem:1024"), &[]).unwrap();
    let offers = a.allocate(t0);
    assert_eq!(who(&offers), [("f1", "a1", "dev")]);
    a.recover("f1", "a1", &offers[0].resources, Some(DEFAULT_REFUSE), t0)
        .unwrap();
    assert_eq!(a.available("a1"), Some(res("cpus:4;mem:1024")));
    // Filtered until t0 + 5 s.
    assert!(a.allocate(t0).is_empty());
    assert!(a.allocate(t0 + Duration::from_millis(4999)).is_empty());
    // Another framework is offered them meanwhile.
    a.add_framework("f2", &roles(&["dev"])).unwrap();
    let offers = a.allocate(t0 + Duration::from_secs(1));
    assert_eq!(who(&offers), [("f2", "a1", "dev")]);
    a.recover("f2", "a1", &offers[0].resources, None, t0)
        .unwrap();
    a.remove_framework("f2");
    // Expired: offered to f1 again.
    let offers = a.allocate(t0 + DEFAULT_REFUSE);
    assert_eq!(who(&offers), [("f1", "a1", "dev")]);
}

#[test]
fn refuse_filter_lets_a_larger_offer_through() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("f1", &roles(&["dev"])).unwrap();
    a.add_agent("a1", res("cpus:4;mem:1024"), &[]).unwrap();
    let offers = a.allocate(t0);
    // Decline half of it, keep the rest (in use by a task).
    let half = res("cpus:2;mem:512").allocate("dev");
    a.recover("f1", "a1", &half, Some(Duration::from_secs(10)), t0)
        .unwrap();
    assert!(a.allocate(t0).is_empty());
    // The task ends: the whole agent is free, which the filter does not cover.
    a.recover("f1", "a1", &half, None, t0).unwrap();
    let again = a.allocate(t0 + Duration::from_secs(1));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].resources, offers[0].resources);
}

#[test]
fn zero_refuse_sets_no_filter() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("f1", &roles(&["dev"])).unwrap();
    a.add_agent("a1", res("cpus:4;mem:1024"), &[]).unwrap();
    let offers = a.allocate(t0);
    a.recover("f1", "a1", &offers[0].resources, Some(Duration::ZERO), t0)
        .unwrap();
    assert_eq!(a.allocate(t0).len(), 1);
}

#[test]
fn suppress_stops_offers_and_revive_resumes_and_clears_filters() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("f1", &roles(&["dev", "test"])).unwrap();
    a.add_agent("a1", res("cpus:4;mem:1024"), &[]).unwrap();
    a.suppress("f1", None);
    assert!(a.allocate(t0).is_empty());
    // Revive one role only.
    a.revive("f1", Some(&roles(&["test", "unsubscribed"])));
    let offers = a.allocate(t0);
    assert_eq!(who(&offers), [("f1", "a1", "test")]);
    // Decline with a long filter, then revive: offered again at once.
    a.recover(
        "f1",
        "a1",
        &offers[0].resources,
        Some(Duration::from_secs(3600)),
        t0,
    )
    .unwrap();
    assert!(a.allocate(t0).is_empty());
    a.revive("f1", None);
    let offers = a.allocate(t0);
    // Both roles are unsuppressed now; dev sorts first at equal shares.
    assert_eq!(who(&offers), [("f1", "a1", "dev")]);
    // Suppressing one role keeps the other one served.
    a.recover("f1", "a1", &offers[0].resources, None, t0)
        .unwrap();
    a.suppress("f1", Some(&roles(&["dev"])));
    assert_eq!(who(&a.allocate(t0)), [("f1", "a1", "test")]);
}

#[test]
fn remove_agent_returns_allocations_and_they_vanish() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("f1", &roles(&["dev"])).unwrap();
    a.add_framework("f2", &roles(&["ops"])).unwrap();
    a.add_agent("a1", res("cpus:4;mem:1024"), &[]).unwrap();
    a.add_agent("a2", res("cpus:2;mem:512"), &[]).unwrap();
    let offers = a.allocate(t0);
    assert_eq!(offers.len(), 2);
    let on_a1 = offers.iter().find(|o| o.agent == "a1").unwrap();
    let removed = a.remove_agent("a1");
    assert_eq!(
        removed,
        vec![(on_a1.framework.clone(), on_a1.resources.clone())]
    );
    assert_eq!(a.available("a1"), None);
    assert!(a.allocated(&on_a1.framework).is_empty());
    assert!(a.allocated_on(&on_a1.framework, "a1").is_empty());
    // Idempotent.
    assert!(a.remove_agent("a1").is_empty());
    // Recovering what was there is an error now.
    assert!(matches!(
        a.recover(&on_a1.framework, "a1", &on_a1.resources, None, t0),
        Err(AllocatorError::UnknownAgent(_))
    ));
    // The total shrank: the other framework's share is relative to a2 only.
    let other = offers.iter().find(|o| o.agent == "a2").unwrap();
    let share = a
        .shares()
        .into_iter()
        .find(|(r, _)| *r == other.role)
        .unwrap()
        .1;
    assert_eq!(share, 1.0);
}

#[test]
fn remove_framework_frees_its_resources_for_others() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("f1", &roles(&["dev"])).unwrap();
    a.add_agent("a1", res("cpus:4;mem:1024"), &[]).unwrap();
    assert_eq!(a.allocate(t0).len(), 1);
    a.add_framework("f2", &roles(&["ops"])).unwrap();
    assert!(a.allocate(t0).is_empty());
    a.remove_framework("f1");
    a.remove_framework("f1");
    assert_eq!(a.available("a1"), Some(res("cpus:4;mem:1024")));
    assert_eq!(who(&a.allocate(t0)), [("f2", "a1", "ops")]);
    // The dev role is gone with its only framework.
    assert_eq!(a.shares(), vec![("ops".to_string(), 1.0)]);
    assert!(matches!(
        a.recover("f1", "a1", &res("cpus:1"), None, t0),
        Err(AllocatorError::UnknownFramework(_))
    ));
}

#[test]
fn offers_below_min_allocatable_are_not_made() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("f1", &roles(&["dev"])).unwrap();
    // Below both cpus:0.01 and mem:32.
    a.add_agent("tiny", res("cpus:0.005;mem:16;disk:1000"), &[])
        .unwrap();
    // Enough memory alone.
    a.add_agent("memonly", res("mem:32"), &[]).unwrap();
    // Enough cpus alone.
    a.add_agent("cpuonly", res("cpus:0.01"), &[]).unwrap();
    let offers = a.allocate(t0);
    let agents: Vec<&str> = offers.iter().map(|o| o.agent.as_str()).collect();
    assert_eq!(agents, ["cpuonly", "memonly"]);
    assert_eq!(
        a.available("tiny"),
        Some(res("cpus:0.005;mem:16;disk:1000"))
    );
}

#[test]
fn min_allocatable_parsing_and_custom_minimum() {
    let parsed = AllocatorConfig::parse_min_allocatable("cpus:0.01|mem:32").unwrap();
    assert_eq!(parsed, AllocatorConfig::default().min_allocatable);
    let both = AllocatorConfig::parse_min_allocatable("cpus:1;mem:128").unwrap();
    assert_eq!(both.len(), 1);
    assert!(AllocatorConfig::parse_min_allocatable("ports:[1-2]").is_err());
    assert!(AllocatorConfig::parse_min_allocatable("cpus(ops):1").is_err());
    assert!(AllocatorConfig::parse_min_allocatable("cpus:1|").is_err());

    let config = AllocatorConfig {
        min_allocatable: both,
        ..AllocatorConfig::default()
    };
    let mut a = Allocator::new(config).unwrap();
    a.add_framework("f1", &roles(&["dev"])).unwrap();
    a.add_agent("small", res("cpus:4;mem:64"), &[]).unwrap();
    a.add_agent("big", res("cpus:1;mem:128"), &[]).unwrap();
    let offers = a.allocate(Instant::now());
    assert_eq!(who(&offers), [("f1", "big", "dev")]);
}

#[test]
fn config_round_trips_through_json_and_is_validated() {
    let config = AllocatorConfig::default();
    let text = serde_json::to_string(&config).unwrap();
    let back: AllocatorConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(back, config);
    let partial: AllocatorConfig = serde_json::from_str(r#"{"weights":{"ops":2.0}}"#).unwrap();
    assert_eq!(partial.weight("ops"), 2.0);
    assert_eq!(partial.weight("dev"), 1.0);
    assert_eq!(partial.fairness_resources, config.fairness_resources);
    let mut bad = AllocatorConfig::default();
    bad.weights.insert("ops".into(), 0.0);
    assert!(matches!(
        Allocator::new(bad),
        Err(AllocatorError::InvalidWeight { .. })
    ));
}

#[test]
fn framework_and_weight_validation() {
    let mut a = allocator();
    assert!(matches!(
        a.add_framework("f", &roles(&["a//b"])),
        Err(AllocatorError::InvalidRole { .. })
    ));
    assert!(matches!(
        a.add_framework("f", &roles(&["dev", "dev"])),
        Err(AllocatorError::DuplicateRole(_))
    ));
    a.add_framework("f", &roles(&["dev"])).unwrap();
    assert!(matches!(
        a.add_framework("f", &roles(&["ops"])),
        Err(AllocatorError::FrameworkExists(_))
    ));
    assert!(matches!(
        a.update_framework_roles("nope", &roles(&["ops"])),
        Err(AllocatorError::UnknownFramework(_))
    ));
    for w in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            a.set_weight("dev", w),
            Err(AllocatorError::InvalidWeight { .. })
        ));
    }
    assert!(a.set_weight("/x", 1.0).is_err());
    assert_eq!(
        AllocatorError::InvalidWeight {
            role: "dev".into(),
            weight: 0.0
        }
        .to_string(),
        "invalid weight 0 for role \"dev\": weights must be finite and greater than 0"
    );
    // Unknown frameworks are ignored by suppress/revive/remove.
    a.suppress("nope", None);
    a.revive("nope", None);
    a.remove_framework("nope");
}

#[test]
fn recover_errors_change_nothing() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("f1", &roles(&["dev"])).unwrap();
    a.add_agent("a1", res("cpus:4;mem:1024"), &[]).unwrap();
    let offers = a.allocate(t0);
    assert!(matches!(
        a.recover("f1", "nope", &offers[0].resources, None, t0),
        Err(AllocatorError::UnknownAgent(_))
    ));
    // More than allocated.
    assert!(matches!(
        a.recover("f1", "a1", &res("cpus:5").allocate("dev"), None, t0),
        Err(AllocatorError::NotAllocated { .. })
    ));
    // A role it has nothing in.
    assert!(matches!(
        a.recover("f1", "a1", &res("cpus:1").allocate("ops"), None, t0),
        Err(AllocatorError::NotAllocated { .. })
    ));
    // Partly valid: nothing changes.
    let mixed = &res("cpus:1").allocate("dev") + &res("mem:4096").allocate("dev");
    assert!(a.recover("f1", "a1", &mixed, None, t0).is_err());
    assert_eq!(a.allocated("f1"), offers[0].resources);
    // Without allocation info: the only role there is used.
    a.recover("f1", "a1", &res("cpus:1"), None, t0).unwrap();
    assert_eq!(cpus(&a.allocated("f1")), 3.0);
    assert_eq!(a.available("a1"), Some(res("cpus:1")));
}

#[test]
fn add_agent_with_used_resources() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("f1", &roles(&["dev"])).unwrap();
    a.add_framework("f2", &roles(&["ops"])).unwrap();
    let total = res("cpus:8;mem:2048");
    // f1's resources have no allocation info: its only role is used.
    let used = vec![("f1".to_string(), res("cpus:6;mem:1024"))];
    a.add_agent("a1", total.clone(), &used).unwrap();
    assert_eq!(a.available("a1"), Some(res("cpus:2;mem:1024")));
    assert_eq!(a.allocated("f1"), res("cpus:6;mem:1024").allocate("dev"));
    // dev has 0.75 of cpus, so ops is first and gets the rest.
    assert_eq!(who(&a.allocate(t0)), [("f2", "a1", "ops")]);

    assert!(matches!(
        a.add_agent("a1", total.clone(), &[]),
        Err(AllocatorError::AgentExists(_))
    ));
    assert!(matches!(
        a.add_agent("a2", total.clone(), &[("ghost".into(), res("cpus:1"))]),
        Err(AllocatorError::UnknownFramework(_))
    ));
    assert!(matches!(
        a.add_agent("a2", total.clone(), &[("f1".into(), res("cpus:9"))]),
        Err(AllocatorError::UsedExceedsTotal { .. })
    ));
    a.add_framework("multi", &roles(&["dev", "ops"])).unwrap();
    assert!(matches!(
        a.add_agent("a2", total, &[("multi".into(), res("cpus:1"))]),
        Err(AllocatorError::MissingAllocationRole { .. })
    ));
    assert_eq!(a.available("a2"), None);
}

#[test]
fn update_framework_roles_keeps_old_allocations_until_recovered() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("f1", &roles(&["dev"])).unwrap();
    a.add_agent("a1", res("cpus:4;mem:1024"), &[]).unwrap();
    a.add_agent("a2", res("cpus:4;mem:1024"), &[]).unwrap();
    let offers = a.allocate(t0);
    assert_eq!(offers.len(), 2);
    a.update_framework_roles("f1", &roles(&["ops"])).unwrap();
    // dev is still tracked with its allocation.
    let shares = a.shares();
    assert_eq!(shares.len(), 2, "{shares:?}");
    a.recover("f1", "a1", &offers[0].resources, None, t0)
        .unwrap();
    // Offered in the new role only.
    assert_eq!(who(&a.allocate(t0)), [("f1", "a1", "ops")]);
    a.recover("f1", "a2", &offers[1].resources, None, t0)
        .unwrap();
    // dev is gone now that nothing is allocated in it.
    assert!(a.shares().iter().all(|(r, _)| r == "ops"));
}

#[test]
fn multi_role_framework_gets_one_offer_per_role() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("f1", &roles(&["dev", "ops"])).unwrap();
    a.add_agent("a1", res("cpus(ops):2;cpus:2;mem:512"), &[])
        .unwrap();
    let offers = a.allocate(t0);
    // dev sorts first and takes the unreserved part; ops gets its reservation.
    assert_eq!(who(&offers), [("f1", "a1", "dev"), ("f1", "a1", "ops")]);
    assert_eq!(cpus(&offers[1].resources), 2.0);
    // Recover both at once, routed by allocation role.
    let both = &offers[0].resources + &offers[1].resources;
    a.recover("f1", "a1", &both, None, t0).unwrap();
    assert!(a.allocated("f1").is_empty());
    // Ambiguous without allocation info when it holds two roles there.
    let again = a.allocate(t0);
    assert_eq!(again.len(), 2);
    assert!(matches!(
        a.recover("f1", "a1", &res("cpus:1"), None, t0),
        Err(AllocatorError::MissingAllocationRole { .. })
    ));
}

#[test]
fn drf_within_a_role_prefers_the_framework_with_less() {
    let mut a = allocator();
    let t0 = Instant::now();
    a.add_framework("f1", &roles(&["dev"])).unwrap();
    a.add_framework("f2", &roles(&["dev"])).unwrap();
    // f1 already holds a lot there.
    a.add_agent(
        "a0",
        res("cpus:8;mem:4096"),
        &[("f1".into(), res("cpus:8;mem:4096"))],
    )
    .unwrap();
    a.add_agent("a1", res("cpus:1;mem:128"), &[]).unwrap();
    a.add_agent("a2", res("cpus:1;mem:128"), &[]).unwrap();
    let offers = a.allocate(t0);
    assert_eq!(who(&offers), [("f2", "a1", "dev"), ("f2", "a2", "dev")]);
}

/// 1 cpu and 40 of disk reserved for `eng` and refined to `eng/backend`
/// (with a cpu, as disk alone is not allocatable).
fn refined() -> Resources {
    ["cpus", "disk"]
        .into_iter()
        .zip([1, 40])
        .map(|(name, value)| {
            serde_json::from_value::<Resource>(serde_json::json!({
                "name": name, "type": "SCALAR", "scalar": {"value": value},
                "reservations": [{"type": "STATIC", "role": "eng"},
                                 {"type": "DYNAMIC", "role": "eng/backend", "principal": "ops"}]
            }))
            .unwrap()
        })
        .collect()
}

#[test]
fn refined_reservations_go_only_to_frameworks_that_read_them() {
    let mut a = allocator();
    let t0 = Instant::now();
    let mut total = res("cpus:2;disk(eng):60");
    total += &refined();
    a.add_agent("a1", total, &[]).unwrap();
    // "a-legacy" sorts first on ties and declares no capabilities.
    a.add_framework("a-legacy", &roles(&["eng/backend"]))
        .unwrap();

    // Alone, it gets everything but the refined reservation, which stays
    // available however often the allocator runs.
    let offers = a.allocate(t0);
    assert_eq!(who(&offers), [("a-legacy", "a1", "eng/backend")]);
    assert!(offers[0]
        .resources
        .iter()
        .all(|r| !r.has_refined_reservations()));
    assert_eq!(offers[0].resources.scalar("disk").value(), 60.0);
    assert!(a.allocate(t0).is_empty());
    let left = a.available("a1").unwrap();
    assert_eq!(left.scalar("disk").value(), 40.0);
    assert!(left.iter().all(|r| r.has_refined_reservations()));

    // A framework that reads them is offered them at the next cycle.
    a.add_framework("b-refines", &roles(&["eng/backend"]))
        .unwrap();
    a.set_capabilities(
        "b-refines",
        Capabilities {
            reservation_refinement: true,
        },
    )
    .unwrap();
    let offers = a.allocate(t0);
    assert_eq!(who(&offers), [("b-refines", "a1", "eng/backend")]);
    assert_eq!(offers[0].resources.scalar("disk").value(), 40.0);
    assert!(offers[0]
        .resources
        .iter()
        .all(|r| r.has_refined_reservations()));

    // Back in the pool, they skip the legacy framework even when it is first
    // in order, and the capability can be given on a later subscription.
    a.recover("b-refines", "a1", &offers[0].resources, None, t0)
        .unwrap();
    a.remove_framework("b-refines");
    assert!(a.allocate(t0).is_empty());
    a.set_capabilities(
        "a-legacy",
        Capabilities {
            reservation_refinement: true,
        },
    )
    .unwrap();
    let offers = a.allocate(t0);
    assert_eq!(who(&offers), [("a-legacy", "a1", "eng/backend")]);
    assert_eq!(offers[0].resources.scalar("disk").value(), 40.0);
    assert!(a
        .set_capabilities("nobody", Capabilities::default())
        .is_err());
}
