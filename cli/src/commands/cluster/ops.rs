//! `berth cluster reserve | unreserve | volume-create | volume-destroy`:
//! operator calls (RESERVE_RESOURCES, UNRESERVE_RESOURCES, CREATE_VOLUMES,
//! DESTROY_VOLUMES) built from Mesos' resource text syntax, so an operator
//! never writes Resource JSON by hand.

use berth::mesos::operator::OperatorClient;
use masterlink::resources::{DiskInfo, DiskVolume, Persistence, ResourceReservation, VolumeMode};
use masterlink::{ResourceFormat, Resources};
use serde_json::{json, Value as Json};

use super::{client_failure, MasterArg};
use crate::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct ReserveArgs {
    #[command(flatten)]
    master: MasterArg,
    /// The agent's ID (see `berth cluster agents`)
    #[arg(long)]
    agent: String,
    /// The role to reserve for (or to unreserve from)
    #[arg(long)]
    role: String,
    /// Resources in Mesos syntax, unreserved: "cpus:1;mem:256;disk:100"
    resources: String,
}

#[derive(clap::Args, Debug)]
pub struct VolumeCreateArgs {
    #[command(flatten)]
    master: MasterArg,
    /// The agent's ID
    #[arg(long)]
    agent: String,
    /// The role whose reserved disk holds the volume
    #[arg(long)]
    role: String,
    /// The volume's persistence ID (unique per role on the agent)
    #[arg(long)]
    id: String,
    /// Size in MB (taken from disk reserved for the role)
    #[arg(long)]
    size: f64,
    /// Where tasks see it, relative to their sandbox
    #[arg(long, default_value = "data")]
    path: String,
    /// The reservation holding the volume is static (from the agent's
    /// flags) rather than dynamic
    #[arg(long)]
    static_reservation: bool,
}

#[derive(clap::Args, Debug)]
pub struct VolumeDestroyArgs {
    #[command(flatten)]
    master: MasterArg,
    /// The agent's ID
    #[arg(long)]
    agent: String,
    /// The volume's persistence ID
    #[arg(long)]
    id: String,
}

fn usage(flag: &str, message: impl std::fmt::Display) -> Failure {
    Failure {
        code: 2,
        message: format!("invalid {flag}: {message}"),
    }
}

/// `text` reserved (dynamically) for `role`.
fn reserved(text: &str, role: &str, principal: Option<&str>) -> Result<Resources, Failure> {
    masterlink::roles::validate_role(role).map_err(|e| usage("--role", e))?;
    if role == "*" {
        return Err(usage("--role", "nobody can reserve for role \"*\""));
    }
    let plain = masterlink::resources::parse(text).map_err(|e| usage("RESOURCES", e))?;
    if plain.iter().any(|r| !r.is_unreserved()) {
        return Err(usage(
            "RESOURCES",
            "give unreserved resources (no \"(role)\"); --role says the role",
        ));
    }
    Ok(plain
        .iter()
        .map(|r| {
            r.clone().reserved(ResourceReservation::dynamic_for(
                role,
                principal.map(String::from),
            ))
        })
        .collect())
}

fn resources_json(r: &Resources) -> Json {
    r.to_json(ResourceFormat::PostRefinement)
        .expect("post-refinement JSON can express every resource")
}

async fn send(master: &MasterArg, call: Json) -> CmdResult {
    let client = OperatorClient::new(&master.addr());
    client.call(&call).await.map_err(client_failure)?;
    Ok(0)
}

pub async fn reserve(a: ReserveArgs, unreserve: bool) -> CmdResult {
    let resources = reserved(&a.resources, &a.role, a.master.principal())?;
    let (t, field) = if unreserve {
        ("UNRESERVE_RESOURCES", "unreserve_resources")
    } else {
        ("RESERVE_RESOURCES", "reserve_resources")
    };
    send(
        &a.master,
        json!({"type": t, field: {"agent_id": {"value": a.agent},
                                  "resources": resources_json(&resources)}}),
    )
    .await?;
    println!(
        "{} {} for role {} on agent {}",
        if unreserve { "unreserved" } else { "reserved" },
        a.resources,
        a.role,
        a.agent
    );
    Ok(0)
}

pub async fn volume_create(a: VolumeCreateArgs) -> CmdResult {
    if !(a.size.is_finite() && a.size > 0.0) {
        return Err(usage("--size", "must be a positive number of MB"));
    }
    masterlink::roles::validate_role(&a.role).map_err(|e| usage("--role", e))?;
    let mut volume =
        masterlink::Resource::scalar("disk", a.size).map_err(|e| usage("--size", e))?;
    volume = if a.static_reservation {
        volume.reserved_static(a.role.clone())
    } else {
        volume.reserved(ResourceReservation::dynamic_for(
            a.role.clone(),
            a.master.principal().map(String::from),
        ))
    };
    volume.disk = Some(DiskInfo {
        persistence: Some(Persistence {
            id: a.id.clone(),
            principal: a.master.principal().map(String::from),
        }),
        volume: Some(DiskVolume {
            container_path: a.path.clone(),
            mode: VolumeMode::Rw,
        }),
        source: None,
    });
    let volumes: Resources = [volume].into_iter().collect();
    send(
        &a.master,
        json!({"type": "CREATE_VOLUMES", "create_volumes": {
            "agent_id": {"value": a.agent}, "volumes": resources_json(&volumes)}}),
    )
    .await?;
    println!(
        "created volume {} ({} MB, role {}) on agent {}",
        a.id, a.size, a.role, a.agent
    );
    Ok(0)
}

/// Finds the volume by persistence id in the agent's resources (GET_AGENTS)
/// and destroys exactly that.
pub async fn volume_destroy(a: VolumeDestroyArgs) -> CmdResult {
    let client = OperatorClient::new(&a.master.addr());
    let agents = client.get("GET_AGENTS").await.map_err(client_failure)?;
    let agents = agents.json.unwrap_or_default();
    let agent = agents["get_agents"]["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["agent_info"]["id"]["value"] == a.agent.as_str())
        .ok_or_else(|| usage("--agent", format!("no agent {} at the master", a.agent)))?;
    let volume = agent["total_resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["disk"]["persistence"]["id"] == a.id.as_str())
        .cloned()
        .ok_or_else(|| usage("--id", format!("agent {} has no volume {}", a.agent, a.id)))?;
    send(
        &a.master,
        json!({"type": "DESTROY_VOLUMES", "destroy_volumes": {
            "agent_id": {"value": a.agent}, "volumes": [volume]}}),
    )
    .await?;
    println!("destroyed volume {} on agent {}", a.id, a.agent);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_resources_carry_a_dynamic_reservation() {
        let Ok(r) = reserved("cpus:1;disk:100", "dev", Some("ops")) else {
            panic!("valid resources refused");
        };
        let j = resources_json(&r);
        assert_eq!(j[0]["reservations"][0]["type"], "DYNAMIC");
        assert_eq!(j[0]["reservations"][0]["role"], "dev");
        assert_eq!(j[0]["reservations"][0]["principal"], "ops");
        assert!(reserved("cpus(x):1", "dev", None)
            .unwrap_err()
            .message
            .contains("unreserved"));
        assert!(reserved("cpus:lots", "dev", None)
            .unwrap_err()
            .message
            .contains("RESOURCES"));
        assert!(reserved("cpus:1", "*", None)
            .unwrap_err()
            .message
            .contains("--role"));
    }
}
