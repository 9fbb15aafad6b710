//! Agent attributes (`--attributes rack:abc;level:10;keys:[1000-1500]`) and
//! their Mesos JSON form `{name, type, scalar|ranges|set|text}`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::value::{parse_value, Value, ValueError, ValueFields};

/// One attribute: a name and a value of any kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    /// The attribute's name.
    pub name: String,
    /// The value; its kind is the JSON `type`.
    pub value: Value,
}

impl fmt::Display for Attribute {
    /// `name:value`, the `--attributes` syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.value)
    }
}

#[derive(Serialize, Deserialize)]
struct AttributeWire {
    name: String,
    #[serde(flatten)]
    value: ValueFields,
}

impl Serialize for Attribute {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        AttributeWire {
            name: self.name.clone(),
            value: ValueFields::from_value(&self.value),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Attribute {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = AttributeWire::deserialize(deserializer)?;
        let value = w.value.into_value().map_err(serde::de::Error::custom)?;
        Ok(Attribute {
            name: w.name,
            value,
        })
    }
}

/// What is wrong with one `--attributes` entry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttributeProblem {
    /// No `:` between name and value.
    #[error("expected name:value")]
    MissingColon,
    /// `:x`.
    #[error("attribute names must not be empty")]
    EmptyName,
    /// A malformed value.
    #[error(transparent)]
    Value(#[from] ValueError),
}

/// An `--attributes` parse error, naming the offending entry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid attribute \"{token}\": {problem}")]
pub struct AttributeError {
    /// The entry as written (trimmed).
    pub token: String,
    /// What is wrong with it.
    pub problem: AttributeProblem,
}

/// Parses `name:value(;name:value)*`. A number is SCALAR, `[a-b,..]` RANGES,
/// `{x,..}` SET, anything else TEXT (including words like `nan`). Empty entries
/// (`a:1;;b:2`, a trailing `;`) are skipped; whitespace around tokens is ignored;
/// the value is everything after the first `:` (so `url:http://x` is TEXT).
pub fn parse(text: &str) -> Result<Vec<Attribute>, AttributeError> {
    let mut out = Vec::new();
    for token in text.split([';', '\n']) {
        let token = token.trim();
        if token.is_empty() {
            continue;
        }
        let err = |problem| AttributeError {
            token: token.to_string(),
            problem,
        };
        let (name, value) = token
            .split_once(':')
            .ok_or_else(|| err(AttributeProblem::MissingColon))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(err(AttributeProblem::EmptyName));
        }
        let value = match parse_value(value) {
            Ok(v) => v,
            Err(ValueError::NotFinite) => Value::Text(value.trim().to_string()),
            Err(e) => return Err(err(e.into())),
        };
        out.push(Attribute {
            name: name.to_string(),
            value,
        });
    }
    Ok(out)
}

/// The `--attributes` text of `attributes` (`;`-separated).
pub fn to_text(attributes: &[Attribute]) -> String {
    attributes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Ranges, Scalar, Set};
    use serde_json::json;

    #[test]
    fn parse_example() {
        let a = parse("rack:abc;level:10;keys:[1000-1500]").unwrap();
        assert_eq!(
            a,
            vec![
                Attribute {
                    name: "rack".into(),
                    value: Value::Text("abc".into())
                },
                Attribute {
                    name: "level".into(),
                    value: Value::Scalar(Scalar::from_millis(10_000))
                },
                Attribute {
                    name: "keys".into(),
                    value: Value::Ranges(Ranges::single(1000, 1500).unwrap())
                },
            ]
        );
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!([
                {"name":"rack","type":"TEXT","text":{"value":"abc"}},
                {"name":"level","type":"SCALAR","scalar":{"value":10.0}},
                {"name":"keys","type":"RANGES","ranges":{"range":[{"begin":1000,"end":1500}]}}
            ])
        );
        let back: Vec<Attribute> =
            serde_json::from_value(serde_json::to_value(&a).unwrap()).unwrap();
        assert_eq!(back, a);
        assert_eq!(to_text(&a), "rack:abc;level:10;keys:[1000-1500]");
        assert_eq!(parse(&to_text(&a)).unwrap(), a);
    }

    #[test]
    fn parse_kinds_and_whitespace() {
        let a =
            parse(" os : {debian, linux} ; zone:us-east-1a ; w:1.5; url:http://x:80 ;").unwrap();
        assert_eq!(
            a[0].value,
            Value::Set(["debian", "linux"].into_iter().collect::<Set>())
        );
        assert_eq!(a[1].value, Value::Text("us-east-1a".into()));
        assert_eq!(a[2].value, Value::Scalar(Scalar::from_millis(1500)));
        assert_eq!(a[3].value, Value::Text("http://x:80".into()));
        assert_eq!(
            serde_json::to_value(&a[0]).unwrap(),
            json!({"name":"os","type":"SET","set":{"item":["debian","linux"]}})
        );
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            parse("rack").unwrap_err().to_string(),
            "invalid attribute \"rack\": expected name:value"
        );
        assert_eq!(
            parse(":x").unwrap_err().to_string(),
            "invalid attribute \":x\": attribute names must not be empty"
        );
        assert_eq!(
            parse("keys:[5-1]").unwrap_err().to_string(),
            "invalid attribute \"keys:[5-1]\": range begin 5 is after end 1"
        );
        assert_eq!(
            parse("k:").unwrap_err().to_string(),
            "invalid attribute \"k:\": values must not be empty"
        );
    }
}
