//! The `berth` command. Each verb lives in its own module under
//! `commands/`; this file only parses the command line and maps errors to
//! exit codes (2 for bad input, 1 for failures, the container's own code
//! for `launch` in the foreground).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "Run and inspect isolated containers (namespaces, cgroups, seccomp, capabilities)",
    propagate_version = true
)]
struct Cli {
    /// State directory (default: /run/berth as root, $XDG_RUNTIME_DIR/berth otherwise)
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Where persistent volumes live (default: /var/lib/berth/volumes as root;
    /// for `berth agent`: WORK_DIR/volumes)
    #[arg(long, global = true, value_name = "DIR", env = "BERTH_VOLUME_ROOT")]
    volume_root: Option<PathBuf>,

    /// Also write errors and warnings to this file (runc's --log)
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,

    /// Format of --log lines: text or json (runc's)
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,

    /// Also log debug lines
    #[arg(long, global = true)]
    debug: bool,

    /// Use systemd to manage cgroups (not supported: an error)
    #[arg(long, global = true)]
    systemd_cgroup: bool,

    /// runc's: turn cgroup permission errors into warnings (auto: when not
    /// root or in a user namespace). Before the command, as in runc (`spec
    /// --rootless` is another flag)
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        value_name = "auto|true|false"
    )]
    rootless: commands::runtime::Rootless,

    /// runc's path to criu; accepted for engines that always pass it
    /// (Berth has no checkpoint/restore)
    #[arg(long, global = true, value_name = "PATH", hide = true)]
    criu: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create and start a container running CMD
    Launch(Box<commands::launch::Args>),
    /// List containers
    Ps(commands::ps::Args),
    /// Show everything about a container
    Inspect(commands::inspect::Args),
    /// Print a container's output
    Logs(commands::logs::Args),
    /// Run a command inside a running container
    Exec(commands::exec::Args),
    /// runc: create a container from an OCI bundle (it waits for start)
    Create(commands::runtime::create::Args),
    /// runc: start a created container
    Start(commands::runtime::start::Args),
    /// runc: create and start a container from an OCI bundle
    Run(commands::runtime::run::Args),
    /// runc: print a container's runtime-spec state
    State(commands::runtime::state::Args),
    /// runc: delete a container (--force kills a running one)
    Delete(commands::runtime::delete::Args),
    /// runc: list containers
    List(commands::runtime::list::Args),
    /// runc: freeze every process of a container
    Pause(commands::runtime::pause::Args),
    /// runc: thaw a paused container
    Resume(commands::runtime::pause::Args),
    /// runc: print a container's stats (and OOM events) as JSON lines
    Events(commands::runtime::events::Args),
    /// runc: change a container's resource limits
    Update(commands::runtime::update::Args),
    /// runc: print the runtime-spec features document
    Features,
    /// runc: write a default config.json
    Spec(commands::runtime::spec::Args),
    /// Send a signal to a container (default SIGTERM, as runc)
    Kill(commands::kill::Args),
    /// Wait for a container to stop and print its exit code
    Wait(commands::wait::Args),
    /// Remove containers
    Rm(commands::rm::Args),
    /// Manage persistent volumes (create, ls, inspect, resize, rm)
    Volume(commands::volume::Args),
    /// Run an agent: register with a master and run its tasks in containers
    Agent(Box<commands::agent::Args>),
    /// Run the master: scheduler, operator and agent APIs
    Master(Box<commands::master::Args>),
    /// Run a master and one agent on this machine (embedded defaults)
    Up(commands::up::Args),
    /// Look at a cluster and run tasks on it (Mesos v1 HTTP APIs)
    Cluster(commands::cluster::Args),
}

/// An error with the exit code it should produce.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl From<launcher::Error> for Failure {
    fn from(e: launcher::Error) -> Self {
        let code = match &e {
            launcher::Error::ExecutableNotFound(_) => 127,
            e if e.is_usage() => 2,
            _ => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure {
            code: 1,
            message: format!("{e:#}"),
        }
    }
}

pub type CmdResult = Result<u8, Failure>;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    // The supervisor is this binary too; it is dispatched before clap so
    // that it stays lean and never shows up in --help.
    if argv.get(1).map(String::as_str) == Some(launcher::supervisor::SUPERVISOR_ARG) {
        return match launcher::supervisor::SupervisorArgs::parse(&argv[2..]) {
            Some(args) => ExitCode::from(launcher::supervisor::main(args) as u8),
            None => ExitCode::from(2),
        };
    }
    let cli = Cli::parse();
    commands::runtime::log::init(commands::runtime::log::LogConfig {
        path: cli.log.clone(),
        json: cli.log_format == "json",
        debug: cli.debug,
    });
    commands::runtime::log::debug(&format!("berth {}", argv[1..].join(" ")));
    if cli.systemd_cgroup {
        let msg = "--systemd-cgroup is not supported: Berth manages cgroupfs directly (use the engine's cgroupfs manager)";
        commands::runtime::log::error(msg);
        eprintln!("berth: {msg}");
        return ExitCode::from(1);
    }
    commands::runtime::set_rootless(cli.rootless);
    let root = cli
        .root
        .unwrap_or_else(launcher::state::StateRoot::default_path);
    let agent_volume_root = cli.volume_root.clone();
    let volume_root = cli
        .volume_root
        .unwrap_or_else(commands::volume::default_root);
    let result = (|| -> CmdResult {
        // Cluster daemons and clients need no container state directory.
        let command = match cli.command {
            Command::Master(a) => return commands::master::run(*a),
            Command::Agent(a) => return commands::agent::run(*a, agent_volume_root),
            Command::Up(a) => return commands::up::run(a),
            Command::Cluster(a) => return commands::cluster::run(a),
            Command::Features => return commands::runtime::features::run(),
            Command::Spec(a) => return commands::runtime::spec::run(a),
            other => other,
        };
        let l = launcher::Launcher::open(root)?;
        match command {
            Command::Launch(a) => commands::launch::run(&l, &volume_root, *a),
            Command::Ps(a) => commands::ps::run(&l, a),
            Command::Inspect(a) => commands::inspect::run(&l, a),
            Command::Logs(a) => commands::logs::run(&l, a),
            Command::Exec(a) => commands::exec::run(&l, a),
            Command::Kill(a) => commands::kill::run(&l, a),
            Command::Wait(a) => commands::wait::run(&l, a),
            Command::Rm(a) => commands::rm::run(&l, a),
            Command::Volume(a) => commands::volume::run(&l, &volume_root, a),
            Command::Create(a) => commands::runtime::create::run(&l, a),
            Command::Start(a) => commands::runtime::start::run(&l, a),
            Command::Run(a) => commands::runtime::run::run(&l, a),
            Command::State(a) => commands::runtime::state::run(&l, a),
            Command::Delete(a) => commands::runtime::delete::run(&l, a),
            Command::List(a) => commands::runtime::list::run(&l, a),
            Command::Pause(a) => commands::runtime::pause::pause(&l, a),
            Command::Resume(a) => commands::runtime::pause::resume(&l, a),
            Command::Events(a) => commands::runtime::events::run(&l, a),
            Command::Update(a) => commands::runtime::update::run(&l, a),
            Command::Master(_)
            | Command::Agent(_)
            | Command::Up(_)
            | Command::Cluster(_)
            | Command::Features
            | Command::Spec(_) => {
                unreachable!("dispatched above")
            }
        }
    })();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            commands::runtime::log::error(&f.message);
            eprintln!("berth: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
