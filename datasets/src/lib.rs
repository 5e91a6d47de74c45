//! Vector files and benchmark sets for hnswdb's satellites (the CLI, the benches, the
//! tests): reading and writing TEXMEX `.fvecs`/`.ivecs`, NumPy `.npy` and JSON lines,
//! clustered synthetic vectors, exact ground truth and recall. Kept out of the core
//! library so that it carries no file-format or JSON dependency.

use std::collections::BinaryHeap;
use std::io::{BufWriter, Write};
use std::path::Path;

use rand::{RngExt, SeedableRng, rngs::StdRng};

use hnswdb::distance::{Distance, Kernels, normalize};
use hnswdb::{Error, Metric, Result};

/// Attaches the path to an I/O error, as hnswdb's own errors do.
trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A dense row-major matrix of f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Columns per row.
    pub dim: usize,
    /// `rows * dim` values.
    pub data: Vec<f32>,
}

impl Matrix {
    /// Splits off the last `rows` rows (e.g. held-out queries drawn from the same clusters).
    pub fn split_off(&mut self, rows: usize) -> Matrix {
        let rows = rows.min(self.rows);
        self.rows -= rows;
        Matrix {
            rows,
            dim: self.dim,
            data: self.data.split_off(self.rows * self.dim),
        }
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Reads `.fvecs` or `.npy` (float32, 2-D), chosen by the file extension.
pub fn read_vectors(path: &Path) -> Result<Matrix> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => read_npy(path),
        Some("fvecs") => read_fvecs(path),
        _ => Err(Error::InvalidOption(format!(
            "{}: expected a .fvecs or .npy file",
            path.display()
        ))),
    }
}

/// Formats of a vector file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorFormat {
    /// TEXMEX `.fvecs`: per row an `i32` dimension then the floats. No ids: row numbers.
    Fvecs,
    /// NumPy `.npy`: a 2-D float32 array. No ids: row numbers.
    Npy,
    /// JSON lines `{"id": 7, "vector": [...]}`: carries ids.
    Jsonl,
}

impl VectorFormat {
    /// The format a file name's extension names.
    pub fn of_path(path: &Path) -> Result<VectorFormat> {
        path.extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .parse()
            .map_err(|_| {
                Error::InvalidOption(format!(
                    "{}: expected a .fvecs, .npy or .jsonl file",
                    path.display()
                ))
            })
    }
}

impl std::str::FromStr for VectorFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<VectorFormat> {
        match s {
            "fvecs" => Ok(VectorFormat::Fvecs),
            "npy" => Ok(VectorFormat::Npy),
            "jsonl" | "ndjson" => Ok(VectorFormat::Jsonl),
            other => Err(Error::InvalidOption(format!(
                "unknown vector format {other:?} (expected fvecs, npy or jsonl)"
            ))),
        }
    }
}

/// The id of a row of a `.jsonl` file: an integer, or a string key (of an index with
/// string ids).
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(untagged)]
pub enum RowId {
    /// `"id": 7`
    Int(u64),
    /// `"id": "doc-7"`
    Str(String),
}

impl std::fmt::Display for RowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowId::Int(id) => write!(f, "{id}"),
            RowId::Str(key) => f.write_str(key),
        }
    }
}

/// Writes a vector file one row at a time, so that exporting an index larger than memory
/// needs memory for one row only.
pub struct VectorWriter {
    out: BufWriter<std::fs::File>,
    path: std::path::PathBuf,
    format: VectorFormat,
    dim: usize,
    rows: usize,
    written: usize,
}

impl VectorWriter {
    /// Creates `path` for exactly `rows` rows of `dim` values (`.npy` states the shape
    /// up front).
    pub fn create(path: &Path, format: VectorFormat, rows: usize, dim: usize) -> Result<Self> {
        let f = std::fs::File::create(path).at(path)?;
        let mut w = VectorWriter {
            out: BufWriter::new(f),
            path: path.to_path_buf(),
            format,
            dim,
            rows,
            written: 0,
        };
        if format == VectorFormat::Npy {
            let mut header =
                format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
            // The format pads the header with spaces and a newline so that the data
            // starts at a multiple of 64 bytes (magic, version and length take 10).
            while !(10 + header.len() + 1).is_multiple_of(64) {
                header.push(' ');
            }
            header.push('\n');
            w.out.write_all(b"\x93NUMPY\x01\x00").at(path)?;
            w.out
                .write_all(&(header.len() as u16).to_le_bytes())
                .at(path)?;
            w.out.write_all(header.as_bytes()).at(path)?;
        }
        Ok(w)
    }

    /// Appends one row (`id` is kept by `.jsonl` only).
    pub fn push(&mut self, id: u64, vector: &[f32]) -> Result<()> {
        self.push_with_payload(&RowId::Int(id), vector, None)
    }

    /// Appends one row with its payload (kept by `.jsonl` only, as `"payload"`).
    pub fn push_with_payload(
        &mut self,
        id: &RowId,
        vector: &[f32],
        payload: Option<&serde_json::Value>,
    ) -> Result<()> {
        debug_assert_eq!(vector.len(), self.dim);
        let path = &self.path;
        match self.format {
            VectorFormat::Fvecs => {
                self.out
                    .write_all(&(self.dim as i32).to_le_bytes())
                    .at(path)?;
                for x in vector {
                    self.out.write_all(&x.to_le_bytes()).at(path)?;
                }
            }
            VectorFormat::Npy => {
                for x in vector {
                    self.out.write_all(&x.to_le_bytes()).at(path)?;
                }
            }
            VectorFormat::Jsonl => {
                let line = match payload {
                    Some(p) => serde_json::json!({"id": id, "vector": vector, "payload": p}),
                    None => serde_json::json!({"id": id, "vector": vector}),
                };
                writeln!(self.out, "{line}").at(path)?;
            }
        }
        self.written += 1;
        Ok(())
    }

    /// Flushes the file; fails if fewer or more rows were pushed than announced.
    pub fn finish(mut self) -> Result<()> {
        if self.written != self.rows {
            return Err(Error::InvalidOption(format!(
                "{}: {} rows written, {} announced",
                self.path.display(),
                self.written,
                self.rows
            )));
        }
        self.out.flush().at(&self.path)
    }
}

/// Writes `m` as `.fvecs`, `.npy` or `.jsonl` (chosen by the extension); `.jsonl` rows
/// get `ids[i]`, or row numbers without ids.
pub fn write_vectors(path: &Path, ids: Option<&[u64]>, m: &Matrix) -> Result<()> {
    write_rows(path, VectorFormat::of_path(path)?, ids, m)
}

fn write_rows(path: &Path, format: VectorFormat, ids: Option<&[u64]>, m: &Matrix) -> Result<()> {
    let mut w = VectorWriter::create(path, format, m.rows, m.dim)?;
    for r in 0..m.rows {
        w.push(ids.map_or(r as u64, |ids| ids[r]), m.row(r))?;
    }
    w.finish()
}

/// What a `.jsonl` file holds: ids, vectors, and a payload per row (`Null`: none).
pub type JsonlRows = (Vec<RowId>, Matrix, Vec<serde_json::Value>);

/// Reads JSON lines `{"id": 7, "vector": [0.1, ...], "payload": {...}}`, one vector per
/// line (blank lines are skipped; the payload is optional; an id may be a string, for an
/// index with string ids). Every vector must have the same length.
pub fn read_jsonl(path: &Path) -> Result<JsonlRows> {
    let text = std::fs::read_to_string(path).at(path)?;
    let mut ids = Vec::new();
    let mut m = Matrix {
        rows: 0,
        dim: 0,
        data: Vec::new(),
    };
    let mut payloads = Vec::new();
    #[derive(serde::Deserialize)]
    struct Row {
        id: RowId,
        vector: Vec<f32>,
        #[serde(default)]
        payload: serde_json::Value,
    }
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| {
            Error::InvalidOption(format!("{} line {}: {why}", path.display(), number + 1))
        };
        let row: Row = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "{e} (expected {{\"id\": <u64 or string>, \"vector\": [<f32>, ...]}})"
            ))
        })?;
        if m.rows == 0 {
            m.dim = row.vector.len();
        } else if row.vector.len() != m.dim {
            return Err(bad(format!(
                "vector has {} values, earlier lines have {}",
                row.vector.len(),
                m.dim
            )));
        }
        ids.push(row.id);
        m.data.extend(row.vector);
        m.rows += 1;
        payloads.push(row.payload);
    }
    Ok((ids, m, payloads))
}

/// Reads rows of `i32 dim` + `dim` 4-byte values, returned as raw little-endian words.
fn read_vecs_words(path: &Path) -> Result<(usize, usize, Vec<[u8; 4]>)> {
    let bytes = std::fs::read(path).at(path)?;
    if bytes.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    let bad = |why: &str| Error::InvalidOption(format!("{}: {why}", path.display()));
    let dim = i32::from_le_bytes(
        bytes[..4.min(bytes.len())]
            .try_into()
            .map_err(|_| bad("truncated"))?,
    );
    if dim <= 0 || dim > 1 << 20 {
        return Err(bad("bad row dimension"));
    }
    let dim = dim as usize;
    let row_bytes = 4 * (dim + 1);
    if bytes.len() % row_bytes != 0 {
        return Err(bad("file length is not a whole number of rows"));
    }
    let rows = bytes.len() / row_bytes;
    let mut words = Vec::with_capacity(rows * dim);
    for r in bytes.chunks_exact(row_bytes) {
        if i32::from_le_bytes(r[..4].try_into().unwrap()) as usize != dim {
            return Err(bad("rows of different dimensions"));
        }
        words.extend(
            r[4..]
                .chunks_exact(4)
                .map(|c| <[u8; 4]>::try_from(c).unwrap()),
        );
    }
    Ok((rows, dim, words))
}

/// Reads a `.fvecs` file.
pub fn read_fvecs(path: &Path) -> Result<Matrix> {
    let (rows, dim, words) = read_vecs_words(path)?;
    Ok(Matrix {
        rows,
        dim,
        data: words.into_iter().map(f32::from_le_bytes).collect(),
    })
}

/// Reads an `.ivecs` file (ground truth: one row of neighbour row numbers per query).
pub fn read_ivecs(path: &Path) -> Result<Vec<Vec<u32>>> {
    let (rows, dim, words) = read_vecs_words(path)?;
    let all: Vec<u32> = words.into_iter().map(u32::from_le_bytes).collect();
    Ok((0..rows)
        .map(|r| all[r * dim..(r + 1) * dim].to_vec())
        .collect())
}

/// Writes a `.fvecs` file.
pub fn write_fvecs(path: &Path, m: &Matrix) -> Result<()> {
    write_rows(path, VectorFormat::Fvecs, None, m)
}

/// Writes an `.ivecs` file.
pub fn write_ivecs(path: &Path, rows: &[Vec<u32>]) -> Result<()> {
    let f = std::fs::File::create(path).at(path)?;
    let mut w = BufWriter::new(f);
    for r in rows {
        w.write_all(&(r.len() as i32).to_le_bytes()).at(path)?;
        for x in r {
            w.write_all(&x.to_le_bytes()).at(path)?;
        }
    }
    w.flush().at(path)
}

/// Reads a NumPy `.npy` file holding a 2-D little-endian float32 C-order array.
pub fn read_npy(path: &Path) -> Result<Matrix> {
    let bytes = std::fs::read(path).at(path)?;
    let bad = |why: &str| Error::InvalidOption(format!("{}: {why}", path.display()));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
        _ => return Err(bad("unsupported .npy version")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
    if !compact.contains("'descr':'<f4'") {
        return Err(bad("dtype must be little-endian float32 ('<f4')"));
    }
    if compact.contains("'fortran_order':True") {
        return Err(bad(
            "Fortran-order arrays are not supported; save a C-order array",
        ));
    }
    let shape = compact
        .split("'shape':(")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let [rows, dim] = dims[..] else {
        return Err(bad("array must be 2-D"));
    };
    let data = &bytes[start + header_len..];
    if data.len() != rows * dim * 4 {
        return Err(bad("data length disagrees with the shape"));
    }
    Ok(Matrix {
        rows,
        dim,
        data: data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
    })
}

/// Intrinsic dimension of each synthetic cluster.
const CLUSTER_RANK: usize = 16;

/// `n` vectors of `dim` floats in `clusters` clusters, shaped like real embeddings rather
/// than like noise: each cluster spreads (Gaussian, scale 0.3) along its own random
/// `CLUSTER_RANK`-dimensional subspace around a centre uniform in [-1, 1]^dim, plus small
/// isotropic noise (0.05). Isotropic Gaussian blobs would have the full ambient dimension
/// as intrinsic dimension, which no real embedding set has and which makes every ANN index
/// look equally bad; a low intrinsic dimension is what graph indexes exploit on real data.
pub fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Matrix {
    let clusters = clusters.max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..clusters * dim)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let scale = 0.3 / (CLUSTER_RANK as f32).sqrt();
    let bases: Vec<f32> = (0..clusters * CLUSTER_RANK * dim)
        .map(|_| scale * gaussian(&mut rng))
        .collect();
    let mut data = Vec::with_capacity(n * dim);
    let mut z = [0.0f32; CLUSTER_RANK];
    for _ in 0..n {
        let c = rng.random_range(0..clusters);
        z.iter_mut().for_each(|x| *x = gaussian(&mut rng));
        let basis = &bases[c * CLUSTER_RANK * dim..(c + 1) * CLUSTER_RANK * dim];
        for j in 0..dim {
            let spread: f32 = (0..CLUSTER_RANK).map(|r| z[r] * basis[r * dim + j]).sum();
            data.push(centres[c * dim + j] + spread + 0.05 * gaussian(&mut rng));
        }
    }
    Matrix { rows: n, dim, data }
}

/// A standard normal sample (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Exact `k` nearest rows of `base` to each row of `queries` (row numbers, nearest first)
/// by brute force on `threads` threads: ground truth for recall.
pub fn exact_knn(
    base: &Matrix,
    queries: &Matrix,
    k: usize,
    metric: Metric,
    threads: usize,
) -> Vec<Vec<u32>> {
    let dist = Distance::new(metric, Kernels::detect());
    let normalise = |m: &Matrix| -> Vec<f32> {
        let mut d = m.data.clone();
        if metric == Metric::Cosine {
            d.chunks_exact_mut(m.dim).for_each(|r| {
                normalize(r);
            });
        }
        d
    };
    let (b, q) = (normalise(base), normalise(queries));
    let mut out = vec![Vec::new(); queries.rows];
    let per_thread = queries.rows.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for (chunk, answers) in out.chunks_mut(per_thread).enumerate() {
            let (b, q, dist) = (&b, &q, &dist);
            s.spawn(move || {
                for (j, answer) in answers.iter_mut().enumerate() {
                    let i = chunk * per_thread + j;
                    let qi = &q[i * queries.dim..(i + 1) * queries.dim];
                    // Max-heap of (distance, row): the k nearest so far, farthest on top.
                    let mut heap = BinaryHeap::with_capacity(k + 1);
                    for (r, row) in b.chunks_exact(base.dim).enumerate() {
                        let c = (Ordered(dist.eval(qi, row)), r as u32);
                        if heap.len() < k {
                            heap.push(c);
                        } else if heap.peek().is_some_and(|top| c < *top) {
                            heap.pop();
                            heap.push(c);
                        }
                    }
                    *answer = heap.into_sorted_vec().into_iter().map(|(_, r)| r).collect();
                }
            });
        }
    });
    out
}

/// An f32 ordered by `total_cmp`, for heaps.
#[derive(Clone, Copy, PartialEq)]
struct Ordered(f32);

impl Eq for Ordered {}
impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Fraction of the first `k` of `truth` found among the first `k` of `found`.
pub fn recall_at_k(found: &[u64], truth: &[u64], k: usize) -> f64 {
    let truth: std::collections::HashSet<u64> = truth.iter().take(k).copied().collect();
    if truth.is_empty() {
        return 1.0;
    }
    found.iter().take(k).filter(|id| truth.contains(id)).count() as f64 / truth.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fvecs_and_ivecs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let m = clustered(10, 5, 2, 1);
        let p = dir.path().join("a.fvecs");
        write_fvecs(&p, &m).unwrap();
        assert_eq!(read_vectors(&p).unwrap(), m);
        let gt = vec![vec![1, 2, 3], vec![4, 5, 6]];
        let p = dir.path().join("g.ivecs");
        write_ivecs(&p, &gt).unwrap();
        assert_eq!(read_ivecs(&p).unwrap(), gt);
    }

    #[test]
    fn npy_and_jsonl_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let m = clustered(7, 3, 2, 1);
        let p = dir.path().join("a.npy");
        write_vectors(&p, None, &m).unwrap();
        assert_eq!(read_vectors(&p).unwrap(), m);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[20] = b'X';
        std::fs::write(&p, &bytes).unwrap();
        assert!(read_vectors(&p).is_err());
        let p = dir.path().join("a.jsonl");
        let ids = [5, 1, 9, 2, 3, 4, 8];
        write_vectors(&p, Some(&ids), &m).unwrap();
        let (read_ids, read_m, payloads) = read_jsonl(&p).unwrap();
        let ids: Vec<RowId> = ids.into_iter().map(RowId::Int).collect();
        assert_eq!((read_ids, read_m), (ids, m));
        assert!(payloads.iter().all(|p| p.is_null()));
        std::fs::write(&p, "{\"id\": \"doc-1\", \"vector\": [1.0]}\n").unwrap();
        assert_eq!(read_jsonl(&p).unwrap().0, [RowId::Str("doc-1".into())]);
        std::fs::write(
            &p,
            "{\"id\": 1, \"vector\": [1.0]}\n{\"id\": 2, \"vector\": [1.0, 2.0]}\n",
        )
        .unwrap();
        let err = read_jsonl(&p).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn recall_counts_overlap() {
        assert_eq!(recall_at_k(&[1, 2, 3], &[3, 4, 1], 3), 2.0 / 3.0);
    }
}
