use super::*;
use rand::{RngExt, SeedableRng, rngs::StdRng};

fn close(a: f32, b: f32, scale: f32) -> bool {
    (a - b).abs() <= 1e-4 * scale.max(1.0)
}

#[test]
fn simd_kernels_agree_with_scalar_on_odd_lengths() {
    let mut rng = StdRng::seed_from_u64(7);
    let scalar = Kernels::scalar();
    for kernels in Kernels::available() {
        for len in (0..=67).chain([127, 128, 129, 383, 384, 385, 1000, 1537]) {
            for _ in 0..20 {
                let a: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
                let b: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
                let (l, ls) = ((kernels.l2sq)(&a, &b), (scalar.l2sq)(&a, &b));
                let (d, ds) = ((kernels.dot)(&a, &b), (scalar.dot)(&a, &b));
                let scale = len as f32;
                assert!(
                    close(l, ls, scale),
                    "{} l2sq len {len}: {l} vs {ls}",
                    kernels.isa
                );
                assert!(
                    close(d, ds, scale),
                    "{} dot len {len}: {d} vs {ds}",
                    kernels.isa
                );
            }
        }
    }
}

#[test]
fn code_kernels_agree_with_scalar_on_odd_lengths() {
    let mut rng = StdRng::seed_from_u64(8);
    let scalar = Kernels::scalar();
    for kernels in Kernels::available() {
        for len in (0..=67).chain([127, 128, 129, 383, 384, 385, 1000]) {
            let a: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
            let b: Vec<f32> = (0..len).map(|_| rng.random_range(0.0..0.01)).collect();
            let c: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let (l, ls) = ((kernels.l2sq_u8)(&a, &b, &c), (scalar.l2sq_u8)(&a, &b, &c));
            let (d, ds) = ((kernels.dot_u8)(&a, &b, &c), (scalar.dot_u8)(&a, &b, &c));
            let scale = len as f32 * 255.0;
            assert!(
                close(l, ls, scale),
                "{} l2sq_u8 len {len}: {l} vs {ls}",
                kernels.isa
            );
            assert!(
                close(d, ds, scale),
                "{} dot_u8 len {len}: {d} vs {ds}",
                kernels.isa
            );
        }
    }
}

#[test]
fn integer_code_kernels_round_within_half_a_step_and_sum_exactly() {
    let mut rng = StdRng::seed_from_u64(10);
    for kernels in Kernels::available() {
        let Some(bytes) = kernels.dot_u8_i8 else {
            continue;
        };
        for len in (0..=67).chain([127, 128, 129, 383, 384, 385, 1000]) {
            let scale: f32 = rng.random_range(1e-4..10.0);
            let a: Vec<f32> = (0..len).map(|_| rng.random_range(-scale..scale)).collect();
            let c: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let mut parts = vec![0i8; 2 * len];
            let step = (bytes.round)(&a, &mut parts);
            let (h, l) = parts.split_at(len);
            for i in 0..len {
                let (h, l) = (h[i] as i32, l[i] as i32);
                assert!(
                    h.abs() <= BYTE_PART && l.abs() <= BYTE_PART,
                    "{len}: {h} {l}"
                );
                let back = step * (rabitq::FINE * h + l) as f32;
                assert!(
                    (back - a[i]).abs() <= 0.501 * step,
                    "{} len {len}: {} rounded to {back} (step {step})",
                    kernels.isa,
                    a[i]
                );
            }
            let exact: i64 = (0..len)
                .map(|i| c[i] as i64 * (rabitq::FINE as i64 * h[i] as i64 + l[i] as i64))
                .sum();
            let sum = (bytes.dot)(&parts, &c);
            assert!(
                (sum as f64 - exact as f64).abs() <= 1e-6 * (exact.abs() as f64).max(1.0),
                "{} len {len}: {sum} vs {exact}",
                kernels.isa
            );
        }
        // A zero or vanishing query rounds to zeros.
        for a in [vec![0.0f32; 20], vec![1e-36f32; 20]] {
            let mut parts = vec![1i8; 40];
            assert_eq!((bytes.round)(&a, &mut parts), 1.0);
            assert!(parts.iter().all(|&p| p == 0));
        }
    }
}

#[test]
fn sq8_codes_round_as_f32_round_does() {
    let reference = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    let mut rng = StdRng::seed_from_u64(11);
    let edges = [
        0.0f32,
        -0.0,
        0.49999997,
        0.5,
        0.50000006,
        1.5,
        2.5,
        254.49998,
        254.5,
        255.0,
        255.49998,
        255.5,
        256.0,
        1e9,
        -0.5,
        -1.0,
        -1e9,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
        f32::NAN,
    ];
    let around_halves = (0..=256).flat_map(|k| {
        let half = k as f32 + 0.5;
        [half.next_down(), half, half.next_up()]
    });
    let random = (0..200_000).map(|_| rng.random_range(-10.0f32..300.0));
    for v in edges.into_iter().chain(around_halves).chain(random) {
        assert_eq!(sq8::code_of(v), reference(v), "{v:e}");
    }
}

#[test]
fn sq8_distances_approximate_exact_ones() {
    let mut rng = StdRng::seed_from_u64(9);
    let dim = 96;
    let rows: Vec<Vec<f32>> = (0..200)
        .map(|_| (0..dim).map(|_| rng.random_range(-0.5..1.5)).collect())
        .collect();
    let sq = Sq8::train(dim, rows.iter().map(|r| r.as_slice()));
    let mut codes = vec![0u8; dim];
    for metric in [Metric::L2, Metric::InnerProduct] {
        let exact = Distance::new(metric, Kernels::scalar());
        for kernels in Kernels::available() {
            let q = &rows[0];
            let prepared = sq.query(metric, kernels, q);
            for r in &rows[1..] {
                sq.encode(r, &mut codes);
                let (approx, truth) = (prepared.eval(&codes), exact.eval(q, r));
                // Each component is off by at most half a step (2/255 / 2 here).
                assert!(
                    (approx - truth).abs() <= 0.02 * truth.abs().max(1.0),
                    "{metric:?} {}: {approx} vs {truth}",
                    kernels.isa
                );
            }
        }
    }
    // Out-of-range values clamp; constant components decode exactly.
    let sq = Sq8::train(2, [[1.0f32, 5.0].as_slice(), &[3.0, 5.0]]);
    sq.encode(&[10.0, 5.0], &mut codes[..2]);
    assert_eq!(&codes[..2], &[255, 0]);
}

#[test]
fn sq8_ranges_leave_out_rare_extremes_but_keep_sparse_components() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut rows: Vec<Vec<f32>> = (0..10_000)
        .map(|i| {
            let mut r: Vec<f32> = (0..3).map(|_| rng.random_range(-1.0..1.0)).collect();
            // Component 2 is sparse: nonzero in 5 rows of 10,000, fewer than the trim.
            r[2] = if i % 2_000 == 0 { 4.0 } else { 0.0 };
            r
        })
        .collect();
    rows.push(vec![1000.0, -1000.0, 0.0]);
    let sq = Sq8::train(3, rows.iter().map(|r| r.as_slice()));
    // The outlier does not set the range: the bulk keeps the 256 steps.
    for i in 0..2 {
        assert!(
            sq.offset()[i] > -1.0 && sq.offset()[i] < -0.95,
            "{:?}",
            sq.offset()
        );
        let top = sq.offset()[i] + 255.0 * sq.scale()[i];
        assert!(top < 1.0 && top > 0.95, "{i}: {top}");
    }
    assert_eq!((sq.offset()[2], sq.scale()[2]), (0.0, 4.0 / 255.0));
    let mut codes = [0u8; 3];
    sq.encode(&[1000.0, -1000.0, 4.0], &mut codes);
    assert_eq!(codes, [255, 0, 255]);
    // Below 1,000 rows nothing is left out.
    let few = Sq8::train(1, [[0.0f32].as_slice(), &[1.0], &[100.0]]);
    assert_eq!((few.offset()[0], few.scale()[0]), (0.0, 100.0 / 255.0));
}

/// Codes that give every sampled vector a cell of its own resolve an index of any size:
/// the sampled cells were scaled to the index, so past 64 times the sample (6.4 million
/// vectors at the checkpoint's sample of 100,000) a cell of one was taken for 64.
#[test]
fn sq8_resolves_an_index_far_larger_than_its_sample() {
    let mut rng = StdRng::seed_from_u64(4);
    let rows: Vec<Vec<f32>> = (0..2000)
        .map(|_| (0..32).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    let rows: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
    let sq = Sq8::train(32, rows.iter().copied());
    assert!(sq.resolves(&rows, 2000));
    assert!(sq.resolves(&rows, 1_000_000_000));
}

#[test]
fn scalar_kernels_match_definitions() {
    let a = [1.0, 2.0, 3.0, 4.0, 5.0];
    let b = [5.0, 4.0, 3.0, 2.0, 1.0];
    assert_eq!(l2sq_scalar(&a, &b), 16.0 + 4.0 + 0.0 + 4.0 + 16.0);
    assert_eq!(dot_scalar(&a, &b), 5.0 + 8.0 + 9.0 + 8.0 + 5.0);
}

#[test]
fn metric_distances() {
    let k = Kernels::detect();
    let a = [1.0, 0.0];
    let b = [0.0, 1.0];
    assert_eq!(Distance::new(Metric::L2, k).eval(&a, &b), 2.0);
    assert_eq!(Distance::new(Metric::InnerProduct, k).eval(&a, &b), 1.0);
    assert_eq!(Distance::new(Metric::Cosine, k).eval(&a, &a), 0.0);
}

#[test]
fn normalize_rejects_zero() {
    let mut z = [0.0f32; 3];
    assert!(!normalize(&mut z));
    let mut v = [3.0f32, 4.0];
    assert!(normalize(&mut v));
    assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
}

/// The kernels against rows of 16-bit floats `T` (SIMD and scalar) against the scalar f32
/// kernels on the widened row: the same sums, at every length around the SIMD widths.
fn row_kernels_agree_with_scalar<T: Half>(
    seed: u64,
    round: fn(f32) -> T,
    pick: fn(&Kernels) -> (RowKernel<T>, RowKernel<T>),
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let scalar = Kernels::scalar();
    let (l2sq_scalar, dot_scalar) = pick(&scalar);
    for kernels in Kernels::available() {
        let (l2sq, dot) = pick(&kernels);
        for len in (0..=67).chain([127, 128, 129, 383, 384, 385, 1000]) {
            let a: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
            let b: Vec<T> = (0..len)
                .map(|_| round(rng.random_range(-2.0..2.0)))
                .collect();
            let mut wide = vec![0.0; len];
            T::widen(&b, &mut wide);
            for (kernel, f32_kernel, name) in [
                (l2sq, scalar.l2sq, "l2sq"),
                (dot, scalar.dot, "dot"),
                (l2sq_scalar, scalar.l2sq, "scalar l2sq"),
                (dot_scalar, scalar.dot, "scalar dot"),
            ] {
                let (h, w) = (kernel(&a, &b), f32_kernel(&a, &wide));
                assert!(
                    close(h, w, len as f32),
                    "{} {name} len {len}: {h} vs {w}",
                    kernels.isa
                );
            }
        }
    }
}

#[test]
fn f16_kernels_agree_with_scalar_on_odd_lengths() {
    row_kernels_agree_with_scalar(9, f16::from_f32, |k| (k.l2sq_f16, k.dot_f16));
}

#[test]
fn bf16_kernels_agree_with_scalar_on_odd_lengths() {
    row_kernels_agree_with_scalar(10, bf16::from_f32, |k| (k.l2sq_bf16, k.dot_bf16));
}

#[test]
fn bf16_widening_is_the_conversion_of_every_finite_value() {
    // The shift the kernels use, against `half`'s conversion, over all 65,536 bit patterns
    // but NaNs and infinities (which are never stored).
    let all: Vec<bf16> = (0..=u16::MAX)
        .map(bf16::from_bits)
        .filter(|x| x.is_finite())
        .collect();
    let mut wide = vec![0.0; all.len()];
    bf16::widen(&all, &mut wide);
    for (x, w) in all.iter().zip(&wide) {
        assert_eq!(x.to_f32().to_bits(), w.to_bits(), "{x:?}");
    }
    // And the SIMD loads of each kernel set read the same values: a dot product against
    // one-hot queries picks each component out exactly.
    for kernels in Kernels::available() {
        for chunk in all.chunks(385) {
            for j in [0, chunk.len() / 2, chunk.len() - 1] {
                let mut a = vec![0.0; chunk.len()];
                a[j] = 1.0;
                let got = (kernels.dot_bf16)(&a, chunk);
                assert!(
                    got.to_bits() == chunk[j].to_f32().to_bits() || got == chunk[j].to_f32(),
                    "{} component {j}: {got} vs {}",
                    kernels.isa,
                    chunk[j]
                );
            }
        }
    }
}

/// `Σ u_i q_i` coordinate by coordinate, the levels read back from their bit planes and
/// the query's parts combined.
fn planes_dot_reference(q: &[i8], planes: &[u8], bits: usize) -> i64 {
    let bytes = planes.len() / bits;
    let padded = 8 * bytes;
    (0..padded)
        .map(|i| {
            let level: i64 = (0..bits)
                .map(|b| ((planes[b * bytes + i / 8] >> (i % 8) & 1) as i64) << b)
                .sum();
            let query = q
                .iter()
                .skip(i)
                .step_by(padded)
                .fold(0, |acc, &x| acc * rabitq::FINE as i64 + x as i64);
            level * query
        })
        .sum()
}

#[test]
fn plane_kernels_match_the_definition_for_every_bit_count() {
    // Random codes and queries, and the extremes (every level at its top, the query at
    // ±its range: the largest pair sums the SIMD kernels' 16-bit lanes must hold).
    let mut rng = StdRng::seed_from_u64(11);
    for kernels in Kernels::available() {
        let Some(kernel) = kernels.planes else {
            continue;
        };
        for bits in 1..=rabitq::MAX_BITS {
            let (range, parts) = (rabitq::query_range(bits), rabitq::query_parts(bits));
            let fine = rabitq::FINE / 2;
            for padded in [64, 128, 512, 1024] {
                let len = padded / 8 * bits as usize;
                let part = |first: i32, second: i32| {
                    let mut q = vec![first as i8; padded];
                    q.resize(padded * parts, second as i8);
                    q
                };
                for round in 0..20 {
                    let (planes, q): (Vec<u8>, Vec<i8>) = match round {
                        0 => (vec![0xFF; len], part(range, fine)),
                        1 => (vec![0xFF; len], part(-range, -fine)),
                        _ => (
                            (0..len).map(|_| rng.random()).collect(),
                            (0..padded * parts)
                                .map(|i| match i < padded {
                                    true => rng.random_range(-range..=range) as i8,
                                    false => rng.random_range(-fine..=fine) as i8,
                                })
                                .collect(),
                        ),
                    };
                    assert_eq!(
                        kernel(&q, &planes, bits as usize),
                        planes_dot_reference(&q, &planes, bits as usize),
                        "{} {bits} bits, {padded} coordinates, round {round}",
                        kernels.isa
                    );
                }
            }
        }
    }
}

#[test]
fn rabitq_estimates_agree_across_kernel_sets_at_odd_dimensions() {
    // The SIMD kernels and the scalar tables sum the same integers, so the estimates and
    // bounds are bit for bit the same, for every bit count and metric.
    let mut rng = StdRng::seed_from_u64(12);
    for dim in [1, 33, 100, 383, 385] {
        let rows: Vec<Vec<f32>> = (0..40)
            .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        for bits in 1..=rabitq::MAX_BITS {
            let quantizer = RaBitQ::train(dim, 13, bits, rows.iter().map(|r| r.as_slice()));
            let codes: Vec<Vec<u8>> = rows
                .iter()
                .map(|r| {
                    let mut code = vec![0u8; RaBitQ::code_bytes(dim, bits)];
                    quantizer.encode(r, &mut code);
                    code
                })
                .collect();
            for metric in [Metric::L2, Metric::InnerProduct] {
                let scalar = quantizer.query(metric, Kernels::scalar(), &rows[0]);
                for kernels in Kernels::available() {
                    let prepared = quantizer.query(metric, kernels, &rows[0]);
                    for code in &codes {
                        assert_eq!(
                            prepared.estimate(code),
                            scalar.estimate(code),
                            "{} dim {dim}, {bits} bits, {metric:?}",
                            kernels.isa
                        );
                    }
                }
            }
        }
    }
}
