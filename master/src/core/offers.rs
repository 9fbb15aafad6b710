//! Offers: allocation cycles, DECLINE, ACCEPT with its operations and
//! launches, and operator-initiated operations.

use super::*;

impl Core {
    /// One allocation cycle: turns the allocator's decisions into OFFERS
    /// events, one event per framework.
    pub fn allocate(&mut self, now: Instant) {
        let decisions = self.allocator.allocate(now);
        let mut by_framework: BTreeMap<String, Vec<Offer>> = BTreeMap::new();
        for d in decisions {
            let (Some(fw), Some(agent)) = (
                self.frameworks.get_mut(&d.framework),
                self.agents.get(&d.agent),
            ) else {
                // Cannot happen (the allocator only knows live ones); give
                // the resources back rather than leak them.
                let _ = self
                    .allocator
                    .recover(&d.framework, &d.agent, &d.resources, None, now);
                continue;
            };
            let id = format!("{}-O{}", self.master_info.id, self.next_offer);
            self.next_offer += 1;
            let multi_role = fw.has(FrameworkCapabilityType::MultiRole);
            let executor_ids: BTreeSet<String> = fw
                .tasks
                .values()
                .filter(|t| t.agent_id == d.agent && t.info.executor.is_some())
                .filter_map(|t| {
                    t.info
                        .executor
                        .as_ref()
                        .map(|e| e.executor_id.value.clone())
                })
                .collect();
            let offer = Offer {
                id: OfferID::new(id.clone()),
                framework_id: FrameworkID::new(d.framework.clone()),
                agent_id: AgentID::new(d.agent.clone()),
                hostname: agent.info.hostname.clone(),
                url: Some(agent.url()),
                domain: None,
                resources: if multi_role {
                    d.resources.clone()
                } else {
                    strip_allocation(&d.resources)
                },
                attributes: agent.info.attributes.clone(),
                executor_ids: executor_ids.into_iter().map(ExecutorID::new).collect(),
                unavailability: None,
                allocation_info: multi_role.then(|| AllocationInfo {
                    role: Some(d.role.clone()),
                }),
            };
            fw.offers.insert(id.clone());
            self.offers.insert(
                id.clone(),
                OfferRecord {
                    id,
                    framework_id: d.framework.clone(),
                    agent_id: d.agent.clone(),
                    role: d.role.clone(),
                    resources: d.resources,
                },
            );
            by_framework.entry(d.framework).or_default().push(offer);
        }
        for (fw_id, offers) in by_framework {
            self.counters.offers_sent += offers.len() as u64;
            if let Some(fw) = self.frameworks.get(&fw_id) {
                fw.send(&Event::offers(offers));
            }
        }
    }

    /// Drops an offer and gives its resources back (no filter). With
    /// `rescind`, the framework is told.
    pub(super) fn remove_offer(&mut self, offer_id: &str, rescind: bool) {
        let Some(offer) = self.offers.remove(offer_id) else {
            return;
        };
        if let Some(fw) = self.frameworks.get_mut(&offer.framework_id) {
            fw.offers.remove(offer_id);
            if rescind {
                fw.send(&Event::rescind(OfferID::new(offer_id)));
                self.counters.offers_rescinded += 1;
            }
        }
        if let Err(e) = self.allocator.recover(
            &offer.framework_id,
            &offer.agent_id,
            &offer.resources,
            None,
            Instant::now(),
        ) {
            eprintln!("berth master: cannot recover offer {offer_id}: {e}");
        }
        self.wake_allocator();
    }

    /// Rescinds every outstanding offer of `agent_id` (its resources go
    /// back to the allocator).
    pub(super) fn rescind_offers_on(&mut self, agent_id: &str) {
        let offers: Vec<String> = self
            .offers
            .values()
            .filter(|o| o.agent_id == agent_id)
            .map(|o| o.id.clone())
            .collect();
        for offer in offers {
            self.remove_offer(&offer, true);
        }
    }

    /// `refuse_seconds` as Mesos reads it: 0 → no filter; negative or not a
    /// number → the default 5 s; longer than a year → a year.
    pub(super) fn refusal(filters: Option<&masterlink::scheduler::Filters>) -> Option<Duration> {
        let secs = filters
            .map(|f| f.refuse_seconds)
            .unwrap_or(masterlink::scheduler::Filters::DEFAULT_REFUSE_SECONDS);
        if secs == 0.0 {
            return None;
        }
        let secs = if secs.is_finite() && secs > 0.0 {
            secs
        } else {
            masterlink::scheduler::Filters::DEFAULT_REFUSE_SECONDS
        };
        Some(Duration::from_secs_f64(secs).min(MAX_REFUSE))
    }

    /// DECLINE.
    pub fn decline(
        &mut self,
        framework_id: &str,
        offer_ids: &[OfferID],
        filters: Option<&masterlink::scheduler::Filters>,
    ) {
        let refuse = Core::refusal(filters);
        for id in offer_ids {
            let Some(offer) = self.offers.get(&id.value) else {
                continue; // rescinded or used: nothing to decline (Mesos)
            };
            if offer.framework_id != framework_id {
                continue;
            }
            let offer = self.offers.remove(&id.value).expect("present");
            if let Some(fw) = self.frameworks.get_mut(framework_id) {
                fw.offers.remove(&id.value);
            }
            self.counters.offers_declined += 1;
            if let Err(e) = self.allocator.recover(
                framework_id,
                &offer.agent_id,
                &offer.resources,
                refuse,
                Instant::now(),
            ) {
                eprintln!(
                    "berth master: cannot recover declined offer {}: {e}",
                    id.value
                );
            }
        }
        self.wake_allocator();
    }

    /// ACCEPT: validates the offers, then applies the operations in order.
    /// Task problems become TASK_ERROR / TASK_LOST updates, as Mesos does;
    /// an operation this master cannot apply refuses the whole call first.
    pub fn accept(&mut self, framework_id: &str, accept: Accept) -> Result<(), Refusal> {
        // Each operation in order: resource operations, or the tasks of a
        // LAUNCH. Anything else is refused before anything changes.
        enum Step {
            Resources(ResourceOp),
            Launch(Vec<TaskInfo>),
        }
        let mut steps = Vec::new();
        for op in &accept.operations {
            if op.operation_type == OperationType::Launch {
                let Some(launch) = &op.launch else {
                    return Err(Refusal::BadRequest(
                        "field 'accept.operations': LAUNCH without 'launch'".into(),
                    ));
                };
                steps.push(Step::Launch(launch.task_infos.clone()));
                continue;
            }
            match ResourceOp::from_offer_operation(op) {
                Ok(Some(r)) => steps.push(Step::Resources(r)),
                Ok(None) => {
                    return Err(Refusal::BadRequest(format!(
                        "field 'accept.operations': operation {} is not supported by this \
                         master (LAUNCH, RESERVE, UNRESERVE, CREATE, DESTROY, GROW_VOLUME and \
                         SHRINK_VOLUME are)",
                        op.operation_type
                    )))
                }
                Err(e) => {
                    return Err(Refusal::BadRequest(format!(
                        "field 'accept.operations': {e}"
                    )))
                }
            }
        }
        let tasks: Vec<TaskInfo> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Launch(t) => Some(t.clone()),
                Step::Resources(_) => None,
            })
            .flatten()
            .collect();

        // Offer validation: all exist, belong to this framework, one agent.
        let mut problem = None;
        let mut seen = BTreeSet::new();
        for id in &accept.offer_ids {
            match self.offers.get(&id.value) {
                None => problem = Some(format!("Offer {} is no longer valid", id.value)),
                Some(o) if o.framework_id != framework_id => {
                    problem = Some(format!("Offer {} is not for this framework", id.value))
                }
                Some(_) if !seen.insert(id.value.clone()) => {
                    problem = Some(format!("Offer {} appears more than once", id.value))
                }
                Some(_) => {}
            }
        }
        if accept.offer_ids.is_empty() {
            problem = Some("No offers given".into());
        }
        let agents: BTreeSet<String> = accept
            .offer_ids
            .iter()
            .filter_map(|id| self.offers.get(&id.value))
            .map(|o| o.agent_id.clone())
            .collect();
        if agents.len() > 1 {
            problem = Some("Offers are from more than one agent".into());
        }
        if let Some(problem) = problem {
            // The valid offers are given back; every task is lost/dropped.
            for id in &accept.offer_ids {
                if self
                    .offers
                    .get(&id.value)
                    .is_some_and(|o| o.framework_id == framework_id)
                {
                    self.remove_offer(&id.value, false);
                }
            }
            let fw = self
                .frameworks
                .get(framework_id)
                .expect("checked by caller");
            for task in &tasks {
                let state = fw.visible(TaskState::Dropped);
                fw.send(&Event::update(master_status(
                    &task.task_id,
                    Some(&task.agent_id.value),
                    state,
                    Reason::InvalidOffers,
                    format!("Task launched with invalid offers: {problem}"),
                )));
            }
            return Ok(());
        }

        let agent_id = agents.into_iter().next().expect("one agent");
        let mut remaining = Resources::new();
        let mut role = String::new();
        for id in &accept.offer_ids {
            let offer = &self.offers[&id.value];
            remaining += &offer.resources;
            role = offer.role.clone();
        }

        // First pass, on a copy: every resource operation must be valid and
        // find what it consumes (after the steps before it), or the call is
        // refused and nothing changes (offers stay outstanding).
        let principal = self.frameworks[framework_id].info.principal.clone();
        let requester = Requester {
            role: Some(&role),
            principal: principal.as_deref(),
        };
        let mut scratch = remaining.clone();
        let mut conversions = Vec::new();
        for step in &steps {
            let Step::Resources(op) = step else {
                continue;
            };
            self.authorize(principal.as_deref(), op)?;
            let c = op
                .conversion(&requester)
                .map_err(|e| Refusal::BadRequest(format!("field 'accept.operations': {e}")))?;
            let consumed = c.consumed.unallocate().allocate(&role);
            scratch = scratch.checked_sub(&consumed).map_err(|e| {
                Refusal::BadRequest(format!(
                    "field 'accept.operations': {} needs resources that are not in the \
                     offers: {e}",
                    op.name()
                ))
            })?;
            scratch += &c.produced.unallocate().allocate(&role);
            conversions.push(c);
        }
        let checkpointed = conversions.iter().fold(
            self.agents
                .get(&agent_id)
                .map(|a| a.checkpointed.clone())
                .unwrap_or_default(),
            |cp, c| operations::apply_to_checkpointed(&cp, c),
        );
        if !conversions.is_empty() {
            self.persist_checkpointed(&agent_id, &checkpointed)?;
        }

        // The offers are used up.
        for id in &accept.offer_ids {
            self.offers.remove(&id.value);
            if let Some(fw) = self.frameworks.get_mut(framework_id) {
                fw.offers.remove(&id.value);
            }
        }
        self.counters.offers_accepted += accept.offer_ids.len() as u64;

        // The agent applies the new set (creating volumes) before it gets
        // the tasks that use them: messages on its stream keep their order.
        if let Some(agent) = self.agents.get_mut(&agent_id) {
            if agent.checkpointed != checkpointed {
                agent.checkpointed = checkpointed;
                agent.send(&MasterMessage::CheckpointResources {
                    resources: agent.checkpointed.clone(),
                });
            }
        }

        // Second pass: apply in order.
        let mut conversions = conversions.into_iter();
        for step in steps {
            match step {
                Step::Resources(op) => {
                    let c = conversions.next().expect("one per resource step");
                    let consumed = c.consumed.unallocate().allocate(&role);
                    let produced = c.produced.unallocate().allocate(&role);
                    if let Err(e) = self.allocator.update_allocation(
                        framework_id,
                        &agent_id,
                        &role,
                        &consumed,
                        &produced,
                    ) {
                        eprintln!("berth master: {} on agent {agent_id}: {e}", op.name());
                    }
                    remaining = remaining.checked_sub(&consumed).unwrap_or_default();
                    remaining += &produced;
                    self.counters.operations += 1;
                }
                Step::Launch(tasks) => {
                    for task in tasks {
                        self.launch_one(framework_id, &agent_id, &role, task, &mut remaining);
                    }
                }
            }
        }
        if !remaining.is_empty() {
            let refuse = Core::refusal(accept.filters.as_ref());
            if let Err(e) =
                self.allocator
                    .recover(framework_id, &agent_id, &remaining, refuse, Instant::now())
            {
                eprintln!("berth master: cannot recover unused resources: {e}");
            }
        }
        self.wake_allocator();
        Ok(())
    }

    /// Validates one task of a LAUNCH against what is left of the offers and
    /// launches it, or answers TASK_ERROR.
    pub(super) fn launch_one(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        role: &str,
        mut task: TaskInfo,
        remaining: &mut Resources,
    ) {
        // Single-role frameworks send resources without allocation info.
        task.resources = task
            .resources
            .iter()
            .map(|r| {
                if r.allocation_info
                    .as_ref()
                    .and_then(|a| a.role.as_ref())
                    .is_some()
                {
                    r.clone()
                } else {
                    r.clone().allocated_to(role.to_string())
                }
            })
            .collect();
        let fw = self
            .frameworks
            .get(framework_id)
            .expect("checked by caller");
        if let Some(message) = self.validate_task(fw, &task, agent_id, remaining) {
            fw.send(&Event::update(master_status(
                &task.task_id,
                Some(agent_id),
                TaskState::Error,
                Reason::TaskInvalid,
                message,
            )));
            return;
        }
        *remaining -= &task.resources;
        self.launch(framework_id, agent_id, role, task);
    }

    /// Checks the ACLs for every resource `op` touches.
    pub(super) fn authorize(
        &self,
        principal: Option<&str>,
        op: &ResourceOp,
    ) -> Result<(), Refusal> {
        use crate::auth::{Action, Denied};
        let acls = &self.config.acls;
        let check = |action: Action<'_>| {
            acls.authorize(principal, action).map_err(|d| match d {
                Denied::Forbidden(m) | Denied::Unauthenticated(m) => Refusal::Forbidden(m),
            })
        };
        let volume_role = |r: &masterlink::Resource| r.owner_role().unwrap_or("*").to_string();
        match op {
            ResourceOp::Reserve(rs) => rs.iter().try_for_each(|r| {
                check(Action::Reserve {
                    role: r.owner_role().unwrap_or("*"),
                })
            }),
            ResourceOp::Unreserve(rs) => rs.iter().try_for_each(|r| {
                check(Action::Unreserve {
                    reserver: r.reservations.last().and_then(|x| x.principal.as_deref()),
                })
            }),
            ResourceOp::Create(vs) => vs.iter().try_for_each(|v| {
                check(Action::CreateVolume {
                    role: &volume_role(v),
                })
            }),
            ResourceOp::Destroy(vs) => vs.iter().try_for_each(|v| {
                check(Action::DestroyVolume {
                    creator: v
                        .disk
                        .as_ref()
                        .and_then(|d| d.persistence.as_ref())
                        .and_then(|p| p.principal.as_deref()),
                })
            }),
            // Resizing is creating (Mesos' RESIZE_VOLUME ACL is not read).
            ResourceOp::Grow { volume, .. } | ResourceOp::Shrink { volume, .. } => {
                check(Action::CreateVolume {
                    role: &volume_role(volume),
                })
            }
        }
    }

    /// Writes an agent's checkpointed resources to the registry (before the
    /// change is applied or answered).
    pub(super) fn persist_checkpointed(
        &mut self,
        agent_id: &str,
        resources: &Resources,
    ) -> Result<(), Refusal> {
        let key = format!("{CHECKPOINTED_PREFIX}{agent_id}");
        let value = serde_json::to_vec(resources).unwrap_or_default();
        let version = self
            .registry
            .get(&key)
            .map_err(|e| Refusal::Unavailable(format!("registry: {e}")))?
            .map(|(_, v)| v);
        self.registry
            .put(&key, &value, version)
            .map_err(|e| Refusal::Unavailable(format!("Failed to write the registry: {e}")))?;
        Ok(())
    }

    /// The checkpointed resources the registry has for an agent.
    pub(super) fn registry_checkpointed(&self, agent_id: &str) -> Option<Resources> {
        let key = format!("{CHECKPOINTED_PREFIX}{agent_id}");
        let (value, _) = self.registry.get(&key).ok()??;
        serde_json::from_slice(&value).ok()
    }

    /// An operator's RESERVE_RESOURCES, UNRESERVE_RESOURCES, CREATE_VOLUMES,
    /// DESTROY_VOLUMES, GROW_VOLUME or SHRINK_VOLUME on `agent_id`. The
    /// agent's outstanding offers are rescinded first so that their
    /// resources can be used; the change is in the registry before this
    /// returns, then the agent is told.
    pub fn operate(
        &mut self,
        agent_id: &str,
        op: ResourceOp,
        principal: Option<&str>,
    ) -> Result<(), Refusal> {
        let reachable = self
            .agents
            .get(agent_id)
            .is_some_and(|a| a.unreachable_time.is_none());
        if !reachable {
            return Err(Refusal::BadRequest(format!(
                "No agent found with specified ID {agent_id}"
            )));
        }
        self.authorize(principal, &op)?;
        let c = op
            .conversion(&Requester {
                role: None,
                principal,
            })
            .map_err(Refusal::BadRequest)?;
        self.rescind_offers_on(agent_id);
        let available = self.allocator.available(agent_id).unwrap_or_default();
        if let Err(e) = available.checked_sub(&c.consumed.unallocate()) {
            return Err(Refusal::Conflict(format!(
                "{}: the agent does not have these resources unused: {e}",
                op.name()
            )));
        }
        let agent = &self.agents[agent_id];
        let checkpointed = operations::apply_to_checkpointed(&agent.checkpointed, &c);
        self.persist_checkpointed(agent_id, &checkpointed)?;
        self.allocator
            .update_available(agent_id, &c.consumed, &c.produced)
            .map_err(|e| Refusal::Conflict(e.to_string()))?;
        let agent = self.agents.get_mut(agent_id).expect("checked above");
        agent.checkpointed = checkpointed;
        agent.send(&MasterMessage::CheckpointResources {
            resources: agent.checkpointed.clone(),
        });
        self.counters.operations += 1;
        self.wake_allocator();
        Ok(())
    }

    /// Why `task` cannot be launched, if it cannot.
    pub(super) fn validate_task(
        &self,
        fw: &Framework,
        task: &TaskInfo,
        agent_id: &str,
        remaining: &Resources,
    ) -> Option<String> {
        if let Err(e) = masterlink::scheduler::validate_client_id(&task.task_id.value) {
            return Some(format!("Task ID '{}' is invalid: {e}", task.task_id.value));
        }
        if fw.tasks.contains_key(&task.task_id.value) {
            return Some(format!("Task has duplicate ID: {}", task.task_id.value));
        }
        if task.agent_id.value != agent_id {
            return Some(format!(
                "Task uses agent {} but the offers are from agent {agent_id}",
                task.agent_id.value
            ));
        }
        match (&task.command, &task.executor) {
            (Some(_), Some(_)) => {
                return Some("Task should have at most one of CommandInfo or ExecutorInfo".into())
            }
            (None, None) => {
                return Some("Task should have at least one of CommandInfo or ExecutorInfo".into())
            }
            _ => {}
        }
        if task.resources.is_empty() {
            return Some("Task uses no resources".into());
        }
        if let Err(e) = task.resources.iter().try_for_each(|r| r.validate()) {
            return Some(format!("Task uses invalid resources: {e}"));
        }
        if !remaining.contains(&task.resources) {
            return Some(format!(
                "Task uses more resources {} than available {}",
                task.resources, remaining
            ));
        }
        None
    }

    /// Records a valid task as STAGING and sends it to its agent.
    pub(super) fn launch(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        role: &str,
        task: TaskInfo,
    ) {
        let fw = self
            .frameworks
            .get_mut(framework_id)
            .expect("checked by caller");
        let task_id = task.task_id.value.clone();
        let message = MasterMessage::RunTask {
            framework_info: fw.info.clone(),
            task: task.clone(),
        };
        fw.tasks.insert(
            task_id.clone(),
            Task {
                info: task,
                framework_id: framework_id.to_string(),
                agent_id: agent_id.to_string(),
                state: TaskState::Staging,
                statuses: Vec::new(),
                status_update_state: None,
                status_update_uuid: None,
                role: role.to_string(),
                resources_recovered: false,
            },
        );
        self.counters.tasks_launched += 1;
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.tasks.insert((framework_id.to_string(), task_id));
            agent.send(&message);
        }
    }
}
