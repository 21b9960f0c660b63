//! exp and log over slices, for the per-observation loops of the count models: libm's
//! functions take one value per call (5-8 ns each, most of a negative binomial fit), while
//! these are branch-free polynomials that the compiler vectorises, four values at a time
//! in callers compiled for AVX2 (chosen at run time), two otherwise. No fused
//! multiply-adds, so both round the same way: results do not depend on the machine.
//! Accurate to 2 units in the last place (tested against std over the whole range).

const LN2_HI: f64 = 6.931_471_803_691_238e-1; // ln 2 with 32 trailing zero bits
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10; // ln 2 - LN2_HI
/// 1.5 * 2^52: adding it rounds a double below 2^51 in magnitude to a whole number, held
/// in the low bits of the sum.
const SHIFTER: f64 = 6_755_399_441_055_744.0;

/// e^x of every value, in place; inlined, so vectorised as wide as the caller is compiled
/// for.
#[inline(always)]
pub fn exp_slice(v: &mut [f64]) {
    for x in v.iter_mut() {
        *x = exp(*x);
    }
}

/// Natural log of every value, in place; inlined as [`exp_slice`].
#[inline(always)]
pub fn ln_slice(v: &mut [f64]) {
    for x in v.iter_mut() {
        *x = ln(*x);
    }
}

/// e^x = 2^n e^r with n = round(x / ln 2) and |r| <= ln(2) / 2 (Cody and Waite), e^r by
/// its Taylor series to r^13 (truncation below 2e-17 relative; Estrin's scheme). 2^n is applied as two
/// factors, so that results between 2^-1074 and 2^-1022 underflow gradually, as libm's.
#[inline(always)]
fn exp(x: f64) -> f64 {
    let x = x.clamp(-746.0, 710.0);
    let shifted = x * std::f64::consts::LOG2_E + SHIFTER;
    let n = shifted - SHIFTER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Estrin's scheme: a shallow tree of products instead of Horner's chain of 13, so that
    // the vector units overlap more of its steps.
    let r2 = r * r;
    let r4 = r2 * r2;
    let pair = |a: f64, b: f64| 1.0 / a + r / b;
    let p = (pair(1.0, 1.0) + r2 * pair(2.0, 6.0))
        + r4 * (pair(24.0, 120.0) + r2 * pair(720.0, 5_040.0))
        + r4 * r4
            * ((pair(40_320.0, 362_880.0) + r2 * pair(3_628_800.0, 39_916_800.0))
                + r4 * pair(479_001_600.0, 6_227_020_800.0));
    // The whole number n sits in the low bits of `shifted`; split it as n1 + n2.
    let n_int = shifted.to_bits().wrapping_sub(SHIFTER.to_bits()) as i64;
    let n1 = n_int >> 1;
    let n2 = n_int - n1;
    let scale = |k: i64| f64::from_bits(((k + 1023) as u64) << 52);
    p * scale(n1) * scale(n2)
}

/// log x = k ln 2 + log m with x = 2^k m, sqrt(1/2) <= m < sqrt(2), and
/// log m = 2 atanh(f), f = (m - 1) / (m + 1), by its series to f^25 (|f| < 0.172:
/// truncation below 1e-20 relative). Zero, negative, infinite and NaN values give what
/// libm gives; subnormal ones are scaled by 2^54 first.
#[inline(always)]
fn ln(x: f64) -> f64 {
    let subnormal = x < f64::MIN_POSITIVE;
    let scaled = if subnormal {
        x * 18_014_398_509_481_984.0
    } else {
        x
    };
    let bits = scaled.to_bits();
    let mut k = ((bits >> 52) & 0x7ff) as i64 - 1023 - if subnormal { 54 } else { 0 };
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let high = m > std::f64::consts::SQRT_2;
    m = if high { 0.5 * m } else { m };
    k += i64::from(high);
    let f = (m - 1.0) / (m + 1.0);
    let s = f * f;
    let s2 = s * s;
    let s4 = s2 * s2;
    let pair = |a: f64, b: f64| 1.0 / a + s / b;
    let q = (pair(3.0, 5.0) + s2 * pair(7.0, 9.0))
        + s4 * (pair(11.0, 13.0) + s2 * pair(15.0, 17.0))
        + s4 * s4 * (pair(19.0, 21.0) + s2 * pair(23.0, 25.0));
    // k as a double through the shifter (a vector conversion of i64 needs AVX-512).
    let kf = f64::from_bits(SHIFTER.to_bits().wrapping_add(k as u64)) - SHIFTER;
    let log_m = 2.0 * f + 2.0 * f * s * q;
    let value = kf * LN2_HI + (log_m + kf * LN2_LO);
    if x > 0.0 && x < f64::INFINITY {
        value
    } else if x == 0.0 {
        f64::NEG_INFINITY
    } else if x == f64::INFINITY {
        x
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slice functions compiled for AVX2 (inlined into an AVX2 function, as in their
    /// callers), when the CPU has it.
    fn wide(v: &mut [f64], ln: bool) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            unsafe fn run(v: &mut [f64], ln: bool) {
                if ln {
                    ln_slice(v)
                } else {
                    exp_slice(v)
                }
            }
            // SAFETY: the CPU has AVX2.
            return unsafe { run(v, ln) };
        }
        if ln {
            ln_slice(v)
        } else {
            exp_slice(v)
        }
    }

    /// Distance in units of the last place.
    fn ulps(a: f64, b: f64) -> f64 {
        if a == b {
            return 0.0;
        }
        (a - b).abs() / (b.abs() * f64::EPSILON).max(f64::from_bits(1))
    }

    fn grid(lo: f64, hi: f64, n: usize) -> Vec<f64> {
        (0..=n)
            .map(|i| lo + (hi - lo) * i as f64 / n as f64)
            .collect()
    }

    #[test]
    fn exp_agrees_with_std_over_the_whole_range() {
        let mut xs = grid(-745.0, 709.7, 400_001);
        xs.extend(grid(-1.0, 1.0, 100_001));
        xs.extend([0.0, -0.0, 1e-300, -1e-300, 1e-17]);
        let mut ours = xs.clone();
        wide(&mut ours, false);
        let mut body = xs.clone();
        exp_slice(&mut body);
        for ((&x, &e), &b) in xs.iter().zip(&ours).zip(&body) {
            assert_eq!(e.to_bits(), b.to_bits(), "dispatch at {x}");
            let want = x.exp();
            if want >= f64::MIN_POSITIVE {
                assert!(ulps(e, want) <= 2.0, "exp({x}) = {e}, std {want}");
            } else {
                // Subnormal results: within a few of the smallest steps.
                assert!((e - want).abs() <= 4.0 * f64::from_bits(1), "exp({x})");
            }
        }
        let mut edges = [
            710.0,
            1000.0,
            f64::INFINITY,
            -746.0,
            -1e4,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        exp_slice(&mut edges);
        assert_eq!(&edges[..3], &[f64::INFINITY; 3]);
        assert_eq!(&edges[3..6], &[0.0; 3]);
        assert!(edges[6].is_nan());
    }

    #[test]
    fn ln_agrees_with_std_over_the_whole_range() {
        let mut xs: Vec<f64> = grid(-744.0, 709.0, 400_001)
            .iter()
            .map(|e| e.exp())
            .collect();
        xs.extend(grid(0.5, 2.0, 100_001));
        xs.extend([
            1.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::from_bits(1),
            1.0 + f64::EPSILON,
        ]);
        let mut ours = xs.clone();
        wide(&mut ours, true);
        let mut body = xs.clone();
        ln_slice(&mut body);
        for ((&x, &l), &b) in xs.iter().zip(&ours).zip(&body) {
            assert_eq!(l.to_bits(), b.to_bits(), "dispatch at {x}");
            let want = x.ln();
            assert!(ulps(l, want) <= 2.0, "ln({x}) = {l}, std {want}");
        }
        let mut edges = [0.0, -0.0, -1.0, f64::INFINITY, f64::NAN];
        ln_slice(&mut edges);
        assert_eq!(&edges[..2], &[f64::NEG_INFINITY; 2]);
        assert!(edges[2].is_nan() && edges[4].is_nan());
        assert_eq!(edges[3], f64::INFINITY);
    }
}
