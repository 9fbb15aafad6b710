//! The agent's `--resources` flag: text, JSON, or `file://` holding either.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{
    Resource, ResourceProblem, ResourceReservation, ResourceValue, Resources, ResourcesError,
};
use crate::roles;
use crate::value::{parse_value, Value, ValueType};

/// Parses the text syntax `name[(role)]:value(;...)*` with everything unreserved
/// unless a `(role)` says otherwise. See [`parse_with_default_role`].
pub fn parse(text: &str) -> Result<Resources, ResourcesError> {
    parse_with_default_role(text, None)
}

/// Parses the text syntax. Values: `24` / `1.5` (scalar), `[21000-24000,30000-34000]`
/// (ranges), `{a,b,c}` (set). `(role)` is a STATIC reservation for `role`;
/// `(*)` is unreserved; no parentheses means `default_role` (Mesos'
/// `--default_role`, `None` or `"*"` = unreserved). Entries with the same name
/// and role add up; empty entries and whitespace around tokens are ignored;
/// zero quantities are dropped.
pub fn parse_with_default_role(
    text: &str,
    default_role: Option<&str>,
) -> Result<Resources, ResourcesError> {
    let mut out = Resources::new();
    let mut types: BTreeMap<String, ValueType> = BTreeMap::new();
    for token in text.split(';') {
        let token = token.trim();
        if token.is_empty() {
            continue;
        }
        let r = parse_entry(token, default_role)?;
        check_type(&mut types, &r)?;
        out.push(r);
    }
    Ok(out)
}

/// Parses the whole `--resources` flag: `file:///path` (read, then parsed as
/// below), a JSON array of Resource (any format, see
/// [`Resources::from_json`]) when the text starts with `[`, else the text syntax.
pub fn parse_flag(flag: &str) -> Result<Resources, ResourcesError> {
    let flag = flag.trim();
    let owned;
    let text = if let Some(path) = flag.strip_prefix("file://") {
        let path = PathBuf::from(path);
        owned = std::fs::read_to_string(&path)
            .map_err(|source| ResourcesError::File { path, source })?;
        owned.trim()
    } else {
        flag
    };
    if text.starts_with('[') {
        let out = Resources::from_json_str(text)?;
        let mut types = BTreeMap::new();
        for r in &out {
            check_type(&mut types, r)?;
        }
        Ok(out)
    } else {
        parse(text)
    }
}

fn check_type(types: &mut BTreeMap<String, ValueType>, r: &Resource) -> Result<(), ResourcesError> {
    let first = *types.entry(r.name.clone()).or_insert(r.value_type());
    if first != r.value_type() {
        return Err(ResourcesError::ConflictingTypes {
            name: r.name.clone(),
            first,
            second: r.value_type(),
        });
    }
    Ok(())
}

fn parse_entry(token: &str, default_role: Option<&str>) -> Result<Resource, ResourcesError> {
    let invalid = |problem| ResourcesError::InvalidResource {
        token: token.to_string(),
        problem,
    };
    let (lhs, rhs) = token
        .split_once(':')
        .ok_or_else(|| invalid(ResourceProblem::MissingColon))?;
    let lhs = lhs.trim();
    let (name, role) = match lhs.split_once('(') {
        None => (lhs, None),
        Some((name, rest)) => {
            let role = rest
                .strip_suffix(')')
                .ok_or_else(|| invalid(ResourceProblem::BadRoleSyntax))?;
            (name.trim(), Some(role.trim()))
        }
    };
    if name.is_empty() {
        return Err(invalid(ResourceProblem::EmptyName));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || "()[]{}:;,".contains(c))
    {
        return Err(invalid(ResourceProblem::BadName));
    }
    let role = role.or(default_role).filter(|r| *r != roles::DEFAULT_ROLE);
    if let Some(role) = role {
        roles::validate_reservation_role(role).map_err(|source| ResourcesError::InvalidRole {
            role: role.to_string(),
            token: token.to_string(),
            source,
        })?;
    }
    let value = match parse_value(rhs).map_err(|e| invalid(e.into()))? {
        Value::Scalar(s) if s.is_negative() => return Err(invalid(ResourceProblem::Negative)),
        Value::Scalar(s) => ResourceValue::Scalar(s),
        Value::Ranges(r) => ResourceValue::Ranges(r),
        Value::Set(s) => ResourceValue::Set(s),
        Value::Text(_) => {
            return Err(ResourcesError::UnknownValueSyntax {
                token: token.to_string(),
            })
        }
    };
    let mut r = Resource::new(name, value);
    if let Some(role) = role {
        r.reservations.push(ResourceReservation::static_for(role));
    }
    Ok(r)
}
