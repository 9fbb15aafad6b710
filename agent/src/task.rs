//! What a command task becomes: the argv and environment of its container
//! (as Mesos' command executor would run it), which tasks are refused, and
//! how the container's end maps to the task's terminal state.

use std::path::{Path, PathBuf};

use launcher::spec::{LaunchRequest, NetMode, SeccompChoice, VolumeMount};
use launcher::state::ExitInfo;
use masterlink::scheduler::{
    CommandInfo, ContainerType, FrameworkInfo, Reason, TaskInfo, TaskState, VariableType,
};

/// A task the agent will not run, and the update that says so.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub state: TaskState,
    pub reason: Reason,
    pub message: String,
}

/// The end of a task as its framework sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub state: TaskState,
    pub reason: Option<Reason>,
    pub message: String,
}

/// Everything about the task's place on this agent its container needs.
#[derive(Debug, Clone)]
pub struct TaskContext<'a> {
    pub framework: &'a FrameworkInfo,
    pub agent_id: &'a str,
    /// `ip:port` of the agent's HTTP endpoints.
    pub agent_endpoint: &'a str,
    /// The host directory the task runs in (`MESOS_DIRECTORY`).
    pub sandbox: &'a Path,
    /// Host paths the container must not see (checkpoints, other state).
    pub hidden_paths: Vec<PathBuf>,
    pub cgroup_parent: &'a str,
}

/// Refuses what this agent cannot run yet: custom executors, container
/// images, tasks without a command.
pub fn check_supported(task: &TaskInfo) -> Result<(), Refusal> {
    if task.executor.is_some() {
        return Err(Refusal {
            state: TaskState::Error,
            reason: Reason::TaskInvalid,
            message: "custom executors are not supported yet".into(),
        });
    }
    if let Some(c) = &task.container {
        let image = match c.container_type {
            ContainerType::Docker => Some(
                c.docker
                    .as_ref()
                    .map(|d| format!("docker image {}", d.image))
                    .unwrap_or_else(|| "a DOCKER container".into()),
            ),
            ContainerType::Mesos => c
                .mesos
                .as_ref()
                .and_then(|m| m.get("image"))
                .map(|i| format!("a {} image", i["type"].as_str().unwrap_or("container"))),
        };
        if let Some(what) = image {
            return Err(Refusal {
                state: TaskState::Failed,
                reason: Reason::ContainerLaunchFailed,
                message: format!(
                    "container images are not supported yet (the task asks for {what}): \
                     Berth runs command tasks on the host's root filesystem"
                ),
            });
        }
    }
    match &task.command {
        None => Err(Refusal {
            state: TaskState::Error,
            reason: Reason::TaskInvalid,
            message: "the task has neither a command nor an executor".into(),
        }),
        Some(cmd) => command_argv(cmd).map(|_| ()).map_err(|message| Refusal {
            state: TaskState::Error,
            reason: Reason::TaskInvalid,
            message,
        }),
    }
}

/// The container's argv: `/bin/sh -c value` for a shell command; else the
/// executable `value` with `arguments` as its argv (`arguments[0]` is argv[0]
/// in Mesos; the launcher execs argv[0], so it is replaced by `value` when
/// they differ).
pub fn command_argv(cmd: &CommandInfo) -> Result<Vec<String>, String> {
    let value = cmd.value.clone().unwrap_or_default();
    if cmd.shell {
        if value.is_empty() {
            return Err("the shell command (CommandInfo.value) is empty".into());
        }
        return Ok(vec!["/bin/sh".into(), "-c".into(), value]);
    }
    if value.is_empty() {
        return Err("the command to execute (CommandInfo.value) is empty".into());
    }
    let mut argv = vec![value];
    argv.extend(cmd.arguments.iter().skip(1).cloned());
    Ok(argv)
}

/// The environment Mesos gives a command task, then the command's own
/// variables (which win).
pub fn environment(task: &TaskInfo, ctx: &TaskContext) -> Result<Vec<String>, String> {
    let sandbox = ctx.sandbox.display().to_string();
    let fid = ctx
        .framework
        .id
        .as_ref()
        .map(|f| f.value.clone())
        .unwrap_or_default();
    let mut env = vec![
        format!("MESOS_SANDBOX={sandbox}"),
        format!("MESOS_DIRECTORY={sandbox}"),
        format!("MESOS_TASK_ID={}", task.task_id.value),
        format!("MESOS_FRAMEWORK_ID={fid}"),
        format!("MESOS_EXECUTOR_ID={}", task.task_id.value),
        format!("MESOS_AGENT_ENDPOINT={}", ctx.agent_endpoint),
        format!("MESOS_SLAVE_ID={}", ctx.agent_id),
        format!("MESOS_SLAVE_PID=slave(1)@{}", ctx.agent_endpoint),
        format!(
            "MESOS_CHECKPOINT={}",
            if ctx.framework.checkpoint { 1 } else { 0 }
        ),
    ];
    let vars = task
        .command
        .as_ref()
        .and_then(|c| c.environment.as_ref())
        .map(|e| e.variables.as_slice())
        .unwrap_or_default();
    for v in vars {
        if v.variable_type != VariableType::Value {
            return Err(format!(
                "environment variable {}: secrets are not supported",
                v.name
            ));
        }
        if v.name.is_empty() || v.name.contains('=') || v.name.contains('\0') {
            return Err(format!("{:?} is not a valid variable name", v.name));
        }
        env.retain(|e| e.split('=').next() != Some(v.name.as_str()));
        env.push(format!(
            "{}={}",
            v.name,
            v.value.clone().unwrap_or_default()
        ));
    }
    Ok(env)
}

/// The launch request for a command task that [`check_supported`] accepted.
/// Host-root mode: the host's root read-only, the sandbox writable at its
/// own path and the working directory, the host's network (tasks use the
/// ports they were offered), cpus as a CFS quota and mem as the memory limit.
pub fn launch_request(task: &TaskInfo, ctx: &TaskContext) -> Result<LaunchRequest, String> {
    let cmd = task.command.as_ref().ok_or("the task has no command")?;
    let args = command_argv(cmd)?;
    let env = environment(task, ctx)?;
    let host_cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let cpus = task.resources.scalar("cpus").value();
    let mem = task.resources.scalar("mem").value();
    let user = match &cmd.user {
        Some(name) => Some(lookup_user(name)?),
        None => None,
    };
    Ok(LaunchRequest {
        args,
        rootfs: None,
        hidden_paths: ctx.hidden_paths.clone(),
        // The launcher's range: at least 0.01 and at most this host's CPUs
        // (an agent may advertise more CPUs than it has).
        cpus: (cpus > 0.0).then(|| cpus.clamp(0.01, host_cpus)),
        memory_mib: (mem > 0.0).then(|| (mem.ceil() as u64).max(4)),
        net: NetMode::Host,
        volumes: vec![VolumeMount {
            source: ctx.sandbox.to_path_buf(),
            destination: ctx.sandbox.to_path_buf(),
            read_only: false,
        }],
        seccomp: Some(SeccompChoice::Default),
        user,
        env,
        workdir: Some(ctx.sandbox.to_path_buf()),
        hostname: None,
        rootless: rootless_ids(),
        cgroup_parent: ctx.cgroup_parent.to_string(),
        ..Default::default()
    })
}

/// An unprivileged agent runs its containers rootless (its own ids mapped).
fn rootless_ids() -> Option<launcher::spec::RootlessIds> {
    let uid = nix::unistd::geteuid();
    (!uid.is_root()).then(|| launcher::spec::RootlessIds {
        uid: uid.as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        sub_uids: None,
        sub_gids: None,
    })
}

fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(format!("user {name:?} does not exist on this agent")),
        Err(e) => Err(format!("looking up user {name:?}: {e}")),
    }
}

/// `SIGTERM`, `SIGKILL`, ... (or `signal N`).
pub fn signal_name(n: i32) -> String {
    nix::sys::signal::Signal::try_from(n)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {n}"))
}

/// How the container's exit maps to the task's terminal update, as Mesos'
/// command executor reports it. `killed`: the agent was asked to kill it.
pub fn outcome(exit: &ExitInfo, killed: bool) -> Outcome {
    let message = match exit.signal {
        Some(sig) => format!("Command terminated with signal {}", signal_name(sig)),
        None => format!("Command exited with status {}", exit.exit_code),
    };
    if exit.oom_killed {
        return Outcome {
            state: TaskState::Failed,
            reason: Some(Reason::ContainerLimitationMemory),
            message: "Memory limit exceeded: the container was OOM-killed".into(),
        };
    }
    if let Some(note) = &exit.note {
        if !killed {
            return Outcome {
                state: TaskState::Failed,
                reason: Some(Reason::ExecutorTerminated),
                message: note.clone(),
            };
        }
    }
    if killed {
        return Outcome {
            state: TaskState::Killed,
            reason: None,
            message,
        };
    }
    if exit.signal.is_none() && exit.exit_code == 0 {
        Outcome {
            state: TaskState::Finished,
            reason: None,
            message,
        }
    } else {
        Outcome {
            state: TaskState::Failed,
            reason: None,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use masterlink::scheduler::{
        AgentID, ContainerInfo, DockerInfo, DockerNetwork, Environment, EnvironmentVariable,
        ExecutorID, ExecutorInfo, FrameworkID, TaskID,
    };

    fn task(cmd: CommandInfo) -> TaskInfo {
        TaskInfo {
            name: "t".into(),
            task_id: TaskID::new("t1"),
            agent_id: AgentID::new("A-S0"),
            resources: masterlink::resources::parse("cpus:0.5;mem:64").unwrap(),
            executor: None,
            command: Some(cmd),
            container: None,
            health_check: None,
            check: None,
            kill_policy: None,
            data: None,
            labels: None,
            discovery: None,
            max_completion_time: None,
            limits: Default::default(),
        }
    }

    fn framework() -> FrameworkInfo {
        let mut f = FrameworkInfo::new("root", "fw");
        f.id = Some(FrameworkID::new("F-0000"));
        f.checkpoint = true;
        f
    }

    fn ctx<'a>(f: &'a FrameworkInfo) -> TaskContext<'a> {
        TaskContext {
            framework: f,
            agent_id: "A-S0",
            agent_endpoint: "127.0.0.1:5051",
            sandbox: Path::new("/w/slaves/A-S0/frameworks/F/executors/t1/runs/C"),
            hidden_paths: vec![PathBuf::from("/w/meta")],
            cgroup_parent: "berth",
        }
    }

    #[test]
    fn shell_and_exec_commands() {
        assert_eq!(
            command_argv(&CommandInfo::shell("echo hi && exit 3")).unwrap(),
            ["/bin/sh", "-c", "echo hi && exit 3"]
        );
        let mut c = CommandInfo::shell("/bin/echo");
        c.shell = false;
        c.arguments = vec!["/bin/echo".into(), "a b".into(), "c".into()];
        assert_eq!(command_argv(&c).unwrap(), ["/bin/echo", "a b", "c"]);
        c.arguments = vec!["echo".into(), "x".into()];
        assert_eq!(command_argv(&c).unwrap(), ["/bin/echo", "x"]);
        c.arguments.clear();
        assert_eq!(command_argv(&c).unwrap(), ["/bin/echo"]);
        c.value = None;
        assert!(command_argv(&c).is_err());
        assert!(command_argv(&CommandInfo::shell("")).is_err());
    }

    #[test]
    fn environment_has_mesos_variables_and_the_commands_own() {
        let mut c = CommandInfo::shell("env");
        c.environment = Some(Environment {
            variables: vec![
                EnvironmentVariable::new("GREETING", "hello"),
                EnvironmentVariable::new("MESOS_SANDBOX", "/elsewhere"),
            ],
        });
        let f = framework();
        let env = environment(&task(c), &ctx(&f)).unwrap();
        for want in [
            "MESOS_DIRECTORY=/w/slaves/A-S0/frameworks/F/executors/t1/runs/C",
            "MESOS_TASK_ID=t1",
            "MESOS_EXECUTOR_ID=t1",
            "MESOS_FRAMEWORK_ID=F-0000",
            "MESOS_AGENT_ENDPOINT=127.0.0.1:5051",
            "MESOS_CHECKPOINT=1",
            "GREETING=hello",
            "MESOS_SANDBOX=/elsewhere",
        ] {
            assert!(env.contains(&want.to_string()), "{want} not in {env:?}");
        }
        assert_eq!(
            env.iter()
                .filter(|e| e.starts_with("MESOS_SANDBOX="))
                .count(),
            1
        );
    }

    #[test]
    fn request_has_limits_sandbox_and_host_network() {
        let f = framework();
        let r = launch_request(&task(CommandInfo::shell("true")), &ctx(&f)).unwrap();
        assert_eq!(r.args, ["/bin/sh", "-c", "true"]);
        assert_eq!(r.cpus, Some(0.5));
        assert_eq!(r.memory_mib, Some(64));
        assert_eq!(r.net, NetMode::Host);
        assert!(r.rootfs.is_none());
        assert_eq!(r.workdir.as_deref(), Some(ctx(&f).sandbox));
        assert_eq!(r.volumes[0].destination, ctx(&f).sandbox);
        assert!(!r.volumes[0].read_only);
        assert_eq!(r.hidden_paths, [PathBuf::from("/w/meta")]);
        let mut t = task(CommandInfo::shell("true"));
        t.resources = masterlink::resources::parse("cpus:64;mem:1").unwrap();
        let r = launch_request(&t, &ctx(&f)).unwrap();
        assert!(r.cpus.unwrap() <= 64.0 && r.cpus.unwrap() >= 1.0);
        assert_eq!(r.memory_mib, Some(4));
        t.resources = Default::default();
        let r = launch_request(&t, &ctx(&f)).unwrap();
        assert_eq!((r.cpus, r.memory_mib), (None, None));
        let mut c = CommandInfo::shell("true");
        c.user = Some("no-such-user-here".into());
        assert!(launch_request(&task(c), &ctx(&f)).is_err());
    }

    #[test]
    fn unsupported_tasks_are_refused() {
        let mut t = task(CommandInfo::shell("true"));
        assert!(check_supported(&t).is_ok());
        t.executor = Some(ExecutorInfo {
            executor_type: None,
            executor_id: ExecutorID::new("e"),
            framework_id: None,
            command: None,
            container: None,
            resources: Default::default(),
            name: None,
            source: None,
            data: None,
            discovery: None,
            shutdown_grace_period: None,
            labels: None,
        });
        let r = check_supported(&t).unwrap_err();
        assert_eq!(r.state, TaskState::Error);
        assert_eq!(r.message, "custom executors are not supported yet");
        let mut t = task(CommandInfo::shell("true"));
        t.container = Some(ContainerInfo {
            container_type: ContainerType::Docker,
            volumes: Vec::new(),
            hostname: None,
            docker: Some(DockerInfo {
                image: "alpine".into(),
                network: DockerNetwork::Host,
                port_mappings: Vec::new(),
                privileged: false,
                parameters: Vec::new(),
                force_pull_image: None,
            }),
            mesos: None,
            network_infos: Vec::new(),
            linux_info: None,
            rlimit_info: None,
            tty_info: None,
        });
        let r = check_supported(&t).unwrap_err();
        assert_eq!(r.state, TaskState::Failed);
        assert_eq!(r.reason, Reason::ContainerLaunchFailed);
        assert!(r.message.contains("docker image alpine"), "{}", r.message);
        let mut t = task(CommandInfo::shell("true"));
        t.command = None;
        assert_eq!(check_supported(&t).unwrap_err().state, TaskState::Error);
    }

    fn exit(code: i32, signal: Option<i32>, oom: bool) -> ExitInfo {
        ExitInfo {
            exit_code: code,
            signal,
            oom_killed: oom,
            finished_at: 0,
            note: None,
        }
    }

    #[test]
    fn exits_map_to_states() {
        let o = outcome(&exit(0, None, false), false);
        assert_eq!(o.state, TaskState::Finished);
        let o = outcome(&exit(3, None, false), false);
        assert_eq!(o.state, TaskState::Failed);
        assert_eq!(o.message, "Command exited with status 3");
        let o = outcome(&exit(137, Some(9), false), false);
        assert_eq!(o.state, TaskState::Failed);
        assert_eq!(o.message, "Command terminated with signal SIGKILL");
        let o = outcome(&exit(137, Some(9), true), false);
        assert_eq!(o.state, TaskState::Failed);
        assert_eq!(o.reason, Some(Reason::ContainerLimitationMemory));
        let o = outcome(&exit(143, Some(15), false), true);
        assert_eq!(o.state, TaskState::Killed);
        assert_eq!(o.message, "Command terminated with signal SIGTERM");
        let o = outcome(&exit(0, None, false), true);
        assert_eq!(o.state, TaskState::Killed);
    }
}
