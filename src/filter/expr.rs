//! Filter expressions over payload fields (indexed or not): a Rust builder and a JSON
//! form close to MongoDB's and Chroma's (`{"lang": "en", "year": {"$gte": 2020}}`).

use serde_json::{Map, Value};

use super::MAX_JSON_DEPTH;
use super::number::Num;
use crate::error::{Error, Result};

/// A condition on payloads. Build one with the constructors (`Filter::eq("lang", "en")
/// .and(Filter::gte("year", 2020))`) or parse the JSON form with [`Filter::from_json`].
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// The field holds this value (for a multi-valued field: one of its values is it).
    Eq(String, Value),
    /// The field holds one of these values.
    In(String, Vec<Value>),
    /// A numeric field holds a value within the bounds (each optional).
    Range {
        /// The field.
        field: String,
        /// Lower bound.
        lower: Option<Bound>,
        /// Upper bound.
        upper: Option<Bound>,
    },
    /// The field is present (and not null).
    Has(String),
    /// Every condition holds (an empty list: all).
    And(Vec<Filter>),
    /// At least one condition holds (an empty list: none).
    Or(Vec<Filter>),
    /// The condition does not hold.
    Not(Box<Filter>),
}

/// A range bound: a number, inclusive or not.
#[derive(Clone, Debug, PartialEq)]
pub struct Bound {
    /// The number (anything else, NaN included, is an `InvalidFilter` when evaluated).
    pub value: Value,
    /// Whether the bound itself is in the range.
    pub inclusive: bool,
}

impl Filter {
    /// `field == value`.
    pub fn eq(field: impl Into<String>, value: impl Into<Value>) -> Filter {
        Filter::Eq(field.into(), value.into())
    }

    /// `field` is one of `values`.
    pub fn is_in<V: Into<Value>>(
        field: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Filter {
        Filter::In(field.into(), values.into_iter().map(Into::into).collect())
    }

    /// `field > value`.
    pub fn gt(field: impl Into<String>, value: impl Into<Value>) -> Filter {
        Filter::range(field, Some(Bound::new(value, false)), None)
    }

    /// `field >= value`.
    pub fn gte(field: impl Into<String>, value: impl Into<Value>) -> Filter {
        Filter::range(field, Some(Bound::new(value, true)), None)
    }

    /// `field < value`.
    pub fn lt(field: impl Into<String>, value: impl Into<Value>) -> Filter {
        Filter::range(field, None, Some(Bound::new(value, false)))
    }

    /// `field <= value`.
    pub fn lte(field: impl Into<String>, value: impl Into<Value>) -> Filter {
        Filter::range(field, None, Some(Bound::new(value, true)))
    }

    /// `lower <= field < upper` style ranges with any bounds.
    pub fn range(field: impl Into<String>, lower: Option<Bound>, upper: Option<Bound>) -> Filter {
        Filter::Range {
            field: field.into(),
            lower,
            upper,
        }
    }

    /// `field` is present and not null.
    pub fn has(field: impl Into<String>) -> Filter {
        Filter::Has(field.into())
    }

    /// Both this and `other`.
    pub fn and(self, other: Filter) -> Filter {
        match self {
            Filter::And(mut all) => {
                all.push(other);
                Filter::And(all)
            }
            one => Filter::And(vec![one, other]),
        }
    }

    /// This or `other`.
    pub fn or(self, other: Filter) -> Filter {
        match self {
            Filter::Or(mut any) => {
                any.push(other);
                Filter::Or(any)
            }
            one => Filter::Or(vec![one, other]),
        }
    }

    /// The negation of `f`.
    #[allow(clippy::should_implement_trait)] // a builder verb, as `and` and `or`
    pub fn not(f: Filter) -> Filter {
        Filter::Not(Box::new(f))
    }

    /// The fields the filter reads, each once, in no particular order.
    pub fn fields(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let mut stack = vec![self];
        while let Some(f) = stack.pop() {
            match f {
                Filter::Eq(field, _)
                | Filter::In(field, _)
                | Filter::Range { field, .. }
                | Filter::Has(field) => {
                    if !out.contains(&field.as_str()) {
                        out.push(field);
                    }
                }
                Filter::And(fs) | Filter::Or(fs) => stack.extend(fs),
                Filter::Not(f) => stack.push(f),
            }
        }
        out
    }

    /// The fields the filter reads that `specs` do not declare, sorted (a scan of the
    /// payloads answers those).
    pub fn unindexed(&self, specs: &[super::FieldSpec]) -> Vec<String> {
        let mut out: Vec<String> = self
            .fields()
            .into_iter()
            .filter(|f| !specs.iter().any(|s| s.name == *f))
            .map(str::to_string)
            .collect();
        out.sort_unstable();
        out
    }

    /// Parses the JSON form:
    /// - `{"field": value}` equality; several keys in one object must all hold;
    /// - `{"field": {"$eq"|"$ne"|"$gt"|"$gte"|"$lt"|"$lte": value}}`, several operators on
    ///   one field must all hold;
    /// - `{"field": {"$in"|"$nin": [values]}}`, `{"field": {"$exists": bool}}`;
    /// - `{"$and": [filters]}`, `{"$or": [filters]}`, `{"$not": filter}`.
    ///
    /// A filter nested more than `MAX_JSON_DEPTH` deep is an error (before any recursion).
    pub fn from_json(value: &Value) -> Result<Filter> {
        if super::deeper_than(value, MAX_JSON_DEPTH) {
            return Err(too_deep());
        }
        parse_checked(value)
    }

    /// Parses the JSON form from text (the CLI's `--filter`).
    pub fn parse(text: &str) -> Result<Filter> {
        let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        Filter::from_json(&value)
    }

    /// An error if the filter nests (`and`, `or`, `not`, and the arrays and objects of
    /// its values) more than `MAX_JSON_DEPTH` deep, found without recursion: evaluating,
    /// formatting or comparing a filter recurses, so one built deeper in Rust is refused
    /// first. Every filter `from_json` returns passes (each level of it is at least one
    /// level of its JSON form).
    pub fn check_depth(&self) -> Result<()> {
        // Each entry: a condition and its level (the root's is 1).
        let mut stack = vec![(self, 1usize)];
        while let Some((f, level)) = stack.pop() {
            let values_fit =
                |v: &Value| !super::deeper_than(v, MAX_JSON_DEPTH.saturating_sub(level));
            let fits = level <= MAX_JSON_DEPTH
                && match f {
                    Filter::Eq(_, v) => values_fit(v),
                    Filter::In(_, vs) => vs.iter().all(values_fit),
                    Filter::Range { lower, upper, .. } => {
                        lower.iter().chain(upper).all(|b| values_fit(&b.value))
                    }
                    Filter::Has(_) => true,
                    Filter::And(fs) | Filter::Or(fs) => {
                        stack.extend(fs.iter().map(|f| (f, level + 1)));
                        true
                    }
                    Filter::Not(f) => {
                        stack.push((f, level + 1));
                        true
                    }
                };
            if !fits {
                return Err(too_deep());
            }
        }
        Ok(())
    }
}

/// `Filter::from_json` of a value within the depth limit.
fn parse_checked(value: &Value) -> Result<Filter> {
    let object = value
        .as_object()
        .ok_or_else(|| bad(format!("a filter is a JSON object, not {value}")))?;
    let mut all = Vec::with_capacity(object.len());
    for (key, value) in object {
        all.push(match key.as_str() {
            "$and" => Filter::And(list(key, value)?),
            "$or" => Filter::Or(list(key, value)?),
            "$not" => Filter::not(parse_checked(value)?),
            op if op.starts_with('$') => return Err(bad(format!("unknown operator {op}"))),
            field => field_condition(field, value)?,
        });
    }
    Ok(match all.len() {
        1 => all.pop().expect("one condition"),
        _ => Filter::And(all),
    })
}

impl Bound {
    /// A bound at `value`.
    pub fn new(value: impl Into<Value>, inclusive: bool) -> Bound {
        Bound {
            value: value.into(),
            inclusive,
        }
    }
}

fn bad(why: String) -> Error {
    Error::InvalidFilter(why)
}

fn too_deep() -> Error {
    bad(format!(
        "it nests conditions and values more than {MAX_JSON_DEPTH} deep"
    ))
}

fn list(op: &str, value: &Value) -> Result<Vec<Filter>> {
    value
        .as_array()
        .ok_or_else(|| bad(format!("{op} takes an array of filters")))?
        .iter()
        .map(parse_checked)
        .collect()
}

fn number(field: &str, op: &str, value: &Value) -> Result<Value> {
    match value {
        Value::Number(_) => Ok(value.clone()),
        other => Err(bad(format!("{field}: {op} takes a number, not {other}"))),
    }
}

/// Of two bounds on one side (`old`, if any, and `new`), the one that admits less:
/// further in the direction `inward` (`Greater` for lower bounds), or, at the same number,
/// the exclusive one.
fn tighter(old: Option<Bound>, new: Bound, inward: std::cmp::Ordering) -> Bound {
    let Some(old) = old else { return new };
    let num = |b: &Bound| b.value.as_number().map(Num::of);
    match num(&new).cmp(&num(&old)) {
        o if o == inward => new,
        std::cmp::Ordering::Equal if !new.inclusive => new,
        _ => old,
    }
}

/// The condition `{"field": value}` or `{"field": {"$op": value, ...}}`.
fn field_condition(field: &str, value: &Value) -> Result<Filter> {
    let ops: &Map<String, Value> = match value {
        Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => ops,
        Value::Object(_) => {
            return Err(bad(format!(
                "{field}: objects are not values; use an operator such as $eq"
            )));
        }
        Value::Array(_) => {
            return Err(bad(format!(
                "{field}: to match one of several values use $in"
            )));
        }
        Value::Null => return Err(bad(format!("{field}: null; use $exists: false"))),
        scalar => return Ok(Filter::eq(field, scalar.clone())),
    };
    let mut all = Vec::new();
    let (mut lower, mut upper) = (None, None);
    for (op, v) in ops {
        match op.as_str() {
            "$eq" => all.push(Filter::eq(field, v.clone())),
            "$ne" => all.push(Filter::not(Filter::eq(field, v.clone()))),
            "$in" | "$nin" => {
                let values = v
                    .as_array()
                    .ok_or_else(|| bad(format!("{field}: {op} takes an array of values")))?;
                let f = Filter::In(field.into(), values.clone());
                all.push(if op == "$in" { f } else { Filter::not(f) });
            }
            // Two bounds on one side must both hold: the tighter one says it (kept as one
            // range, which an array field must satisfy with one of its values).
            "$gt" | "$gte" => {
                let new = Bound::new(number(field, op, v)?, op == "$gte");
                lower = Some(tighter(lower, new, std::cmp::Ordering::Greater));
            }
            "$lt" | "$lte" => {
                let new = Bound::new(number(field, op, v)?, op == "$lte");
                upper = Some(tighter(upper, new, std::cmp::Ordering::Less));
            }
            "$exists" => match v {
                Value::Bool(true) => all.push(Filter::has(field)),
                Value::Bool(false) => all.push(Filter::not(Filter::has(field))),
                _ => return Err(bad(format!("{field}: $exists takes true or false"))),
            },
            other => return Err(bad(format!("{field}: unknown operator {other}"))),
        }
    }
    if lower.is_some() || upper.is_some() {
        all.push(Filter::range(field, lower, upper));
    }
    Ok(match all.len() {
        1 => all.pop().expect("one condition"),
        _ => Filter::And(all),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Several bounds on one side all hold: the tightest is kept (they were refused as
    /// "two lower bounds", where the docs say every operator on a field must hold).
    #[test]
    fn the_tightest_of_several_bounds_on_a_side_is_kept() {
        let parse = |j: Value| Filter::from_json(&j).unwrap();
        let range = |lo: Option<(Value, bool)>, hi: Option<(Value, bool)>| {
            let b = |(v, i): (Value, bool)| Bound::new(v, i);
            Filter::range("x", lo.map(b), hi.map(b))
        };
        assert_eq!(
            parse(json!({"x": {"$gt": 2.5, "$gte": 23.5}})),
            range(Some((json!(23.5), true)), None)
        );
        assert_eq!(
            parse(json!({"x": {"$gte": 3, "$gt": 3}})),
            range(Some((json!(3), false)), None)
        );
        assert_eq!(
            parse(json!({"x": {"$lt": 5, "$lte": 10.0, "$gt": -1}})),
            range(Some((json!(-1), false)), Some((json!(5), false)))
        );
    }

    #[test]
    fn json_form_parses_to_the_builders_filters() {
        let f =
            Filter::from_json(&json!({"lang": "en", "year": {"$gte": 2020, "$lt": 2024}})).unwrap();
        assert_eq!(
            f,
            Filter::And(vec![
                Filter::eq("lang", "en"),
                Filter::range(
                    "year",
                    Some(Bound::new(2020, true)),
                    Some(Bound::new(2024, false))
                ),
            ])
        );
        let f = Filter::from_json(&json!({"$or": [{"a": {"$in": [1, 2]}}, {"$not": {"b": true}}]}))
            .unwrap();
        assert_eq!(
            f,
            Filter::is_in("a", [1, 2]).or(Filter::not(Filter::eq("b", true)))
        );
        assert_eq!(
            Filter::parse(r#"{"t": {"$exists": false}}"#).unwrap(),
            Filter::not(Filter::has("t"))
        );
        for bad in [
            json!([1]),
            json!({"$xor": []}),
            json!({"a": {"$gt": "x"}}),
            json!({"a": {"$foo": 1}}),
            json!({"a": [1, 2]}),
            json!({"a": {"b": 1}}),
            json!({"a": null}),
            json!({"$and": {}}),
        ] {
            assert!(
                matches!(Filter::from_json(&bad), Err(Error::InvalidFilter(_))),
                "{bad}"
            );
        }
        assert!(Filter::parse("{").is_err());
    }
}
