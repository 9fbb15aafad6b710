//! `berth cluster`: look at and use a cluster through the master's public
//! Mesos v1 HTTP APIs only, so every verb works against Berth's master and a
//! real Mesos master alike.
//!
//! * `agents`, `frameworks`, `tasks`: operator calls (GET_AGENTS,
//!   GET_FRAMEWORKS + GET_TASKS, GET_TASKS) shown as tables, or the raw
//!   answer with `--json`;
//! * `run`: a one-task framework on the scheduler API (see [`run`]);
//! * `reserve`, `unreserve`, `volume-create`, `volume-destroy`: operator
//!   calls on an agent's resources (see [`ops`]).

use std::future::Future;

use berth::mesos::operator::{Answer, OperatorClient};
use berth::mesos::{ClientError, Credentials, MasterAddr, DEFAULT_MASTER};

use crate::{CmdResult, Failure};

mod ops;
mod run;
mod table;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(clap::Subcommand, Debug)]
enum Verb {
    /// List agents: ID, HOSTNAME, ACTIVE, CPUS, MEM, DISK (used/total)
    Agents(ListArgs),
    /// List frameworks: ID, NAME, ROLES, ACTIVE, TASKS
    Frameworks(ListArgs),
    /// List tasks: ID, FRAMEWORK, AGENT, STATE, NAME
    Tasks(TasksArgs),
    /// Run one command as a task through the scheduler API and follow it
    Run(run::Args),
    /// Reserve an agent's resources for a role (RESERVE_RESOURCES)
    Reserve(ops::ReserveArgs),
    /// Give a role's dynamic reservation back (UNRESERVE_RESOURCES)
    Unreserve(ops::ReserveArgs),
    /// Create a persistent volume on reserved disk (CREATE_VOLUMES)
    VolumeCreate(ops::VolumeCreateArgs),
    /// Destroy a persistent volume and its data (DESTROY_VOLUMES)
    VolumeDestroy(ops::VolumeDestroyArgs),
}

/// Where the master is, and who we are to it; shared by every verb.
#[derive(clap::Args, Debug, Clone)]
pub struct MasterArg {
    /// The master's HOST:PORT
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "BERTH_MASTER",
        default_value = DEFAULT_MASTER
    )]
    master: MasterAddr,
    /// Who we are: authenticates with --secret, and is the principal
    /// recorded in reservations, volumes and frameworks made here
    #[arg(long, env = "BERTH_PRINCIPAL")]
    principal: Option<String>,
    /// The principal's secret (prefer the BERTH_SECRET environment variable)
    #[arg(
        long,
        env = "BERTH_SECRET",
        hide_env_values = true,
        requires = "principal"
    )]
    secret: Option<String>,
}

impl MasterArg {
    /// The principal given, if any.
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// The master, with the credentials if given.
    pub fn addr(&self) -> MasterAddr {
        let credentials = match (&self.principal, &self.secret) {
            (Some(principal), Some(secret)) => Some(Credentials {
                principal: principal.clone(),
                secret: secret.clone(),
            }),
            _ => None,
        };
        self.master.clone().with_credentials(credentials)
    }
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    master: MasterArg,
    /// Print the master's JSON answer instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct TasksArgs {
    #[command(flatten)]
    list: ListArgs,
    /// Include completed tasks
    #[arg(long, short = 'a')]
    all: bool,
}

pub fn run(a: Args) -> CmdResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    match a.verb {
        Verb::Agents(l) => list(&rt, &l, "GET_AGENTS", table::agents),
        Verb::Frameworks(l) => {
            let client = OperatorClient::new(&l.master.addr());
            let frameworks = block(&rt, client.get("GET_FRAMEWORKS"))?;
            if l.json {
                print_raw(&frameworks);
                return Ok(0);
            }
            // GET_FRAMEWORKS has no task counts; Mesos clients join GET_TASKS.
            let tasks = block(&rt, client.get("GET_TASKS"))?;
            print!(
                "{}",
                table::frameworks(json_of(&frameworks), json_of(&tasks))?
            );
            Ok(0)
        }
        Verb::Tasks(t) => list(&rt, &t.list, "GET_TASKS", |v| table::tasks(v, t.all)),
        Verb::Run(r) => rt.block_on(run::run(r)),
        Verb::Reserve(r) => rt.block_on(ops::reserve(r, false)),
        Verb::Unreserve(r) => rt.block_on(ops::reserve(r, true)),
        Verb::VolumeCreate(v) => rt.block_on(ops::volume_create(v)),
        Verb::VolumeDestroy(v) => rt.block_on(ops::volume_destroy(v)),
    }
}

/// One GET_* call shown with `render`, or raw with `--json`.
fn list(
    rt: &tokio::runtime::Runtime,
    l: &ListArgs,
    call_type: &str,
    render: impl Fn(&serde_json::Value) -> Result<String, table::Error>,
) -> CmdResult {
    let client = OperatorClient::new(&l.master.addr());
    let answer = block(rt, client.get(call_type))?;
    if l.json {
        print_raw(&answer);
    } else {
        print!("{}", render(json_of(&answer))?);
    }
    Ok(0)
}

fn block<T>(
    rt: &tokio::runtime::Runtime,
    f: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, Failure> {
    rt.block_on(f).map_err(client_failure)
}

/// `OperatorClient::get` only returns answers with a JSON body.
fn json_of(a: &Answer) -> &serde_json::Value {
    a.json
        .as_ref()
        .expect("GET_* answers are checked to be JSON")
}

/// The answer exactly as the master sent it.
fn print_raw(a: &Answer) {
    let body = a.body.trim_end();
    println!("{body}");
}

/// A client error as a failure (exit 1) with a hint when nothing listens at
/// the master's address.
pub(crate) fn client_failure(e: ClientError) -> Failure {
    let message = if e.is_connect() {
        format!(
            "{e}: is `berth up` (or a master) running there? \
             Set --master or BERTH_MASTER to another HOST:PORT"
        )
    } else {
        e.to_string()
    };
    Failure { code: 1, message }
}

impl From<table::Error> for Failure {
    fn from(e: table::Error) -> Self {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
}
