//! Tasks: KILL, RECONCILE, ACKNOWLEDGE and agents' status updates.

use super::*;

impl Core {
    /// KILL: forwarded to the task's agent; an unknown task is reconciled.
    pub fn kill(&mut self, framework_id: &str, kill: Kill) {
        let fw = self
            .frameworks
            .get(framework_id)
            .expect("checked by caller");
        match fw.tasks.get(&kill.task_id.value) {
            Some(task) => {
                if let Some(agent) = self.agents.get(&task.agent_id) {
                    agent.send(&MasterMessage::KillTask {
                        framework_id: FrameworkID::new(framework_id),
                        task_id: kill.task_id.clone(),
                        kill_policy: kill.kill_policy.clone(),
                    });
                }
            }
            None => self.reconcile(
                framework_id,
                Reconcile {
                    tasks: vec![masterlink::scheduler::ReconcileTask {
                        task_id: kill.task_id,
                        agent_id: kill.agent_id,
                    }],
                },
            ),
        }
    }

    /// RECONCILE (implicit with an empty list, else explicit).
    pub fn reconcile(&mut self, framework_id: &str, reconcile: Reconcile) {
        let fw = self
            .frameworks
            .get(framework_id)
            .expect("checked by caller");
        let reply = |task: &Task| {
            let mut s = task
                .statuses
                .last()
                .cloned()
                .unwrap_or_else(|| TaskStatus::new(task.info.task_id.clone(), task.state));
            s.state = fw.visible(task.state);
            s.uuid = None;
            s.source = Some(TaskSource::Master);
            s.reason = Some(Reason::Reconciliation);
            s.message = Some("Reconciliation: Latest task state".into());
            s.agent_id = Some(AgentID::new(task.agent_id.clone()));
            s.timestamp = Some(now_secs());
            s
        };
        if reconcile.tasks.is_empty() {
            for task in fw.tasks.values() {
                fw.send(&Event::update(reply(task)));
            }
            return;
        }
        for wanted in &reconcile.tasks {
            if let Some(task) = fw.tasks.get(&wanted.task_id.value) {
                fw.send(&Event::update(reply(task)));
                continue;
            }
            // The named agent: admitted and reachable, or unreachable since
            // (partitioned, or missing since a failover), or unknown.
            let unreachable_since = wanted.agent_id.as_ref().and_then(|a| {
                match (
                    self.agents.get(&a.value),
                    self.recovered_agents.get(&a.value),
                ) {
                    (Some(agent), _) => Some(agent.unreachable_time),
                    (None, Some(r)) => Some(r.unreachable_time),
                    (None, None) => None,
                }
            });
            let (state, message) = match unreachable_since {
                Some(Some(_)) => (
                    TaskState::Unreachable,
                    "Reconciliation: Task is unreachable",
                ),
                Some(None)
                    if wanted
                        .agent_id
                        .as_ref()
                        .is_some_and(|a| self.agents.contains_key(&a.value)) =>
                {
                    (
                        TaskState::Gone,
                        "Reconciliation: Task is unknown to the agent",
                    )
                }
                // Unknown, or a recovered agent that may still re-register
                // with it.
                _ => (TaskState::Unknown, "Reconciliation: Task is unknown"),
            };
            let mut s = master_status(
                &wanted.task_id,
                wanted.agent_id.as_ref().map(|a| a.value.as_str()),
                fw.visible(state),
                Reason::Reconciliation,
                message,
            );
            if state == TaskState::Unreachable {
                s.unreachable_time =
                    unreachable_since
                        .flatten()
                        .map(|t| masterlink::scheduler::TimeInfo {
                            nanoseconds: (t * 1e9) as i64,
                        });
            }
            fw.send(&Event::update(s));
        }
    }

    /// ACKNOWLEDGE: relayed to the agent; an acknowledged terminal task
    /// becomes a completed task.
    pub fn acknowledge(&mut self, framework_id: &str, ack: Acknowledge) -> Result<(), Refusal> {
        if !matches!(masterlink::scheduler::decode_base64(&ack.uuid), Some(b) if b.len() == 16) {
            return Err(Refusal::BadRequest(
                "field 'acknowledge.uuid': expecting the Base64 of 16 bytes".into(),
            ));
        }
        let fw = self
            .frameworks
            .get_mut(framework_id)
            .expect("checked by caller");
        if let Some(agent) = self.agents.get(&ack.agent_id.value) {
            agent.send(&MasterMessage::Acknowledge {
                framework_id: FrameworkID::new(framework_id),
                task_id: ack.task_id.clone(),
                uuid: ack.uuid.clone(),
            });
        }
        let done = fw.tasks.get(&ack.task_id.value).is_some_and(|t| {
            t.status_update_uuid.as_deref() == Some(ack.uuid.as_str())
                && t.status_update_state.is_some_and(|s| s.is_terminal())
        });
        if done {
            let task = fw.tasks.remove(&ack.task_id.value).expect("present");
            if let Some(agent) = self.agents.get_mut(&task.agent_id) {
                agent
                    .tasks
                    .remove(&(framework_id.to_string(), task.info.task_id.value.clone()));
            }
            push_bounded(&mut fw.completed_tasks, task, MAX_COMPLETED_TASKS);
        }
        Ok(())
    }

    /// STATUS_UPDATE from an agent.
    pub fn status_update(&mut self, agent_id: &str, framework_id: &str, mut status: TaskStatus) {
        if !matches!(status.uuid_bytes(), Some(b) if b.len() == 16) {
            self.counters.invalid_status_updates += 1;
            return;
        }
        self.counters.valid_status_updates += 1;
        status.agent_id = Some(AgentID::new(agent_id));
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            // The framework is gone: nobody will acknowledge; do it for it so
            // the agent stops retrying.
            if let Some(agent) = self.agents.get(agent_id) {
                agent.send(&MasterMessage::Acknowledge {
                    framework_id: FrameworkID::new(framework_id),
                    task_id: status.task_id.clone(),
                    uuid: status.uuid.clone().unwrap_or_default(),
                });
            }
            return;
        };
        let mut recover = None;
        if let Some(task) = fw.tasks.get_mut(&status.task_id.value) {
            task.state = status.state;
            task.status_update_state = Some(status.state);
            task.status_update_uuid = status.uuid.clone();
            push_status(&mut task.statuses, status.clone());
            if status.state.is_terminal() && !task.resources_recovered {
                task.resources_recovered = true;
                recover = Some(task.info.resources.clone());
            }
        }
        let mut event_status = status;
        event_status.state = fw.visible(event_status.state);
        fw.send(&Event::update(event_status));
        if let Some(resources) = recover {
            if let Err(e) =
                self.allocator
                    .recover(framework_id, agent_id, &resources, None, Instant::now())
            {
                eprintln!("berth master: cannot recover a finished task's resources: {e}");
            }
            self.wake_allocator();
        }
    }
}
