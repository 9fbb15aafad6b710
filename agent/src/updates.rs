//! The status update manager: Mesos' reliable delivery of task status
//! updates from the agent to the framework, through the master.
//!
//! * Per task, updates go out in the order they were made, **one in
//!   flight**: the next one is sent only after the framework acknowledged
//!   the previous one (the master relays the ACKNOWLEDGE with its uuid).
//! * The update in flight is resent with backoff (from the minimum retry
//!   interval, doubling up to the maximum: Mesos' 10 s and 10 min) until it
//!   is acknowledged, and at once when the agent re-registers.
//! * Every update and every acknowledgement is appended to the task's
//!   `task.updates` log and synced before it has any effect, so a restarted
//!   agent rebuilds the same streams with [`UpdateManager::recover`].
//!
//! The manager does no I/O other than the logs and keeps no clock: the time
//! is passed in, which keeps it testable and the caller in charge of timers.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use masterlink::scheduler::{FrameworkID, TaskID, TaskStatus};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointError};

/// Mesos' `STATUS_UPDATE_RETRY_INTERVAL_MIN`.
pub const DEFAULT_RETRY_MIN: Duration = Duration::from_secs(10);
/// Mesos' `STATUS_UPDATE_RETRY_INTERVAL_MAX`.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(600);

/// One line of a `task.updates` log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Record {
    /// An update was made (with its uuid).
    Update { status: Box<TaskStatus> },
    /// The update with this uuid was acknowledged by the framework.
    Ack { uuid: String },
}

/// What the manager's caller must do with an update: send it to the master.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub framework_id: FrameworkID,
    pub status: TaskStatus,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, PartialEq)]
pub enum AckOutcome {
    /// No stream for that task.
    UnknownTask,
    /// Not the uuid in flight (a duplicate or a stale acknowledgement).
    Ignored,
    /// The update in flight was acknowledged.
    Acked(Box<Acked>),
}

/// An acknowledged update and what follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Acked {
    /// The acknowledged update.
    pub status: TaskStatus,
    /// The next update of the task, to be sent now.
    pub next: Option<Outgoing>,
}

/// Why an update was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("status update for task {0} has no uuid")]
    NoUuid(String),
    #[error("task {0} already had its terminal update acknowledged")]
    StreamClosed(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

#[derive(Debug)]
struct InFlight {
    status: TaskStatus,
    /// When to resend.
    due: Instant,
    /// The wait before the resend after that.
    interval: Duration,
}

#[derive(Debug)]
struct Stream {
    pending: VecDeque<TaskStatus>,
    in_flight: Option<InFlight>,
    /// The task's `task.updates`; none for tasks the agent never had (an
    /// update about an unknown task is not checkpointed, as in Mesos).
    log: Option<PathBuf>,
    /// Its terminal update was acknowledged: nothing more will come.
    closed: bool,
}

/// Per-task update streams (see the module docs).
#[derive(Debug)]
pub struct UpdateManager {
    streams: BTreeMap<(FrameworkID, TaskID), Stream>,
    retry_min: Duration,
    retry_max: Duration,
}

/// What [`UpdateManager::recover`] found in a log.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recovered {
    /// Every update made, in order.
    pub updates: Vec<TaskStatus>,
    /// How many of them were acknowledged.
    pub acked: usize,
    /// The task's terminal update was acknowledged.
    pub closed: bool,
}

impl UpdateManager {
    pub fn new(retry_min: Duration, retry_max: Duration) -> UpdateManager {
        UpdateManager {
            streams: BTreeMap::new(),
            retry_min,
            retry_max: retry_max.max(retry_min),
        }
    }

    /// Takes a new update of a task: checkpoints it, queues it, and returns
    /// it when it is to be sent now (nothing else of the task in flight).
    pub fn update(
        &mut self,
        framework_id: &FrameworkID,
        status: TaskStatus,
        log: Option<&Path>,
        now: Instant,
    ) -> Result<Option<Outgoing>, UpdateError> {
        if status.uuid.is_none() {
            return Err(UpdateError::NoUuid(status.task_id.value.clone()));
        }
        let key = (framework_id.clone(), status.task_id.clone());
        let stream = self.streams.entry(key).or_insert_with(|| Stream {
            pending: VecDeque::new(),
            in_flight: None,
            log: log.map(Path::to_path_buf),
            closed: false,
        });
        if stream.closed {
            return Err(UpdateError::StreamClosed(status.task_id.value.clone()));
        }
        if let Some(path) = &stream.log {
            checkpoint::append_json(
                path,
                &Record::Update {
                    status: Box::new(status.clone()),
                },
            )?;
        }
        stream.pending.push_back(status);
        Ok(Self::advance(framework_id, stream, now, self.retry_min))
    }

    /// Moves the next pending update in flight if nothing is.
    fn advance(
        framework_id: &FrameworkID,
        stream: &mut Stream,
        now: Instant,
        retry_min: Duration,
    ) -> Option<Outgoing> {
        if stream.in_flight.is_some() {
            return None;
        }
        let status = stream.pending.pop_front()?;
        stream.in_flight = Some(InFlight {
            status: status.clone(),
            due: now + retry_min,
            interval: retry_min,
        });
        Some(Outgoing {
            framework_id: framework_id.clone(),
            status,
        })
    }

    /// Handles the framework's acknowledgement of the update with `uuid`.
    pub fn acknowledge(
        &mut self,
        framework_id: &FrameworkID,
        task_id: &TaskID,
        uuid: &str,
        now: Instant,
    ) -> Result<AckOutcome, UpdateError> {
        let Some(stream) = self
            .streams
            .get_mut(&(framework_id.clone(), task_id.clone()))
        else {
            return Ok(AckOutcome::UnknownTask);
        };
        let matches = stream
            .in_flight
            .as_ref()
            .is_some_and(|f| f.status.uuid.as_deref() == Some(uuid));
        if !matches {
            return Ok(AckOutcome::Ignored);
        }
        if let Some(path) = &stream.log {
            checkpoint::append_json(
                path,
                &Record::Ack {
                    uuid: uuid.to_string(),
                },
            )?;
        }
        let acked = stream.in_flight.take().map(|f| f.status);
        let Some(status) = acked else {
            return Ok(AckOutcome::Ignored);
        };
        if status.state.is_terminal() {
            stream.closed = true;
        }
        let next = Self::advance(framework_id, stream, now, self.retry_min);
        Ok(AckOutcome::Acked(Box::new(Acked { status, next })))
    }

    /// The updates whose resend is due; their next resend is scheduled with
    /// the doubled interval.
    pub fn due(&mut self, now: Instant) -> Vec<Outgoing> {
        let max = self.retry_max;
        let mut out = Vec::new();
        for ((fid, _), stream) in self.streams.iter_mut() {
            if let Some(f) = stream.in_flight.as_mut() {
                if f.due <= now {
                    f.interval = (f.interval * 2).min(max);
                    f.due = now + f.interval;
                    out.push(Outgoing {
                        framework_id: fid.clone(),
                        status: f.status.clone(),
                    });
                }
            }
        }
        out
    }

    /// Every update in flight (or next in line), for sending at once after a
    /// (re-)registration; the backoff restarts.
    pub fn resend_all(&mut self, now: Instant) -> Vec<Outgoing> {
        let min = self.retry_min;
        let mut out = Vec::new();
        for ((fid, _), stream) in self.streams.iter_mut() {
            if let Some(o) = Self::advance(fid, stream, now, min) {
                out.push(o);
                continue;
            }
            if let Some(f) = stream.in_flight.as_mut() {
                f.interval = min;
                f.due = now + min;
                out.push(Outgoing {
                    framework_id: fid.clone(),
                    status: f.status.clone(),
                });
            }
        }
        out
    }

    /// When the next resend is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.streams
            .values()
            .filter_map(|s| s.in_flight.as_ref().map(|f| f.due))
            .min()
    }

    /// Drops a task's stream (its framework is gone: nobody will ack).
    pub fn forget(&mut self, framework_id: &FrameworkID, task_id: &TaskID) {
        self.streams
            .remove(&(framework_id.clone(), task_id.clone()));
    }

    /// The update of a task in flight, if any.
    pub fn in_flight(&self, framework_id: &FrameworkID, task_id: &TaskID) -> Option<&TaskStatus> {
        self.streams
            .get(&(framework_id.clone(), task_id.clone()))
            .and_then(|s| s.in_flight.as_ref().map(|f| &f.status))
    }

    /// Updates of a task not yet acknowledged (in flight first).
    pub fn unacknowledged(&self, framework_id: &FrameworkID, task_id: &TaskID) -> Vec<TaskStatus> {
        self.streams
            .get(&(framework_id.clone(), task_id.clone()))
            .map(|s| {
                s.in_flight
                    .iter()
                    .map(|f| f.status.clone())
                    .chain(s.pending.iter().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True when the task's terminal update was acknowledged.
    pub fn is_closed(&self, framework_id: &FrameworkID, task_id: &TaskID) -> bool {
        self.streams
            .get(&(framework_id.clone(), task_id.clone()))
            .is_some_and(|s| s.closed)
    }

    /// Rebuilds a task's stream from its log (agent restart). Nothing is in
    /// flight afterwards: [`Self::resend_all`] sends the first unacknowledged
    /// update once the agent is registered again.
    pub fn recover(
        &mut self,
        framework_id: &FrameworkID,
        task_id: &TaskID,
        log: &Path,
    ) -> Result<Recovered, UpdateError> {
        let records: Vec<Record> = checkpoint::read_json_lines(log)?;
        let mut updates = Vec::new();
        let mut pending: VecDeque<TaskStatus> = VecDeque::new();
        let mut acked = 0;
        let mut closed = false;
        for r in records {
            match r {
                Record::Update { status } => {
                    updates.push((*status).clone());
                    pending.push_back(*status);
                }
                // Acks are only ever written for the oldest unacked update.
                Record::Ack { uuid } => {
                    if pending.front().and_then(|s| s.uuid.as_deref()) == Some(uuid.as_str()) {
                        let s = pending.pop_front();
                        acked += 1;
                        if s.is_some_and(|s| s.state.is_terminal()) {
                            closed = true;
                        }
                    }
                }
            }
        }
        self.streams.insert(
            (framework_id.clone(), task_id.clone()),
            Stream {
                pending,
                in_flight: None,
                log: Some(log.to_path_buf()),
                closed,
            },
        );
        Ok(Recovered {
            updates,
            acked,
            closed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use masterlink::scheduler::TaskState;

    fn status(task: &str, state: TaskState, uuid: &str) -> TaskStatus {
        let mut s = TaskStatus::new(TaskID::new(task), state);
        s.uuid = Some(uuid.to_string());
        s
    }

    fn fw() -> FrameworkID {
        FrameworkID::new("F")
    }

    #[test]
    fn one_update_in_flight_per_task_in_order() {
        let mut m = UpdateManager::new(Duration::from_millis(10), Duration::from_millis(80));
        let t0 = Instant::now();
        let a = m
            .update(&fw(), status("t", TaskState::Starting, "u1"), None, t0)
            .unwrap();
        assert_eq!(a.unwrap().status.uuid.as_deref(), Some("u1"));
        // Queued behind u1.
        assert!(m
            .update(&fw(), status("t", TaskState::Running, "u2"), None, t0)
            .unwrap()
            .is_none());
        assert!(m
            .update(&fw(), status("t", TaskState::Finished, "u3"), None, t0)
            .unwrap()
            .is_none());
        // Another task has its own stream.
        assert!(m
            .update(&fw(), status("o", TaskState::Starting, "o1"), None, t0)
            .unwrap()
            .is_some());
        // A wrong uuid changes nothing.
        assert_eq!(
            m.acknowledge(&fw(), &TaskID::new("t"), "u2", t0).unwrap(),
            AckOutcome::Ignored
        );
        let mut sent = Vec::new();
        for uuid in ["u1", "u2"] {
            match m.acknowledge(&fw(), &TaskID::new("t"), uuid, t0).unwrap() {
                AckOutcome::Acked(a) => {
                    assert_eq!(a.status.uuid.as_deref(), Some(uuid));
                    sent.push(a.next.unwrap().status.uuid.unwrap());
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(sent, ["u2", "u3"]);
        match m.acknowledge(&fw(), &TaskID::new("t"), "u3", t0).unwrap() {
            AckOutcome::Acked(a) => {
                assert_eq!(a.status.state, TaskState::Finished);
                assert!(a.next.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(m.is_closed(&fw(), &TaskID::new("t")));
        assert!(matches!(
            m.update(&fw(), status("t", TaskState::Failed, "u4"), None, t0),
            Err(UpdateError::StreamClosed(_))
        ));
        assert_eq!(
            m.acknowledge(&fw(), &TaskID::new("zz"), "u", t0).unwrap(),
            AckOutcome::UnknownTask
        );
    }

    #[test]
    fn resends_back_off_to_the_maximum() {
        let min = Duration::from_millis(10);
        let mut m = UpdateManager::new(min, Duration::from_millis(40));
        let t0 = Instant::now();
        m.update(&fw(), status("t", TaskState::Running, "u1"), None, t0)
            .unwrap();
        assert_eq!(m.next_deadline(), Some(t0 + min));
        assert!(m.due(t0 + Duration::from_millis(9)).is_empty());
        // Resends at +10, then +20 later, then +40, then capped at +40.
        let mut t = t0;
        let mut gaps = Vec::new();
        for _ in 0..4 {
            let d = m.next_deadline().unwrap();
            gaps.push(d - t);
            t = d;
            let out = m.due(t);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].status.uuid.as_deref(), Some("u1"));
        }
        assert_eq!(gaps, [10, 20, 40, 40].map(Duration::from_millis).to_vec());
        // Re-registration resends at once and restarts the backoff.
        let out = m.resend_all(t);
        assert_eq!(out.len(), 1);
        assert_eq!(m.next_deadline(), Some(t + min));
        // Once acknowledged, nothing is due any more.
        m.acknowledge(&fw(), &TaskID::new("t"), "u1", t).unwrap();
        assert_eq!(m.next_deadline(), None);
        assert!(m.due(t + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn updates_need_a_uuid() {
        let mut m = UpdateManager::new(DEFAULT_RETRY_MIN, DEFAULT_RETRY_MAX);
        let s = TaskStatus::new(TaskID::new("t"), TaskState::Running);
        assert!(matches!(
            m.update(&fw(), s, None, Instant::now()),
            Err(UpdateError::NoUuid(_))
        ));
    }

    #[test]
    fn checkpoint_is_written_and_recovered() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("tasks/t/task.updates");
        let t0 = Instant::now();
        let mut m = UpdateManager::new(Duration::from_millis(10), Duration::from_millis(80));
        for (state, uuid) in [
            (TaskState::Starting, "u1"),
            (TaskState::Running, "u2"),
            (TaskState::Finished, "u3"),
        ] {
            m.update(&fw(), status("t", state, uuid), Some(&log), t0)
                .unwrap();
        }
        m.acknowledge(&fw(), &TaskID::new("t"), "u1", t0).unwrap();
        let lines: Vec<Record> = checkpoint::read_json_lines(&log).unwrap();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[3], Record::Ack { uuid: "u1".into() });

        // A new agent reads it back: u2 is the one to resend, then u3.
        let mut r = UpdateManager::new(Duration::from_millis(10), Duration::from_millis(80));
        let rec = r.recover(&fw(), &TaskID::new("t"), &log).unwrap();
        assert_eq!(rec.updates.len(), 3);
        assert_eq!(rec.acked, 1);
        assert!(!rec.closed);
        assert_eq!(r.next_deadline(), None);
        let out = r.resend_all(t0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status.uuid.as_deref(), Some("u2"));
        assert_eq!(
            r.unacknowledged(&fw(), &TaskID::new("t"))
                .iter()
                .map(|s| s.uuid.clone().unwrap())
                .collect::<Vec<_>>(),
            ["u2", "u3"]
        );
        for u in ["u2", "u3"] {
            r.acknowledge(&fw(), &TaskID::new("t"), u, t0).unwrap();
        }
        let rec = UpdateManager::new(DEFAULT_RETRY_MIN, DEFAULT_RETRY_MAX)
            .recover(&fw(), &TaskID::new("t"), &log)
            .unwrap();
        assert!(rec.closed);
        assert_eq!(rec.acked, 3);
    }
}
