//! `berth cluster run -- CMD...`: the smallest useful framework.
//!
//! It SUBSCRIBEs as "berth-cluster-run" (MULTI_ROLE, one role), takes the
//! first offer in that role with enough cpus and mem, ACCEPTs it with one
//! LAUNCH of a command task (`/bin/sh -c` the joined CMD), SUPPRESSes further
//! offers, prints each state of the task as it arrives, ACKNOWLEDGEs every
//! update that has a uuid, and TEARDOWNs at the end. Unusable offers are
//! DECLINEd with a short refusal so that they come back soon if resources
//! free up.
//!
//! Exit: 0 for TASK_FINISHED, 1 for any other terminal state (or a master
//! problem, or the timeout), 2 for bad flags. Ctrl-C / SIGTERM / the timeout
//! KILL the task and wait (bounded) for its terminal state first.

use std::collections::HashSet;
use std::time::Duration;

use berth::mesos::scheduler::{EventStream, SchedulerClient, Subscription};
use masterlink::scheduler::{
    AgentID, CommandInfo, Event, EventType, Filters, FrameworkCapability, FrameworkCapabilityType,
    FrameworkInfo, Offer, Operation, TaskID, TaskInfo, TaskState, TaskStatus,
};
use masterlink::{Resources, Scalar};
use serde_json::Value as Json;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

use super::{client_failure, MasterArg};
use crate::{CmdResult, Failure};

/// The framework's name, as the operator API and `berth cluster frameworks`
/// show it.
pub const FRAMEWORK_NAME: &str = "berth-cluster-run";

/// Refusal for offers that do not fit, while still waiting: short, so that
/// the resources are re-offered soon if a task elsewhere frees them.
const WAITING_REFUSE_SECONDS: f64 = 1.0;

/// Refusal once the task is launched (offers are also suppressed then).
const LAUNCHED_REFUSE_SECONDS: f64 = 60.0;

/// How long to wait for the terminal state after KILL.
const KILL_WAIT: Duration = Duration::from_secs(20);

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    master: MasterArg,
    /// CPUs for the task
    #[arg(long, value_name = "CPUS", default_value = "0.1", value_parser = parse_cpus)]
    cpus: Scalar,
    /// Memory for the task, in MB
    #[arg(long, value_name = "MB", default_value = "32", value_parser = parse_mem)]
    mem: Scalar,
    /// Role to subscribe as and take resources from
    #[arg(long, value_name = "ROLE", default_value = "*", value_parser = parse_role)]
    role: String,
    /// Task name (default: berth-cluster-run)
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    name: Option<String>,
    /// Give up after this long, killing the task if it runs: e.g. 60s, 5m, 1h; 0 = never
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    timeout: Timeout,
    /// Print every event from the master as one JSON line instead of states
    #[arg(long)]
    json: bool,
    /// The shell command (its words are joined with spaces and run by /bin/sh -c)
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// `--timeout`: `None` = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(Option<Duration>);

fn parse_scalar(s: &str, what: &str) -> Result<Scalar, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    let scalar = Scalar::from_f64(v).map_err(|e| format!("{s:?}: {e}"))?;
    // Mesos scalars have 3 decimals: 0.0004 would be a request for nothing.
    if scalar.millis() <= 0 {
        return Err(format!("{what} must be at least 0.001"));
    }
    Ok(scalar)
}

fn parse_cpus(s: &str) -> Result<Scalar, String> {
    parse_scalar(s, "CPUs")
}

fn parse_mem(s: &str) -> Result<Scalar, String> {
    parse_scalar(s, "memory (MB)")
}

fn parse_role(s: &str) -> Result<String, String> {
    masterlink::roles::validate_role(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

fn parse_name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("the task name must not be empty".into());
    }
    Ok(s.to_string())
}

/// `90`, `90s`, `500ms`, `5m`, `1h`; `0` = no limit.
fn parse_timeout(s: &str) -> Result<Timeout, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 60s, 5m, 1h, 0 for none)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if !secs.is_finite() || secs > 365.0 * 86400.0 {
        return Err(format!("{s:?} is too long"));
    }
    Ok(Timeout((secs > 0.0).then(|| Duration::from_secs_f64(secs))))
}

/// The framework this command subscribes as.
fn framework_info(role: &str) -> FrameworkInfo {
    let mut info = FrameworkInfo::new(current_user(), FRAMEWORK_NAME);
    info.roles = vec![role.to_string()];
    info.capabilities = vec![FrameworkCapability {
        capability_type: FrameworkCapabilityType::MultiRole,
    }];
    info.hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok());
    info
}

/// Tasks run as the calling user by default, as with any Mesos framework.
fn current_user() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| uid.to_string())
}

/// A task ID no other run picks: 64 random bits.
fn new_task_id() -> TaskID {
    let mut bytes = [0u8; 8];
    // /dev/urandom never blocks and always exists on Linux; the time and pid
    // are a fallback that is still unique per host.
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map(|_| u64::from_le_bytes(bytes))
        .unwrap_or_else(|_| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
        });
    TaskID::new(format!("berth-run-{random:016x}"))
}

/// The resources for one task of `cpus` and `mem` from `offer`, taken from
/// plain scalar cpus/mem the role may use (unreserved or reserved for it),
/// each keeping its reservation and allocation_info as offered (a MULTI_ROLE
/// framework must echo them). `None` when the offer is for another role or
/// too small.
pub fn pick_resources(offer: &Offer, role: &str, cpus: Scalar, mem: Scalar) -> Option<Resources> {
    if let Some(r) = offer
        .allocation_info
        .as_ref()
        .and_then(|a| a.role.as_deref())
    {
        if r != role {
            return None;
        }
    }
    let mut picked = Resources::new();
    for (name, want) in [("cpus", cpus), ("mem", mem)] {
        let mut need = want;
        for r in offer.resources.iter() {
            if need.is_zero() {
                break;
            }
            let usable = r.name == name
                && r.disk.is_none()
                && !r.revocable
                && !r.shared
                && r.is_allocatable_to(role);
            let masterlink::resources::ResourceValue::Scalar(have) = r.value else {
                continue;
            };
            if !usable {
                continue;
            }
            let take = have.min(need);
            let mut part = r.clone();
            part.value = masterlink::resources::ResourceValue::Scalar(take);
            picked.push(part);
            need -= take;
        }
        if !need.is_zero() {
            return None;
        }
    }
    Some(picked)
}

/// What is printed for one update: the state, then the message, and the
/// reason unless the task simply finished.
pub fn status_line(s: &TaskStatus) -> String {
    let mut line = s.state.to_string();
    if let Some(m) = s.message.as_deref().filter(|m| !m.is_empty()) {
        line.push(' ');
        line.push_str(m);
    }
    if s.state != TaskState::Finished {
        if let Some(r) = &s.reason {
            line.push_str(&format!(" ({r})"));
        }
    }
    line
}

/// The exit code for a terminal state.
pub fn exit_code(state: TaskState) -> u8 {
    if state == TaskState::Finished {
        0
    } else {
        1
    }
}

fn fail(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: message.into(),
    }
}

pub async fn run(a: Args) -> CmdResult {
    let command = a.command.join(" ");
    if command.trim().is_empty() {
        return Err(Failure {
            code: 2,
            message: "CMD: the command is empty".into(),
        });
    }
    // Signal handlers first: a Ctrl-C while subscribing must not kill the
    // process before it can tear the framework down.
    let signals = Signals::new().map_err(|e| fail(format!("cannot handle signals: {e}")))?;
    let master = a.master.addr();
    let Subscription {
        client,
        subscribed,
        subscribed_json,
        mut events,
    } = SchedulerClient::subscribe(&master, {
        // An authenticating master wants the framework's principal to be
        // the authenticated one.
        let mut info = framework_info(&a.role);
        info.principal = a.master.principal().map(String::from);
        info
    })
    .await
    .map_err(client_failure)?;
    if a.json {
        print_json(&subscribed_json);
    } else {
        eprintln!(
            "berth: subscribed to {} as framework {}",
            client.master(),
            subscribed.framework_id
        );
    }
    let mut run = Run {
        client: client.clone(),
        task_id: new_task_id(),
        name: a.name.unwrap_or_else(|| FRAMEWORK_NAME.to_string()),
        command,
        role: a.role,
        cpus: a.cpus,
        mem: a.mem,
        json: a.json,
        agent: None,
        seen: HashSet::new(),
    };
    let result = run.follow(&mut events, signals, a.timeout.0).await;
    // Whatever happened, the framework goes: TEARDOWN also kills a task that
    // is somehow still running. The event stream stays open until then: with
    // failover_timeout 0 the master removes a framework as soon as its stream
    // closes, and the TEARDOWN would find none.
    if let Err(e) = client.teardown().await {
        eprintln!("berth: warning: TEARDOWN failed: {e}");
    }
    drop(events);
    result
}

struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "interrupted",
            _ = self.term.recv() => "terminated",
        }
    }
}

struct Run {
    client: SchedulerClient,
    task_id: TaskID,
    name: String,
    command: String,
    role: String,
    cpus: Scalar,
    mem: Scalar,
    json: bool,
    /// Set once the task is launched.
    agent: Option<AgentID>,
    /// uuids printed already: the agent re-sends an update until it is
    /// acknowledged, and a duplicate is not a new state.
    seen: HashSet<String>,
}

impl Run {
    async fn follow(
        &mut self,
        events: &mut EventStream,
        mut signals: Signals,
        timeout: Option<Duration>,
    ) -> CmdResult {
        let deadline = timeout.map(|t| Instant::now() + t);
        // Set when stopping: why, and until when to wait for the task's end.
        let mut stopping: Option<(&'static str, Instant)> = None;
        loop {
            let wake = stopping.map(|(_, until)| until).or(deadline);
            let why = tokio::select! {
                ev = events.next_with_json() => {
                    match ev.map_err(client_failure)? {
                        None => return Err(fail("the master closed the event stream")),
                        Some((event, json)) => {
                            if let Some(code) = self.handle(event, &json).await? {
                                return Ok(code);
                            }
                            continue;
                        }
                    }
                }
                why = signals.recv() => why,
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                    if stopping.is_some() { "gave up waiting" } else { "timed out" }
                }
            };
            if let Some((first, _)) = stopping {
                return Err(fail(format!(
                    "{first}; task {} was killed but its end was not reported ({why})",
                    self.task_id
                )));
            }
            let Some(agent) = self.agent.clone() else {
                let waited = match timeout {
                    Some(t) if why == "timed out" => format!(" after {}s", t.as_secs_f64()),
                    _ => String::new(),
                };
                return Err(fail(format!(
                    "{why}{waited} before an offer with cpus:{};mem:{} for role {} arrived",
                    self.cpus, self.mem, self.role
                )));
            };
            eprintln!("berth: {why}: killing task {}", self.task_id);
            self.client
                .kill(self.task_id.clone(), Some(agent))
                .await
                .map_err(client_failure)?;
            stopping = Some((why, Instant::now() + KILL_WAIT));
        }
    }

    /// Handles one event; `Some(code)` once the task's terminal state arrived.
    async fn handle(&mut self, event: Event, json: &Json) -> Result<Option<u8>, Failure> {
        if self.json {
            print_json(json);
        }
        match event.event_type {
            EventType::Offers => {
                let offers = event.offers.map(|o| o.offers).unwrap_or_default();
                self.offers(offers).await?;
            }
            EventType::Update => {
                let status = event
                    .update
                    .expect("Event::parse checks the payload")
                    .status;
                return self.update(status).await;
            }
            EventType::Error => {
                let message = event
                    .error
                    .expect("Event::parse checks the payload")
                    .message;
                return Err(fail(format!("the master sent ERROR: {message}")));
            }
            EventType::Failure => {
                let f = event.failure.expect("Event::parse checks the payload");
                if f.agent_id.is_some() && f.agent_id == self.agent && !self.json {
                    match &f.executor_id {
                        Some(e) => eprintln!("berth: executor {e} exited ({:?})", f.status),
                        None => eprintln!("berth: the task's agent was lost"),
                    }
                }
            }
            // SUBSCRIBED again, HEARTBEAT, RESCIND (an offer we did not
            // use), inverse offers (maintenance hints; nothing to hold) and
            // messages need nothing.
            _ => {}
        }
        Ok(None)
    }

    async fn offers(&mut self, offers: Vec<Offer>) -> Result<(), Failure> {
        let mut decline = Vec::new();
        for offer in offers {
            let picked = if self.agent.is_none() {
                pick_resources(&offer, &self.role, self.cpus, self.mem)
            } else {
                None
            };
            match picked {
                Some(resources) => self.launch(&offer, resources).await?,
                None => decline.push(offer.id),
            }
        }
        if !decline.is_empty() {
            let refuse = if self.agent.is_some() {
                LAUNCHED_REFUSE_SECONDS
            } else {
                WAITING_REFUSE_SECONDS
            };
            if let Err(e) = self.client.decline(decline, refuse).await {
                // Not fatal: an undeclined offer only holds resources until
                // the master rescinds it or the framework goes.
                eprintln!("berth: warning: DECLINE failed: {e}");
            }
        }
        Ok(())
    }

    async fn launch(&mut self, offer: &Offer, resources: Resources) -> Result<(), Failure> {
        let task = TaskInfo {
            name: self.name.clone(),
            task_id: self.task_id.clone(),
            agent_id: offer.agent_id.clone(),
            resources,
            executor: None,
            command: Some(CommandInfo::shell(self.command.clone())),
            container: None,
            health_check: None,
            check: None,
            kill_policy: None,
            data: None,
            labels: None,
            discovery: None,
            max_completion_time: None,
            limits: Default::default(),
        };
        if !self.json {
            eprintln!(
                "berth: launching task {} on {} ({})",
                self.task_id, offer.hostname, offer.agent_id
            );
        }
        self.client
            .accept(
                vec![offer.id.clone()],
                vec![Operation::launch(vec![task])],
                Some(Filters {
                    refuse_seconds: LAUNCHED_REFUSE_SECONDS,
                }),
            )
            .await
            .map_err(client_failure)?;
        self.agent = Some(offer.agent_id.clone());
        if let Err(e) = self.client.suppress(vec![self.role.clone()]).await {
            eprintln!("berth: warning: SUPPRESS failed (offers keep coming and are declined): {e}");
        }
        Ok(())
    }

    async fn update(&mut self, status: TaskStatus) -> Result<Option<u8>, Failure> {
        let ours = status.task_id == self.task_id;
        let duplicate = status
            .uuid
            .as_ref()
            .is_some_and(|u| !self.seen.insert(u.clone()));
        if ours && !self.json && !duplicate {
            println!("{}", status_line(&status));
        }
        if let Err(e) = self.client.acknowledge(&status).await {
            // The agent re-sends an unacknowledged update; the next copy gets
            // another try.
            eprintln!("berth: warning: ACKNOWLEDGE failed: {e}");
        }
        Ok((ours && status.state.is_terminal()).then(|| exit_code(status.state)))
    }
}

fn print_json(json: &Json) {
    println!(
        "{}",
        serde_json::to_string(json).expect("JSON is serialisable")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        run: Args,
    }

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied())).map(|c| c.run)
    }

    #[test]
    fn defaults_and_the_command() {
        let a = parse(&["--", "echo", "hi there"]).unwrap();
        assert_eq!(a.cpus, Scalar::from_f64(0.1).unwrap());
        assert_eq!(a.mem, Scalar::from_f64(32.0).unwrap());
        assert_eq!(a.role, "*");
        assert_eq!(a.timeout, Timeout(Some(Duration::from_secs(60))));
        assert_eq!(a.command.join(" "), "echo hi there");
        assert!(!a.json);
    }

    #[test]
    fn flags_are_checked_and_named() {
        let a = parse(&[
            "--cpus",
            "0.5",
            "--mem",
            "128",
            "--role",
            "eng/backend",
            "--name",
            "x",
            "--timeout",
            "5m",
            "--json",
            "--",
            "true",
        ])
        .unwrap();
        assert_eq!(a.cpus.millis(), 500);
        assert_eq!(a.role, "eng/backend");
        assert_eq!(a.timeout, Timeout(Some(Duration::from_secs(300))));
        assert!(a.json);
        for (bad, flag) in [
            (&["--cpus", "0", "--", "true"][..], "--cpus"),
            (&["--cpus", "abc", "--", "true"], "--cpus"),
            (&["--cpus", "NaN", "--", "true"], "--cpus"),
            (&["--mem=-1", "--", "true"], "--mem"),
            (&["--role", "a//b", "--", "true"], "--role"),
            (&["--role=-x", "--", "true"], "--role"),
            (&["--name", " ", "--", "true"], "--name"),
            (&["--timeout", "5x", "--", "true"], "--timeout"),
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
            assert!(e.to_string().contains(flag), "{bad:?}: {e}");
        }
        // CMD is required, after `--`.
        assert_eq!(parse(&[]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["echo"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn timeouts() {
        let d = |s: &str| parse_timeout(s).unwrap().0;
        assert_eq!(d("90"), Some(Duration::from_secs(90)));
        assert_eq!(d("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(d("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(d("2m"), Some(Duration::from_secs(120)));
        assert_eq!(d("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(d("0"), None);
        assert!(parse_timeout("").is_err());
        assert!(parse_timeout("-1s").is_err());
        assert!(parse_timeout("1d").is_err());
    }

    /// The OFFERS example of MESOS-API.md §1 (allocation role `dev`; cpus 2
    /// and mem 1024 unreserved, ports, a reserved persistent volume).
    fn documented_offer() -> Offer {
        let event = Event::parse(
            br#"{"type":"OFFERS","offers":{"offers":[{
 "id":{"value":"m-O12"},"framework_id":{"value":"m-0000"},
 "agent_id":{"value":"m-S0"},"hostname":"node1",
 "url":{"scheme":"http","address":{"hostname":"node1","ip":"10.0.0.5","port":5051},"path":"/slave(1)"},
 "allocation_info":{"role":"dev"},
 "resources":[
  {"name":"cpus","type":"SCALAR","scalar":{"value":2.0},"role":"*","allocation_info":{"role":"dev"}},
  {"name":"mem","type":"SCALAR","scalar":{"value":1024.0},"role":"*","allocation_info":{"role":"dev"}},
  {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]},"role":"*","allocation_info":{"role":"dev"}},
  {"name":"disk","type":"SCALAR","scalar":{"value":512.0},"role":"dev",
   "reservation":{"principal":"ops"},
   "disk":{"persistence":{"id":"vol-1","principal":"ops"},"volume":{"container_path":"data","mode":"RW"}},
   "allocation_info":{"role":"dev"}}],
 "attributes":[{"name":"rack","type":"TEXT","text":{"value":"r1"}}],
 "executor_ids":[{"value":"my-executor"}],
 "unavailability":{"start":{"nanoseconds":1700000000000000000}}}]}}"#,
        )
        .unwrap();
        event.offers.unwrap().offers.remove(0)
    }

    #[test]
    fn offers_are_picked_by_role_and_size() {
        let offer = documented_offer();
        let s = |v: f64| Scalar::from_f64(v).unwrap();
        let picked = pick_resources(&offer, "dev", s(0.1), s(32.0)).unwrap();
        assert_eq!(picked.scalar("cpus"), s(0.1));
        assert_eq!(picked.scalar("mem"), s(32.0));
        assert_eq!(picked.len(), 2);
        // Echoes the offer's allocation role, as a MULTI_ROLE task must.
        assert!(picked
            .iter()
            .all(|r| r.allocation_info.as_ref().and_then(|a| a.role.as_deref()) == Some("dev")));
        assert!(pick_resources(&offer, "dev", s(2.0), s(1024.0)).is_some());
        assert!(pick_resources(&offer, "dev", s(2.5), s(32.0)).is_none());
        assert!(pick_resources(&offer, "dev", s(0.1), s(2048.0)).is_none());
        // An offer for another role is not ours to use.
        assert!(pick_resources(&offer, "ops", s(0.1), s(32.0)).is_none());
    }

    #[test]
    fn status_lines_and_exit_codes() {
        let mut s = TaskStatus::new(TaskID::new("t"), TaskState::Running);
        assert_eq!(status_line(&s), "TASK_RUNNING");
        s.state = TaskState::Finished;
        s.message = Some("Command exited with status 0".into());
        s.reason = Some("REASON_COMMAND_EXECUTOR_FAILED".into());
        assert_eq!(
            status_line(&s),
            "TASK_FINISHED Command exited with status 0"
        );
        s.state = TaskState::Failed;
        s.message = Some("Command exited with status 3".into());
        assert_eq!(
            status_line(&s),
            "TASK_FAILED Command exited with status 3 (REASON_COMMAND_EXECUTOR_FAILED)"
        );
        assert_eq!(exit_code(TaskState::Finished), 0);
        for st in [
            TaskState::Failed,
            TaskState::Killed,
            TaskState::Lost,
            TaskState::Error,
        ] {
            assert_eq!(exit_code(st), 1);
        }
    }

    #[test]
    fn framework_is_multi_role_in_one_role() {
        let info = framework_info("dev");
        assert_eq!(info.name, FRAMEWORK_NAME);
        assert_eq!(info.roles, ["dev"]);
        assert!(info.has_capability(&FrameworkCapabilityType::MultiRole));
        assert!(info.validate_roles().is_ok());
        assert!(!info.user.is_empty());
        assert_ne!(new_task_id(), new_task_id());
    }
}
