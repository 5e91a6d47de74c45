//! Distance kernels. They see slices only: no knowledge of slots, pages or graphs.
//!
//! Each metric reduces to one of two kernels, squared L2 or the dot product. A portable
//! scalar version of each exists for every target; SIMD versions (AVX-512F, AVX2+FMA on
//! x86-64, NEON on aarch64) are chosen once at runtime by [`Kernels::detect`].

/// How distance between two vectors is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// `1 - <a, b>` (as hnswlib's `ip` space). Not a metric; vectors are used as given.
    InnerProduct,
    /// `1 - cos(a, b)`: vectors are normalised on insert and queries on search, then the
    /// inner-product kernel is used.
    Cosine,
}

impl Metric {
    /// Code stored in file headers and metadata.
    pub(crate) fn code(self) -> u32 {
        match self {
            Metric::L2 => 1,
            Metric::InnerProduct => 2,
            Metric::Cosine => 3,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Metric> {
        match code {
            1 => Some(Metric::L2),
            2 => Some(Metric::InnerProduct),
            3 => Some(Metric::Cosine),
            _ => None,
        }
    }

    /// The name used by the CLI and the Python API (`l2`, `ip`, `cosine`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::InnerProduct => "ip",
            Metric::Cosine => "cosine",
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Metric> {
        match s {
            "l2" | "L2" | "euclidean" => Ok(Metric::L2),
            "ip" | "inner_product" | "dot" => Ok(Metric::InnerProduct),
            "cosine" | "cos" => Ok(Metric::Cosine),
            other => Err(crate::Error::InvalidOption(format!(
                "unknown metric {other:?} (expected cosine, l2 or ip)"
            ))),
        }
    }
}

/// What the graph walk of an index runs on: fixed at creation (`IndexOptions::routing`).
///
/// Named `sq8`, `rabitq` and `rabitq:B` (B = 2..8; `rabitq:1` is `rabitq`) by the CLI and
/// Python. Multi-bit codes are a variant of their own, not a field of `RaBitQ`: the one-bit
/// code keeps its layout and file kind, and every index written before them keeps its
/// name and metadata code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Routing {
    /// SQ8 codes, one byte per component: the fastest walk while the index fits in
    /// memory.
    #[default]
    Sq8,
    /// RaBitQ codes, one bit per component plus two scalars (72 bytes at 384-d): small
    /// enough to stay resident for indexes far larger than memory, with an error bound
    /// that lets the exact re-rank read fewer vectors from disk.
    RaBitQ,
    /// Extended RaBitQ codes of 2..=8 bits per component (of the dimension rounded up to a
    /// power of two) plus three scalars: tighter estimates and bounds than one bit (fewer
    /// re-rank reads, a shorter walk at equal recall) for `bits` times its code size.
    ExRaBitQ(u8),
}

impl Routing {
    /// Code stored in the metadata: 0 for SQ8, else the bits per component.
    pub(crate) fn code(self) -> u64 {
        match self {
            Routing::Sq8 => 0,
            Routing::RaBitQ => 1,
            Routing::ExRaBitQ(bits) => bits as u64,
        }
    }

    pub(crate) fn from_code(code: u64) -> Option<Routing> {
        match code {
            0 => Some(Routing::Sq8),
            1 => Some(Routing::RaBitQ),
            _ => u8::try_from(code)
                .ok()
                .and_then(|b| Routing::rabitq(b).ok()),
        }
    }

    /// RaBitQ routing with `bits` (1..=8) per component.
    pub fn rabitq(bits: u8) -> crate::Result<Routing> {
        match bits {
            1 => Ok(Routing::RaBitQ),
            2..=rabitq::MAX_BITS => Ok(Routing::ExRaBitQ(bits)),
            _ => Err(crate::Error::InvalidOption(format!(
                "RaBitQ codes have 1 to {} bits per component, not {bits}",
                rabitq::MAX_BITS
            ))),
        }
    }

    /// Bits per component of its RaBitQ codes (`None` for SQ8).
    pub fn rabitq_bits(self) -> Option<u8> {
        match self {
            Routing::Sq8 => None,
            Routing::RaBitQ => Some(1),
            Routing::ExRaBitQ(bits) => Some(bits),
        }
    }

    /// The name the CLI and Python use (`sq8`, `rabitq`, `rabitq:4`).
    pub fn name(self) -> &'static str {
        const MULTI_BIT: [&str; 7] = [
            "rabitq:2", "rabitq:3", "rabitq:4", "rabitq:5", "rabitq:6", "rabitq:7", "rabitq:8",
        ];
        match self {
            Routing::Sq8 => "sq8",
            Routing::RaBitQ => "rabitq",
            Routing::ExRaBitQ(bits) => MULTI_BIT
                .get((bits as usize).wrapping_sub(2))
                .copied()
                .unwrap_or("rabitq:?"),
        }
    }
}

impl std::str::FromStr for Routing {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Routing> {
        let s = s.to_ascii_lowercase();
        let unknown = || {
            crate::Error::InvalidOption(format!(
                "unknown routing {s:?} (expected sq8, rabitq or rabitq:BITS with BITS 1 to {})",
                rabitq::MAX_BITS
            ))
        };
        match s.split_once(':') {
            None if s == "sq8" => Ok(Routing::Sq8),
            None if s == "rabitq" => Ok(Routing::RaBitQ),
            Some(("rabitq", bits)) => Routing::rabitq(bits.parse().map_err(|_| unknown())?),
            _ => Err(unknown()),
        }
    }
}

/// How the full vectors are stored on disk: fixed at creation
/// (`IndexOptions::storage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Storage {
    /// 4-byte floats, exactly as given.
    #[default]
    F32,
    /// IEEE half floats: half the disk, the page cache and the bytes a re-rank reads, at
    /// about three decimal digits per component (components beyond ±65,504 are refused).
    F16,
    /// bfloat16, the top half of an f32: the same halving as f16 and f32's range (no
    /// component is refused), at about two decimal digits per component (8 significant
    /// bits against f16's 11). Widening to f32 is a 16-bit shift.
    BF16,
}

impl Storage {
    /// Code stored in the metadata.
    pub(crate) fn code(self) -> u64 {
        match self {
            Storage::F32 => 0,
            Storage::F16 => 1,
            Storage::BF16 => 2,
        }
    }

    pub(crate) fn from_code(code: u64) -> Option<Storage> {
        match code {
            0 => Some(Storage::F32),
            1 => Some(Storage::F16),
            2 => Some(Storage::BF16),
            _ => None,
        }
    }

    /// Bytes per component.
    pub fn bytes(self) -> usize {
        match self {
            Storage::F32 => 4,
            Storage::F16 | Storage::BF16 => 2,
        }
    }

    /// The largest relative error of a stored component: half a unit in the last place
    /// (rounding to nearest; 0 for f32, which stores components as given).
    pub fn rounding(self) -> f32 {
        match self {
            Storage::F32 => 0.0,
            Storage::F16 => 1.0 / 2048.0,
            Storage::BF16 => 1.0 / 256.0,
        }
    }

    /// The name the CLI and Python use (`f32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Storage::F32 => "f32",
            Storage::F16 => "f16",
            Storage::BF16 => "bf16",
        }
    }
}

impl std::str::FromStr for Storage {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Storage> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Storage::F32),
            "f16" => Ok(Storage::F16),
            "bf16" => Ok(Storage::BF16),
            other => Err(crate::Error::InvalidOption(format!(
                "unknown storage {other:?} (expected f32, f16 or bf16)"
            ))),
        }
    }
}

/// A stored vector as it lies in its slot (equal: the same storage and components).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Row<'a> {
    /// Stored as f32.
    F32(&'a [f32]),
    /// Stored as f16.
    F16(&'a [f16]),
    /// Stored as bfloat16.
    BF16(&'a [bf16]),
}

impl<'a> Row<'a> {
    /// The vector as f32: borrowed when stored so, converted otherwise.
    pub fn to_f32(self) -> std::borrow::Cow<'a, [f32]> {
        match self {
            Row::F32(v) => std::borrow::Cow::Borrowed(v),
            Row::F16(v) => std::borrow::Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
            Row::BF16(v) => std::borrow::Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
        }
    }

    /// The vector as f32, widened into `buf` when stored in 16 bits (so that a loop over
    /// many rows reuses one buffer instead of allocating per row).
    pub fn to_f32_in<'b>(self, buf: &'b mut Vec<f32>) -> &'b [f32]
    where
        'a: 'b,
    {
        fn widen<'b, T: Half>(v: &[T], buf: &'b mut Vec<f32>) -> &'b [f32] {
            buf.resize(v.len(), 0.0);
            T::widen(v, buf);
            buf
        }
        match self {
            Row::F32(v) => v,
            Row::F16(v) => widen(v, buf),
            Row::BF16(v) => widen(v, buf),
        }
    }
}

/// A trained quantiser of either kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Quantizer {
    /// SQ8.
    Sq8(Sq8),
    /// RaBitQ, of one bit per component or more.
    RaBitQ(RaBitQ),
}

impl Quantizer {
    /// The routing it serves.
    pub fn routing(&self) -> Routing {
        match self {
            Quantizer::Sq8(_) => Routing::Sq8,
            Quantizer::RaBitQ(q) if q.bits() == 1 => Routing::RaBitQ,
            Quantizer::RaBitQ(q) => Routing::ExRaBitQ(q.bits()),
        }
    }

    /// Bytes of one code of a `dim`-dimensional vector.
    pub fn code_bytes(&self, dim: usize) -> usize {
        match self {
            Quantizer::Sq8(_) => dim,
            Quantizer::RaBitQ(q) => RaBitQ::code_bytes(dim, q.bits()),
        }
    }

    /// Whether the code of `v` tells it apart from other vectors as training meant it to
    /// (see `Sq8::fits`; a RaBitQ code, of a direction, always does).
    pub fn fits(&self, v: &[f32]) -> bool {
        match self {
            Quantizer::Sq8(q) => q.fits(v),
            Quantizer::RaBitQ(_) => true,
        }
    }

    /// Writes the code of `v` into `out` (`code_bytes` long).
    pub fn encode(&self, v: &[f32], out: &mut [u8]) {
        match self {
            Quantizer::Sq8(q) => q.encode(v, out),
            Quantizer::RaBitQ(q) => q.encode(v, out),
        }
    }
}

/// A kernel: both slices have the same length.
pub type Kernel = fn(&[f32], &[f32]) -> f32;

/// A kernel over 8-bit codes: `l2` computes `Σ (a_i − b_i·c_i)²`; `dot` computes
/// `Σ a_i·c_i` (and ignores `b`). The slices have the same length.
pub type CodeKernel = fn(&[f32], &[f32], &[u8]) -> f32;

/// An integer kernel over 8-bit codes: `Σ c_i·(FINE·h_i + l_i)` of codes `c` and a query
/// rounded to integers in two parts laid out one after the other, `q = [h | l]`, each
/// part as long as `c` and within `±BYTE_PART` (see `Sq8::query`). Each part's sum is
/// exact (integers); they are combined in f32.
pub type ByteKernel = fn(&[i8], &[u8]) -> f32;

/// The bound of each part of a query an integer code kernel takes (`ByteKernel`): an i8,
/// and small enough that a pair of products, `2 · 255 · BYTE_PART`, would fit the i16 of
/// a pairwise multiply-add (AVX2's `maddubs`) should a set without VNNI sum them.
pub const BYTE_PART: i32 = 64;

/// A kernel set's integer dot product against SQ8 codes: how it rounds a query, and the
/// sum ([`ByteKernel`]).
#[derive(Clone, Copy, Debug)]
pub struct ByteDot {
    /// Rounds `a` into the two parts of `out` (twice `a`'s length) and returns the step:
    /// `a_i ≈ step · (FINE·h_i + l_i)` within about `step / 2` (the division by the step
    /// is itself rounded in f32: at most 0.501 steps), `h` and `l` within `±BYTE_PART`.
    /// `a` must be finite; the step is 1 and the parts zero where it is all zeros or too
    /// small for its step to be a normal f32.
    pub round: fn(&[f32], &mut [i8]) -> f32,
    /// The sum.
    pub dot: ByteKernel,
}

/// A kernel over RaBitQ codes: `Σ_i u_i·q_i` of the levels `u_i` held in a code's bit
/// planes (`planes`: exactly `bits` planes of `padded / 8` bytes each, laid out as in
/// [`RaBitQ`]) and the rotated query rounded to integers `q` (`rabitq::query_parts(bits)`
/// parts `a`, `b` of `padded` components, `a` within `±rabitq::query_range(bits)` and `b`
/// within `±FINE / 2`, standing for `q = FINE a + b`). Exact: integers throughout.
pub type PlaneKernel = fn(&[i8], &[u8], usize) -> i64;

/// A kernel against a stored row of 16-bit floats `T` (f16 or bf16; `l2sq` or `dot`, the
/// row widened as it is read).
pub type RowKernel<T> = fn(&[f32], &[T]) -> f32;

/// The squared-L2 and dot-product kernels of one instruction set.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    /// Squared Euclidean distance.
    pub l2sq: Kernel,
    /// Dot product.
    pub dot: Kernel,
    /// Squared L2 against SQ8 codes (see [`CodeKernel`]).
    pub l2sq_u8: CodeKernel,
    /// Dot product against SQ8 codes (see [`CodeKernel`]).
    pub dot_u8: CodeKernel,
    /// Dot product against SQ8 codes of a query rounded to integers (see [`ByteKernel`]),
    /// where the set has an integer dot instruction; `None` elsewhere (queries then use
    /// `dot_u8`).
    pub dot_u8_i8: Option<ByteDot>,
    /// Squared L2 against an f16 row.
    pub l2sq_f16: RowKernel<f16>,
    /// Dot product against an f16 row.
    pub dot_f16: RowKernel<f16>,
    /// Squared L2 against a bf16 row.
    pub l2sq_bf16: RowKernel<bf16>,
    /// Dot product against a bf16 row.
    pub dot_bf16: RowKernel<bf16>,
    /// `Σ u_i·q_i` over RaBitQ bit planes (see [`PlaneKernel`]); `None` where the set
    /// has none, and a query then sums from per-byte lookup tables.
    pub planes: Option<PlaneKernel>,
    /// Name of the instruction set (for benchmarks and `stats`).
    pub isa: &'static str,
}

impl Kernels {
    /// Portable scalar kernels.
    pub fn scalar() -> Kernels {
        Kernels {
            l2sq: l2sq_scalar,
            dot: dot_scalar,
            l2sq_u8: l2sq_u8_scalar,
            dot_u8: dot_u8_scalar,
            dot_u8_i8: None,
            l2sq_f16: l2sq_widened_scalar,
            dot_f16: dot_widened_scalar,
            l2sq_bf16: l2sq_widened_scalar,
            dot_bf16: dot_widened_scalar,
            planes: None,
            isa: "scalar",
        }
    }

    /// The fastest kernels this CPU supports.
    pub fn detect() -> Kernels {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c");
            if std::arch::is_x86_feature_detected!("avx512f") && avx2 {
                return x86::with_vnni(x86::avx512_kernels());
            }
            if avx2 {
                return x86::avx2_kernels();
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                return neon::kernels();
            }
        }
        Kernels::scalar()
    }

    /// All kernel sets this CPU can run, scalar first (for tests and benchmarks).
    pub fn available() -> Vec<Kernels> {
        let mut all = vec![Kernels::scalar()];
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c");
            if avx2 {
                all.push(x86::avx2_kernels());
            }
            if std::arch::is_x86_feature_detected!("avx512f") && avx2 {
                all.push(x86::avx512_kernels());
                let vnni = x86::with_vnni(x86::avx512_kernels());
                if vnni.dot_u8_i8.is_some() {
                    all.push(vnni);
                }
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                all.push(neon::kernels());
            }
        }
        all
    }
}

/// A metric bound to a kernel: what the graph calls to compare two stored vectors.
#[derive(Clone, Copy, Debug)]
pub struct Distance {
    kernel: Kernel,
    /// The same kernel against f16 rows.
    half: RowKernel<f16>,
    /// The same kernel against bf16 rows.
    brain: RowKernel<bf16>,
    /// True for inner product and cosine: distance is `1 - dot`.
    one_minus: bool,
}

impl Distance {
    /// Binds `metric` to the given kernels.
    pub fn new(metric: Metric, kernels: Kernels) -> Distance {
        match metric {
            Metric::L2 => Distance {
                kernel: kernels.l2sq,
                half: kernels.l2sq_f16,
                brain: kernels.l2sq_bf16,
                one_minus: false,
            },
            Metric::InnerProduct | Metric::Cosine => Distance {
                kernel: kernels.dot,
                half: kernels.dot_f16,
                brain: kernels.dot_bf16,
                one_minus: true,
            },
        }
    }

    /// Distance between two vectors of equal length.
    #[inline(always)]
    pub fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        self.finish((self.kernel)(a, b))
    }

    /// Distance between `a` and a stored row of equal length.
    #[inline(always)]
    pub fn eval_row(&self, a: &[f32], b: Row<'_>) -> f32 {
        match b {
            Row::F32(b) => self.eval(a, b),
            Row::F16(b) => {
                debug_assert_eq!(a.len(), b.len());
                self.finish((self.half)(a, b))
            }
            Row::BF16(b) => {
                debug_assert_eq!(a.len(), b.len());
                self.finish((self.brain)(a, b))
            }
        }
    }

    /// The distance from the kernel's sum.
    #[inline(always)]
    fn finish(&self, k: f32) -> f32 {
        if self.one_minus { 1.0 - k } else { k }
    }
}

/// Scales `v` to unit length in place. Returns false for an all-zero vector. The norm is
/// taken in f64, so that finite components of any size (up to f32::MAX, whose square
/// overflows f32) normalise correctly.
pub fn normalize(v: &mut [f32]) -> bool {
    normalize_by(v, squared_norm(v))
}

/// `normalize` given `v`'s `squared_norm`.
pub fn normalize_by(v: &mut [f32], squared_norm: f64) -> bool {
    let norm = squared_norm.sqrt();
    if norm == 0.0 {
        return false;
    }
    v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
    true
}

/// `Σ x_i²` in f64: exact enough, and finite for any finite components (not finite if
/// any is not). Eight partial sums: one running sum is a chain of dependent adds, about
/// half a microsecond at 384-d, and every query and write computes it.
pub fn squared_norm(v: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = v.chunks_exact(8);
    let rest: f64 = chunks
        .remainder()
        .iter()
        .map(|&x| x as f64 * x as f64)
        .sum();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += x as f64 * x as f64;
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// The largest squared norm a stored vector or query may have under L2 and inner
/// product: a quarter of f32::MAX, so that `|a − b|² ≤ 2(|a|² + |b|²)` and `|a·b|` stay
/// finite for any two such vectors, partial sums included.
pub const MAX_SQUARED_NORM: f64 = f32::MAX as f64 / 4.0;

/// Portable squared L2. Four independent accumulators let the compiler vectorise and hide
/// the add latency even without target features.
pub fn l2sq_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 4];
    let chunks = n / 4;
    for i in 0..chunks {
        for j in 0..4 {
            let d = a[i * 4 + j] - b[i * 4 + j];
            acc[j] += d * d;
        }
    }
    let mut sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in chunks * 4..n {
        let d = a[i] - b[i];
        sum += d * d;
    }
    sum
}

/// Portable dot product.
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 4];
    let chunks = n / 4;
    for i in 0..chunks {
        for j in 0..4 {
            acc[j] += a[i * 4 + j] * b[i * 4 + j];
        }
    }
    let mut sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in chunks * 4..n {
        sum += a[i] * b[i];
    }
    sum
}

/// Portable `Σ (a_i − b_i·c_i)²` over 8-bit codes. Eight independent lanes over fixed-size
/// chunks, so that the compiler vectorises it (the code-to-float widening included).
pub fn l2sq_u8_scalar(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
    let n = a.len().min(b.len()).min(c.len());
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    let mut acc = [0.0f32; 8];
    let (ac, bc, cc) = (a.chunks_exact(8), b.chunks_exact(8), c.chunks_exact(8));
    let (ar, br, cr) = (ac.remainder(), bc.remainder(), cc.remainder());
    for ((a, b), c) in ac.zip(bc).zip(cc) {
        for j in 0..8 {
            let d = a[j] - b[j] * c[j] as f32;
            acc[j] += d * d;
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for ((a, b), c) in ar.iter().zip(br).zip(cr) {
        let d = a - b * *c as f32;
        sum += d * d;
    }
    sum
}

/// Portable `Σ a_i·c_i` over 8-bit codes (vectorisable as `l2sq_u8_scalar`).
pub fn dot_u8_scalar(a: &[f32], _b: &[f32], c: &[u8]) -> f32 {
    let n = a.len().min(c.len());
    let (a, c) = (&a[..n], &c[..n]);
    let mut acc = [0.0f32; 8];
    let (ac, cc) = (a.chunks_exact(8), c.chunks_exact(8));
    let (ar, cr) = (ac.remainder(), cc.remainder());
    for (a, c) in ac.zip(cc) {
        for j in 0..8 {
            acc[j] += a[j] * c[j] as f32;
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (a, c) in ar.iter().zip(cr) {
        sum += a * *c as f32;
    }
    sum
}

/// A 16-bit float that rows may be stored in, widened to f32 a slice at a time.
pub(crate) trait Half: Copy {
    /// Writes `src` as f32 into `dst` (of equal length).
    fn widen(src: &[Self], dst: &mut [f32]);
}

impl Half for f16 {
    fn widen(src: &[f16], dst: &mut [f32]) {
        // F16C or NEON where the CPU has them.
        src.convert_to_f32_slice(dst);
    }
}

impl Half for bf16 {
    fn widen(src: &[bf16], dst: &mut [f32]) {
        // The shift alone, which the compiler vectorises (`bf16::to_f32` also quiets NaNs,
        // which are never stored).
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_bits(u32::from(s.to_bits()) << 16);
        }
    }
}

/// Components widened per step by the scalar 16-bit kernels: a stack buffer that the f32
/// kernel then reads.
const WIDEN_CHUNK: usize = 64;

/// Applies the f32 `kernel` (a sum over components) to `a` and the 16-bit row `b`,
/// widening `b` `WIDEN_CHUNK` components at a time.
fn widened<T: Half>(kernel: Kernel, a: &[f32], b: &[T]) -> f32 {
    let mut buf = [0f32; WIDEN_CHUNK];
    let mut sum = 0f32;
    for (a, b) in a.chunks(WIDEN_CHUNK).zip(b.chunks(WIDEN_CHUNK)) {
        let buf = &mut buf[..b.len()];
        T::widen(b, buf);
        sum += kernel(a, buf);
    }
    sum
}

/// Portable squared L2 against an f16 or bf16 row.
pub(crate) fn l2sq_widened_scalar<T: Half>(a: &[f32], b: &[T]) -> f32 {
    widened(l2sq_scalar, a, b)
}

/// Portable dot product against an f16 or bf16 row.
pub(crate) fn dot_widened_scalar<T: Half>(a: &[f32], b: &[T]) -> f32 {
    widened(dot_scalar, a, b)
}

#[cfg(target_arch = "aarch64")]
mod neon;
mod rabitq;
mod sq8;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

use half::slice::HalfFloatSliceExt;
pub use half::{bf16, f16};
pub use rabitq::{RaBitQ, RaBitQuery};
pub use sq8::{Sq8, Sq8Query};
