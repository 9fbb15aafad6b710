//! Who may do what: principals with secrets (HTTP basic authentication, as
//! Mesos' `--credentials` with `--authenticate_frameworks` and
//! `--authenticate_http_readwrite`; agents too with `--authenticate-agents`)
//! and ACLs for the resource operations and agent registration (Mesos'
//! `--acls`: RESERVE, UNRESERVE, CREATE_VOLUME, DESTROY_VOLUME,
//! REGISTER_AGENT).
//!
//! Off unless a credentials file is given. The file formats are Mesos':
//!
//! ```json
//! {"credentials": [{"principal": "ops", "secret": "s3cret"}]}
//! ```
//! (or one `principal secret` pair per line), and
//! ```json
//! {"permissive": false,
//!  "reserve_resources": [{"principals": {"values": ["ops"]}, "roles": {"values": ["dev"]}}],
//!  "unreserve_resources": [{"principals": {"values": ["ops"]}, "reserver_principals": {"type": "ANY"}}],
//!  "create_volumes": [{"principals": {"type": "ANY"}, "roles": {"values": ["dev"]}}],
//!  "destroy_volumes": [{"principals": {"values": ["ops"]}, "creator_principals": {"values": ["ops"]}}],
//!  "register_agents": [{"principals": {"values": ["node"]}, "agents": {"type": "ANY"}}]}
//! ```
//! Rules are tried in order; the first whose subject and object both match
//! decides (an object of type NONE denies); with no match `permissive`
//! (default true) decides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not in the expected format.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 401: no or wrong credentials.
    Unauthenticated(String),
    /// 403: authenticated, but not allowed.
    Forbidden(String),
}

/// Principals and their secrets.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    secrets: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct CredentialsFile {
    credentials: Vec<Credential>,
}

#[derive(Deserialize)]
struct Credential {
    principal: String,
    #[serde(default)]
    secret: String,
}

impl Credentials {
    /// Reads a Mesos credentials file (JSON or `principal secret` lines).
    pub fn load(path: &Path) -> Result<Credentials, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Credentials::parse(&text).map_err(|message| AuthError::Format {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses the credentials text.
    pub fn parse(text: &str) -> Result<Credentials, String> {
        let mut secrets = BTreeMap::new();
        if text.trim_start().starts_with('{') {
            let file: CredentialsFile = serde_json::from_str(text).map_err(|e| {
                format!("expecting {{\"credentials\": [{{\"principal\", \"secret\"}}]}}: {e}")
            })?;
            for c in file.credentials {
                secrets.insert(c.principal, c.secret);
            }
        } else {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(format!("line {}: expecting 'principal secret'", n + 1));
                };
                secrets.insert(p.to_string(), s.to_string());
            }
        }
        if secrets.is_empty() {
            return Err("no credentials".into());
        }
        Ok(Credentials { secrets })
    }

    /// The principal an `Authorization: Basic ...` header proves.
    pub fn authenticate(&self, header: Option<&str>) -> Result<String, Denied> {
        let Some(value) = header else {
            return Err(Denied::Unauthenticated(
                "this master requires authentication (HTTP basic: principal and secret)".into(),
            ));
        };
        let encoded = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
            .ok_or_else(|| {
                Denied::Unauthenticated("expecting 'Authorization: Basic ...'".into())
            })?;
        let decoded = masterlink::scheduler::decode_base64(encoded.trim())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Denied::Unauthenticated("malformed basic credentials".into()))?;
        let (principal, secret) = decoded
            .split_once(':')
            .ok_or_else(|| Denied::Unauthenticated("malformed basic credentials".into()))?;
        match self.secrets.get(principal) {
            Some(s) if s == secret => Ok(principal.to_string()),
            _ => Err(Denied::Unauthenticated(format!(
                "authentication failed for principal '{principal}'"
            ))),
        }
    }
}

/// A subject or object of an ACL rule: `{"values": [..]}` or `{"type": "ANY"|"NONE"}`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Entity {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    values: Vec<String>,
}

impl Entity {
    fn matches(&self, value: Option<&str>) -> bool {
        match self.kind.as_deref() {
            Some("ANY") => true,
            Some("NONE") => false,
            _ => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
        }
    }

    fn is_none(&self) -> bool {
        self.kind.as_deref() == Some("NONE")
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Rule {
    #[serde(default)]
    principals: Option<Entity>,
    #[serde(default)]
    roles: Option<Entity>,
    #[serde(default)]
    reserver_principals: Option<Entity>,
    #[serde(default)]
    creator_principals: Option<Entity>,
    #[serde(default)]
    agents: Option<Entity>,
}

/// The ACLs, by action.
#[derive(Debug, Clone, Deserialize)]
pub struct Acls {
    #[serde(default = "yes")]
    permissive: bool,
    #[serde(default)]
    reserve_resources: Vec<Rule>,
    #[serde(default)]
    unreserve_resources: Vec<Rule>,
    #[serde(default)]
    create_volumes: Vec<Rule>,
    #[serde(default)]
    destroy_volumes: Vec<Rule>,
    #[serde(default)]
    register_agents: Vec<Rule>,
}

fn yes() -> bool {
    true
}

impl Default for Acls {
    fn default() -> Acls {
        Acls {
            permissive: true,
            reserve_resources: Vec::new(),
            unreserve_resources: Vec::new(),
            create_volumes: Vec::new(),
            destroy_volumes: Vec::new(),
            register_agents: Vec::new(),
        }
    }
}

/// An action to authorize and its object.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Reserve for this role.
    Reserve { role: &'a str },
    /// Unreserve a reservation made by this principal.
    Unreserve { reserver: Option<&'a str> },
    /// Create a volume for this role.
    CreateVolume { role: &'a str },
    /// Destroy a volume created by this principal.
    DestroyVolume { creator: Option<&'a str> },
    /// Register an agent (Mesos' object is only ever ANY or NONE).
    RegisterAgent,
}

impl Acls {
    /// Reads a Mesos ACL file (JSON).
    pub fn load(path: &Path) -> Result<Acls, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| AuthError::Format {
            path: path.to_path_buf(),
            message: format!("not a Mesos ACL document: {e}"),
        })
    }

    /// May `principal` do `action`?
    pub fn authorize(&self, principal: Option<&str>, action: Action<'_>) -> Result<(), Denied> {
        let (rules, object, describe) = match action {
            Action::Reserve { role } => (
                &self.reserve_resources,
                Some(role),
                format!("reserve resources for role '{role}'"),
            ),
            Action::Unreserve { reserver } => (
                &self.unreserve_resources,
                reserver,
                format!(
                    "unreserve resources reserved by '{}'",
                    reserver.unwrap_or("")
                ),
            ),
            Action::CreateVolume { role } => (
                &self.create_volumes,
                Some(role),
                format!("create volumes for role '{role}'"),
            ),
            Action::DestroyVolume { creator } => (
                &self.destroy_volumes,
                creator,
                format!("destroy volumes created by '{}'", creator.unwrap_or("")),
            ),
            Action::RegisterAgent => (&self.register_agents, None, "register agents".into()),
        };
        for rule in rules {
            let any = Entity {
                kind: Some("ANY".into()),
                values: Vec::new(),
            };
            let subject = rule.principals.as_ref().unwrap_or(&any);
            let obj = rule
                .roles
                .as_ref()
                .or(rule.reserver_principals.as_ref())
                .or(rule.creator_principals.as_ref())
                .or(rule.agents.as_ref())
                .unwrap_or(&any);
            if subject.is_none() && principal.is_some() {
                continue;
            }
            if subject.matches(principal) || (subject.kind.as_deref() == Some("ANY")) {
                if obj.is_none() {
                    return Err(self.denied(principal, &describe));
                }
                if obj.matches(object) {
                    return Ok(());
                }
            }
        }
        if self.permissive {
            Ok(())
        } else {
            Err(self.denied(principal, &describe))
        }
    }

    fn denied(&self, principal: Option<&str>, what: &str) -> Denied {
        Denied::Forbidden(format!(
            "principal '{}' is not authorized to {what}",
            principal.unwrap_or("")
        ))
    }
}

/// Authentication and authorization, as configured.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// `None`: authentication off (everyone anonymous).
    pub credentials: Option<Credentials>,
    /// The ACLs (permissive by default).
    pub acls: Acls,
    /// Agents must authenticate too (`--authenticate-agents`; needs
    /// `credentials`).
    pub authenticate_agents: bool,
}

impl Auth {
    /// The principal of a request: `Ok(None)` when authentication is off.
    pub fn principal(&self, header: Option<&str>) -> Result<Option<String>, Denied> {
        match &self.credentials {
            None => Ok(None),
            Some(c) => c.authenticate(header).map(Some),
        }
    }

    /// The principal of an agent's request: `Ok(None)` unless agents must
    /// authenticate.
    pub fn agent_principal(&self, header: Option<&str>) -> Result<Option<String>, Denied> {
        if !self.authenticate_agents {
            return Ok(None);
        }
        self.principal(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(p: &str, s: &str) -> String {
        format!(
            "Basic {}",
            masterlink::scheduler::encode_base64(format!("{p}:{s}").as_bytes())
        )
    }

    #[test]
    fn credentials_in_both_formats() {
        let c =
            Credentials::parse(r#"{"credentials":[{"principal":"ops","secret":"s"}]}"#).unwrap();
        assert_eq!(c.authenticate(Some(&basic("ops", "s"))).unwrap(), "ops");
        assert!(matches!(
            c.authenticate(Some(&basic("ops", "x"))),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            c.authenticate(None),
            Err(Denied::Unauthenticated(_))
        ));
        let c = Credentials::parse("# comment\nops s\nfw t\n").unwrap();
        assert_eq!(c.authenticate(Some(&basic("fw", "t"))).unwrap(), "fw");
        assert!(Credentials::parse("ops").unwrap_err().contains("line 1"));
        assert!(Credentials::parse("").is_err());
    }

    #[test]
    fn acl_rules_in_order_then_permissive() {
        let acls: Acls = serde_json::from_str(
            r#"{"permissive": false,
                "reserve_resources": [
                  {"principals": {"values": ["ops"]}, "roles": {"values": ["dev"]}},
                  {"principals": {"values": ["eve"]}, "roles": {"type": "NONE"}}],
                "destroy_volumes": [
                  {"principals": {"type": "ANY"}, "creator_principals": {"values": ["ops"]}}]}"#,
        )
        .unwrap();
        assert!(acls
            .authorize(Some("ops"), Action::Reserve { role: "dev" })
            .is_ok());
        let e = acls
            .authorize(Some("ops"), Action::Reserve { role: "prod" })
            .unwrap_err();
        assert!(
            matches!(e, Denied::Forbidden(ref m) if m.contains("prod")),
            "{e:?}"
        );
        assert!(acls
            .authorize(Some("eve"), Action::Reserve { role: "dev" })
            .is_err());
        assert!(acls
            .authorize(
                Some("x"),
                Action::DestroyVolume {
                    creator: Some("ops")
                }
            )
            .is_ok());
        assert!(acls
            .authorize(Some("x"), Action::DestroyVolume { creator: Some("x") })
            .is_err());
        // Nothing about creating volumes: not permissive, so denied.
        assert!(acls
            .authorize(Some("ops"), Action::CreateVolume { role: "dev" })
            .is_err());
        assert!(Acls::default()
            .authorize(None, Action::CreateVolume { role: "dev" })
            .is_ok());
    }

    #[test]
    fn register_agents_acl() {
        let acls: Acls = serde_json::from_str(
            r#"{"register_agents": [
                  {"principals": {"values": ["node"]}, "agents": {"type": "ANY"}},
                  {"principals": {"type": "ANY"}, "agents": {"type": "NONE"}}]}"#,
        )
        .unwrap();
        assert!(acls.authorize(Some("node"), Action::RegisterAgent).is_ok());
        let e = acls
            .authorize(Some("ops"), Action::RegisterAgent)
            .unwrap_err();
        assert_eq!(
            e,
            Denied::Forbidden("principal 'ops' is not authorized to register agents".into())
        );
        let off = Auth::default();
        assert_eq!(off.agent_principal(None), Ok(None));
        let on = Auth {
            credentials: Some(Credentials::parse("node s\n").unwrap()),
            authenticate_agents: true,
            ..Auth::default()
        };
        assert_eq!(
            on.agent_principal(Some(&basic("node", "s"))),
            Ok(Some("node".into()))
        );
        assert!(matches!(
            on.agent_principal(None),
            Err(Denied::Unauthenticated(_))
        ));
    }
}
