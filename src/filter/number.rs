//! Numbers as filters compare them: by exact numeric value across JSON's integers and
//! floats (as SQLite and Qdrant do), so that `3 == 3.0`, `3 > 2.5`, and `i64::MAX` differs
//! from the float `9223372036854775807.0` (which is 2^63). Casting one side to the other's
//! type would round (an i64 to f64 above 2^53) or saturate (a float bound to i64), and
//! either changes answers.

use std::cmp::Ordering;

use serde_json::Number;

/// A JSON number's exact value: every i64 and u64 as an integer, anything else as the
/// f64 it parsed to. Never NaN or infinite (JSON has neither), so the order is total;
/// -0.0 equals 0.0.
#[derive(Clone, Copy, Debug)]
pub enum Num {
    /// An integer within u64 or i64 range.
    Int(i128),
    /// A finite float.
    Float(f64),
}

impl Num {
    /// The value of a JSON number.
    pub fn of(n: &Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i.into())
        } else if let Some(u) = n.as_u64() {
            Num::Int(u.into())
        } else {
            // serde_json holds a non-integer as a finite f64 (it has no NaN or inf).
            Num::Float(n.as_f64().unwrap_or(0.0))
        }
    }
}

/// Floats at or beyond this magnitude lie beyond every integer a `Num` holds (|i| ≤
/// 2^64), and floats below it truncate to an i128 exactly.
const BEYOND_INTS: f64 = 36_893_488_147_419_103_232.0; // 2^65

/// `i` against `x`, exactly.
fn cmp_int_float(i: i128, x: f64) -> Ordering {
    if x >= BEYOND_INTS {
        return Ordering::Less;
    }
    if x <= -BEYOND_INTS {
        return Ordering::Greater;
    }
    let whole = x.trunc();
    // `whole` is an integer below 2^65 in magnitude: the cast is exact. When `i` equals
    // it, the fraction `x` drops decides, and comparing `whole` with `x` sees it.
    match i.cmp(&(whole as i128)) {
        Ordering::Equal => whole.partial_cmp(&x).unwrap_or(Ordering::Equal),
        unequal => unequal,
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Num) -> Ordering {
        match (*self, *other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            // Never NaN, so partial_cmp always answers (and -0.0 == 0.0).
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            (Num::Int(a), Num::Float(b)) => cmp_int_float(a, b),
            (Num::Float(a), Num::Int(b)) => cmp_int_float(b, a).reverse(),
        }
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Num) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Num {
    fn eq(&self, other: &Num) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Num {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2^63: what the i64::MAX digits typed as a float, 9.223372036854775807e18, parse to.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    /// 2^64: what u64::MAX typed as a float parses to.
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;

    fn int(i: i128) -> Num {
        Num::Int(i)
    }

    fn float(x: f64) -> Num {
        Num::Float(x)
    }

    /// An independent model of `i` against `x`: `i as f64` rounds to nearest, so when it
    /// differs from `x` it is on the same side of `x` as `i`; when it equals `x`, `x` is
    /// an integer below 2^65 in magnitude and converts exactly.
    fn model(i: i128, x: f64) -> Ordering {
        let rounded = i as f64;
        if rounded != x {
            return rounded.partial_cmp(&x).unwrap();
        }
        i.cmp(&(x as i128))
    }

    #[test]
    fn integers_and_floats_compare_by_value() {
        assert_eq!(int(3), float(3.0));
        assert!(int(3) > float(2.5));
        assert!(int(-3) < float(-2.5));
        assert!(int(-2) > float(-2.5));
        assert_eq!(float(-0.0), float(0.0));
        assert_eq!(int(0), float(-0.0));
        let max = i64::MAX as i128;
        assert!(int(max) < float(TWO_63));
        assert_eq!(int(max + 1), float(TWO_63));
        assert!(int(u64::MAX as i128) < float(TWO_64));
        assert!(int(i64::MIN as i128) == float(-TWO_63));
        assert!(int(i64::MIN as i128) > float(-1e300));
        assert!(int(u64::MAX as i128) < float(f64::MAX));
        assert!(int(i64::MIN as i128) > float(f64::MIN));
        assert!(float(f64::MIN_POSITIVE) > int(0));
        assert!(float(-5e-324) < int(0));
        // 2^53 + 1 has no f64: a cast would make it equal 2^53.
        assert!(int((1 << 53) + 1) > float(9007199254740992.0));
    }

    fn finite_f64() -> impl Strategy<Value = f64> {
        use prop::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
        POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
    }

    fn any_num() -> impl Strategy<Value = Num> {
        let special_floats = prop::sample::select(vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            f64::MIN,
            TWO_63,
            -TWO_63,
            TWO_64,
            9007199254740992.0,
            9_007_199_254_740_994.0,
            36_893_488_147_419_103_232.0,
        ]);
        let special_ints = prop::sample::select(vec![
            0i128,
            1,
            -1,
            i64::MAX as i128,
            i64::MIN as i128,
            u64::MAX as i128,
            (1 << 53) + 1,
            1 << 63,
        ]);
        prop_oneof![
            special_floats.prop_map(Num::Float),
            special_ints.prop_map(Num::Int),
            any::<i64>().prop_map(|i| Num::Int(i.into())),
            any::<u64>().prop_map(|u| Num::Int(u.into())),
            finite_f64().prop_map(Num::Float),
            (-1000i64..1000).prop_map(|i| Num::Float(i as f64 / 4.0)),
        ]
    }

    proptest! {
        #[test]
        fn the_order_matches_the_model_and_is_total(a in any_num(), b in any_num(), c in any_num()) {
            let expected = match (a, b) {
                (Num::Int(x), Num::Int(y)) => x.cmp(&y),
                (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap(),
                (Num::Int(x), Num::Float(y)) => model(x, y),
                (Num::Float(x), Num::Int(y)) => model(y, x).reverse(),
            };
            prop_assert_eq!(a.cmp(&b), expected);
            prop_assert_eq!(b.cmp(&a), expected.reverse());
            if a <= b && b <= c {
                prop_assert!(a <= c);
            }
        }
    }
}
