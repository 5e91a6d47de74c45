//! Python binding: hnswlib's `Index` API over a persistent hnswdb index.
//!
//! Arrays cross the boundary as numpy arrays; every build and search runs with the
//! interpreter detached (the GIL released) so that other Python threads keep running.

use std::path::PathBuf;
use std::sync::Arc;

use hnswdb::limits::MAX_JSON_DEPTH;
use hnswdb::serde_json::{self, Value};
use hnswdb::{Error, FieldSpec, Filter, IdKind, Metric, Neighbour, Plan, Query};
use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray2, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyKeyError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};

pyo3::create_exception!(
    hnswdb,
    HnswdbError,
    PyRuntimeError,
    "Base class of hnswdb's own errors (corrupt files, locks, full disk...)."
);
pyo3::create_exception!(
    hnswdb,
    LockedError,
    HnswdbError,
    "Another writer (process or open Index) holds the index."
);
pyo3::create_exception!(
    hnswdb,
    CorruptError,
    HnswdbError,
    "An index file is damaged, foreign, or from a newer format version."
);

/// Errors that hnswlib raises as RuntimeError and hnswdb as a more specific built-in:
/// each type derives from both, so that code written for either catches it.
#[derive(Clone, Copy)]
enum Hybrid {
    /// ValueError and RuntimeError: a wrong dimension, a NaN, a negative id...
    InvalidInput,
    /// KeyError and RuntimeError: an id the index does not hold.
    UnknownLabel,
    /// FileNotFoundError and RuntimeError: no index at the path given.
    IndexNotFound,
}

impl Hybrid {
    const ALL: [Hybrid; 3] = [
        Hybrid::InvalidInput,
        Hybrid::UnknownLabel,
        Hybrid::IndexNotFound,
    ];

    fn name(self) -> &'static str {
        match self {
            Hybrid::InvalidInput => "InvalidInputError",
            Hybrid::UnknownLabel => "UnknownLabelError",
            Hybrid::IndexNotFound => "IndexNotFoundError",
        }
    }

    /// The Python type, made once per process with `type(name, (base, RuntimeError), ...)`
    /// (an exception type with two bases cannot be declared with pyo3's macros).
    fn ty(self, py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
        static TYPES: [PyOnceLock<Py<PyType>>; 3] = [const { PyOnceLock::new() }; 3];
        let (base, doc) = match self {
            Hybrid::InvalidInput => (py.get_type::<PyValueError>(), "Invalid input."),
            Hybrid::UnknownLabel => (py.get_type::<PyKeyError>(), "No such id in the index."),
            Hybrid::IndexNotFound => (
                py.get_type::<pyo3::exceptions::PyFileNotFoundError>(),
                "No index at this path.",
            ),
        };
        TYPES[self as usize]
            .get_or_try_init(py, || {
                let bases = PyTuple::new(py, [base, py.get_type::<PyRuntimeError>()])?;
                let body = PyDict::new(py);
                body.set_item("__module__", "hnswdb")?;
                body.set_item("__doc__", doc)?;
                let ty = py.get_type::<PyType>().call1((self.name(), bases, body))?;
                Ok::<_, PyErr>(ty.cast_into::<PyType>()?.unbind())
            })
            .map(|ty| ty.bind(py).clone())
    }

    fn err(self, text: impl Into<String>) -> PyErr {
        let text = text.into();
        Python::attach(|py| match self.ty(py) {
            Ok(ty) => PyErr::from_type(ty, text),
            Err(e) => e,
        })
    }
}

fn invalid_input(text: impl Into<String>) -> PyErr {
    Hybrid::InvalidInput.err(text)
}

/// Maps the core's error enum to the Python exception a caller would expect.
fn py_err(e: Error) -> PyErr {
    let text = e.to_string();
    match e {
        Error::DimensionMismatch { .. }
        | Error::NonFinite { .. }
        | Error::InvalidVector(_)
        | Error::ZeroVector
        | Error::DuplicateId(_)
        | Error::InvalidPayload(_)
        | Error::InvalidFilter(_)
        | Error::InvalidOption(_)
        | Error::InvalidKey(_)
        | Error::DuplicateKey(_)
        | Error::IdKind(_) => invalid_input(text),
        Error::UnknownId(_) | Error::UnknownKey(_) => Hybrid::UnknownLabel.err(text),
        Error::Locked(_) => LockedError::new_err(text),
        Error::Corrupt { .. } | Error::UnsupportedVersion { .. } => CorruptError::new_err(text),
        Error::NotFound(_) => Hybrid::IndexNotFound.err(text),
        Error::AlreadyExists(_) => PyErr::new::<pyo3::exceptions::PyFileExistsError, _>(text),
        Error::DiskFull { .. } | Error::Io { .. } => PyOSError::new_err(text),
        _ => HnswdbError::new_err(text),
    }
}

fn durability(durable: bool) -> hnswdb::Durability {
    if durable {
        hnswdb::Durability::Immediate
    } else {
        hnswdb::Durability::None
    }
}

fn parse_space(space: &str) -> PyResult<Metric> {
    space.parse().map_err(py_err)
}

/// `data` as a row-major f32 matrix of `dim` columns: a 1-D array is one row. Accepts
/// anything numpy can convert (lists, float64 arrays...), as hnswlib does.
fn rows(data: &Bound<'_, PyAny>, dim: usize) -> PyResult<(Vec<f32>, usize)> {
    // A contiguous float32 array (what a query loop usually passes) is read as it is:
    // the general path's numpy calls cost more than a small index's whole search.
    if let Ok(array) = data.cast::<PyArrayDyn<f32>>()
        && array.is_c_contiguous()
        && let Ok(array) = array.try_readonly()
        && let Ok(slice) = array.as_slice()
    {
        return shaped(array.shape(), dim).map(|n| (slice.to_vec(), n));
    }
    let np = data.py().import("numpy")?;
    // numpy would drop the imaginary parts with no more than a warning.
    if np.call_method1("iscomplexobj", (data,))?.is_truthy()? {
        return Err(PyTypeError::new_err(
            "vectors must be real numbers, got complex ones",
        ));
    }
    let kwargs = PyDict::new(data.py());
    kwargs.set_item("dtype", np.getattr("float32")?)?;
    let array = np.call_method("ascontiguousarray", (data,), Some(&kwargs))?;
    let array: PyReadonlyArrayDyn<f32> = array.extract()?;
    let n = shaped(array.shape(), dim)?;
    let slice = array.as_slice().map_err(|e| invalid_input(e.to_string()))?;
    Ok((slice.to_vec(), n))
}

/// The rows of an array of `shape` holding vectors of `dim` values: one vector (1-D) or
/// one per row (2-D).
fn shaped(shape: &[usize], dim: usize) -> PyResult<usize> {
    let (n, cols) = match shape {
        [c] => (1, *c),
        [r, c] => (*r, *c),
        shape => {
            return Err(invalid_input(format!(
                "data must be 1-D (one vector) or 2-D (one vector per row), got shape {shape:?}"
            )));
        }
    };
    if cols != dim {
        return Err(invalid_input(format!(
            "wrong dimensionality of the vectors: got {cols}, the index expects {dim}"
        )));
    }
    Ok(n)
}

/// A Python value (dict, list, tuple, str, int, float, bool, None, or a numpy bool,
/// integer or float scalar) as JSON of the same type. `at` names the value in errors
/// (`payload["tags"][2]`); anything else is a TypeError, never a silent conversion.
/// Nesting deeper than `MAX_JSON_DEPTH` (a dict or list that contains itself included) is
/// refused here, before the recursion could overflow the stack.
fn to_json(v: &Bound<'_, PyAny>, at: &str) -> PyResult<Value> {
    json_within(v, at, 0)
}

/// `to_json` of a value inside `depth` arrays and objects.
fn json_within(v: &Bound<'_, PyAny>, at: &str, depth: usize) -> PyResult<Value> {
    let dict = v.cast::<PyDict>().ok();
    let list = v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>();
    if (dict.is_some() || list) && depth >= MAX_JSON_DEPTH {
        return Err(invalid_input(format!(
            "{at}: nests arrays and objects more than {MAX_JSON_DEPTH} deep (or contains \
             itself)"
        )));
    }
    if let Some(d) = dict {
        let mut map = serde_json::Map::with_capacity(d.len());
        for (k, v) in d.iter() {
            let Ok(key) = k.cast::<PyString>() else {
                return Err(PyTypeError::new_err(format!(
                    "{at}: key {} ({}) is not a string, as JSON object keys must be",
                    k.repr()?,
                    k.get_type().name()?
                )));
            };
            let key = utf8(key, at)?;
            let value = json_within(&v, &format!("{at}[{key:?}]"), depth + 1)?;
            map.insert(key, value);
        }
        return Ok(Value::Object(map));
    }
    if list {
        return v
            .try_iter()?
            .enumerate()
            .map(|(i, x)| json_within(&x?, &format!("{at}[{i}]"), depth + 1))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    if let Some(scalar) = scalar_json(v, at)? {
        return Ok(scalar);
    }
    Err(PyTypeError::new_err(format!(
        "{at}: a {} cannot be stored as JSON (None, bool, int, float, str, list, tuple, \
         dict and numpy bool/integer/float scalars can)",
        v.get_type().name()?
    )))
}

/// `s` as UTF-8: a str holding a lone surrogate has none, and is `InvalidInputError`
/// (as a key of a string-id index is), not Python's `UnicodeEncodeError`.
fn utf8(s: &Bound<'_, PyString>, at: &str) -> PyResult<String> {
    match s.to_cow() {
        Ok(text) => Ok(text.into_owned()),
        Err(_) => Err(invalid_input(format!(
            "{at}: a str with a lone surrogate is not Unicode text, and JSON cannot hold it"
        ))),
    }
}

/// A scalar as JSON (see `to_json`); None for a value that is not one of the scalars.
fn scalar_json(v: &Bound<'_, PyAny>, at: &str) -> PyResult<Option<Value>> {
    if v.is_none() {
        return Ok(Some(Value::Null));
    }
    // bool before int: Python's bool is an int.
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Some(Value::Bool(b.is_true())));
    }
    if let Ok(i) = v.cast::<PyInt>() {
        return match (i.extract::<i64>(), i.extract::<u64>()) {
            (Ok(i), _) => Ok(Some(Value::from(i))),
            (_, Ok(u)) => Ok(Some(Value::from(u))),
            _ => Err(invalid_input(format!(
                "{at}: {i} does not fit in 64 bits, the range of a JSON integer here"
            ))),
        };
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        let x = f.value();
        return match serde_json::Number::from_f64(x) {
            Some(n) => Ok(Some(Value::Number(n))),
            None => Err(invalid_input(format!(
                "{at}: {x} is not a JSON number (NaN and inf are not)"
            ))),
        };
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Some(Value::String(utf8(s, at)?)));
    }
    if is_numpy_number(v)? {
        // `item()` gives the Python bool, int or float of the same value (a long double
        // has none: it returns itself, and is refused).
        let item = v.call_method0("item")?;
        if item.is_instance_of::<PyBool>()
            || item.is_instance_of::<PyInt>()
            || item.is_instance_of::<PyFloat>()
        {
            return scalar_json(&item, at);
        }
    }
    Ok(None)
}

/// Whether `v` is a numpy bool, integer or floating scalar (numpy is imported by then:
/// the binding's arrays need it).
fn is_numpy_number(v: &Bound<'_, PyAny>) -> PyResult<bool> {
    static KINDS: [PyOnceLock<Py<PyType>>; 3] = [const { PyOnceLock::new() }; 3];
    for (cell, name) in KINDS.iter().zip(["bool_", "integer", "floating"]) {
        if v.is_instance(cell.import(v.py(), "numpy", name)?)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// JSON as the Python value json.loads would give.
fn from_json<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => PyList::new(
            py,
            a.iter()
                .map(|x| from_json(py, x))
                .collect::<PyResult<Vec<_>>>()?,
        )?
        .into_any(),
        Value::Object(m) => {
            let d = PyDict::new(py);
            for (k, v) in m {
                d.set_item(k, from_json(py, v)?)?;
            }
            d.into_any()
        }
    })
}

/// A filter: a dict in the JSON form (see docs/filters.md).
fn to_filter(filter: &Bound<'_, PyAny>) -> PyResult<Filter> {
    Filter::from_json(&to_json(filter, "filter")?).map_err(py_err)
}

/// `ids` (an int, a sequence or an integer array) as u64s; negative ids are refused.
fn labels(ids: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    let np = ids.py().import("numpy")?;
    let array = np
        .call_method1("asarray", (ids,))?
        .call_method1("reshape", (-1,))?;
    let kind: String = array.getattr("dtype")?.getattr("kind")?.extract()?;
    let len: usize = array.call_method0("__len__")?.extract()?;
    match kind.as_str() {
        // No ids at all (`[]` is a float array to numpy): nothing to check.
        _ if len == 0 => return Ok(Vec::new()),
        "u" => {}
        "i" => {
            if array.call_method0("min")?.extract::<i64>()? < 0 {
                return Err(invalid_input("ids must be non-negative integers"));
            }
        }
        _ => {
            return Err(PyTypeError::new_err(format!(
                "ids must be integers, got an array of dtype kind {kind:?}"
            )));
        }
    }
    let array: PyReadonlyArray1<u64> = array.call_method1("astype", ("uint64",))?.extract()?;
    Ok(array.as_array().iter().copied().collect())
}

/// `ids` of a string-id index as keys: a str, or a sequence (list, tuple, numpy array)
/// of str.
fn keys(ids: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(key) = ids.cast::<PyString>() {
        return Ok(vec![key.extract::<String>()?]);
    }
    ids.try_iter()?
        .map(|x| {
            let x = x?;
            x.extract::<String>()
                .map_err(|e| match x.cast::<PyString>() {
                    // A str that is not valid Unicode text (a lone surrogate, say).
                    Ok(_) => invalid_input(format!("an id is not valid Unicode: {e}")),
                    Err(_) => PyTypeError::new_err(format!(
                        "ids of a string-id index are str, got {}",
                        x.get_type().name().map_or("?".into(), |n| n.to_string())
                    )),
                })
        })
        .collect()
}

/// What `Index::_ids_in` returns for a key that names no vector when the caller takes
/// absent ids (`missing_ok`): never a live id of a string-id index (its ids count up from
/// 0), so the engine answers it as it answers any absent id.
const ABSENT: u64 = u64::MAX;

/// The number of dimensions numpy sees in `v` (1 for one vector, 2 for a batch).
fn ndim(v: &Bound<'_, PyAny>) -> PyResult<usize> {
    v.py()
        .import("numpy")?
        .call_method1("ndim", (v,))?
        .extract()
}

/// A sequence of JSON values (payloads, patches), named `at` in errors.
fn json_list(values: &Bound<'_, PyAny>, at: &str) -> PyResult<Vec<Value>> {
    values
        .try_iter()?
        .enumerate()
        .map(|(i, x)| to_json(&x?, &format!("{at}[{i}]")))
        .collect()
}

/// What a `query` or `get` returns of each id beyond the id itself.
struct Include {
    distance: bool,
    payload: bool,
    vector: bool,
}

impl Include {
    /// `include` (a sequence of "distance", "payload", "vector"; `default` if None).
    fn parse(include: Option<&Bound<'_, PyAny>>, default: &[&str]) -> PyResult<Include> {
        let names: Vec<String> = match include {
            None => default.iter().map(|s| s.to_string()).collect(),
            Some(i) if i.is_instance_of::<PyString>() => {
                return Err(invalid_input(
                    "include is a list of names, e.g. [\"payload\"], not a string",
                ));
            }
            Some(i) => i
                .try_iter()?
                .map(|x| x?.extract::<String>())
                .collect::<PyResult<_>>()?,
        };
        let mut this = Include {
            distance: false,
            payload: false,
            vector: false,
        };
        for name in &names {
            match name.as_str() {
                "distance" => this.distance = true,
                "payload" => this.payload = true,
                "vector" => this.vector = true,
                // Always there; accepted so that a caller may list it.
                "id" => {}
                other => {
                    return Err(invalid_input(format!(
                        "unknown include {other:?} (distance, payload, vector)"
                    )));
                }
            }
        }
        Ok(this)
    }

    /// One result as a dict: its id and what was asked for.
    fn dict<'py>(
        &self,
        py: Python<'py>,
        id: Bound<'py, PyAny>,
        distance: Option<f32>,
        payload: &Option<Value>,
        vector: &Option<Vec<f32>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("id", id)?;
        if let (true, Some(distance)) = (self.distance, distance) {
            d.set_item("distance", distance)?;
        }
        if self.payload {
            d.set_item(
                "payload",
                from_json(py, payload.as_ref().unwrap_or(&Value::Null))?,
            )?;
        }
        if let (true, Some(v)) = (self.vector, vector) {
            d.set_item("vector", v.clone().into_pyarray(py))?;
        }
        Ok(d)
    }
}

/// Sets (`replace`) or merges the payloads of `ids`.
fn write_payloads(
    index: &hnswdb::Index,
    ids: &[u64],
    payloads: &[Value],
    replace: bool,
) -> hnswdb::Result<()> {
    if replace {
        index.set_payloads(ids, payloads)
    } else {
        index.merge_payloads(ids, payloads)
    }
}

/// The ids a data operation applies to: `ids` or those `filter` admits (exactly one).
enum Target {
    Ids(Vec<u64>),
    Filter(Filter),
}

impl Target {
    /// `ids` as `_ids_in` translated them.
    fn of(ids: Option<Vec<u64>>, filter: Option<&Bound<'_, PyAny>>) -> PyResult<Target> {
        match (ids, filter) {
            (Some(ids), None) => Ok(Target::Ids(ids)),
            (None, Some(f)) => Ok(Target::Filter(to_filter(f)?)),
            (None, None) => Err(invalid_input("give ids or filter")),
            (Some(_), Some(_)) => Err(invalid_input("give ids or filter, not both")),
        }
    }
}

/// The engine under `hnswdb.Index` (python/hnswdb/_index.py, which adds hnswlib's
/// snapshot files, limits and tombstones): one index directory, opened in place.
///
/// `Index(space, dim)` then `init_index(..., path=...)` creates an index, `Index.open`
/// opens one. With `durable` (the default) every write is durable when it returns.
#[pyclass(module = "hnswdb._hnswdb")]
struct Index {
    space: Metric,
    dim: usize,
    /// Shared with calls in flight (which run detached from the interpreter, so they hold
    /// their own reference rather than a borrow of `self`).
    open: parking_lot::Mutex<Option<Arc<hnswdb::Index>>>,
}

impl Index {
    fn index(&self) -> PyResult<Arc<hnswdb::Index>> {
        self.open.lock().clone().ok_or_else(|| {
            HnswdbError::new_err(
                "the index is not open: call init_index, load_index or Index.open first",
            )
        })
    }

    fn install(&self, index: hnswdb::Index) -> PyResult<()> {
        let mut open = self.open.lock();
        if open.is_some() {
            return Err(HnswdbError::new_err(
                "this Index already has an open index: close() it first",
            ));
        }
        *open = Some(Arc::new(index));
        Ok(())
    }

    /// THE translation of ids coming in from Python: integers as they are (an int, a
    /// sequence or an integer array; negatives refused) on an integer-id index, keys
    /// resolved to their internal ids on a string-id one. An absent key raises
    /// UnknownLabelError, or with `missing_ok` becomes `ABSENT`. Every method that takes
    /// ids of present vectors goes through here.
    fn _ids_in(&self, ids: &Bound<'_, PyAny>, missing_ok: bool) -> PyResult<Vec<u64>> {
        let index = self.index()?;
        if index.id_kind() == IdKind::Int {
            return labels(ids);
        }
        keys(ids)?
            .into_iter()
            .map(|key| match index.resolve_key(&key).map_err(py_err)? {
                Some(id) => Ok(id),
                None if missing_ok => Ok(ABSENT),
                None => Err(py_err(Error::UnknownKey(key))),
            })
            .collect()
    }

    /// THE translation of ids going out to Python: a 1-D numpy array, of uint64 on an
    /// integer-id index, of dtype object holding each id's key (`None` for `ABSENT`,
    /// which a padded search answer holds) on a string-id one. Every method that returns
    /// ids goes through here.
    fn _ids_out<'py>(&self, py: Python<'py>, ids: &[u64]) -> PyResult<Bound<'py, PyAny>> {
        let index = self.index()?;
        if index.id_kind() == IdKind::Int {
            return Ok(ids.to_vec().into_pyarray(py).into_any());
        }
        let keys = PyList::empty(py);
        let found = py.detach(|| index.keys_of(ids)).map_err(py_err)?;
        for (&id, key) in ids.iter().zip(found) {
            match key {
                Some(key) => keys.append(key)?,
                None if id == ABSENT => keys.append(py.None())?,
                None => {
                    return Err(py_err(Error::Stale(format!(
                        "id {id} has no key: the index changed meanwhile"
                    ))));
                }
            }
        }
        let kw = PyDict::new(py);
        kw.set_item("dtype", "object")?;
        py.import("numpy")?.call_method("array", (keys,), Some(&kw))
    }

    /// `_ids_out` as one Python value (int or str) per id.
    fn ids_out_each<'py>(&self, py: Python<'py>, ids: &[u64]) -> PyResult<Vec<Bound<'py, PyAny>>> {
        self._ids_out(py, ids)?
            .call_method0("tolist")?
            .try_iter()?
            .collect()
    }

    /// The ids a write names, as the index names them: integers, or keys (each written
    /// under the id it is bound to, or a new one).
    fn write_names(&self, index: &hnswdb::Index, ids: &Bound<'_, PyAny>) -> PyResult<Names> {
        Ok(match index.id_kind() {
            IdKind::Int => {
                let ids = labels(ids)?;
                // Reads of it stay allowed: padding passed back is simply absent.
                if ids.contains(&ABSENT) {
                    return Err(invalid_input(
                        "id 2**64-1 is reserved: it pads answers short of k (knn_query strict=False)",
                    ));
                }
                Names::Ids(ids)
            }
            IdKind::Str => Names::Keys(keys(ids)?),
        })
    }

    /// Takes the index out of this object for an operation that consumes it (`compact`):
    /// refused, leaving it in place, while another thread uses it.
    fn take_sole(&self, what: &str) -> PyResult<hnswdb::Index> {
        let Some(open) = self.open.lock().take() else {
            return Err(HnswdbError::new_err(format!(
                "{what}: the index is not open"
            )));
        };
        Arc::try_unwrap(open).map_err(|shared| {
            *self.open.lock() = Some(shared);
            HnswdbError::new_err(format!(
                "{what}: the index is in use by another thread; try again when that call returns"
            ))
        })
    }

    /// The threads a call runs on: its own `num_threads` when given (> 0), for that call
    /// only, as in hnswlib; else the index's default (`set_num_threads`).
    fn call_threads(index: &hnswdb::Index, num_threads: i64) -> usize {
        if num_threads > 0 {
            num_threads as usize
        } else {
            index.threads()
        }
    }
}

/// Whether any of `names` is present (`present` says of one).
fn any_present<T>(
    names: &[T],
    present: impl Fn(&T) -> hnswdb::Result<bool>,
) -> hnswdb::Result<bool> {
    for name in names {
        if present(name)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The ids of a write: integers, or the keys of a string-id index.
enum Names {
    Ids(Vec<u64>),
    Keys(Vec<String>),
}

impl Names {
    fn len(&self) -> usize {
        match self {
            Names::Ids(ids) => ids.len(),
            Names::Keys(keys) => keys.len(),
        }
    }
}

/// What `search_within` returns: labels (see `_ids_out`) and distances, 1-D.
type RangeAnswer<'py> = (Bound<'py, PyAny>, Bound<'py, numpy::PyArray1<f32>>);

/// `knn_query`'s answer: labels (see `_ids_out`) and distances, both `(queries, k)`.
type QueryAnswer<'py> = (Bound<'py, PyAny>, Bound<'py, PyArray2<f32>>);

/// A Python `progress(done, total)` callable (or none) as the engine's progress hook. The
/// engine calls it from its worker threads, one call at a time; an exception it raises
/// cannot stop the write (which is logged by then), so it goes to `sys.unraisablehook`.
struct Hook(Option<Py<PyAny>>);

impl hnswdb::Progress for Hook {
    fn report(&self, done: u64, total: u64) {
        let Some(callback) = &self.0 else { return };
        Python::attach(|py| {
            if let Err(e) = callback.call1(py, (done, total)) {
                e.write_unraisable(py, Some(callback.bind(py)));
            }
        });
    }
}

/// What a memory budget kept resident, as a dict (see `Index::stats`).
fn residency_dict<'py>(py: Python<'py>, r: &hnswdb::Residency) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("budget", r.budget)?;
    d.set_item("overhead_bytes", r.overhead_bytes)?;
    d.set_item("codes_bytes", r.codes_bytes)?;
    d.set_item("layer0_bytes", r.layer0_bytes)?;
    d.set_item("vector_bytes", r.vector_bytes)?;
    d.set_item("resident", &r.resident)?;
    d.set_item("pinned", r.pinned)?;
    d.set_item("disk_reads", r.disk_reads)?;
    Ok(d)
}

fn to_matrix<T: numpy::Element>(
    py: Python<'_>,
    values: Vec<T>,
    n: usize,
    k: usize,
) -> Bound<'_, PyArray2<T>> {
    Array2::from_shape_vec((n, k), values)
        .expect("n * k values")
        .into_pyarray(py)
}

#[pymethods]
impl Index {
    /// An index of `dim`-dimensional vectors under `space`: 'cosine', 'l2' or 'ip'.
    /// Call `init_index` (new index) or `load_index` (existing one) next.
    #[new]
    fn new(space: &str, dim: usize) -> PyResult<Self> {
        if dim == 0 {
            return Err(invalid_input("dim must be at least 1"));
        }
        Ok(Index {
            space: parse_space(space)?,
            dim,
            open: parking_lot::Mutex::new(None),
        })
    }

    /// Opens the index stored at `path` (space and dimension come from the files).
    /// `read_only=True` writes nothing, works on read-only files, and may run in any
    /// number of processes beside the one that writes (see `refresh`).
    /// `memory_budget` (bytes) keeps the routing codes and layer-0 lists resident and,
    /// when the vectors do not fit, reads them from disk in batches during re-ranks
    /// (docs/larger-than-ram.md). `durable=False` never fsyncs the log (see `init_index`).
    #[staticmethod]
    #[pyo3(signature = (path, read_only=false, memory_budget=None, durable=true))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        read_only: bool,
        memory_budget: Option<u64>,
        durable: bool,
    ) -> PyResult<Self> {
        let mut options = hnswdb::OpenOptions::default()
            .read_only(read_only)
            .durability(durability(durable));
        if let Some(bytes) = memory_budget {
            options = options.memory_budget(bytes);
        }
        let index = py
            .detach(|| hnswdb::Index::open_with(&path, &options))
            .map_err(py_err)?;
        let this = Index {
            space: index.metric(),
            dim: index.dim(),
            open: parking_lot::Mutex::new(None),
        };
        this.install(index)?;
        Ok(this)
    }

    /// Moves a read-only index forward to everything the writer has acknowledged since it
    /// was opened (or last refreshed). Does nothing on a writable index.
    fn refresh(&self, py: Python<'_>) -> PyResult<()> {
        // The lock on this object is not held meanwhile: other threads keep calling, and
        // see the old view or the new one.
        let index = self.index()?;
        py.detach(|| index.refresh()).map_err(py_err)
    }

    /// Creates the index in the directory `path`.
    /// `max_elements` only pre-sizes the files: the index grows past it on its own.
    /// `fields` indexes payload fields for filters: `{"lang": "keyword", "year": "int"}`
    /// (kinds: keyword, int, float, bool).
    /// `routing` is "sq8" (default), "rabitq" (for indexes larger than memory),
    /// "rabitq:BITS" (BITS 2 to 8: tighter estimates for BITS times the codes) or "auto":
    /// the routing whose tiers best fit `memory_budget` (bytes, required then) once the
    /// index holds `max_elements` vectors (see `IndexOptions::routing_for`; `stats()`
    /// says which it chose);
    /// `storage` "f32" (default), "f16" or "bf16" (half the disk; `get_items` returns
    /// the stored 16-bit values widened). `durable=False` never fsyncs the log outside checkpoints (for a
    /// temporary index: power loss may lose writes, never corrupts). `ids` is "int"
    /// (default: integer ids, as hnswlib) or "str" (string keys: every method then takes
    /// and returns str ids).
    #[pyo3(signature = (max_elements, M=16, ef_construction=200, random_seed=100, allow_replace_deleted=false, *, path, fields=None, routing="sq8", storage="f32", durable=true, ids="int", memory_budget=None))]
    // The parameters are hnswlib's, by name and order, plus hnswdb's own.
    #[allow(non_snake_case, clippy::too_many_arguments)]
    fn init_index(
        &self,
        py: Python<'_>,
        max_elements: usize,
        M: usize,
        ef_construction: usize,
        random_seed: u64,
        allow_replace_deleted: bool,
        path: PathBuf,
        fields: Option<std::collections::BTreeMap<String, String>>,
        routing: &str,
        storage: &str,
        durable: bool,
        ids: &str,
        memory_budget: Option<u64>,
    ) -> PyResult<()> {
        // Freed slots are always reused, so hnswlib's opt-in is accepted and implied.
        let _ = allow_replace_deleted;
        let options = hnswdb::IndexOptions::new(self.dim, self.space)
            .m(M)
            .ef_construction(ef_construction)
            .seed(random_seed)
            .capacity(max_elements.max(1))
            .storage(storage.parse().map_err(py_err)?)
            .id_kind(ids.parse().map_err(py_err)?)
            .durability(durability(durable));
        let routing =
            planned_routing(&options, routing, memory_budget, max_elements).map_err(py_err)?;
        let options = options.routing(routing);
        let options = fields
            .unwrap_or_default()
            .into_iter()
            .try_fold(options, |o, (name, kind)| {
                Ok::<_, Error>(o.field(FieldSpec::new(name, kind.parse()?)))
            })
            .map_err(py_err)?;
        let index = py
            .detach(|| hnswdb::Index::create(&path, &options))
            .map_err(py_err)?;
        self.install(index)
    }

    /// Copies the index, as of one moment while writes go on, into the new directory
    /// `path`, and checks the copy (see `Index::backup`). Returns the bytes copied.
    /// `progress(done, total)`, if given, is told the bytes copied as they go.
    #[pyo3(signature = (path, progress=None))]
    fn backup(&self, py: Python<'_>, path: PathBuf, progress: Option<Py<PyAny>>) -> PyResult<u64> {
        let index = self.index()?;
        let hook = Hook(progress);
        py.detach(|| index.backup_progress(&path, &hook))
            .map_err(py_err)
    }

    /// Rebuilds the index from its live vectors into dense files (see `Index::compact`),
    /// or with `relocate` copies them and their links as they are (see
    /// `Index::relocate`: no re-insert, the same graph), and carries on with the
    /// compacted index: this object stays open (with its ef and threads). Raises if
    /// another thread is using the index. Returns {"live", "bytes_before",
    /// "bytes_after"}. `progress(done, total)` counts live vectors copied by a rebuild.
    #[pyo3(signature = (progress=None, relocate=false))]
    fn compact<'py>(
        &self,
        py: Python<'py>,
        progress: Option<Py<PyAny>>,
        relocate: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        if self.index()?.is_read_only() {
            return Err(py_err(Error::ReadOnly)); // before the view is consumed
        }
        let index = self.take_sole("compact")?;
        let (dir, options) = (index.path().to_path_buf(), index.open_options());
        let hook = Hook(progress);
        let compacted = py.detach(|| match relocate {
            true => index.relocate(),
            false => index.compact_progress(&hook),
        });
        let (index, report) = match compacted {
            Ok(done) => done,
            Err(e) => {
                // The old index was consumed: whatever the failure left (the old index, or
                // the compacted one if the reopen failed), open it again so that this
                // object keeps working, then report the failure.
                if let Ok(again) = py.detach(|| hnswdb::Index::open_with(&dir, &options)) {
                    self.install(again)?;
                }
                return Err(py_err(e));
            }
        };
        self.install(index)?;
        let d = PyDict::new(py);
        d.set_item("live", report.live)?;
        d.set_item("bytes_before", report.bytes_before)?;
        d.set_item("bytes_after", report.bytes_after)?;
        Ok(d)
    }

    /// Checks the whole index (every page: O(n); see `Index::verify`). Returns {"ok",
    /// "problems", "unreachable", "stale_links", "live", "tombstones", "free"}.
    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let index = self.index()?;
        let r = py.detach(|| index.verify()).map_err(py_err)?;
        let d = PyDict::new(py);
        d.set_item("ok", r.is_ok())?;
        d.set_item("problems", &r.problems)?;
        d.set_item("unreachable", r.unreachable)?;
        d.set_item("stale_links", r.stale_links)?;
        d.set_item("live", r.live)?;
        d.set_item("tombstones", r.tombstones)?;
        d.set_item("free", r.free)?;
        Ok(d)
    }

    /// Counts and settings (every field of the Rust `Stats`): len, capacity, high_water,
    /// free_slots, held_slots, tombstones, upper_nodes, max_level, dim, metric, M,
    /// ef_construction, kernels, wal_bytes, codes_generation, misfits, routing, storage, and
    /// residency (a dict, or None without a memory budget).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let index = self.index()?;
        let s = py.detach(|| index.stats()).map_err(py_err)?;
        let d = PyDict::new(py);
        d.set_item("len", s.len)?;
        d.set_item("capacity", s.capacity)?;
        d.set_item("high_water", s.high_water)?;
        d.set_item("free_slots", s.free_slots)?;
        d.set_item("held_slots", s.held_slots)?;
        d.set_item("tombstones", s.tombstones)?;
        d.set_item("upper_nodes", s.upper_nodes)?;
        d.set_item("max_level", s.max_level)?;
        d.set_item("dim", s.dim)?;
        d.set_item("metric", s.metric.name())?;
        d.set_item("M", s.m)?;
        d.set_item("ef_construction", s.ef_construction)?;
        d.set_item("kernels", s.kernels)?;
        d.set_item("wal_bytes", s.wal_bytes)?;
        d.set_item("codes_generation", s.codes_generation)?;
        d.set_item("misfits", s.misfits)?;
        d.set_item("routing", s.routing.name())?;
        d.set_item("storage", s.storage.name())?;
        d.set_item("ids", s.id_kind.name())?;
        let residency = s.residency.map(|r| residency_dict(py, &r)).transpose()?;
        d.set_item("residency", residency)?;
        Ok(d)
    }

    /// Whether the index was opened read-only.
    #[getter]
    fn read_only(&self) -> PyResult<bool> {
        Ok(self.index()?.is_read_only())
    }

    /// Where a read-only view stands: (index uid, next LSN), changed only when a refresh
    /// brought new writes; None for a writable index. (`Index.follow` polls it.)
    fn _view_position(&self) -> PyResult<Option<(u64, u64)>> {
        Ok(self.index()?.view_position())
    }

    /// Adds the rows of `data` under `ids` (default: consecutive ids after the largest
    /// present). As in hnswlib, an id already present has its vector replaced. The whole
    /// call is one durable write (all or nothing, whatever other writers do), on
    /// `num_threads` threads for this call (-1: the index's default).
    /// `payloads`, if given, holds a dict (or None) per row: stored with the vector in
    /// the same write; None keeps the payload a replaced id has. `progress(done, total)`,
    /// if given, is told the rows in the graph as they go in.
    #[pyo3(signature = (data, ids=None, num_threads=-1, replace_deleted=false, payloads=None, progress=None))]
    #[allow(clippy::too_many_arguments)] // hnswlib's parameters, plus hnswdb's own
    fn add_items(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        ids: Option<&Bound<'_, PyAny>>,
        num_threads: i64,
        replace_deleted: bool,
        payloads: Option<&Bound<'_, PyAny>>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let _ = replace_deleted;
        let index = self.index()?;
        let (vectors, n) = rows(data, self.dim)?;
        let payloads: Option<Vec<Value>> = payloads
            .map(|p| {
                p.try_iter()?
                    .enumerate()
                    .map(|(i, x)| to_json(&x?, &format!("payloads[{i}]")))
                    .collect()
            })
            .transpose()?;
        if let Some(p) = &payloads
            && p.len() != n
        {
            return Err(invalid_input(format!(
                "{} payloads for {n} vectors",
                p.len()
            )));
        }
        let names = match ids {
            Some(ids) => self.write_names(&index, ids)?,
            None if index.id_kind() == IdKind::Str => {
                return Err(invalid_input(
                    "a string-id index needs ids: one str per row",
                ));
            }
            // After the largest id present, so that default ids never replace a vector
            // (hnswlib counts from its element count, which deletes never lower).
            None => {
                let last = py.detach(|| index.ids()).map_err(py_err)?.last().copied();
                let first = last.map_or(Some(0), |max| max.checked_add(1));
                match first.and_then(|f| Some(f..f.checked_add(n as u64)?)) {
                    Some(range) => Names::Ids(range.collect()),
                    None => {
                        return Err(invalid_input(format!(
                            "no {n} default ids are left after the largest id, {}: give ids",
                            last.unwrap_or_default()
                        )));
                    }
                }
            }
        };
        if names.len() != n {
            return Err(invalid_input(format!(
                "{} ids for {n} vectors",
                names.len()
            )));
        }
        let threads = Self::call_threads(&index, num_threads);
        let (hook, payloads) = (Hook(progress), payloads.as_deref());
        // One durable write either way, all or nothing. New ids only: an insert, which
        // searches run beside; if any id is present (or a concurrent writer adds one
        // meanwhile), an upsert batch, which replaces those ids in the same write.
        py.detach(|| -> hnswdb::Result<()> {
            match &names {
                Names::Ids(ids) => {
                    if !any_present(ids, |id| index.contains(*id))? {
                        match index.insert_batch_progress(ids, &vectors, payloads, threads, &hook) {
                            Err(Error::DuplicateId(_)) => {}
                            done => return done,
                        }
                    }
                    index.upsert_batch_progress(ids, &vectors, payloads, threads, &hook)
                }
                Names::Keys(keys) => {
                    if !any_present(keys, |k| Ok(index.resolve_key(k)?.is_some()))? {
                        match index.insert_keys_progress(keys, &vectors, payloads, &hook) {
                            Err(Error::DuplicateKey(_)) => {}
                            done => return done,
                        }
                    }
                    index.upsert_keys_progress(keys, &vectors, payloads, &hook)
                }
            }
        })
        .map_err(py_err)
    }

    /// Replaces the vectors of `ids` (rows of `vectors`; a scalar id with a 1-D vector
    /// is one row), adding those absent, as one durable write. `payloads`, if given,
    /// holds a dict (or None: keep the payload it has) per id.
    #[pyo3(signature = (ids, vectors, payloads=None))]
    fn upsert(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        vectors: &Bound<'_, PyAny>,
        payloads: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let index = self.index()?;
        let names = self.write_names(&index, ids)?;
        let (v, n) = rows(vectors, self.dim)?;
        if n != names.len() {
            return Err(invalid_input(format!(
                "{} ids for {n} vectors",
                names.len()
            )));
        }
        let payloads = payloads.map(|p| json_list(p, "payloads")).transpose()?;
        let threads = index.threads();
        py.detach(|| match (names, payloads) {
            (Names::Keys(keys), p) => index.upsert_keys(&keys, &v, p.as_deref()),
            (Names::Ids(ids), Some(p)) => index.upsert_batch_with_payloads(&ids, &v, &p, threads),
            (Names::Ids(ids), None) => index.upsert_batch_threads(&ids, &v, threads),
        })
        .map_err(py_err)
    }

    /// The `k` nearest stored vectors of each query, as dicts: `{"id", "distance",
    /// "payload", "vector"}` with the keys `include` names ("id" always). A 1-D query
    /// gives a list of dicts, a 2-D one a list per row. Fewer matches than `k` give a
    /// shorter list. `filter` is a dict filter (docs/filters.md).
    #[pyo3(signature = (vectors, k=10, *, filter=None, include=None, ef=None, offset=0))]
    #[allow(clippy::too_many_arguments)]
    fn query<'py>(
        &self,
        py: Python<'py>,
        vectors: &Bound<'py, PyAny>,
        k: usize,
        filter: Option<&Bound<'py, PyAny>>,
        include: Option<&Bound<'py, PyAny>>,
        ef: Option<usize>,
        offset: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let index = self.index()?;
        let one = ndim(vectors)? == 1;
        let (queries, _) = rows(vectors, self.dim)?;
        let include = Include::parse(include, &["distance", "payload"])?;
        let filter = filter.map(to_filter).transpose()?;
        let mut query = Query::new(k)
            .offset(offset)
            .include_payload(include.payload)
            .include_vector(include.vector);
        if let Some(ef) = ef {
            query = query.ef(ef);
        }
        if let Some(f) = &filter {
            query = query.filter(f);
        }
        let threads = index.threads();
        let answers = py
            .detach(|| index.search_hits_batch(&queries, &query, threads))
            .map_err(py_err)?;
        let mut lists = answers
            .iter()
            .map(|hits| {
                let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                let dicts = self
                    .ids_out_each(py, &ids)?
                    .into_iter()
                    .zip(hits)
                    .map(|(id, h)| include.dict(py, id, Some(h.distance), &h.payload, &h.vector))
                    .collect::<PyResult<Vec<_>>>()?;
                PyList::new(py, dicts)
            })
            .collect::<PyResult<Vec<_>>>()?;
        match lists.pop() {
            Some(list) if one => Ok(list),
            last => PyList::new(py, lists.into_iter().chain(last)),
        }
    }

    /// The `k` nearest stored vectors of each row of `data`: `(labels, distances)`, both
    /// of shape `(rows, k)`, nearest first. `filter`, if given, is called with a label and
    /// must return True for labels that may be answers (it runs with the GIL, one query at
    /// a time). `ef` is this call's beam width (default: the index's, see `set_ef`).
    /// Raises RuntimeError, as hnswlib does, if fewer than `k` are found; with
    /// `strict=False` such rows are padded instead with label 2**64-1 and distance inf
    /// (what a shard holding fewer than `k` vectors answers).
    /// `plan` forces how a dict filter is answered ("scan" or "walk"; default: the
    /// planner's choice), for benchmarks.
    #[pyo3(signature = (data, k=1, num_threads=-1, filter=None, ef=None, strict=true, offset=0, plan=None))]
    #[allow(clippy::too_many_arguments)]
    fn knn_query<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        k: usize,
        num_threads: i64,
        filter: Option<&Bound<'py, PyAny>>,
        ef: Option<usize>,
        strict: bool,
        offset: usize,
        plan: Option<&str>,
    ) -> PyResult<QueryAnswer<'py>> {
        let index = self.index()?;
        let (queries, n) = rows(data, self.dim)?;
        if k == 0 {
            return Err(invalid_input("k must be at least 1"));
        }
        let ef = ef.unwrap_or_else(|| index.ef());
        // A dict is a payload filter, answered by the planner on the threads; a callable
        // is called per label with the GIL (hnswlib's way).
        let planned = match filter {
            Some(f) if f.is_instance_of::<PyDict>() => Some(to_filter(f)?),
            _ => None,
        };
        let plan = match plan {
            None => None,
            Some(_) if planned.is_none() => {
                return Err(invalid_input(
                    "plan chooses how a dict filter is searched: give one",
                ));
            }
            Some("scan") => Some(Plan::Scan),
            Some("walk") => Some(Plan::Walk),
            Some(other) => {
                return Err(invalid_input(format!(
                    "unknown plan {other:?} (scan or walk)"
                )));
            }
        };
        let answers: Vec<Vec<Neighbour>> = match filter {
            _ if planned.is_some() || offset > 0 => {
                let threads = Self::call_threads(&index, num_threads);
                let mut query = Query::new(k).ef(ef).offset(offset);
                if let Some(f) = &planned {
                    query = query.filter(f);
                }
                if let Some(plan) = plan {
                    query = query.force_plan(plan);
                }
                if filter.is_some() && planned.is_none() {
                    return Err(invalid_input(
                        "offset works with no filter or a dict filter, not a callable",
                    ));
                }
                py.detach(|| index.search_batch_with(&queries, &query, threads))
                    .map_err(py_err)?
            }
            None => {
                let threads = Self::call_threads(&index, num_threads);
                py.detach(|| index.search_batch_threads(&queries, k, ef, threads))
                    .map_err(py_err)?
            }
            Some(filter) => {
                // The first exception the filter raises stops admitting labels and is
                // re-raised once the search returns. It is called with the label as the
                // caller knows it (a key, on a string-id index).
                let keyed = index.id_kind() == IdKind::Str;
                let raised = std::cell::RefCell::new(None);
                let mut answers = Vec::with_capacity(n);
                for q in queries.chunks_exact(self.dim) {
                    let hits = index
                        .search_filtered(q, k, ef, |label| {
                            if raised.borrow().is_some() {
                                return false;
                            }
                            let admitted = match keyed {
                                false => filter.call1((label,)),
                                true => self
                                    ._ids_out(py, &[label])
                                    .and_then(|keys| keys.get_item(0))
                                    .and_then(|key| filter.call1((key,))),
                            };
                            match admitted.and_then(|r| r.is_truthy()) {
                                Ok(admit) => admit,
                                Err(e) => {
                                    *raised.borrow_mut() = Some(e);
                                    false
                                }
                            }
                        })
                        .map_err(py_err)?;
                    if let Some(e) = raised.take() {
                        return Err(e);
                    }
                    answers.push(hits);
                }
                answers
            }
        };
        let mut ids = Vec::with_capacity(n * k);
        let mut distances = Vec::with_capacity(n * k);
        // Padding: `ABSENT`, which `_ids_out` gives as 2**64-1 (integer ids) or None.
        for hits in &answers {
            if hits.len() < k && strict {
                return Err(PyRuntimeError::new_err(format!(
                    "found only {} of the k={k} neighbours asked for: the index holds fewer \
                     vectors, or the filter admits fewer, or ef ({ef}) is too small",
                    hits.len()
                )));
            }
            ids.extend(hits.iter().map(|h| h.id));
            distances.extend(hits.iter().map(|h| h.distance));
            let missing = k - hits.len();
            ids.extend(std::iter::repeat_n(ABSENT, missing));
            distances.extend(std::iter::repeat_n(f32::INFINITY, missing));
        }
        let labels = match self.index()?.id_kind() {
            IdKind::Int => to_matrix(py, ids, n, k).into_any(),
            IdKind::Str => self._ids_out(py, &ids)?.call_method1("reshape", (n, k))?,
        };
        Ok((labels, to_matrix(py, distances, n, k)))
    }

    /// Sets the default search beam width (raise it for recall, lower it for speed).
    fn set_ef(&self, ef: usize) -> PyResult<()> {
        self.index()?.set_ef(ef);
        Ok(())
    }

    /// The search beam width used by `knn_query`.
    #[getter]
    fn ef(&self) -> PyResult<usize> {
        Ok(self.index()?.ef())
    }

    #[setter(ef)]
    fn set_ef_attr(&self, ef: usize) -> PyResult<()> {
        self.set_ef(ef)
    }

    /// Default thread count of `add_items` and `knn_query` (0 or less: every core).
    fn set_num_threads(&self, num_threads: i64) -> PyResult<()> {
        self.index()?.set_threads(num_threads.max(0) as usize);
        Ok(())
    }

    /// The default thread count of `add_items` and `knn_query` (hnswlib's `num_threads`);
    /// a call's own `num_threads` does not change it.
    #[getter]
    fn num_threads(&self) -> PyResult<usize> {
        Ok(self.index()?.threads())
    }

    /// The stored vectors of `ids` as a float32 array of shape `(len(ids), dim)` (unit
    /// length under cosine, as hnswlib returns them). Raises KeyError for an unknown id.
    fn get_items<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let index = self.index()?;
        let ids = self._ids_in(ids, false)?;
        let mut out = Vec::with_capacity(ids.len() * self.dim);
        for &id in &ids {
            out.extend(index.get(id).map_err(py_err)?);
        }
        Ok(to_matrix(py, out, ids.len(), self.dim))
    }

    /// Every stored id, in no particular order.
    fn get_ids_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let index = self.index()?;
        let ids = py.detach(|| index.ids()).map_err(py_err)?;
        self._ids_out(py, &ids)?.call_method0("tolist")
    }

    /// Deletes `label`: it leaves results at once and the graph is repaired around it.
    /// Unlike hnswlib's mark_deleted this is a real delete (no `unmark_deleted`).
    fn mark_deleted(&self, py: Python<'_>, label: &Bound<'_, PyAny>) -> PyResult<()> {
        self.delete(py, Some(label), None, false).map(drop)
    }

    /// Deletes `ids` (one id or a sequence) or every id whose payload matches `filter`,
    /// as one durable write, all or nothing; returns how many were deleted. An absent
    /// id raises KeyError (nothing is deleted) unless `missing_ok`.
    #[pyo3(signature = (ids=None, *, filter=None, missing_ok=false))]
    fn delete(
        &self,
        py: Python<'_>,
        ids: Option<&Bound<'_, PyAny>>,
        filter: Option<&Bound<'_, PyAny>>,
        missing_ok: bool,
    ) -> PyResult<u64> {
        let index = self.index()?;
        if let (Some(ids), None, IdKind::Str) = (ids, filter, index.id_kind()) {
            // By key: a key named twice is an error about that key, not its internal id.
            let keys = keys(ids)?;
            return py
                .detach(|| index.delete_keys(&keys, missing_ok))
                .map_err(py_err);
        }
        let ids = ids.map(|ids| self._ids_in(ids, missing_ok)).transpose()?;
        match Target::of(ids, filter)? {
            Target::Filter(f) => py.detach(|| index.delete_where(&f)),
            Target::Ids(ids) if missing_ok => py.detach(|| index.delete_batch_missing_ok(&ids)),
            Target::Ids(ids) => py.detach(|| index.delete_batch(&ids).map(|()| ids.len() as u64)),
        }
        .map_err(py_err)
    }

    /// The records of `ids` in their order (absent ids left out) or, with `filter` or
    /// no ids, of every live id (that `filter` admits) in id order, `offset` of them
    /// skipped and at most `limit` returned: dicts `{"id", "payload", "vector"}` with
    /// the keys `include` names ("id" always; default: payload). With both `ids` and
    /// `filter`, the ids that the filter admits.
    #[pyo3(signature = (ids=None, *, filter=None, include=None, limit=None, offset=0))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        ids: Option<&Bound<'py, PyAny>>,
        filter: Option<&Bound<'py, PyAny>>,
        include: Option<&Bound<'py, PyAny>>,
        limit: Option<usize>,
        offset: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let index = self.index()?;
        let include = Include::parse(include, &["payload"])?;
        // Absent ids are left out of the answer.
        let ids = ids.map(|ids| self._ids_in(ids, true)).transpose()?;
        let filter = filter.map(to_filter).transpose()?;
        let records = py
            .detach(|| -> hnswdb::Result<_> {
                let ids = match (ids, &filter) {
                    (Some(ids), None) => ids,
                    (None, None) => index.ids()?,
                    (None, Some(f)) => index.ids_where(f)?,
                    (Some(ids), Some(f)) => {
                        let admitted: std::collections::HashSet<u64> =
                            index.ids_where(f)?.into_iter().collect();
                        ids.into_iter().filter(|id| admitted.contains(id)).collect()
                    }
                };
                let page: Vec<u64> = ids
                    .into_iter()
                    .skip(offset)
                    .take(limit.unwrap_or(usize::MAX))
                    .collect();
                index.records(&page, include.payload, include.vector)
            })
            .map_err(py_err)?;
        let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
        let dicts = self
            .ids_out_each(py, &ids)?
            .into_iter()
            .zip(&records)
            .map(|(id, r)| include.dict(py, id, None, &r.payload, &r.vector))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, dicts)
    }

    /// How many live ids there are, or how many `filter` admits.
    #[pyo3(signature = (filter=None))]
    fn count(&self, py: Python<'_>, filter: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
        let index = self.index()?;
        let filter = filter.map(to_filter).transpose()?;
        py.detach(|| index.count(filter.as_ref())).map_err(py_err)
    }

    /// Merges `payload` (a dict; a key set to None is removed) into the payload of each
    /// of `ids` or of each id `filter` admits, or with `replace=True` replaces it, as one
    /// durable write; returns how many ids were updated. An absent id raises KeyError.
    #[pyo3(signature = (ids=None, *, filter=None, payload, replace=false))]
    fn update(
        &self,
        py: Python<'_>,
        ids: Option<&Bound<'_, PyAny>>,
        filter: Option<&Bound<'_, PyAny>>,
        payload: &Bound<'_, PyAny>,
        replace: bool,
    ) -> PyResult<u64> {
        let index = self.index()?;
        let payload = to_json(payload, "payload")?;
        let ids = ids.map(|ids| self._ids_in(ids, false)).transpose()?;
        match Target::of(ids, filter)? {
            Target::Filter(f) => py.detach(|| index.update_where(&f, &payload, replace)),
            Target::Ids(ids) => {
                let payloads = vec![payload; ids.len()];
                py.detach(|| {
                    write_payloads(&index, &ids, &payloads, replace).map(|()| ids.len() as u64)
                })
            }
        }
        .map_err(py_err)
    }

    /// Deletes every id of `ids` as one durable write, all or nothing. Raises KeyError if
    /// any is absent (then nothing is deleted) and ValueError if one repeats.
    fn delete_items(&self, py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<()> {
        let index = self.index()?;
        let ids = self._ids_in(ids, false)?;
        py.detach(|| index.delete_batch(&ids)).map_err(py_err)
    }

    /// The payloads of `ids` (a dict, or None for an id without one), in order.
    /// KeyError for an unknown id.
    fn get_payloads<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let index = self.index()?;
        let ids = self._ids_in(ids, false)?;
        let payloads = py
            .detach(|| {
                ids.iter()
                    .map(|&id| index.get_payload(id))
                    .collect::<hnswdb::Result<Vec<_>>>()
            })
            .map_err(py_err)?;
        payloads
            .iter()
            .map(|p| from_json(py, p.as_ref().unwrap_or(&Value::Null)))
            .collect()
    }

    /// Merges `payload` (a dict; a key set to None is removed) into the payload of `id`,
    /// or with `replace=True` replaces it; None removes it. One durable write.
    #[pyo3(signature = (id, payload, replace=false))]
    fn set_payload(
        &self,
        py: Python<'_>,
        id: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
        replace: bool,
    ) -> PyResult<()> {
        let index = self.index()?;
        let ids = self._ids_in(id, false)?;
        if ids.len() != 1 {
            return Err(invalid_input("set_payload takes one id (see set_payloads)"));
        }
        let payload = to_json(payload, "payload")?;
        py.detach(|| write_payloads(&index, &ids, &[payload], replace))
            .map_err(py_err)
    }

    /// `set_payload` of each of `ids` (one payload per id) as one durable write.
    #[pyo3(signature = (ids, payloads, replace=false))]
    fn set_payloads(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        payloads: &Bound<'_, PyAny>,
        replace: bool,
    ) -> PyResult<()> {
        let index = self.index()?;
        let ids = self._ids_in(ids, false)?;
        let payloads = json_list(payloads, "payloads")?;
        py.detach(|| write_payloads(&index, &ids, &payloads, replace))
            .map_err(py_err)
    }

    /// Indexes one more payload field (`kind`: keyword, int, float or bool).
    fn create_field_index(&self, py: Python<'_>, name: String, kind: &str) -> PyResult<()> {
        let index = self.index()?;
        let spec = FieldSpec::new(name, kind.parse().map_err(py_err)?);
        py.detach(|| index.create_field_index(spec)).map_err(py_err)
    }

    /// The indexed payload fields: {name: kind}.
    #[getter]
    fn fields(&self) -> PyResult<std::collections::BTreeMap<String, &'static str>> {
        Ok(self
            .index()?
            .fields()
            .into_iter()
            .map(|f| (f.name, f.kind.name()))
            .collect())
    }

    /// How a search with `filter` (a dict) would run: {"plan", "matching", "live",
    /// "filter", "unindexed"}: "filter" is "scan" when the filter reads fields no field
    /// index holds ("unindexed"), which a scan of every live payload answers.
    #[pyo3(signature = (filter, k=10, ef=None))]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        filter: &Bound<'py, PyAny>,
        k: usize,
        ef: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let index = self.index()?;
        let filter = to_filter(filter)?;
        let mut query = Query::new(k).filter(&filter);
        if let Some(ef) = ef {
            query = query.ef(ef);
        }
        let e = py.detach(|| index.explain(&query)).map_err(py_err)?;
        let d = PyDict::new(py);
        let plan = match e.plan {
            Plan::Unfiltered => "unfiltered",
            Plan::Walk => "walk",
            Plan::Scan => "scan",
        };
        d.set_item("plan", plan)?;
        d.set_item("matching", e.matching)?;
        d.set_item("live", e.live)?;
        // How the filter itself is evaluated: a field index, or a scan of every live
        // payload for the fields no index holds.
        let by = if e.unindexed.is_empty() {
            "index"
        } else {
            "scan"
        };
        d.set_item("filter", by)?;
        d.set_item("unindexed", e.unindexed)?;
        Ok(d)
    }

    /// Every stored vector within `max_distance` of `vector` (admitted by `filter`, a
    /// dict, if given): (labels, distances), 1-D, nearest first.
    #[pyo3(signature = (vector, max_distance, filter=None))]
    fn search_within<'py>(
        &self,
        py: Python<'py>,
        vector: &Bound<'py, PyAny>,
        max_distance: f32,
        filter: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<RangeAnswer<'py>> {
        let index = self.index()?;
        let (v, n) = rows(vector, self.dim)?;
        if n != 1 {
            return Err(invalid_input("search_within takes one vector"));
        }
        let filter = filter.map(to_filter).transpose()?;
        let hits = py
            .detach(|| index.search_within(&v, max_distance, filter.as_ref()))
            .map_err(py_err)?;
        Ok((
            self._ids_out(py, &hits.iter().map(|h| h.id).collect::<Vec<_>>())?,
            hits.iter()
                .map(|h| h.distance)
                .collect::<Vec<_>>()
                .into_pyarray(py),
        ))
    }

    /// Finds the smallest ef whose recall@k reaches `target_recall` on a sample of stored
    /// vectors against exact search, and makes it the default. Returns {"ef", "recall",
    /// "reached", "sample", "curve"}.
    #[pyo3(signature = (target_recall=0.95, k=10))]
    fn tune<'py>(
        &self,
        py: Python<'py>,
        target_recall: f64,
        k: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let index = self.index()?;
        let t = py.detach(|| index.tune(target_recall, k)).map_err(py_err)?;
        let d = PyDict::new(py);
        d.set_item("ef", t.ef)?;
        d.set_item("recall", t.recall)?;
        d.set_item("reached", t.reached)?;
        d.set_item("sample", t.sample)?;
        d.set_item("curve", t.curve)?;
        Ok(d)
    }

    /// Number of vectors stored.
    fn get_current_count(&self) -> PyResult<u64> {
        Ok(self.index()?.len())
    }

    /// Slots the files hold now; the index grows past it on its own.
    fn get_max_elements(&self) -> PyResult<usize> {
        Ok(self.index()?.stats().map_err(py_err)?.capacity)
    }

    /// Accepted for hnswlib compatibility: the index grows by itself, so this only
    /// checks that `new_size` is not below the current count.
    fn resize_index(&self, new_size: u64) -> PyResult<()> {
        let count = self.index()?.len();
        if new_size < count {
            return Err(invalid_input(format!(
                "cannot resize below the current count {count}"
            )));
        }
        Ok(())
    }

    /// Makes every acknowledged write durable in the page files (a checkpoint).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let index = self.index()?;
        py.detach(|| index.flush()).map_err(py_err)
    }

    /// Checkpoints and closes the index; later calls raise until it is opened again.
    /// Raises if another thread is still using it. Closing a closed index does nothing.
    /// Once deletes have freed more than a tenth of the slots (in an index of at least
    /// 1,024), it first relocates the index into dense files (docs/durability.md).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let Some(open) = self.open.lock().take() else {
            return Ok(());
        };
        match Arc::try_unwrap(open) {
            Ok(index) => py.detach(|| index.close()).map_err(py_err),
            Err(shared) => {
                *self.open.lock() = Some(shared);
                Err(HnswdbError::new_err(
                    "the index is in use by another thread; close it when that call returns",
                ))
            }
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.index()?.len() as usize)
    }

    fn __contains__(&self, label: &Bound<'_, PyAny>) -> PyResult<bool> {
        let index = self.index()?;
        let id = match index.id_kind() {
            IdKind::Int => label.extract::<u64>()?,
            IdKind::Str if !label.is_instance_of::<PyString>() => return Ok(false),
            IdKind::Str => self._ids_in(label, true)?[0],
        };
        index.contains(id).map_err(py_err)
    }

    /// "int" (integer ids) or "str" (string keys), fixed when the index was created.
    #[getter]
    fn id_kind(&self) -> PyResult<&'static str> {
        Ok(self.index()?.id_kind().name())
    }

    /// 'cosine', 'l2' or 'ip'.
    #[getter]
    fn space(&self) -> &'static str {
        self.space.name()
    }

    #[getter]
    fn dim(&self) -> usize {
        self.dim
    }

    #[getter]
    #[allow(non_snake_case)]
    fn M(&self) -> PyResult<usize> {
        Ok(self.index()?.stats().map_err(py_err)?.m)
    }

    #[getter]
    fn ef_construction(&self) -> PyResult<usize> {
        Ok(self.index()?.stats().map_err(py_err)?.ef_construction)
    }

    #[getter(element_count)]
    fn element_count_attr(&self) -> PyResult<u64> {
        self.get_current_count()
    }

    #[getter(max_elements)]
    fn max_elements_attr(&self) -> PyResult<usize> {
        self.get_max_elements()
    }

    /// The directory that holds the index.
    #[getter]
    fn path(&self) -> PyResult<PathBuf> {
        Ok(self.index()?.path().to_path_buf())
    }

    fn __repr__(&self) -> String {
        match self.open.lock().as_ref() {
            Some(index) => format!(
                "hnswdb.Index(space='{}', dim={}, count={}, path='{}')",
                self.space.name(),
                self.dim,
                index.len(),
                index.path().display()
            ),
            None => format!(
                "hnswdb.Index(space='{}', dim={}, closed)",
                self.space.name(),
                self.dim
            ),
        }
    }
}

/// `data` as rows of `dim` floats checked as the index checks its input (finite; not all
/// zero under cosine, where rows are then scaled to unit length): BFIndex's vectors.
fn prepared(data: &Bound<'_, PyAny>, dim: usize, metric: Metric) -> PyResult<(Vec<f32>, usize)> {
    let (mut vectors, n) = rows(data, dim)?;
    for (i, row) in vectors.chunks_exact_mut(dim).enumerate() {
        if row.iter().any(|x| !x.is_finite()) {
            return Err(invalid_input(format!(
                "row {i} has a NaN or infinite component"
            )));
        }
        if metric == Metric::Cosine && !hnswdb::distance::normalize(row) {
            return Err(invalid_input(format!(
                "row {i} is all zeros: it has no direction under cosine"
            )));
        }
    }
    Ok((vectors, n))
}

/// `data` checked and, under cosine, normalised (see `prepared`): shape `(rows, dim)`.
#[pyfunction]
#[pyo3(name = "_prepare_rows")]
fn prepare_rows<'py>(
    data: &Bound<'py, PyAny>,
    dim: usize,
    space: &str,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let (vectors, n) = prepared(data, dim, parse_space(space)?)?;
    Ok(to_matrix(data.py(), vectors, n, dim))
}

/// The exact `k` nearest of the first `count` rows of `vectors` to each query, on
/// hnswdb's distance kernels: (row positions, distances), each `(queries, k)`, nearest
/// first (ties by position). Rows whose `allowed` entry is false are left out.
/// RuntimeError if fewer than `k` rows are admitted. BFIndex's search.
#[pyfunction]
#[pyo3(name = "_exact_knn", signature = (vectors, count, queries, k, space, allowed=None, threads=0))]
#[allow(clippy::too_many_arguments)]
fn exact_knn<'py>(
    py: Python<'py>,
    vectors: PyReadonlyArray2<'py, f32>,
    count: usize,
    queries: &Bound<'py, PyAny>,
    k: usize,
    space: &str,
    allowed: Option<PyReadonlyArray1<'py, bool>>,
    threads: usize,
) -> PyResult<QueryAnswer<'py>> {
    let metric = parse_space(space)?;
    let dim = vectors.shape()[1];
    let short_mask = allowed.as_ref().is_some_and(|a| a.len() < count);
    if k == 0 || count > vectors.shape()[0] || short_mask {
        return Err(invalid_input(format!(
            "k={k} must be at least 1, count={count} within the rows given and the mask"
        )));
    }
    let (queries, n) = prepared(queries, dim, metric)?;
    let stored = &vectors.as_slice()?[..count * dim];
    let mask = allowed.as_ref().map(|a| a.as_slice()).transpose()?;
    let admitted = mask.map_or(count, |m| m[..count].iter().filter(|&&a| a).count());
    if admitted < k {
        return Err(PyRuntimeError::new_err(format!(
            "only {admitted} vectors can be answers, fewer than the k={k} asked for"
        )));
    }
    let distance = hnswdb::distance::Distance::new(metric, hnswdb::distance::Kernels::detect());
    let mut ids = vec![0u64; n * k];
    let mut distances = vec![0f32; n * k];
    let threads = if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, |t| t.get())
    };
    let per = n.div_ceil(threads.clamp(1, n.max(1))).max(1);
    py.detach(|| {
        std::thread::scope(|s| {
            let parts = queries
                .chunks(per * dim)
                .zip(ids.chunks_mut(per * k).zip(distances.chunks_mut(per * k)));
            for (q, (ids, ds)) in parts {
                s.spawn(move || {
                    let rows = q.chunks_exact(dim);
                    for (q, (ids, ds)) in
                        rows.zip(ids.chunks_exact_mut(k).zip(ds.chunks_exact_mut(k)))
                    {
                        nearest(&distance, q, stored, mask, ids, ds);
                    }
                });
            }
        })
    });
    Ok((
        to_matrix(py, ids, n, k).into_any(),
        to_matrix(py, distances, n, k),
    ))
}

/// Fills `ids` and `ds` with the positions and distances of the `ids.len()` rows of
/// `stored` (admitted by `mask`) nearest to `q`.
fn nearest(
    distance: &hnswdb::distance::Distance,
    q: &[f32],
    stored: &[f32],
    mask: Option<&[bool]>,
    ids: &mut [u64],
    ds: &mut [f32],
) {
    let k = ids.len();
    let mut all: Vec<(f32, u64)> = stored
        .chunks_exact(q.len())
        .enumerate()
        .filter(|(i, _)| mask.is_none_or(|m| m[*i]))
        .map(|(i, row)| (distance.eval(q, row), i as u64))
        .collect();
    let order = |a: &(f32, u64), b: &(f32, u64)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if all.len() > k {
        all.select_nth_unstable_by(k - 1, order);
        all.truncate(k);
    }
    all.sort_unstable_by(order);
    for (j, (d, i)) in all.into_iter().enumerate() {
        ids[j] = i;
        ds[j] = d;
    }
}

/// Persistent HNSW vector search with hnswlib's API.
#[pymodule(name = "_hnswdb")]
fn hnswdb_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Index>()?;
    m.add("HnswdbError", m.py().get_type::<HnswdbError>())?;
    m.add("LockedError", m.py().get_type::<LockedError>())?;
    m.add("CorruptError", m.py().get_type::<CorruptError>())?;
    for hybrid in Hybrid::ALL {
        m.add(hybrid.name(), hybrid.ty(m.py())?)?;
    }
    m.add_function(wrap_pyfunction!(prepare_rows, m)?)?;
    m.add_function(wrap_pyfunction!(exact_knn, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// `init_index`'s routing: as named, or for "auto" the one `IndexOptions::routing_for`
/// plans for `memory_budget` bytes and `expected` vectors.
fn planned_routing(
    options: &hnswdb::IndexOptions,
    routing: &str,
    memory_budget: Option<u64>,
    expected: usize,
) -> hnswdb::Result<hnswdb::Routing> {
    match (routing.eq_ignore_ascii_case("auto"), memory_budget) {
        (true, Some(budget)) => {
            let open = hnswdb::OpenOptions::default().memory_budget(budget);
            options.routing_for(&open, expected as u64)
        }
        (true, None) => Err(hnswdb::Error::InvalidOption(
            "routing=\"auto\" needs memory_budget".into(),
        )),
        (false, _) => routing.parse(),
    }
}
