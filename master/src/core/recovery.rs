//! Taking over as leader: what the registry says is expected back.

use super::*;

impl Core {
    /// This master leads from now on and its registry is the truth: the
    /// agents it admitted are expected to re-register (with their tasks and
    /// frameworks) within the re-registration timeout; frameworks stay in
    /// the registry, so their schedulers can subscribe again with their ids.
    /// Checkpointed resources are read per agent as it re-registers.
    pub fn recover(&mut self, now: f64) -> Result<(), RegistryError> {
        let agents = self.registry.agents()?;
        for record in agents {
            if self.agents.contains_key(&record.id) {
                continue;
            }
            self.recovered_agents.insert(
                record.id.clone(),
                RecoveredAgent {
                    record,
                    unreachable_time: None,
                },
            );
        }
        self.elected_time = Some(now);
        if !self.recovered_agents.is_empty() {
            self.reregister_deadline =
                Some(now + self.config.agent_reregister_timeout.as_secs_f64());
        }
        eprintln!(
            "berth master: recovered the registry: {} agent(s) to re-register within {:?}",
            self.recovered_agents.len(),
            self.config.agent_reregister_timeout
        );
        Ok(())
    }

    /// Marks the recovered agents that did not re-register by the deadline
    /// unreachable, as Mesos does: their record stays in the registry, so
    /// they may still come back (and re-register with their tasks).
    pub fn expire_recovered_agents(&mut self, now: f64) {
        match self.reregister_deadline {
            Some(deadline) if now >= deadline => {}
            _ => return,
        }
        self.reregister_deadline = None;
        for (id, agent) in &mut self.recovered_agents {
            if agent.unreachable_time.is_none() {
                eprintln!(
                    "berth master: agent {id} did not re-register within {:?} after the \
                     failover; marking it unreachable",
                    self.config.agent_reregister_timeout
                );
                agent.unreachable_time = Some(now);
                self.counters.agent_removals += 1;
            }
        }
    }
}
