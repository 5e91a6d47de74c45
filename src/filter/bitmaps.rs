//! The field index: for every indexed field, a roaring bitmap of slots per value, and the
//! evaluation of a filter into the bitmap of the slots it admits. It is kept exact: every
//! write that changes a slot's payload or liveness changes it in the same step.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound as Edge;
use std::sync::Arc;

use parking_lot::Mutex;
use roaring::{MultiOps, RoaringBitmap};
use serde_json::{Map, Value};

use super::expr::{Bound, Filter};
use super::fields::{FieldKind, FieldSpec, Key, any_keys, keys};
use super::number::Num;
use crate::error::{Error, Result};

/// The slots of each value of one field. Int and float fields share the numeric map:
/// keys are exact values, so a filter's number finds a field's by value whatever the
/// types (`3.0` finds 3), and ranges need no rounding or clamping of their bounds.
enum Values {
    Keyword(HashMap<String, RoaringBitmap>),
    Number(BTreeMap<Num, RoaringBitmap>),
    Bool([RoaringBitmap; 2]),
    /// An undeclared field, gathered by a scan: values of any type, each in the map of
    /// its type (the same maps and keys as the declared kinds, so the same answers).
    Any {
        keywords: HashMap<String, RoaringBitmap>,
        numbers: BTreeMap<Num, RoaringBitmap>,
        bools: [RoaringBitmap; 2],
    },
}

struct Column {
    name: String,
    /// Its declared kind; `None` for a field gathered by a scan.
    kind: Option<FieldKind>,
    /// Slots whose payload has the field.
    present: RoaringBitmap,
    values: Values,
}

impl Column {
    fn new(spec: FieldSpec) -> Column {
        let values = match spec.kind {
            FieldKind::Keyword => Values::Keyword(HashMap::new()),
            FieldKind::Integer | FieldKind::Float => Values::Number(BTreeMap::new()),
            FieldKind::Bool => Values::Bool(Default::default()),
        };
        Column {
            name: spec.name,
            kind: Some(spec.kind),
            present: RoaringBitmap::new(),
            values,
        }
    }

    /// A column of the undeclared field `name`, filled by `Scan::add`.
    fn any(name: String) -> Column {
        Column {
            name,
            kind: None,
            present: RoaringBitmap::new(),
            values: Values::Any {
                keywords: HashMap::new(),
                numbers: BTreeMap::new(),
                bools: Default::default(),
            },
        }
    }

    /// The bitmap of `key`, created if missing.
    fn bitmap(&mut self, key: Key) -> &mut RoaringBitmap {
        match (&mut self.values, key) {
            (Values::Keyword(m) | Values::Any { keywords: m, .. }, Key::Str(s)) => {
                m.entry(s).or_default()
            }
            (Values::Number(m) | Values::Any { numbers: m, .. }, Key::Num(x)) => {
                m.entry(x).or_default()
            }
            (Values::Bool(b) | Values::Any { bools: b, .. }, Key::Bool(v)) => &mut b[v as usize],
            _ => unreachable!("keys() returns keys of the column's kind"),
        }
    }

    /// Records that `slot` holds `keys` (of a present field, if `present`).
    fn insert(&mut self, slot: u32, present: bool, keys: Vec<Key>) {
        if present {
            self.present.insert(slot);
        }
        for key in keys {
            self.bitmap(key).insert(slot);
        }
    }

    /// Drops the bitmap of `key` once it is empty, so that values no slot holds any more
    /// cost nothing.
    fn prune(&mut self, key: &Key) {
        match (&mut self.values, key) {
            (Values::Keyword(m), Key::Str(s)) if m.get(s).is_some_and(|b| b.is_empty()) => {
                m.remove(s);
            }
            (Values::Number(m), Key::Num(x)) if m.get(x).is_some_and(|b| b.is_empty()) => {
                m.remove(x);
            }
            _ => {}
        }
    }

    /// The error for a condition this field's kind cannot answer.
    fn mismatch(&self, why: std::fmt::Arguments<'_>) -> Error {
        let kind = self.kind.map_or("not indexed", FieldKind::name);
        Error::InvalidFilter(format!("field {:?} is {kind}: {why}", self.name))
    }

    /// The slots holding `v` (by numeric value for numbers: an int field holds no 2.5,
    /// and 3.0 finds its 3), an error if `v` is of another type than a declared field's,
    /// or no scalar at all. An undeclared field's values of other types do not match.
    fn eq(&self, v: &Value) -> Result<RoaringBitmap> {
        let found = match (&self.values, v) {
            (Values::Keyword(m) | Values::Any { keywords: m, .. }, Value::String(s)) => m.get(s),
            (Values::Number(m) | Values::Any { numbers: m, .. }, Value::Number(n)) => {
                m.get(&Num::of(n))
            }
            (Values::Bool(b) | Values::Any { bools: b, .. }, Value::Bool(x)) => {
                Some(&b[*x as usize])
            }
            _ => return Err(self.mismatch(format_args!("it cannot equal {v}"))),
        };
        Ok(found.cloned().unwrap_or_default())
    }

    /// The slots with a value between the edges, compared exactly: a bound beyond every
    /// value the field can hold admits all of them or none.
    fn range(&self, lo: Edge<Num>, hi: Edge<Num>) -> Result<RoaringBitmap> {
        let (Values::Number(m) | Values::Any { numbers: m, .. }) = &self.values else {
            return Err(self.mismatch(format_args!("ranges need an int or float field")));
        };
        if empty_range(&lo, &hi) {
            return Ok(RoaringBitmap::new());
        }
        Ok(m.range((lo, hi)).map(|(_, b)| b).union())
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

/// A range bound as an edge of the numeric map (none: unbounded). Anything but a JSON
/// number is an error; NaN and the infinities among them, which Rust's `Value::from`
/// turns into null.
fn edge(field: &str, bound: Option<&Bound>) -> Result<Edge<Num>> {
    let Some(b) = bound else {
        return Ok(Edge::Unbounded);
    };
    let Value::Number(n) = &b.value else {
        return Err(Error::InvalidFilter(format!(
            "{field}: bound {} is not a number (NaN and infinities have no JSON form: \
             leave the side unbounded instead)",
            b.value
        )));
    };
    let x = Num::of(n);
    Ok(if b.inclusive {
        Edge::Included(x)
    } else {
        Edge::Excluded(x)
    })
}

/// Filters whose bitmaps are kept (all are dropped at the next change of the index):
/// apps repeat a few filters (a tenant, a language), and a filter over many values costs
/// more to evaluate than the walk it steers.
const CACHED_FILTERS: usize = 32;

/// The columns of undeclared fields a filter reads, gathered by a scan of every live
/// payload (`FieldIndex::scan`, then `add` per payload) for one evaluation.
pub struct Scan {
    columns: Vec<Column>,
}

impl Scan {
    /// Records that `slot` holds `payload`.
    pub fn add(&mut self, slot: u32, payload: &Map<String, Value>) {
        for column in &mut self.columns {
            let (present, keys) = any_keys(&column.name, payload);
            column.insert(slot, present, keys);
        }
    }
}

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

    /// An empty scan of the undeclared fields `names`, to fill with every live payload
    /// (`Scan::add`) and evaluate a filter with (`eval_cached`).
    pub fn scan(names: &[String]) -> Scan {
        Scan {
            columns: names.iter().cloned().map(Column::any).collect(),
        }
    }

    /// Live slots.
    pub fn live(&self) -> &RoaringBitmap {
        &self.live
    }

    /// Checks that every indexed field of `payload` holds values of its kind.
    pub fn check(specs: &[FieldSpec], payload: &Map<String, Value>) -> Result<()> {
        for spec in specs {
            keys(&spec.name, spec.kind, payload).map_err(Error::InvalidPayload)?;
        }
        Ok(())
    }

    /// Records that `slot` is live with `payload` (if any).
    pub fn add(&mut self, slot: u32, payload: Option<&Map<String, Value>>) {
        self.cache.get_mut().clear();
        self.live.insert(slot);
        let Some(payload) = payload else { return };
        for column in &mut self.columns {
            // A value of the wrong kind was refused when it was written, or when the field
            // was declared (`create_field_index`); an index declared by an older build may
            // still hold one, which is left out of the field's index.
            let Some(kind) = column.kind else { continue };
            let Ok(keys) = keys(&column.name, kind, payload) else {
                continue;
            };
            column.insert(slot, !keys.is_empty(), keys);
        }
    }

    /// Records that `slot`, which held `payload`, is no longer live (or is about to be
    /// added again with another payload).
    pub fn remove(&mut self, slot: u32, payload: Option<&Map<String, Value>>) {
        self.cache.get_mut().clear();
        self.live.remove(slot);
        let Some(payload) = payload else { return };
        for column in &mut self.columns {
            let Some(kind) = column.kind else { continue };
            let Ok(keys) = keys(&column.name, kind, payload) else {
                continue;
            };
            column.present.remove(slot);
            for key in keys {
                column.bitmap(key.clone()).remove(slot);
                column.prune(&key);
            }
        }
    }

    /// The column of `field`: indexed, or gathered by `scan`.
    fn column<'a>(&'a self, field: &str, scan: Option<&'a Scan>) -> Result<&'a Column> {
        let scanned = scan.map_or(&[][..], |s| &s.columns[..]);
        self.columns
            .iter()
            .chain(scanned)
            .find(|c| c.name == field)
            .ok_or_else(|| {
                let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
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

    /// The bitmap of `filter` if it was evaluated since the index last changed.
    pub fn cached(&self, filter: &Filter) -> Result<Option<Arc<RoaringBitmap>>> {
        // Before the key is formatted: formatting recurses.
        filter.check_depth()?;
        Ok(self.cache.lock().get(&format!("{filter:?}")).cloned())
    }

    /// `eval` with the undeclared fields of `scan`, remembered until the index changes.
    pub fn eval_cached(&self, filter: &Filter, scan: Option<&Scan>) -> Result<Arc<RoaringBitmap>> {
        if let Some(hit) = self.cached(filter)? {
            return Ok(hit);
        }
        let bitmap = Arc::new(self.admitted(filter, scan)?);
        let mut cache = self.cache.lock();
        if cache.len() >= CACHED_FILTERS {
            cache.clear();
        }
        cache.insert(format!("{filter:?}"), bitmap.clone());
        Ok(bitmap)
    }

    /// The live slots `filter` admits (its fields must be indexed: see `eval_cached`).
    pub fn eval(&self, filter: &Filter) -> Result<RoaringBitmap> {
        filter.check_depth()?;
        self.admitted(filter, None)
    }

    /// `eval` of a filter within the depth limit (this recurses).
    fn admitted(&self, filter: &Filter, scan: Option<&Scan>) -> Result<RoaringBitmap> {
        Ok(match filter {
            Filter::Eq(field, v) => self.column(field, scan)?.eq(v)? & &self.live,
            Filter::In(field, values) => {
                let column = self.column(field, scan)?;
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
                let (lo, hi) = (edge(field, lower.as_ref())?, edge(field, upper.as_ref())?);
                self.column(field, scan)?.range(lo, hi)? & &self.live
            }
            Filter::Has(field) => self.column(field, scan)?.present.clone() & &self.live,
            Filter::And(all) => {
                let mut out = self.live.clone();
                for f in all {
                    out &= self.admitted(f, scan)?;
                }
                out
            }
            Filter::Or(any) => any
                .iter()
                .map(|f| self.admitted(f, scan))
                .collect::<Result<Vec<_>>>()?
                .union(),
            Filter::Not(f) => &self.live - self.admitted(f, scan)?,
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
