//! Distance kernels per dimension and instruction set (scalar vs SIMD): f32 against f32
//! (exact distances), against f16 and bf16 rows (16-bit storage), against SQ8 codes
//! (graph walks; with a query rounded to integers where the set has VNNI) and the RaBitQ
//! estimate per bit count (per-byte tables vs SIMD).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hnswdb::distance::{Kernels, Metric, RaBitQ};
use hnswdb::{bf16, f16};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::hint::black_box;

fn kernels(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    for dim in [64usize, 128, 384, 768, 1536] {
        let a: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let codes: Vec<u8> = (0..dim).map(|_| rng.random()).collect();
        let halves: Vec<f16> = b.iter().map(|&x| f16::from_f32(x)).collect();
        let brains: Vec<bf16> = b.iter().map(|&x| bf16::from_f32(x)).collect();
        let mut group = c.benchmark_group(format!("kernels/dim{dim}"));
        group.throughput(Throughput::Bytes((dim * 4) as u64));
        for k in Kernels::available() {
            group.bench_with_input(BenchmarkId::new("l2sq", k.isa), &k, |bench, k| {
                bench.iter(|| (k.l2sq)(black_box(&a), black_box(&b)))
            });
            group.bench_with_input(BenchmarkId::new("dot", k.isa), &k, |bench, k| {
                bench.iter(|| (k.dot)(black_box(&a), black_box(&b)))
            });
            group.bench_with_input(BenchmarkId::new("l2sq_f16", k.isa), &k, |bench, k| {
                bench.iter(|| (k.l2sq_f16)(black_box(&a), black_box(&halves)))
            });
            group.bench_with_input(BenchmarkId::new("l2sq_bf16", k.isa), &k, |bench, k| {
                bench.iter(|| (k.l2sq_bf16)(black_box(&a), black_box(&brains)))
            });
            group.bench_with_input(BenchmarkId::new("dot_bf16", k.isa), &k, |bench, k| {
                bench.iter(|| (k.dot_bf16)(black_box(&a), black_box(&brains)))
            });
            group.bench_with_input(BenchmarkId::new("l2sq_u8", k.isa), &k, |bench, k| {
                bench.iter(|| (k.l2sq_u8)(black_box(&a), black_box(&b), black_box(&codes)))
            });
            group.bench_with_input(BenchmarkId::new("dot_u8", k.isa), &k, |bench, k| {
                bench.iter(|| (k.dot_u8)(black_box(&a), black_box(&b), black_box(&codes)))
            });
            if let Some(bytes) = k.dot_u8_i8 {
                let mut parts = vec![0i8; 2 * dim];
                (bytes.round)(&a, &mut parts);
                group.bench_with_input(BenchmarkId::new("dot_u8_i8", k.isa), &k, |bench, _| {
                    bench.iter(|| (bytes.dot)(black_box(&parts), black_box(&codes)))
                });
            }
        }
        group.finish();
    }
}

/// One RaBitQ estimate (a code in cache) at 384-d, per bit count and kernel set: the
/// compute side of a walk on RaBitQ codes, beside `dot_u8` above for SQ8.
fn rabitq(c: &mut Criterion) {
    let (dim, mut rng) = (384, StdRng::seed_from_u64(2));
    let rows: Vec<Vec<f32>> = (0..2)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let mut group = c.benchmark_group("rabitq/dim384");
    for bits in [1, 2, 4, 8] {
        let quantizer = RaBitQ::train(dim, 3, bits, rows.iter().map(|r| r.as_slice()));
        let mut code = vec![0u8; RaBitQ::code_bytes(dim, bits)];
        quantizer.encode(&rows[1], &mut code);
        for k in Kernels::available() {
            let prepared = quantizer.query(Metric::InnerProduct, k, &rows[0]);
            group.bench_function(BenchmarkId::new(format!("{bits}bit"), k.isa), |bench| {
                bench.iter(|| prepared.eval(black_box(&code)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, kernels, rabitq);
criterion_main!(benches);
