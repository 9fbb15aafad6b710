//! Mesos role names: validation and the role hierarchy (`eng/backend` is a
//! child of `eng`).
//!
//! `*` is the default role: valid wherever a role is subscribed to, but nobody
//! can reserve resources for it ([`validate_reservation_role`]).

/// The default role, which stands for "unreserved".
pub const DEFAULT_ROLE: &str = "*";

/// Why a role name is invalid. Messages say what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// `""`.
    #[error("role names must not be empty")]
    Empty,
    /// `/a`.
    #[error("role names must not start with '/'")]
    LeadingSlash,
    /// `a/`.
    #[error("role names must not end with '/'")]
    TrailingSlash,
    /// `a//b`.
    #[error("role names must not contain \"//\" (path components are separated by one '/')")]
    DoubleSlash,
    /// A path component that is `.`, `..` or `*`.
    #[error("role path components must not be \"{0}\" (\".\", \"..\" and \"*\" are reserved)")]
    ReservedComponent(String),
    /// A path component starting with `-`.
    #[error("role path component \"{0}\" must not start with '-'")]
    LeadingDash(String),
    /// Whitespace or a control character (such as DEL) anywhere in the name.
    #[error("role names must not contain whitespace or control characters")]
    Whitespace,
    /// Reserving for `*`.
    #[error("resources cannot be reserved for the default role \"*\"")]
    DefaultRoleReservation,
}

/// Validates a role name per Mesos (`src/common/roles.cpp`): `*` is valid; else
/// non-empty, no leading or trailing `/`, no `//`, no component `.`, `..` or
/// `*`, no component starting with `-`, no whitespace or control characters.
pub fn validate_role(role: &str) -> Result<(), RoleError> {
    if role == DEFAULT_ROLE {
        return Ok(());
    }
    if role.is_empty() {
        return Err(RoleError::Empty);
    }
    if role.starts_with('/') {
        return Err(RoleError::LeadingSlash);
    }
    if role.ends_with('/') {
        return Err(RoleError::TrailingSlash);
    }
    if role.contains("//") {
        return Err(RoleError::DoubleSlash);
    }
    if role.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RoleError::Whitespace);
    }
    for component in role.split('/') {
        if matches!(component, "." | ".." | "*") {
            return Err(RoleError::ReservedComponent(component.to_string()));
        }
        if component.starts_with('-') {
            return Err(RoleError::LeadingDash(component.to_string()));
        }
    }
    Ok(())
}

/// Validates a role that resources are reserved for: [`validate_role`] and not `*`.
pub fn validate_reservation_role(role: &str) -> Result<(), RoleError> {
    if role == DEFAULT_ROLE {
        return Err(RoleError::DefaultRoleReservation);
    }
    validate_role(role)
}

/// True when `ancestor` is a strict ancestor of `role` (`eng` of `eng/backend`
/// and of `eng/backend/db`; a role is not its own ancestor; `*` is nobody's).
pub fn is_ancestor(ancestor: &str, role: &str) -> bool {
    ancestor != DEFAULT_ROLE
        && role.len() > ancestor.len()
        && role.starts_with(ancestor)
        && role.as_bytes()[ancestor.len()] == b'/'
}

/// The parent of `role` (`eng` for `eng/backend`), `None` for a top-level role.
pub fn parent(role: &str) -> Option<&str> {
    role.rsplit_once('/').map(|(p, _)| p)
}

/// The strict ancestors of `role`, nearest first: `a/b/c` → `["a/b", "a"]`.
pub fn ancestors(role: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut cur = role;
    while let Some(p) = parent(cur) {
        out.push(p);
        cur = p;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_roles() {
        for r in ["*", "ops", "eng/backend", "a.b", "a-b", "a/b/c", "_x", "a*"] {
            assert_eq!(validate_role(r), Ok(()), "{r}");
        }
    }

    #[test]
    fn invalid_roles() {
        let cases = [
            ("", RoleError::Empty),
            ("/a", RoleError::LeadingSlash),
            ("a/", RoleError::TrailingSlash),
            ("a//b", RoleError::DoubleSlash),
            (".", RoleError::ReservedComponent(".".into())),
            ("a/..", RoleError::ReservedComponent("..".into())),
            ("a/*", RoleError::ReservedComponent("*".into())),
            ("-a", RoleError::LeadingDash("-a".into())),
            ("a/-b", RoleError::LeadingDash("-b".into())),
            ("a b", RoleError::Whitespace),
            ("a\tb", RoleError::Whitespace),
            ("a\u{7f}", RoleError::Whitespace),
        ];
        for (role, err) in cases {
            assert_eq!(validate_role(role), Err(err), "{role:?}");
        }
        assert_eq!(
            validate_reservation_role("*"),
            Err(RoleError::DefaultRoleReservation)
        );
        assert_eq!(validate_reservation_role("ops"), Ok(()));
        assert_eq!(
            RoleError::DoubleSlash.to_string(),
            "role names must not contain \"//\" (path components are separated by one '/')"
        );
    }

    #[test]
    fn hierarchy() {
        assert!(is_ancestor("eng", "eng/backend"));
        assert!(is_ancestor("eng", "eng/backend/db"));
        assert!(!is_ancestor("eng", "eng"));
        assert!(!is_ancestor("eng", "engineering/x"));
        assert!(!is_ancestor("eng/backend", "eng"));
        assert!(!is_ancestor("*", "eng"));
        assert_eq!(ancestors("a/b/c"), vec!["a/b", "a"]);
        assert!(ancestors("a").is_empty());
        assert_eq!(parent("a/b"), Some("a"));
    }
}
