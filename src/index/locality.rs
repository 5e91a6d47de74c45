//! Which slot each row of a batch takes: similar rows side by side, so that the codes,
//! vectors and lists a walk reads from one neighbourhood share pages. A walk's time is
//! mostly waiting on memory (each hop loads 20-30 neighbours' codes), and neighbours
//! scattered over the whole file cost a TLB miss each besides the cache miss; placed
//! together, a few pages hold them.
//!
//! The order is that of a balanced 2-means tree over the batch: a part is split at the
//! median of its rows' projections on a direction, first the difference of two of its
//! rows (as in Dasgupta and Freund's random-projection trees), then `REFINE` times the
//! difference of the two halves' centroids; recursively, down to parts of `LEAF` rows.
//! Rows keep their place in the batch and are inserted in that order: only their slots
//! move. (Inserting in this order instead, as a file sorted by cluster does, costs the
//! graph recall per ef: docs/benchmarks.md.) A batch places its own rows only: a row's
//! neighbours in earlier batches stay where those put them, so the gain is a large
//! batch's. On the Debian set as one batch, the ~385 codes a walk at ef 20 scores lay on
//! 278 distinct pages against 372 in chunks of 10,000 (which gain nothing measurable).

use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::distance::Kernel;

/// Parts this small are left in batch order: a few pages of codes at any dimension.
const LEAF: usize = 32;

/// The rows of `rows` in locality order (a permutation of `0..rows.len()`), projections
/// computed by `dot`. Deterministic for the same rows.
pub(super) fn locality_order(rows: &[Vec<f32>], dot: Kernel) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut rng = StdRng::seed_from_u64(rows.len() as u64);
    let mut keyed = Vec::with_capacity(rows.len());
    split(&mut order, rows, dot, &mut rng, &mut keyed);
    order
}

/// Orders `part` (row numbers) by halving it at the median projection, recursively.
fn split(
    part: &mut [usize],
    rows: &[Vec<f32>],
    dot: Kernel,
    rng: &mut StdRng,
    keyed: &mut Vec<(f32, usize)>,
) {
    if part.len() <= LEAF {
        part.sort_unstable();
        return;
    }
    let a = &rows[part[rng.random_range(0..part.len())]];
    let b = &rows[part[rng.random_range(0..part.len())]];
    let mut direction: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let mid = part.len() / 2;
    for round in 0..=REFINE {
        halve(part, rows, dot, &direction, keyed);
        if round < REFINE {
            // The halves' centroids apart: a balanced 2-means step.
            let (low, high) = part.split_at(mid);
            let (cl, ch) = (centroid(low, rows), centroid(high, rows));
            direction = ch.iter().zip(&cl).map(|(h, l)| h - l).collect();
        }
    }
    let (low, high) = part.split_at_mut(mid);
    split(low, rows, dot, rng, keyed);
    split(high, rows, dot, rng, keyed);
}

/// Rounds of 2-means after the first split of a part: the direction between the halves'
/// centroids follows the part's clusters where the difference of two rows is one draw.
/// On the Debian set, pages of codes a walk at ef 20 touched: 316 with none, 278 with
/// two, 272 with five (and 255 for the rows ordered by 1,024 k-means clusters).
const REFINE: usize = 2;

/// Puts the rows of `part` with the smaller half of the projections on `direction`
/// first. Rows that project alike go in batch order (ties broken by row number, and
/// leaves sorted by it): copies of one vector then take slots in the order they are
/// inserted, on which the neighbour selection's rule for equal distances ("newest,
/// highest slot, first") depends; with copies placed in any order, a build of 20 copies
/// of 100 points left 23 nodes unreachable (`tests/duplicates.rs`).
fn halve(
    part: &mut [usize],
    rows: &[Vec<f32>],
    dot: Kernel,
    direction: &[f32],
    keyed: &mut Vec<(f32, usize)>,
) {
    keyed.clear();
    keyed.extend(part.iter().map(|&i| (dot(&rows[i], direction), i)));
    let mid = part.len() / 2;
    keyed.select_nth_unstable_by(mid, |x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    for (to, &(_, i)) in part.iter_mut().zip(keyed.iter()) {
        *to = i;
    }
}

/// The mean of the rows of `part`.
fn centroid(part: &[usize], rows: &[Vec<f32>]) -> Vec<f32> {
    let mut sum = vec![0f32; rows[part[0]].len()];
    for &i in part {
        for (s, x) in sum.iter_mut().zip(&rows[i]) {
            *s += x;
        }
    }
    let n = part.len() as f32;
    sum.iter_mut().for_each(|s| *s /= n);
    sum
}

/// `planned` slots given out to `rows` in locality order: row `i` takes the slot at its
/// place in that order.
pub(super) fn assign(planned: Vec<u32>, rows: &[Vec<f32>], dot: Kernel) -> Vec<u32> {
    if rows.len() <= LEAF {
        return planned;
    }
    let mut slots = vec![0; rows.len()];
    for (&slot, i) in planned.iter().zip(locality_order(rows, dot)) {
        slots[i] = slot;
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Kernels;

    /// `n` rows around each of `centres`, interleaved: row `i` is near centre `i % k`.
    fn interleaved(centres: &[Vec<f32>], n: usize, rng: &mut StdRng) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| {
                let c = &centres[i % centres.len()];
                c.iter()
                    .map(|x| x + rng.random_range(-0.01..0.01))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_order_is_a_permutation_and_groups_similar_rows() {
        let mut rng = StdRng::seed_from_u64(1);
        let dim = 24;
        let centres: Vec<Vec<f32>> = (0..8)
            .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let rows = interleaved(&centres, 4096, &mut rng);
        let dot = Kernels::detect().dot;
        let order = locality_order(&rows, dot);
        let mut seen = order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..rows.len()).collect::<Vec<_>>());
        // In batch order every step changes centre; in locality order few do: at most one
        // leaf of each pair of clusters mixes them, so changes are rare.
        let changes = order
            .windows(2)
            .filter(|w| w[0] % centres.len() != w[1] % centres.len())
            .count();
        assert!(changes < rows.len() / 16, "{changes} changes of centre");
        assert_eq!(order, locality_order(&rows, dot), "deterministic");
    }

    #[test]
    fn slots_follow_the_order_and_small_batches_keep_theirs() {
        let rows: Vec<Vec<f32>> = (0..100).map(|i| vec![(i % 2) as f32, 1.0]).collect();
        let dot = Kernels::detect().dot;
        let planned: Vec<u32> = (500..600).collect();
        let slots = assign(planned.clone(), &rows, dot);
        for (place, i) in locality_order(&rows, dot).into_iter().enumerate() {
            assert_eq!(slots[i], planned[place]);
        }
        // Rows alike take neighbouring slots: the two kinds split at the median.
        let low: Vec<u32> = (0..100).filter(|i| i % 2 == 0).map(|i| slots[i]).collect();
        assert!(low.iter().all(|&s| s < 550) || low.iter().all(|&s| s >= 550));
        let few = &rows[..LEAF];
        assert_eq!(
            assign((7..7 + LEAF as u32).collect(), few, dot),
            (7..7 + LEAF as u32).collect::<Vec<_>>()
        );
    }

    /// Copies of a vector take slots in batch order, as the neighbour selection's rule
    /// for equal distances needs (`tests/duplicates.rs` builds with them).
    #[test]
    fn copies_take_slots_in_batch_order() {
        let mut rng = StdRng::seed_from_u64(2);
        let points: Vec<Vec<f32>> = (0..40)
            .map(|_| (0..16).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let rows: Vec<Vec<f32>> = (0..2000).map(|i| points[i % 40].clone()).collect();
        let slots = assign((0..2000).collect(), &rows, Kernels::detect().dot);
        for p in 0..40 {
            let copies: Vec<u32> = (p..2000).step_by(40).map(|i| slots[i]).collect();
            assert!(copies.is_sorted(), "point {p}: {copies:?}");
        }
    }

    #[test]
    fn identical_rows_are_ordered_without_fault() {
        let rows = vec![vec![0.5f32; 8]; 1000];
        let order = locality_order(&rows, Kernels::detect().dot);
        let mut seen = order;
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
    }
}
