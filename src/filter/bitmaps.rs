//! The field index: for every indexed field, a roaring bitmap of slots per value, and the
//! evaluation of a filter into the bitmap of the slots it admits. It is kept exact: every
//! write that changes a slot's payload or liveness changes it in the same step.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound as Edge;
use std::sync::Arc;

use parking_lot::Mutex;
use roaring::{MultiOps, RoaringBitmap};
use serde_json::{Map, Number, Value};

/// A bound's number (evaluation checked it is one).
fn bound_number(b: &Bound) -> &Number {
    match &b.value {
        Value::Number(n) => n,
        _ => unreachable!("eval checks bounds are numbers"),
    }
}

use super::expr::{Bound, Filter};
use super::fields::{FieldKind, FieldSpec, Key, key_of, keys};
use crate::error::{Error, Result};

/// A float as an ordered map key (total order; -0.0 is stored as 0.0 so that `eq 0`
/// finds both).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Float(f64);

impl Float {
    fn new(x: f64) -> Float {
        Float(if x == 0.0 { 0.0 } else { x })
    }
}

impl Eq for Float {}

impl PartialOrd for Float {
    fn partial_cmp(&self, other: &Float) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Float {
    fn cmp(&self, other: &Float) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The slots of each value of one field.
enum Values {
    Keyword(HashMap<String, RoaringBitmap>),
    Integer(BTreeMap<i64, RoaringBitmap>),
    Float(BTreeMap<Float, RoaringBitmap>),
    Bool([RoaringBitmap; 2]),
}

struct Column {
    spec: FieldSpec,
    /// Slots whose payload has the field.
    present: RoaringBitmap,
    values: Values,
}

impl Column {
    fn new(spec: FieldSpec) -> Column {
        let values = match spec.kind {
            FieldKind::Keyword => Values::Keyword(HashMap::new()),
            FieldKind::Integer => Values::Integer(BTreeMap::new()),
            FieldKind::Float => Values::Float(BTreeMap::new()),
            FieldKind::Bool => Values::Bool(Default::default()),
        };
        Column {
            spec,
            present: RoaringBitmap::new(),
            values,
        }
    }

    /// The bitmap of `key`, created if `create`.
    fn bitmap(&mut self, key: Key) -> &mut RoaringBitmap {
        match (&mut self.values, key) {
            (Values::Keyword(m), Key::Str(s)) => m.entry(s).or_default(),
            (Values::Integer(m), Key::Int(i)) => m.entry(i).or_default(),
            (Values::Float(m), Key::Float(x)) => m.entry(Float::new(x)).or_default(),
            (Values::Bool(b), Key::Bool(v)) => &mut b[v as usize],
            _ => unreachable!("keys() returns keys of the column's kind"),
        }
    }

    /// Drops the bitmap of `key` once it is empty, so that values no slot holds any more
    /// cost nothing.
    fn prune(&mut self, key: &Key) {
        match (&mut self.values, key) {
            (Values::Keyword(m), Key::Str(s)) if m.get(s).is_some_and(|b| b.is_empty()) => {
                m.remove(s);
            }
            (Values::Integer(m), Key::Int(i)) if m.get(i).is_some_and(|b| b.is_empty()) => {
                m.remove(i);
            }
            (Values::Float(m), Key::Float(x))
                if m.get(&Float::new(*x)).is_some_and(|b| b.is_empty()) =>
            {
                m.remove(&Float::new(*x));
            }
            _ => {}
        }
    }

    /// The slots holding `v`: empty if no value of this field can equal it (an integer
    /// field and 2.5), an error if `v` is of another type altogether.
    fn eq(&self, v: &Value) -> Result<RoaringBitmap> {
        let key = match (self.spec.kind, v) {
            (FieldKind::Integer, Value::Number(n)) if n.as_i64().is_none() => {
                return Ok(RoaringBitmap::new());
            }
            (kind, v) => key_of(kind, v).ok_or_else(|| {
                Error::InvalidFilter(format!(
                    "field {:?} is {}; it cannot equal {v}",
                    self.spec.name,
                    self.spec.kind.name()
                ))
            })?,
        };
        Ok(match (&self.values, &key) {
            (Values::Keyword(m), Key::Str(s)) => m.get(s).cloned(),
            (Values::Integer(m), Key::Int(i)) => m.get(i).cloned(),
            (Values::Float(m), Key::Float(x)) => m.get(&Float::new(*x)).cloned(),
            (Values::Bool(b), Key::Bool(v)) => Some(b[*v as usize].clone()),
            _ => unreachable!("key_of returns keys of the column's kind"),
        }
        .unwrap_or_default())
    }

    fn range(&self, lower: Option<&Bound>, upper: Option<&Bound>) -> Result<RoaringBitmap> {
        Ok(match &self.values {
            Values::Integer(m) => {
                let lo = lower.map_or(Edge::Unbounded, |b| {
                    int_edge(bound_number(b), b.inclusive, true)
                });
                let hi = upper.map_or(Edge::Unbounded, |b| {
                    int_edge(bound_number(b), b.inclusive, false)
                });
                if empty_range(&lo, &hi) {
                    return Ok(RoaringBitmap::new());
                }
                m.range((lo, hi)).map(|(_, b)| b).union()
            }
            Values::Float(m) => {
                let edge = |b: &Bound| {
                    let x = Float::new(bound_number(b).as_f64().unwrap_or(f64::NAN));
                    if b.inclusive {
                        Edge::Included(x)
                    } else {
                        Edge::Excluded(x)
                    }
                };
                let lo = lower.map_or(Edge::Unbounded, edge);
                let hi = upper.map_or(Edge::Unbounded, edge);
                if empty_range(&lo, &hi) {
                    return Ok(RoaringBitmap::new());
                }
                m.range((lo, hi)).map(|(_, b)| b).union()
            }
            _ => {
                return Err(Error::InvalidFilter(format!(
                    "field {:?} is {}: ranges need an int or float field",
                    self.spec.name,
                    self.spec.kind.name()
                )));
            }
        })
    }
}

/// Whether a range is empty or inverted (which `BTreeMap::range` would panic on).
fn empty_range<T: Ord>(lo: &Edge<T>, hi: &Edge<T>) -> bool {
    match (lo, hi) {
        (Edge::Included(a), Edge::Included(b)) => a > b,
        (Edge::Included(a) | Edge::Excluded(a), Edge::Included(b) | Edge::Excluded(b)) => a >= b,
        _ => false,
    }
}

/// A numeric bound as an i64 edge: exact for integers, rounded inwards for fractions
/// (`> 2.5` is `>= 3`), saturated beyond i64's range.
fn int_edge(n: &Number, inclusive: bool, lower: bool) -> Edge<i64> {
    if let Some(i) = n.as_i64() {
        return if inclusive {
            Edge::Included(i)
        } else {
            Edge::Excluded(i)
        };
    }
    let x = n.as_f64().unwrap_or(0.0);
    // A fraction is never equal to an integer: the bound is the next integer inwards.
    let rounded = if lower { x.ceil() } else { x.floor() };
    let clamp = rounded.clamp(i64::MIN as f64, i64::MAX as f64) as i64;
    if rounded != x || inclusive {
        Edge::Included(clamp)
    } else {
        Edge::Excluded(clamp)
    }
}

/// Filters whose bitmaps are kept (all are dropped at the next change of the index):
/// apps repeat a few filters (a tenant, a language), and a filter over many values costs
/// more to evaluate than the walk it steers.
const CACHED_FILTERS: usize = 32;

/// Every indexed field's bitmaps, plus the live slots (what `not` complements against).
pub struct FieldIndex {
    columns: Vec<Column>,
    live: RoaringBitmap,
    /// Recently evaluated filters (keyed by their debug form), valid until a change.
    cache: Mutex<HashMap<String, Arc<RoaringBitmap>>>,
}

impl FieldIndex {
    /// An empty index of `specs`.
    pub fn new(specs: &[FieldSpec]) -> FieldIndex {
        FieldIndex {
            columns: specs.iter().cloned().map(Column::new).collect(),
            live: RoaringBitmap::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The indexed fields.
    pub fn specs(&self) -> impl Iterator<Item = &FieldSpec> {
        self.columns.iter().map(|c| &c.spec)
    }

    /// Live slots.
    pub fn live(&self) -> &RoaringBitmap {
        &self.live
    }

    /// Checks that every indexed field of `payload` holds values of its kind.
    pub fn check(specs: &[FieldSpec], payload: &Map<String, Value>) -> Result<()> {
        for spec in specs {
            keys(spec, payload).map_err(Error::InvalidPayload)?;
        }
        Ok(())
    }

    /// Records that `slot` is live with `payload` (if any).
    pub fn add(&mut self, slot: u32, payload: Option<&Map<String, Value>>) {
        self.cache.get_mut().clear();
        self.live.insert(slot);
        let Some(payload) = payload else { return };
        for column in &mut self.columns {
            // A value of the wrong kind was rejected when it was written; one in an index
            // written before the field was declared is left out of the field's index.
            let Ok(keys) = keys(&column.spec, payload) else {
                continue;
            };
            if !keys.is_empty() {
                column.present.insert(slot);
            }
            for key in keys {
                column.bitmap(key).insert(slot);
            }
        }
    }

    /// Records that `slot`, which held `payload`, is no longer live (or is about to be
    /// added again with another payload).
    pub fn remove(&mut self, slot: u32, payload: Option<&Map<String, Value>>) {
        self.cache.get_mut().clear();
        self.live.remove(slot);
        let Some(payload) = payload else { return };
        for column in &mut self.columns {
            let Ok(keys) = keys(&column.spec, payload) else {
                continue;
            };
            column.present.remove(slot);
            for key in keys {
                column.bitmap(key.clone()).remove(slot);
                column.prune(&key);
            }
        }
    }

    fn column(&self, field: &str) -> Result<&Column> {
        self.columns
            .iter()
            .find(|c| c.spec.name == field)
            .ok_or_else(|| {
                let names: Vec<&str> = self.specs().map(|s| s.name.as_str()).collect();
                Error::InvalidFilter(format!(
                    "field {field:?} is not indexed (indexed fields: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            })
    }

    /// `eval`, remembered until the index changes.
    pub fn eval_cached(&self, filter: &Filter) -> Result<Arc<RoaringBitmap>> {
        let key = format!("{filter:?}");
        if let Some(hit) = self.cache.lock().get(&key) {
            return Ok(hit.clone());
        }
        let bitmap = Arc::new(self.eval(filter)?);
        let mut cache = self.cache.lock();
        if cache.len() >= CACHED_FILTERS {
            cache.clear();
        }
        cache.insert(key, bitmap.clone());
        Ok(bitmap)
    }

    /// The live slots `filter` admits.
    pub fn eval(&self, filter: &Filter) -> Result<RoaringBitmap> {
        Ok(match filter {
            Filter::Eq(field, v) => self.column(field)?.eq(v)? & &self.live,
            Filter::In(field, values) => {
                let column = self.column(field)?;
                let each = values
                    .iter()
                    .map(|v| column.eq(v))
                    .collect::<Result<Vec<_>>>()?;
                each.union() & &self.live
            }
            Filter::Range {
                field,
                lower,
                upper,
            } => {
                for b in lower.iter().chain(upper.iter()) {
                    if b.value.as_f64().is_none_or(|x| !x.is_finite()) {
                        return Err(Error::InvalidFilter(format!(
                            "{field}: bound {} is not a finite number",
                            b.value
                        )));
                    }
                }
                self.column(field)?.range(lower.as_ref(), upper.as_ref())? & &self.live
            }
            Filter::Has(field) => self.column(field)?.present.clone() & &self.live,
            Filter::And(all) => {
                let mut out = self.live.clone();
                for f in all {
                    out &= self.eval(f)?;
                }
                out
            }
            Filter::Or(any) => any
                .iter()
                .map(|f| self.eval(f))
                .collect::<Result<Vec<_>>>()?
                .union(),
            Filter::Not(f) => &self.live - self.eval(f)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn index() -> FieldIndex {
        let specs = ["lang:keyword", "year:int", "score:float", "ok:bool"]
            .map(|s| FieldSpec::parse(s).unwrap());
        let mut ix = FieldIndex::new(&specs);
        let payloads = [
            json!({"lang": "en", "year": 2019, "score": 0.5, "ok": true}),
            json!({"lang": ["en", "de"], "year": 2021, "score": -0.0}),
            json!({"lang": "fr", "year": 2024, "ok": false}),
            json!({}),
        ];
        for (slot, p) in payloads.iter().enumerate() {
            ix.add(slot as u32, p.as_object());
        }
        ix.add(4, None);
        ix
    }

    fn slots(ix: &FieldIndex, f: serde_json::Value) -> Vec<u32> {
        ix.eval(&Filter::from_json(&f).unwrap())
            .unwrap()
            .iter()
            .collect()
    }

    #[test]
    fn filters_evaluate_to_the_right_slots() {
        let ix = index();
        assert_eq!(slots(&ix, json!({"lang": "en"})), [0, 1]);
        assert_eq!(slots(&ix, json!({"lang": {"$in": ["de", "fr"]}})), [1, 2]);
        assert_eq!(slots(&ix, json!({"lang": {"$ne": "en"}})), [2, 3, 4]);
        assert_eq!(slots(&ix, json!({"year": {"$gte": 2020}})), [1, 2]);
        assert_eq!(
            slots(&ix, json!({"year": {"$gt": 2019.5, "$lt": 2024}})),
            [1]
        );
        assert_eq!(
            slots(&ix, json!({"year": {"$gt": 2024, "$lt": 2020}})),
            [] as [u32; 0]
        );
        assert_eq!(slots(&ix, json!({"year": 2021.5})), [] as [u32; 0]);
        assert_eq!(slots(&ix, json!({"score": 0})), [1]);
        assert_eq!(slots(&ix, json!({"score": {"$lte": 0.5}})), [0, 1]);
        assert_eq!(slots(&ix, json!({"ok": false})), [2]);
        assert_eq!(slots(&ix, json!({"ok": {"$exists": false}})), [1, 3, 4]);
        assert_eq!(
            slots(
                &ix,
                json!({"$or": [{"lang": "fr"}, {"year": 2019}], "ok": {"$exists": true}})
            ),
            [0, 2]
        );
        for bad in [
            json!({"missing": 1}),
            json!({"lang": 1}),
            json!({"lang": {"$gt": 1}}),
            json!({"ok": {"$lt": 1}}),
            json!({"year": "2020"}),
        ] {
            let f = Filter::from_json(&bad).unwrap();
            assert!(matches!(ix.eval(&f), Err(Error::InvalidFilter(_))), "{bad}");
        }
    }

    #[test]
    fn removing_a_slot_removes_it_everywhere() {
        let mut ix = index();
        ix.remove(
            1,
            json!({"lang": ["en", "de"], "year": 2021, "score": -0.0}).as_object(),
        );
        assert_eq!(slots(&ix, json!({"lang": "en"})), [0]);
        assert_eq!(slots(&ix, json!({"lang": "de"})), [] as [u32; 0]);
        assert_eq!(slots(&ix, json!({"lang": {"$ne": "en"}})), [2, 3, 4]);
        assert!(!ix.live().contains(1));
        assert!(
            FieldIndex::check(
                &[FieldSpec::parse("year:int").unwrap()],
                json!({"year": "x"}).as_object().unwrap()
            )
            .is_err()
        );
    }
}
