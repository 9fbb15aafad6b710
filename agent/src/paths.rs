//! The agent's work directory, laid out as a Mesos agent's so that tools and
//! people who know Mesos find things where they expect them:
//!
//! ```text
//! <work>/slaves/<AID>/frameworks/<FID>/executors/<EID>/runs/<CID>/   sandbox
//!        (stdout and stderr of the task are files in it)
//! <work>/meta/boot_id                                  boot id at the last start
//! <work>/meta/resources/resources.info                 dynamic reservations and
//!        persistent volumes as applied (JSON array, POST-refinement)
//! <work>/meta/resources/resources.target               the set being applied
//!        (present only while an apply is unfinished)
//! <work>/meta/slaves/latest -> <AID>                   the current agent id
//! <work>/meta/slaves/<AID>/slave.info                  AgentInfo (JSON)
//! <work>/meta/slaves/<AID>/frameworks/<FID>/framework.info
//! <work>/meta/slaves/<AID>/frameworks/<FID>/executors/<EID>/runs/<CID>/
//!        tasks/<TID>/task.info                         TaskInfo (JSON)
//!        tasks/<TID>/task.updates                      JSON lines: updates, acks
//! ```
//! For command tasks the executor id is the task id (as in Mesos); CID is
//! also the launcher's container id.

use std::path::{Path, PathBuf};

/// Paths under one work directory.
#[derive(Debug, Clone)]
pub struct WorkDir {
    pub root: PathBuf,
}

/// Where one task run lives: the ids that make up its paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunIds {
    pub agent_id: String,
    pub framework_id: String,
    pub executor_id: String,
    pub container_id: String,
    pub task_id: String,
}

impl WorkDir {
    pub fn new(root: impl Into<PathBuf>) -> WorkDir {
        WorkDir { root: root.into() }
    }

    pub fn meta(&self) -> PathBuf {
        self.root.join("meta")
    }

    pub fn boot_id(&self) -> PathBuf {
        self.meta().join("boot_id")
    }

    /// Checkpointed resources live outside `slaves/<AID>`: they outlive an
    /// agent id (after a reboot the agent registers anew and reports them).
    pub fn meta_resources(&self) -> PathBuf {
        self.meta().join("resources")
    }

    /// The dynamic reservations and volumes as applied.
    pub fn resources_info(&self) -> PathBuf {
        self.meta_resources().join("resources.info")
    }

    /// The set being applied (written before, removed after).
    pub fn resources_target(&self) -> PathBuf {
        self.meta_resources().join("resources.target")
    }

    pub fn meta_slaves(&self) -> PathBuf {
        self.meta().join("slaves")
    }

    /// The symlink naming the current agent's meta directory.
    pub fn latest(&self) -> PathBuf {
        self.meta_slaves().join("latest")
    }

    pub fn meta_agent(&self, agent_id: &str) -> PathBuf {
        self.meta_slaves().join(agent_id)
    }

    pub fn agent_info(&self, agent_id: &str) -> PathBuf {
        self.meta_agent(agent_id).join("slave.info")
    }

    pub fn meta_framework(&self, agent_id: &str, framework_id: &str) -> PathBuf {
        self.meta_agent(agent_id)
            .join("frameworks")
            .join(framework_id)
    }

    pub fn framework_info(&self, agent_id: &str, framework_id: &str) -> PathBuf {
        self.meta_framework(agent_id, framework_id)
            .join("framework.info")
    }

    pub fn meta_run(&self, ids: &RunIds) -> PathBuf {
        self.meta_framework(&ids.agent_id, &ids.framework_id)
            .join("executors")
            .join(&ids.executor_id)
            .join("runs")
            .join(&ids.container_id)
    }

    pub fn meta_task(&self, ids: &RunIds) -> PathBuf {
        self.meta_run(ids).join("tasks").join(&ids.task_id)
    }

    pub fn task_info(&self, ids: &RunIds) -> PathBuf {
        self.meta_task(ids).join("task.info")
    }

    pub fn task_updates(&self, ids: &RunIds) -> PathBuf {
        self.meta_task(ids).join("task.updates")
    }

    /// The task's sandbox (`MESOS_DIRECTORY`).
    pub fn sandbox(&self, ids: &RunIds) -> PathBuf {
        self.root
            .join("slaves")
            .join(&ids.agent_id)
            .join("frameworks")
            .join(&ids.framework_id)
            .join("executors")
            .join(&ids.executor_id)
            .join("runs")
            .join(&ids.container_id)
    }

    /// Every task run checkpointed for `agent_id`.
    pub fn checkpointed_runs(&self, agent_id: &str) -> Vec<RunIds> {
        let mut out = Vec::new();
        let frameworks = self.meta_agent(agent_id).join("frameworks");
        for fid in dir_names(&frameworks) {
            let executors = frameworks.join(&fid).join("executors");
            for eid in dir_names(&executors) {
                let runs = executors.join(&eid).join("runs");
                for cid in dir_names(&runs) {
                    for tid in dir_names(&runs.join(&cid).join("tasks")) {
                        out.push(RunIds {
                            agent_id: agent_id.to_string(),
                            framework_id: fid.clone(),
                            executor_id: eid.clone(),
                            container_id: cid.clone(),
                            task_id: tid,
                        });
                    }
                }
            }
        }
        out
    }
}

/// Names of the subdirectories of `dir` (none when it does not exist).
fn dir_names(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

/// A new container id: a random UUID in its usual text form (also a valid
/// launcher id).
pub fn new_container_id() -> String {
    let hex = launcher::state::new_id();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Where the kernel publishes the host's boot id.
pub const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";

/// The host's boot id read from `file` (normally [`BOOT_ID_FILE`]);
/// containers do not survive a change of it.
pub fn current_boot_id(file: &Path) -> String {
    std::fs::read_to_string(file)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_mesos_like() {
        let w = WorkDir::new("/w");
        let ids = RunIds {
            agent_id: "A-S0".into(),
            framework_id: "F".into(),
            executor_id: "t1".into(),
            container_id: "C".into(),
            task_id: "t1".into(),
        };
        assert_eq!(
            w.sandbox(&ids),
            Path::new("/w/slaves/A-S0/frameworks/F/executors/t1/runs/C")
        );
        assert_eq!(
            w.task_updates(&ids),
            Path::new("/w/meta/slaves/A-S0/frameworks/F/executors/t1/runs/C/tasks/t1/task.updates")
        );
        assert_eq!(w.latest(), Path::new("/w/meta/slaves/latest"));
    }

    #[test]
    fn runs_are_found_again() {
        let d = tempfile::tempdir().unwrap();
        let w = WorkDir::new(d.path());
        let ids = RunIds {
            agent_id: "A".into(),
            framework_id: "F".into(),
            executor_id: "t".into(),
            container_id: new_container_id(),
            task_id: "t".into(),
        };
        std::fs::create_dir_all(w.meta_task(&ids)).unwrap();
        assert_eq!(w.checkpointed_runs("A"), vec![ids]);
        assert!(w.checkpointed_runs("B").is_empty());
    }

    #[test]
    fn container_ids_are_uuids_and_valid_launcher_ids() {
        let c = new_container_id();
        assert_eq!(c.len(), 36);
        assert_eq!(c.matches('-').count(), 4);
        assert!(launcher::state::is_valid_id(&c));
    }
}
