//! Agents: registration and re-registration, pings, disconnection,
//! unreachability and removal.

use super::*;

impl Core {
    /// REGISTER: admits a new agent or takes back a known one, and opens its
    /// stream (REGISTERED is already queued on `messages`). Returns the
    /// agent id and stream id.
    pub fn register_agent(
        &mut self,
        register: Register,
        messages: Sink,
    ) -> Result<(String, String), String> {
        if register.protocol_version != masterlink::protocol::PROTOCOL_VERSION {
            return Err(format!(
                "agent speaks masterlink protocol version {} but this master speaks {}",
                register.protocol_version,
                masterlink::protocol::PROTOCOL_VERSION
            ));
        }
        if let Err(e) = register
            .agent_info
            .resources
            .iter()
            .try_for_each(|r| r.validate())
        {
            return Err(format!("field 'agent_info.resources': {e}"));
        }
        let now = now_secs();
        let mut info = register.agent_info;
        let reregister = info.id.is_some();
        let agent_id = match &info.id {
            Some(id) => id.value.clone(),
            None => loop {
                let id = format!("{}-S{}", self.master_info.id, self.next_agent);
                self.next_agent += 1;
                if !self.agents.contains_key(&id) {
                    break id;
                }
            },
        };
        info.id = Some(AgentID::new(agent_id.clone()));
        if reregister {
            // Before anything changes: a refused agent leaves the master's
            // view of it as it was.
            self.check_changed_agent(
                &agent_id,
                &info,
                &register.tasks,
                &register.checkpointed_resources,
            )?;
        }

        // Frameworks of the reported tasks that this master does not know
        // (it restarted) come back as recovered, inactive frameworks if the
        // registry still has them; a framework it has not (removed, torn
        // down) is shut down on the agent.
        // (Listed only when the agent reports a framework this master does
        // not have: a re-registration is then not O(frameworks).)
        let unknown = register.frameworks.iter().any(|fi| {
            fi.id
                .as_ref()
                .is_some_and(|i| !self.frameworks.contains_key(&i.value))
        });
        let in_registry: Option<BTreeSet<String>> = if unknown {
            self.registry
                .frameworks()
                .ok()
                .map(|fs| fs.into_iter().map(|f| f.id).collect())
        } else {
            None
        };
        let mut shutdown = Vec::new();
        for fi in &register.frameworks {
            let Some(id) = fi.id.as_ref().map(|i| i.value.clone()) else {
                continue;
            };
            if self.frameworks.contains_key(&id) {
                continue;
            }
            if in_registry.as_ref().is_some_and(|r| !r.contains(&id)) {
                shutdown.push(id);
                continue;
            }
            let roles = fi.effective_roles();
            if self.allocator.add_framework(&id, &roles).is_err() {
                continue;
            }
            let _ = self
                .allocator
                .set_capabilities(&id, allocator_capabilities(fi));
            self.allocator.deactivate_framework(&id);
            self.frameworks.insert(
                id,
                Framework {
                    info: fi.clone(),
                    roles,
                    format: fi.resource_format(),
                    stream: None,
                    registered_time: now,
                    reregistered_time: None,
                    // The failover timeout runs from now: its scheduler has
                    // that long to subscribe again.
                    unregistered_time: Some(now),
                    tasks: BTreeMap::new(),
                    completed_tasks: VecDeque::new(),
                    offers: BTreeSet::new(),
                    recovered: true,
                },
            );
        }

        let registered_at = self
            .registry
            .agent(&agent_id)
            .ok()
            .flatten()
            .map(|a| a.registered_at);
        let record = AgentRecord {
            id: agent_id.clone(),
            hostname: info.hostname.clone(),
            port: info.port,
            resources: serde_json::to_value(&info.resources).unwrap_or_default(),
            attributes: serde_json::to_value(&info.attributes).unwrap_or_default(),
            registered_at: registered_at.unwrap_or(now),
        };
        self.registry
            .admit_agent(&record)
            .map_err(|e| format!("Failed to admit the agent in the registry: {e}"))?;

        // A new agent on a host that rebooted: the agent it replaces lost
        // its containers with the reboot. Mesos' agent reports this as
        // REASON_AGENT_RESTARTED; here the master says it for the old agent
        // at once (GONE, or LOST to frameworks that are not
        // PARTITION_AWARE), as it would after the old agent's pings timed
        // out, and forgets it.
        if !reregister {
            if let Some(previous) = register.previous_agent_id.as_ref().map(|a| a.value.clone()) {
                self.replace_rebooted_agent(&previous);
            }
        }
        // A recovered agent is back.
        let recovered_unreachable = self
            .recovered_agents
            .remove(&agent_id)
            .is_some_and(|a| a.unreachable_time.is_some());
        // A known agent: drop the old view (its offers, its allocations) and
        // rebuild it from what the agent reports.
        let old = self.agents.remove(&agent_id);
        // Back from a partition (or from missing the re-registration
        // deadline after a failover): its tasks were reported UNREACHABLE,
        // or LOST to frameworks that are not PARTITION_AWARE.
        let was_unreachable =
            recovered_unreachable || old.as_ref().is_some_and(|a| a.unreachable_time.is_some());
        let old_tasks: BTreeSet<(String, String)> =
            old.as_ref().map(|a| a.tasks.clone()).unwrap_or_default();
        self.rescind_offers_on(&agent_id);
        self.allocator.remove_agent(&agent_id);

        let mut used: BTreeMap<String, Resources> = BTreeMap::new();
        let mut reported = BTreeSet::new();
        // Tasks of frameworks that are not PARTITION_AWARE on an agent back
        // from a partition: the master forgets them and has the agent kill
        // them (below), as Mesos does.
        let mut forgotten = BTreeSet::new();
        let mut shutdown_unaware = BTreeSet::new();
        for AgentTask {
            framework_id,
            task,
            state,
            latest_status,
        } in register.tasks
        {
            let fid = framework_id.value.clone();
            let tid = task.task_id.value.clone();
            reported.insert((fid.clone(), tid.clone()));
            let Some(fw) = self.frameworks.get_mut(&fid) else {
                continue;
            };
            if was_unreachable && !fw.has(FrameworkCapabilityType::PartitionAware) {
                // The framework was told TASK_LOST and may have launched a
                // replacement elsewhere: the task must not come back to it.
                forgotten.insert((fid.clone(), tid.clone()));
                shutdown_unaware.insert(fid.clone());
                if let Some(mut t) = fw.tasks.remove(&tid) {
                    t.state = TaskState::Lost;
                    push_bounded(&mut fw.completed_tasks, t, MAX_COMPLETED_TASKS);
                }
                continue;
            }
            if !state.is_terminal() {
                *used.entry(fid.clone()).or_default() += &task.resources;
            }
            let role = task
                .resources
                .iter()
                .find_map(|r| r.allocation_info.as_ref().and_then(|a| a.role.clone()))
                .unwrap_or_else(|| fw.roles.first().cloned().unwrap_or_else(|| "*".into()));
            let entry = fw.tasks.entry(tid.clone()).or_insert_with(|| Task {
                info: task.clone(),
                framework_id: fid.clone(),
                agent_id: agent_id.clone(),
                state,
                statuses: Vec::new(),
                status_update_state: None,
                status_update_uuid: None,
                role,
                resources_recovered: false,
            });
            entry.state = state;
            entry.resources_recovered = state.is_terminal();
            if let Some(s) = latest_status {
                push_status(&mut entry.statuses, s);
            }
            if was_unreachable {
                // The framework last heard TASK_UNREACHABLE: it is told the
                // task's current state (Mesos' REASON_AGENT_REREGISTERED).
                // No uuid: the agent's own update stream stays the reliable
                // record, this only corrects what the master said.
                let mut s = entry
                    .statuses
                    .iter()
                    .rev()
                    .find(|s| s.source != Some(TaskSource::Master))
                    .cloned()
                    .unwrap_or_else(|| TaskStatus::new(entry.info.task_id.clone(), state));
                s.state = state;
                s.uuid = None;
                s.source = Some(TaskSource::Master);
                s.reason = Some(Reason::AgentReregistered);
                s.message = Some("Agent reregistered".into());
                s.agent_id = Some(AgentID::new(agent_id.clone()));
                s.unreachable_time = None;
                s.timestamp = Some(now);
                push_status(&mut entry.statuses, s.clone());
                fw.send(&Event::update(s));
            }
        }
        if !shutdown_unaware.is_empty() {
            eprintln!(
                "berth master: agent {agent_id} is back from a partition; shutting down the \
                 frameworks on it that are not PARTITION_AWARE: {}",
                shutdown_unaware
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        // Dynamic reservations and volumes: the registry's record wins (it
        // was written before any change was answered); without one (a new
        // registry) the agent's checkpoint is adopted and recorded.
        let (mut checkpointed, recorded) = match self.registry_checkpointed(&agent_id) {
            Some(r) => (r, true),
            None => (register.checkpointed_resources.unallocate(), false),
        };
        let total = match total_with(&info.resources, &checkpointed) {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "berth master: agent {agent_id}: {e}; its dynamic reservations and volumes \
                     are not offered until this is resolved"
                );
                checkpointed = Resources::new();
                info.resources.unallocate()
            }
        };
        if !recorded && !checkpointed.is_empty() {
            if let Err(e) = self.persist_checkpointed(&agent_id, &checkpointed) {
                eprintln!("berth master: agent {agent_id}: {e:?}");
            }
        }
        let used: Vec<(String, Resources)> = used.into_iter().collect();
        if let Err(e) = self.allocator.add_agent(&agent_id, total.clone(), &used) {
            // Reported usage the totals cannot hold: admit the agent with no
            // usage rather than refuse it (its tasks still run).
            eprintln!("berth master: agent {agent_id}: {e}; its reported tasks are not counted");
            let _ = self.allocator.add_agent(&agent_id, total, &[]);
        }

        // Tasks this master had on the agent that it no longer reports.
        for (fid, tid) in old_tasks.difference(&reported) {
            if let Some(fw) = self.frameworks.get_mut(fid) {
                if let Some(mut task) = fw.tasks.remove(tid) {
                    let state = fw.visible(TaskState::Dropped);
                    let status = master_status(
                        &task.info.task_id,
                        Some(&agent_id),
                        state,
                        Reason::Reconciliation,
                        "Task is unknown to the agent after it re-registered",
                    );
                    task.state = state;
                    fw.send(&Event::update(status));
                    push_bounded(&mut fw.completed_tasks, task, MAX_COMPLETED_TASKS);
                }
            }
        }

        let stream_id = uuid();
        let agent = Agent {
            id: agent_id.clone(),
            info,
            version: register.version,
            boot_id: register.boot_id,
            link: Some(AgentLink {
                stream_id: stream_id.clone(),
                messages,
            }),
            registered_time: registered_at.unwrap_or(now),
            reregistered_time: reregister.then_some(now),
            missed_pings: 0,
            next_ping: 0,
            unreachable_time: None,
            tasks: reported.difference(&forgotten).cloned().collect(),
            checkpointed,
        };
        agent.send(&MasterMessage::Registered {
            agent_id: AgentID::new(agent_id.clone()),
            stream_id: stream_id.clone(),
            master_info: self.master_info.clone(),
            ping_interval_secs: self.config.agent_ping_interval.as_secs_f64(),
        });
        if let Some(old) = old.and_then(|a| a.link) {
            let _ = old.messages.send(Bytes::from(
                MasterMessage::Error {
                    message: "the agent registered again on another stream".into(),
                }
                .to_record(),
            ));
        }
        // The agent applies (creates, destroys) what the master recorded.
        agent.send(&MasterMessage::CheckpointResources {
            resources: agent.checkpointed.clone(),
        });
        for framework_id in shutdown.into_iter().chain(shutdown_unaware) {
            agent.send(&MasterMessage::ShutdownFramework {
                framework_id: FrameworkID::new(framework_id),
            });
        }
        self.agents.insert(agent_id.clone(), agent);
        if reregister {
            self.counters.agent_reregistrations += 1;
        } else {
            self.counters.agent_registrations += 1;
        }
        self.wake_allocator();
        Ok((agent_id, stream_id))
    }

    /// A known agent re-registering with other resources than it had (its
    /// flags changed and its `--reconfiguration-policy` allowed it; another
    /// agent implementation may not check): the new total, with its
    /// dynamic reservations and volumes in place, must still hold what its
    /// running tasks use. Otherwise the master refuses the registration
    /// (ERROR on the stream, with the reason): admitting it would leave the
    /// allocator with more in use than the agent has, and the tasks cannot
    /// be un-launched. A new total that does hold them is taken as it is
    /// (the allocator's total and the registry record follow the agent).
    pub(super) fn check_changed_agent(
        &self,
        agent_id: &str,
        info: &AgentInfo,
        tasks: &[AgentTask],
        reported_checkpointed: &Resources,
    ) -> Result<(), String> {
        let previous = match self.agents.get(agent_id) {
            Some(a) => Some(a.info.resources.clone()),
            None => self
                .recovered_agents
                .get(agent_id)
                .and_then(|a| serde_json::from_value::<Resources>(a.record.resources.clone()).ok()),
        };
        let Some(previous) = previous else {
            return Ok(());
        };
        if previous == info.resources {
            return Ok(());
        }
        let checkpointed = self
            .registry_checkpointed(agent_id)
            .unwrap_or_else(|| reported_checkpointed.unallocate());
        let changed = || {
            format!(
                "Agent {agent_id} re-registered with resources {} (it had {previous})",
                info.resources
            )
        };
        let total = total_with(&info.resources, &checkpointed).map_err(|e| {
            format!(
                "{}, which no longer hold its dynamic reservations and volumes: {e}",
                changed()
            )
        })?;
        let mut used = Resources::new();
        for t in tasks.iter().filter(|t| !t.state.is_terminal()) {
            used += &t.task.resources.unallocate();
        }
        if let Err(e) = total.checked_sub(&used) {
            return Err(format!(
                "{}, which no longer hold the resources its running tasks use ({used}): {e}",
                changed()
            ));
        }
        eprintln!(
            "berth master: agent {agent_id} re-registered with changed resources: {previous} -> {}",
            info.resources
        );
        Ok(())
    }

    /// Checks a non-REGISTER agent call's id and stream id.
    pub fn check_agent(&self, agent_id: &str, stream_id: Option<&str>) -> Result<(), Refusal> {
        let Some(agent) = self.agents.get(agent_id) else {
            return Err(Refusal::BadRequest(format!(
                "Agent {agent_id} is not registered"
            )));
        };
        match (&agent.link, stream_id) {
            (Some(link), Some(given)) if link.stream_id == given => Ok(()),
            (None, _) => Err(Refusal::Forbidden(format!(
                "Agent {agent_id} has no open stream; register again"
            ))),
            _ => Err(Refusal::BadRequest(format!(
                "header '{}' does not match agent {agent_id}'s stream",
                masterlink::protocol::STREAM_ID_HEADER
            ))),
        }
    }

    /// PONG.
    pub fn pong(&mut self, agent_id: &str) {
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.missed_pings = 0;
        }
    }

    /// UNREGISTER: the agent leaves; its tasks are lost.
    pub fn unregister_agent(&mut self, agent_id: &str) {
        self.remove_agent(
            agent_id,
            TaskState::Lost,
            Reason::AgentRemoved,
            "Agent shut down",
        );
        if let Err(e) = self.registry.remove_agent(agent_id) {
            eprintln!("berth master: cannot remove agent {agent_id} from the registry: {e}");
        }
    }

    /// The agent's stream `stream_id` ended: it is deactivated (no offers)
    /// until it registers again or the ping timeout makes it unreachable.
    pub fn agent_disconnected(&mut self, agent_id: &str, stream_id: &str) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        if agent.link.as_ref().map(|l| l.stream_id.as_str()) != Some(stream_id) {
            return;
        }
        agent.link = None;
        self.allocator.deactivate_agent(agent_id);
        self.rescind_offers_on(agent_id);
    }

    /// The ping timer: PINGs every connected agent; an agent that has missed
    /// `max_agent_ping_timeouts` (connected or not) becomes unreachable.
    pub fn ping_agents(&mut self) {
        let max = self.config.max_agent_ping_timeouts;
        let mut lost = Vec::new();
        for agent in self.agents.values_mut() {
            if agent.unreachable_time.is_some() {
                continue;
            }
            if agent.missed_pings >= max {
                lost.push(agent.id.clone());
                continue;
            }
            agent.missed_pings += 1;
            agent.next_ping += 1;
            agent.send(&MasterMessage::Ping {
                id: agent.next_ping,
            });
        }
        for id in lost {
            self.mark_unreachable(&id);
        }
    }

    /// An agent missed its pings: offers rescinded, tasks UNREACHABLE (LOST
    /// for frameworks that are not PARTITION_AWARE), FAILURE sent.
    pub(super) fn mark_unreachable(&mut self, agent_id: &str) {
        eprintln!("berth master: agent {agent_id} is unreachable (missed its pings)");
        self.remove_agent(
            agent_id,
            TaskState::Unreachable,
            Reason::AgentRemoved,
            "Agent is unreachable",
        );
        // Kept (not forgotten) so that reconciliation answers UNREACHABLE and
        // the agent may come back; it registers again with its id.
    }

    /// Takes an agent out of service: its offers are rescinded, its tasks
    /// get `state`, frameworks get FAILURE. An unreachable agent stays known
    /// (marked); otherwise it is forgotten.
    pub(super) fn remove_agent(
        &mut self,
        agent_id: &str,
        state: TaskState,
        reason: Reason,
        message: &str,
    ) {
        self.rescind_offers_on(agent_id);
        self.allocator.remove_agent(agent_id);
        self.counters.agent_removals += 1;
        let now = now_secs();
        let tasks: Vec<(String, String)> = self
            .agents
            .get(agent_id)
            .map(|a| a.tasks.iter().cloned().collect())
            .unwrap_or_default();
        let mut told = BTreeSet::new();
        for (fid, tid) in tasks {
            let Some(fw) = self.frameworks.get_mut(&fid) else {
                continue;
            };
            let shown = fw.visible(state);
            if let Some(task) = fw.tasks.get_mut(&tid) {
                if task.state.is_terminal() {
                    continue;
                }
                // The master keeps the true state (UNREACHABLE, as Mesos'
                // unreachable tasks): reconciliation and the APIs show it,
                // translated for frameworks that are not PARTITION_AWARE,
                // and a re-registration can tell which tasks came back.
                task.state = state;
                task.resources_recovered = true;
                let mut s = master_status(
                    &task.info.task_id,
                    Some(agent_id),
                    shown,
                    reason.clone(),
                    message,
                );
                if shown == TaskState::Unreachable {
                    s.unreachable_time = Some(masterlink::scheduler::TimeInfo {
                        nanoseconds: (now * 1e9) as i64,
                    });
                }
                push_status(&mut task.statuses, s.clone());
                fw.send(&Event::update(s));
                // A removed agent's tasks are over (the update carries no
                // uuid, so no acknowledgement would ever complete them).
                if state.is_terminal() {
                    let task = fw.tasks.remove(&tid).expect("present");
                    push_bounded(&mut fw.completed_tasks, task, MAX_COMPLETED_TASKS);
                }
            }
            if told.insert(fid.clone()) {
                fw.send(&Event::failure(Failure {
                    agent_id: Some(AgentID::new(agent_id)),
                    executor_id: None,
                    status: None,
                }));
            }
        }
        if state == TaskState::Unreachable {
            if let Some(agent) = self.agents.get_mut(agent_id) {
                agent.unreachable_time = Some(now);
                agent.link = None;
            }
        } else {
            self.agents.remove(agent_id);
        }
        self.wake_allocator();
    }

    /// `agent_id`'s host rebooted and its agent registered anew: its tasks
    /// are GONE (LOST for frameworks that are not PARTITION_AWARE) with
    /// REASON_AGENT_RESTARTED, frameworks get FAILURE, and the old agent
    /// leaves the master and the registry (it can never come back: its
    /// work dir now belongs to the new agent).
    pub(super) fn replace_rebooted_agent(&mut self, agent_id: &str) {
        let known = self.agents.contains_key(agent_id);
        let recovered = self.recovered_agents.remove(agent_id).is_some();
        if !known && !recovered {
            return; // already forgotten (e.g. the REGISTER was retried)
        }
        eprintln!(
            "berth master: agent {agent_id} rebooted and registers as a new agent; its tasks are gone"
        );
        if known {
            self.remove_agent(
                agent_id,
                TaskState::Gone,
                Reason::AgentRestarted,
                "Agent restarted after a reboot of its host: the task's container is gone",
            );
        } else {
            self.counters.agent_removals += 1;
        }
        if let Err(e) = self.registry.remove_agent(agent_id) {
            eprintln!("berth master: cannot remove agent {agent_id} from the registry: {e}");
        }
    }
}
