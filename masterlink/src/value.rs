//! Mesos `Value`: fixed-point scalars, inclusive `u64` ranges, string sets and
//! text, with the Mesos v1 JSON mapping (`scalar:{value}`,
//! `ranges:{range:[{begin,end}]}`, `set:{item:[..]}`, `text:{value}`).
//!
//! The text syntax shared by `--resources` and `--attributes` is parsed by
//! [`parse_value`]: `[a-b,c-d]` is RANGES, `{x,y}` is SET, a number is SCALAR and
//! anything else is TEXT (callers decide whether TEXT is acceptable).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The kind of a [`Value`] (`Value.Type` in Mesos).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValueType {
    /// `SCALAR`: a non-integral quantity (fixed point, 3 decimals).
    Scalar,
    /// `RANGES`: inclusive `u64` intervals.
    Ranges,
    /// `SET`: a set of strings.
    Set,
    /// `TEXT`: free text (attributes only).
    Text,
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueType::Scalar => "SCALAR",
            ValueType::Ranges => "RANGES",
            ValueType::Set => "SET",
            ValueType::Text => "TEXT",
        })
    }
}

/// Errors from parsing or building values. Messages are in lower case and say
/// what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// The value text is empty.
    #[error("values must not be empty")]
    Empty,
    /// NaN or an infinity.
    #[error("scalar values must be finite numbers")]
    NotFinite,
    /// Beyond what the fixed-point representation holds exactly.
    #[error("scalar values must be at most {max} in magnitude", max = Scalar::MAX_ABS)]
    TooLarge,
    /// `[b-e]` with `b > e`.
    #[error("range begin {begin} is after end {end}")]
    RangeOrder {
        /// The range's begin.
        begin: u64,
        /// The range's end.
        end: u64,
    },
    /// A range element that is not `begin-end` with unsigned integers.
    #[error("invalid range \"{0}\": ranges are written begin-end with unsigned integers, e.g. [31000-32000]")]
    BadRange(String),
    /// `[` or `{` without its closing bracket.
    #[error("missing closing '{close}': ranges are written [a-b,...] and sets {{x,y,...}}")]
    Unclosed {
        /// The expected closing bracket.
        close: char,
    },
    /// `{a,,b}`.
    #[error("set items must not be empty: sets are written {{x,y,...}}")]
    EmptySetItem,
}

/// A scalar stored as fixed point with 3 decimals (thousandths), as Mesos does:
/// every value is rounded to the nearest 0.001 on construction, so arithmetic is
/// exact (`0.1 + 0.2 == 0.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Scalar {
    millis: i64,
}

impl Scalar {
    /// Zero.
    pub const ZERO: Scalar = Scalar { millis: 0 };
    /// Largest magnitude accepted (below 2^53 thousandths, so every value and
    /// every sum of two converts to `f64` without loss of the 3 decimals).
    pub const MAX_ABS: f64 = 4_000_000_000_000.0;

    /// Rounds `value` to the nearest 0.001. Rejects NaN, infinities and values
    /// beyond [`Scalar::MAX_ABS`].
    pub fn from_f64(value: f64) -> Result<Scalar, ValueError> {
        if !value.is_finite() {
            return Err(ValueError::NotFinite);
        }
        if value.abs() > Self::MAX_ABS {
            return Err(ValueError::TooLarge);
        }
        // In range per the check above, so the cast cannot saturate.
        Ok(Scalar {
            millis: (value * 1000.0).round() as i64,
        })
    }

    /// A scalar of `millis` thousandths.
    pub const fn from_millis(millis: i64) -> Scalar {
        Scalar { millis }
    }

    /// The value in thousandths.
    pub const fn millis(self) -> i64 {
        self.millis
    }

    /// The value as `f64` (exact for the nearest double of the decimal value).
    pub fn value(self) -> f64 {
        self.millis as f64 / 1000.0
    }

    /// True for 0.
    pub const fn is_zero(self) -> bool {
        self.millis == 0
    }

    /// True for values below 0.
    pub const fn is_negative(self) -> bool {
        self.millis < 0
    }
}

impl std::ops::Add for Scalar {
    type Output = Scalar;
    fn add(self, rhs: Scalar) -> Scalar {
        Scalar {
            millis: self.millis.saturating_add(rhs.millis),
        }
    }
}

impl std::ops::Sub for Scalar {
    type Output = Scalar;
    fn sub(self, rhs: Scalar) -> Scalar {
        Scalar {
            millis: self.millis.saturating_sub(rhs.millis),
        }
    }
}

impl std::ops::AddAssign for Scalar {
    fn add_assign(&mut self, rhs: Scalar) {
        *self = *self + rhs;
    }
}

impl std::ops::SubAssign for Scalar {
    fn sub_assign(&mut self, rhs: Scalar) {
        *self = *self - rhs;
    }
}

impl fmt::Display for Scalar {
    /// Shortest decimal form: `2`, `1.5`, `0.001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.millis < 0 { "-" } else { "" };
        let abs = self.millis.unsigned_abs();
        let (int, frac) = (abs / 1000, abs % 1000);
        if frac == 0 {
            write!(f, "{sign}{int}")
        } else {
            let frac = format!("{frac:03}");
            write!(f, "{sign}{int}.{}", frac.trim_end_matches('0'))
        }
    }
}

/// A JSON number, or a string holding one (Mesos' JSON input accepts both).
#[derive(Deserialize)]
#[serde(untagged)]
enum LenientNumber {
    Unsigned(u64),
    Float(f64),
    Text(String),
}

impl LenientNumber {
    fn as_f64(&self) -> Result<f64, String> {
        match self {
            LenientNumber::Unsigned(u) => Ok(*u as f64),
            LenientNumber::Float(v) => Ok(*v),
            LenientNumber::Text(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("expected a number, got \"{s}\"")),
        }
    }

    fn as_u64(&self) -> Result<u64, String> {
        match self {
            LenientNumber::Unsigned(u) => Ok(*u),
            LenientNumber::Float(v) if v.fract() == 0.0 && *v >= 0.0 && *v < 1.8e19 => {
                Ok(*v as u64)
            }
            LenientNumber::Float(v) => Err(format!("expected an unsigned integer, got {v}")),
            LenientNumber::Text(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("expected an unsigned integer, got \"{s}\"")),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct ScalarWire<N> {
    value: N,
}

impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ScalarWire {
            value: self.value(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = ScalarWire::<LenientNumber>::deserialize(deserializer)?;
        let v = wire.value.as_f64().map_err(serde::de::Error::custom)?;
        Scalar::from_f64(v).map_err(serde::de::Error::custom)
    }
}

/// One inclusive interval `[begin, end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Range {
    /// First number in the range.
    pub begin: u64,
    /// Last number in the range (inclusive).
    pub end: u64,
}

impl<'de> Deserialize<'de> for Range {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            begin: LenientNumber,
            end: LenientNumber,
        }
        let w = Wire::deserialize(deserializer)?;
        let begin = w.begin.as_u64().map_err(serde::de::Error::custom)?;
        let end = w.end.as_u64().map_err(serde::de::Error::custom)?;
        if begin > end {
            return Err(serde::de::Error::custom(ValueError::RangeOrder {
                begin,
                end,
            }));
        }
        Ok(Range { begin, end })
    }
}

/// Inclusive `u64` intervals, always sorted and coalesced (overlapping or
/// adjacent intervals are merged: `[1-3,4-6]` is `[1-6]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Ranges(Vec<Range>);

impl Ranges {
    /// No ranges.
    pub const fn new() -> Ranges {
        Ranges(Vec::new())
    }

    /// The single interval `[begin, end]`.
    pub fn single(begin: u64, end: u64) -> Result<Ranges, ValueError> {
        Ranges::from_pairs([(begin, end)])
    }

    /// Builds from `(begin, end)` pairs in any order, overlaps allowed; errors if
    /// a pair has `begin > end`.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u64, u64)>) -> Result<Ranges, ValueError> {
        let mut v = Vec::new();
        for (begin, end) in pairs {
            if begin > end {
                return Err(ValueError::RangeOrder { begin, end });
            }
            v.push(Range { begin, end });
        }
        Ok(Ranges::normalized(v))
    }

    fn normalized(mut v: Vec<Range>) -> Ranges {
        v.sort();
        let mut out: Vec<Range> = Vec::with_capacity(v.len());
        for r in v {
            match out.last_mut() {
                Some(last) if r.begin <= last.end.saturating_add(1) => {
                    last.end = last.end.max(r.end);
                }
                _ => out.push(r),
            }
        }
        Ranges(out)
    }

    /// The intervals, sorted and disjoint.
    pub fn ranges(&self) -> &[Range] {
        &self.0
    }

    /// True when there is no interval.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many numbers the intervals hold (saturating).
    pub fn count(&self) -> u64 {
        self.0.iter().fold(0u64, |acc, r| {
            acc.saturating_add((r.end - r.begin).saturating_add(1))
        })
    }

    /// True when `n` is in one of the intervals.
    pub fn contains_value(&self, n: u64) -> bool {
        self.0.iter().any(|r| r.begin <= n && n <= r.end)
    }

    /// True when every number of `other` is in `self`.
    pub fn contains(&self, other: &Ranges) -> bool {
        // Both are coalesced, so each interval of `other` must fit in one of `self`.
        other
            .0
            .iter()
            .all(|o| self.0.iter().any(|s| s.begin <= o.begin && o.end <= s.end))
    }

    /// Union.
    pub fn union(&self, other: &Ranges) -> Ranges {
        Ranges::normalized(self.0.iter().chain(other.0.iter()).copied().collect())
    }

    /// Numbers of `self` not in `other`; intervals are split as needed.
    pub fn difference(&self, other: &Ranges) -> Ranges {
        let mut out = Vec::new();
        for s in &self.0 {
            let mut pieces = vec![*s];
            for o in &other.0 {
                let mut next = Vec::with_capacity(pieces.len() + 1);
                for p in pieces {
                    if o.end < p.begin || o.begin > p.end {
                        next.push(p);
                        continue;
                    }
                    if o.begin > p.begin {
                        next.push(Range {
                            begin: p.begin,
                            end: o.begin - 1,
                        });
                    }
                    if o.end < p.end {
                        next.push(Range {
                            begin: o.end + 1,
                            end: p.end,
                        });
                    }
                }
                pieces = next;
            }
            out.extend(pieces);
        }
        Ranges::normalized(out)
    }
}

impl fmt::Display for Ranges {
    /// `[31000-32000, 40000-40010]` (Mesos' own format, `", "` separated).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}-{}", r.begin, r.end)?;
        }
        f.write_str("]")
    }
}

#[derive(Serialize, Deserialize)]
struct RangesWire {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    range: Vec<Range>,
}

impl Serialize for Ranges {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RangesWire {
            range: self.0.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Ranges {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = RangesWire::deserialize(deserializer)?;
        Ok(Ranges::normalized(w.range))
    }
}

/// A set of strings, sorted and unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Set(BTreeSet<String>);

impl Set {
    /// The empty set.
    pub const fn new() -> Set {
        Set(BTreeSet::new())
    }

    /// The items, sorted.
    pub fn items(&self) -> &BTreeSet<String> {
        &self.0
    }

    /// True when the set has no item.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when every item of `other` is in `self`.
    pub fn contains(&self, other: &Set) -> bool {
        other.0.is_subset(&self.0)
    }

    /// Union.
    pub fn union(&self, other: &Set) -> Set {
        Set(self.0.union(&other.0).cloned().collect())
    }

    /// Items of `self` not in `other`.
    pub fn difference(&self, other: &Set) -> Set {
        Set(self.0.difference(&other.0).cloned().collect())
    }
}

impl<S: Into<String>> FromIterator<S> for Set {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Set(iter.into_iter().map(Into::into).collect())
    }
}

impl fmt::Display for Set {
    /// `{a, b, c}` (Mesos' own format).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(item)?;
        }
        f.write_str("}")
    }
}

#[derive(Serialize, Deserialize)]
struct SetWire {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    item: Vec<String>,
}

impl Serialize for Set {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SetWire {
            item: self.0.iter().cloned().collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Set {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = SetWire::deserialize(deserializer)?;
        Ok(Set(w.item.into_iter().collect()))
    }
}

/// `text:{value}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TextWire {
    pub(crate) value: String,
}

/// A Mesos value of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `SCALAR`.
    Scalar(Scalar),
    /// `RANGES`.
    Ranges(Ranges),
    /// `SET`.
    Set(Set),
    /// `TEXT`.
    Text(String),
}

impl Value {
    /// The kind of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::Scalar(_) => ValueType::Scalar,
            Value::Ranges(_) => ValueType::Ranges,
            Value::Set(_) => ValueType::Set,
            Value::Text(_) => ValueType::Text,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Scalar(s) => s.fmt(f),
            Value::Ranges(r) => r.fmt(f),
            Value::Set(s) => s.fmt(f),
            Value::Text(t) => f.write_str(t),
        }
    }
}

/// The JSON fields a value occupies inside its owner (`Attribute`, `Resource`):
/// `type` plus one of `scalar`, `ranges`, `set`, `text`.
#[derive(Serialize, Deserialize)]
pub(crate) struct ValueFields {
    #[serde(rename = "type")]
    pub(crate) ty: ValueType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scalar: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ranges: Option<Ranges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) set: Option<Set>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<TextWire>,
}

impl ValueFields {
    pub(crate) fn from_value(v: &Value) -> ValueFields {
        let mut f = ValueFields {
            ty: v.value_type(),
            scalar: None,
            ranges: None,
            set: None,
            text: None,
        };
        match v {
            Value::Scalar(s) => f.scalar = Some(*s),
            Value::Ranges(r) => f.ranges = Some(r.clone()),
            Value::Set(s) => f.set = Some(s.clone()),
            Value::Text(t) => f.text = Some(TextWire { value: t.clone() }),
        }
        f
    }

    /// The value named by `type`; errors when its field is missing.
    pub(crate) fn into_value(self) -> Result<Value, String> {
        let missing = |field: &str| format!("type {} requires a \"{field}\" field", self.ty);
        match self.ty {
            ValueType::Scalar => self
                .scalar
                .map(Value::Scalar)
                .ok_or_else(|| missing("scalar")),
            // Mesos omits empty repeated fields, so `ranges`/`set` may be absent
            // only when there is nothing in them; it still needs the object.
            ValueType::Ranges => self
                .ranges
                .clone()
                .map(Value::Ranges)
                .ok_or_else(|| missing("ranges")),
            ValueType::Set => self
                .set
                .clone()
                .map(Value::Set)
                .ok_or_else(|| missing("set")),
            ValueType::Text => self
                .text
                .as_ref()
                .map(|t| Value::Text(t.value.clone()))
                .ok_or_else(|| missing("text")),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ValueFields::from_value(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ValueFields::deserialize(deserializer)?
            .into_value()
            .map_err(serde::de::Error::custom)
    }
}

/// Parses the text syntax of one value (surrounding whitespace ignored):
/// `[a-b,c-d]` → RANGES, `{x,y}` → SET, a number → SCALAR (rounded to 0.001),
/// anything else → TEXT. A number that is NaN or infinite is
/// [`ValueError::NotFinite`]; callers wanting TEXT for such words can map it.
pub fn parse_value(text: &str) -> Result<Value, ValueError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ValueError::Empty);
    }
    if let Some(inner) = t.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or(ValueError::Unclosed { close: ']' })?;
        let mut pairs = Vec::new();
        for part in inner.split(',') {
            let part = part.trim();
            if part.is_empty() && inner.trim().is_empty() {
                break;
            }
            let (b, e) = part
                .split_once('-')
                .ok_or_else(|| ValueError::BadRange(part.to_string()))?;
            let bad = || ValueError::BadRange(part.to_string());
            let begin = b.trim().parse::<u64>().map_err(|_| bad())?;
            let end = e.trim().parse::<u64>().map_err(|_| bad())?;
            pairs.push((begin, end));
        }
        return Ranges::from_pairs(pairs).map(Value::Ranges);
    }
    if let Some(inner) = t.strip_prefix('{') {
        let inner = inner
            .strip_suffix('}')
            .ok_or(ValueError::Unclosed { close: '}' })?;
        let mut set = BTreeSet::new();
        if !inner.trim().is_empty() {
            for item in inner.split(',') {
                let item = item.trim();
                if item.is_empty() {
                    return Err(ValueError::EmptySetItem);
                }
                set.insert(item.to_string());
            }
        }
        return Ok(Value::Set(Set(set)));
    }
    if looks_numeric(t) {
        if let Ok(v) = t.parse::<f64>() {
            return Scalar::from_f64(v).map(Value::Scalar);
        }
    }
    Ok(Value::Text(t.to_string()))
}

/// True for text that Rust's float parser would read as a number, including
/// the spelled-out NaN/infinity forms (which [`parse_value`] then rejects).
fn looks_numeric(t: &str) -> bool {
    let body = t.trim_start_matches(['+', '-']);
    let lower = body.to_ascii_lowercase();
    matches!(lower.as_str(), "nan" | "inf" | "infinity")
        || body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_fixed_point() {
        let a = Scalar::from_f64(0.1).unwrap();
        let b = Scalar::from_f64(0.2).unwrap();
        assert_eq!(a + b, Scalar::from_f64(0.3).unwrap());
        assert_eq!((a + b).value(), 0.3);
        assert_eq!(Scalar::from_f64(1.0004).unwrap().millis(), 1000);
        assert_eq!(Scalar::from_f64(1.0005).unwrap().millis(), 1001);
        assert_eq!(Scalar::from_f64(2.0).unwrap().to_string(), "2");
        assert_eq!(Scalar::from_f64(1.5).unwrap().to_string(), "1.5");
        assert_eq!(Scalar::from_f64(0.125).unwrap().to_string(), "0.125");
        assert_eq!(Scalar::from_f64(-0.05).unwrap().to_string(), "-0.05");
        assert_eq!(Scalar::from_f64(f64::NAN), Err(ValueError::NotFinite));
        assert_eq!(Scalar::from_f64(f64::INFINITY), Err(ValueError::NotFinite));
        assert_eq!(Scalar::from_f64(1e300), Err(ValueError::TooLarge));
    }

    #[test]
    fn ranges_normalize_union_difference() {
        let r = Ranges::from_pairs([(10, 20), (1, 5), (6, 8), (15, 30)]).unwrap();
        assert_eq!(r.to_string(), "[1-8, 10-30]");
        assert_eq!(r.count(), 8 + 21);
        let d = r.difference(&Ranges::from_pairs([(3, 4), (12, 12), (25, 40)]).unwrap());
        assert_eq!(d.to_string(), "[1-2, 5-8, 10-11, 13-24]");
        assert!(r.contains(&d));
        assert!(!d.contains(&r));
        assert_eq!(d.union(&r), r);
        assert_eq!(
            Ranges::single(5, 1),
            Err(ValueError::RangeOrder { begin: 5, end: 1 })
        );
        let all = Ranges::single(0, u64::MAX).unwrap();
        assert_eq!(
            all.difference(&Ranges::single(0, 0).unwrap()),
            Ranges::single(1, u64::MAX).unwrap()
        );
    }

    #[test]
    fn parse_value_kinds() {
        assert_eq!(
            parse_value(" 1.5 ").unwrap(),
            Value::Scalar(Scalar::from_millis(1500))
        );
        assert_eq!(
            parse_value("[21000-24000, 30000-34000]")
                .unwrap()
                .to_string(),
            "[21000-24000, 30000-34000]"
        );
        assert_eq!(parse_value("{b, a,a}").unwrap().to_string(), "{a, b}");
        assert_eq!(parse_value("abc").unwrap(), Value::Text("abc".into()));
        assert_eq!(parse_value("nan"), Err(ValueError::NotFinite));
        assert_eq!(
            parse_value("[1-2"),
            Err(ValueError::Unclosed { close: ']' })
        );
        assert_eq!(parse_value("{a,,b}"), Err(ValueError::EmptySetItem));
        assert_eq!(
            parse_value("[x-2]"),
            Err(ValueError::BadRange("x-2".into()))
        );
        assert_eq!(parse_value("[]").unwrap(), Value::Ranges(Ranges::new()));
    }

    #[test]
    fn value_json() {
        let v = parse_value("[1-2,4-4]").unwrap();
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"type":"RANGES","ranges":{"range":[{"begin":1,"end":2},{"begin":4,"end":4}]}})
        );
        assert_eq!(serde_json::from_value::<Value>(j).unwrap(), v);
        let s: Value =
            serde_json::from_value(serde_json::json!({"type":"SCALAR","scalar":{"value":"2.5"}}))
                .unwrap();
        assert_eq!(s, Value::Scalar(Scalar::from_millis(2500)));
        assert!(serde_json::from_value::<Value>(serde_json::json!({"type":"SCALAR"})).is_err());
        let e: Value = serde_json::from_value(serde_json::json!({"type":"SET","set":{}})).unwrap();
        assert_eq!(e, Value::Set(Set::new()));
    }
}
