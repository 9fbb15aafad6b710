//! Frameworks: SUBSCRIBE, disconnection, failover timeouts, removal,
//! SUPPRESS and REVIVE.

use super::*;

impl Core {
    /// Whether `framework_id` is known (subscribed or disconnected).
    pub fn framework_known(&self, framework_id: &str) -> bool {
        self.frameworks.contains_key(framework_id)
            || self
                .registry
                .frameworks()
                .map(|fs| fs.iter().any(|f| f.id == framework_id))
                .unwrap_or(false)
    }

    /// Checks a non-SUBSCRIBE call's framework and stream id.
    pub fn check_stream(&self, framework_id: &str, stream_id: Option<&str>) -> Result<(), Refusal> {
        let Some(fw) = self.frameworks.get(framework_id) else {
            return Err(if self.framework_known(framework_id) {
                Refusal::Forbidden("Framework is not subscribed".into())
            } else {
                Refusal::BadRequest("Framework cannot be found".into())
            });
        };
        let Some(sub) = &fw.stream else {
            return Err(Refusal::Forbidden("Framework is not subscribed".into()));
        };
        match stream_id {
            None => Err(Refusal::BadRequest(
                "All non-subscribe calls should include the 'Mesos-Stream-Id' header".into(),
            )),
            Some(given) if given == sub.stream_id => Ok(()),
            Some(given) => Err(Refusal::BadRequest(format!(
                "The stream ID '{given}' included in this request didn't match the stream ID \
                 currently associated with framework ID {framework_id} (header 'Mesos-Stream-Id')"
            ))),
        }
    }

    /// SUBSCRIBE: registers or re-registers a framework and opens its
    /// stream. Returns the framework id and the stream id; the SUBSCRIBED
    /// event is already queued on `events`.
    pub fn subscribe(
        &mut self,
        mut info: FrameworkInfo,
        call_framework_id: Option<&FrameworkID>,
        suppressed_roles: &[String],
        events: Sink,
    ) -> Result<(String, String), String> {
        info.validate_roles()?;
        if let Some(allowed) = &self.config.roles {
            if let Some(role) = info
                .effective_roles()
                .into_iter()
                .find(|r| !allowed.contains(r))
            {
                return Err(format!(
                    "Role '{role}' is not present in the master's --roles"
                ));
            }
        }
        let framework_id = match info.id.as_ref().or(call_framework_id) {
            Some(id) => id.value.clone(),
            None => loop {
                let id = format!("{}-{:04}", self.master_info.id, self.next_framework);
                self.next_framework += 1;
                if !self.frameworks.contains_key(&id) {
                    break id;
                }
            },
        };
        if self
            .completed_frameworks
            .iter()
            .any(|f| f.id() == framework_id)
        {
            return Err(format!(
                "Framework {framework_id} has been removed; subscribe without a framework id"
            ));
        }
        info.id = Some(FrameworkID::new(framework_id.clone()));
        let roles = info.effective_roles();
        let format = info.resource_format();

        // The allocator first (it validates the roles), then the registry, so
        // that a refusal changes nothing.
        let known_to_allocator = self.frameworks.contains_key(&framework_id);
        let added = if known_to_allocator {
            self.allocator.update_framework_roles(&framework_id, &roles)
        } else {
            self.allocator.add_framework(&framework_id, &roles)
        };
        added.map_err(|e| e.to_string())?;
        let _ = self
            .allocator
            .set_capabilities(&framework_id, allocator_capabilities(&info));

        let now = now_secs();
        let registered_at = self
            .registry
            .frameworks()
            .ok()
            .and_then(|fs| fs.into_iter().find(|f| f.id == framework_id))
            .map(|f| f.registered_at);
        let record = FrameworkRecord {
            id: framework_id.clone(),
            info: serde_json::to_value(&info).unwrap_or_default(),
            failover_timeout_secs: info.failover_timeout,
            registered_at: registered_at.unwrap_or(now),
            unregistered_at: None,
        };
        if let Err(e) = self.registry.put_framework(&record) {
            if !known_to_allocator {
                self.allocator.remove_framework(&framework_id);
            }
            return Err(format!(
                "Failed to persist the framework in the registry: {e}"
            ));
        }
        self.allocator.activate_framework(&framework_id);
        if !suppressed_roles.is_empty() {
            self.allocator
                .suppress(&framework_id, Some(suppressed_roles));
        }

        let stream_id = uuid();
        let subscriber = Subscriber {
            stream_id: stream_id.clone(),
            events,
        };
        let fw = match self.frameworks.get_mut(&framework_id) {
            Some(fw) => {
                if let Some(old) = fw.stream.take() {
                    // The old stream gets ERROR and ends (its sender drops).
                    if let Ok(r) = Event::error("Framework failed over").to_record(fw.format) {
                        let _ = old.events.send(Bytes::from(r));
                    }
                }
                // Offers made to the old connection are void.
                let offers: Vec<String> = fw.offers.iter().cloned().collect();
                fw.info = info;
                fw.roles = roles;
                fw.format = format;
                fw.reregistered_time = Some(now);
                fw.unregistered_time = None;
                fw.recovered = false;
                fw.stream = Some(subscriber);
                for offer in offers {
                    self.remove_offer(&offer, false);
                }
                self.frameworks.get_mut(&framework_id).expect("present")
            }
            None => {
                let fw = Framework {
                    info,
                    roles,
                    format,
                    stream: Some(subscriber),
                    registered_time: registered_at.unwrap_or(now),
                    reregistered_time: registered_at.map(|_| now),
                    unregistered_time: None,
                    tasks: BTreeMap::new(),
                    completed_tasks: VecDeque::new(),
                    offers: BTreeSet::new(),
                    recovered: false,
                };
                self.frameworks.entry(framework_id.clone()).or_insert(fw)
            }
        };
        fw.send(&Event::subscribed(masterlink::scheduler::Subscribed {
            framework_id: FrameworkID::new(framework_id.clone()),
            heartbeat_interval_seconds: Some(self.config.heartbeat_interval.as_secs_f64()),
            master_info: Some(self.master_info.clone()),
        }));
        self.wake_allocator();
        Ok((framework_id, stream_id))
    }

    /// The scheduler's stream `stream_id` ended: the framework is inactive
    /// (no offers; its tasks keep running) until a scheduler subscribes with
    /// its id again, or [`Core::expire_frameworks`] removes it after its
    /// failover timeout (0: removed now, as Mesos does).
    pub fn framework_disconnected(&mut self, framework_id: &str, stream_id: &str) {
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        if fw.stream.as_ref().map(|s| s.stream_id.as_str()) != Some(stream_id) {
            return; // an older stream, already replaced
        }
        fw.stream = None;
        fw.unregistered_time = Some(now_secs());
        let timeout = fw.info.failover_timeout;
        let offers: Vec<String> = fw.offers.iter().cloned().collect();
        self.allocator.deactivate_framework(framework_id);
        for offer in offers {
            self.remove_offer(&offer, false);
        }
        if timeout.is_nan() || timeout <= 0.0 {
            self.remove_framework(framework_id);
        }
    }

    /// Removes every disconnected framework whose failover timeout has
    /// passed (called every second).
    pub fn expire_frameworks(&mut self, now: f64) {
        let expired: Vec<String> = self
            .frameworks
            .iter()
            .filter(|(_, fw)| {
                fw.stream.is_none()
                    && fw
                        .unregistered_time
                        .is_some_and(|t| now >= t + fw.info.failover_timeout.max(0.0))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            eprintln!("berth master: framework {id} did not come back within its failover timeout; removing it");
            self.remove_framework(&id);
        }
    }

    /// TEARDOWN, failover timeout: kills the framework's tasks, drops its
    /// offers and moves it to the completed frameworks.
    pub fn remove_framework(&mut self, framework_id: &str) {
        let Some(mut fw) = self.frameworks.remove(framework_id) else {
            return;
        };
        for offer in std::mem::take(&mut fw.offers) {
            self.offers.remove(&offer);
        }
        let mut agents = BTreeSet::new();
        for task in fw.tasks.values_mut() {
            agents.insert(task.agent_id.clone());
            if let Some(agent) = self.agents.get_mut(&task.agent_id) {
                agent
                    .tasks
                    .remove(&(framework_id.to_string(), task.info.task_id.value.clone()));
            }
            if !task.state.is_terminal() {
                task.state = TaskState::Killed;
            }
        }
        for agent_id in agents {
            if let Some(agent) = self.agents.get(&agent_id) {
                agent.send(&MasterMessage::ShutdownFramework {
                    framework_id: FrameworkID::new(framework_id),
                });
            }
        }
        let tasks = std::mem::take(&mut fw.tasks);
        for (_, task) in tasks {
            push_bounded(&mut fw.completed_tasks, task, MAX_COMPLETED_TASKS);
        }
        self.allocator.remove_framework(framework_id);
        if let Err(e) = self.registry.remove_framework(framework_id) {
            eprintln!(
                "berth master: cannot remove framework {framework_id} from the registry: {e}"
            );
        }
        fw.stream = None; // ends the stream
        fw.unregistered_time = Some(now_secs());
        push_bounded(&mut self.completed_frameworks, fw, MAX_COMPLETED_FRAMEWORKS);
        self.wake_allocator();
    }

    pub fn suppress(&mut self, framework_id: &str, roles: Option<&[String]>) {
        self.allocator.suppress(framework_id, roles);
    }

    pub fn revive(&mut self, framework_id: &str, roles: Option<&[String]>) {
        self.allocator.revive(framework_id, roles);
        self.wake_allocator();
    }
}
