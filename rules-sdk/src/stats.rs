//! Small statistics for rules that weigh an event against an entity's own
//! rate: how surprising is it to see `k` new computers in a window when the
//! user usually sees `mean` of them?
//!
//! Everything here is plain arithmetic (logarithm and exponential included,
//! by series), so a rule gives bit-identical results natively, in its unit
//! tests and in the sandbox: the platform's `libm` differs between targets in
//! the last bits, which would make a score at a threshold differ too.

const LN_2: f64 = core::f64::consts::LN_2;
const LN_10: f64 = core::f64::consts::LN_10;

/// Natural logarithm, for `x > 0` (`-inf` for 0, NaN below).
pub fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    // x = m * 2^e with m in [1, 2): ln x = e ln 2 + ln m, and
    // ln m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...) with s = (m-1)/(m+1) < 1/3.
    let (mut m, mut e) = (x, 0i32);
    if m < f64::MIN_POSITIVE {
        m *= 2f64.powi(54);
        e -= 54;
    }
    let bits = m.to_bits();
    e += ((bits >> 52) & 0x7ff) as i32 - 1023;
    let m = f64::from_bits((bits & !(0x7ff << 52)) | (1023 << 52));
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 40.0 {
        sum += term / k;
        term *= s2;
        k += 2.0;
    }
    f64::from(e) * LN_2 + 2.0 * sum
}

/// `e^x` (0 below about -745, infinity above about 709).
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.7 {
        return f64::INFINITY;
    }
    if x < -745.0 {
        return 0.0;
    }
    // x = k ln 2 + r, |r| <= ln 2 / 2: e^x = 2^k e^r, e^r by its series.
    // ln 2 in two parts (Cody and Waite), so that k ln 2 is exact enough
    // for r to keep its precision when k is large.
    const LN_2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN_2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let k = (x / LN_2).round();
    let r = (x - k * LN_2_HI) - k * LN_2_LO;
    let mut term = 1.0;
    let mut sum = 1.0;
    for i in 1..=20 {
        term *= r / f64::from(i);
        sum += term;
    }
    let k = k as i32;
    // 2^k in two steps, so that neither factor leaves the normal range.
    sum * 2f64.powi(k / 2) * 2f64.powi(k - k / 2)
}

/// `log2(x)`.
pub fn log2(x: f64) -> f64 {
    ln(x) / LN_2
}

/// `P(N >= k)` for `N ~ Poisson(mean)`: the chance of at least `k` events
/// in a window that usually holds `mean`. Exact to a relative 1e-6 for the
/// tails rules care about (tiny probabilities do not round to 0 or 1).
pub fn poisson_tail(k: u32, mean: f32) -> f32 {
    if k == 0 {
        return 1.0;
    }
    let mean = f64::from(mean.max(1e-9));
    if f64::from(k) <= mean {
        // The bulk: 1 - P(N < k), summed from below.
        let mut term = exp(-mean);
        let mut below = term;
        for i in 1..k {
            term *= mean / f64::from(i);
            below += term;
        }
        return (1.0 - below).clamp(0.0, 1.0) as f32;
    }
    // The upper tail: sum P(N = i) for i >= k, from its first term, in logs
    // (mean^k / k! underflows long before the sum matters).
    let ln_mean = ln(mean);
    let mut log_term = -mean + f64::from(k) * ln_mean - ln_factorial(k);
    let mut sum = 0.0f64;
    let first = log_term;
    let mut i = k;
    loop {
        let term = exp(log_term - first);
        sum += term;
        if term < 1e-12 * sum || i > k + 10_000 {
            break;
        }
        i += 1;
        log_term += ln_mean - ln(f64::from(i));
    }
    exp(first + ln(sum)).clamp(0.0, 1.0) as f32
}

/// `P(N >= k)` for `N` negative binomial with `mean` and `shape` (variance
/// `mean + mean^2 / shape`): the count a gamma-Poisson model predicts when
/// the rate itself is uncertain, as it is from a short history (`shape` is
/// then small and the tail heavy). A large `shape` is nearly Poisson.
pub fn negbin_tail(k: u32, shape: f32, mean: f32) -> f32 {
    if k == 0 {
        return 1.0;
    }
    let (r, m) = (f64::from(shape.max(1e-6)), f64::from(mean.max(1e-9)));
    let q = m / (r + m);
    // ln P(N = 0) = r ln(r / (r + m)); P(j + 1) = P(j) (j + r) / (j + 1) q.
    let ln_p0 = r * ln(r / (r + m));
    if f64::from(k) <= m {
        let mut term = exp(ln_p0);
        let mut below = term;
        for j in 0..k - 1 {
            term *= (f64::from(j) + r) / f64::from(j + 1) * q;
            below += term;
        }
        return (1.0 - below).clamp(0.0, 1.0) as f32;
    }
    // The upper tail from its first term, in logs.
    let ln_q = ln(q);
    let mut first = ln_p0;
    for j in 0..k {
        first += ln((f64::from(j) + r) / f64::from(j + 1)) + ln_q;
    }
    let (mut sum, mut term, mut j) = (0.0f64, 1.0f64, k);
    loop {
        sum += term;
        term *= (f64::from(j) + r) / f64::from(j + 1) * q;
        j += 1;
        if term < 1e-12 * sum || j > k + 100_000 {
            break;
        }
    }
    exp(first + ln(sum)).clamp(0.0, 1.0) as f32
}

/// Scores as evidence: a score `s` is worth `-EVIDENCE_SCALE * log10(1 -
/// s/100)` decades (a likelihood ratio of 10 to that power, attack against
/// benign), so the host's noisy-OR of two scores adds their decades, and an
/// entity's accumulated risk is the evidence of its recent events added up.
/// With the default alert level (HIGH, 60) an entity alerts at 6 decades.
pub const EVIDENCE_SCALE: f32 = 15.0;

/// The score worth `decades` of evidence (a likelihood ratio of 10^decades):
/// 2 decades score 26, 6 score 60, 12 score 84. Negative evidence scores 0.
pub fn score_of_evidence(decades: f32) -> f32 {
    if decades <= 0.0 {
        return 0.0;
    }
    (100.0 * (1.0 - exp(-f64::from(decades / EVIDENCE_SCALE) * LN_10))) as f32
}

/// The decades of evidence `score` stands for (the inverse of
/// [`score_of_evidence`]).
pub fn evidence_of_score(score: f32) -> f32 {
    if score >= 100.0 {
        return f32::INFINITY;
    }
    (-f64::from(EVIDENCE_SCALE) * ln(1.0 - f64::from(score.max(0.0)) / 100.0) / LN_10) as f32
}

/// `log10(x)`.
pub fn log10(x: f64) -> f64 {
    ln(x) / LN_10
}

/// `-log10(p)`: 1 for one chance in ten, 3 for one in a thousand; capped at
/// 30 for `p` that rounds to 0.
pub fn surprise(p: f32) -> f32 {
    if p <= 1e-30 {
        30.0
    } else {
        (-ln(f64::from(p)) / LN_10).clamp(0.0, 30.0) as f32
    }
}

fn ln_factorial(n: u32) -> f64 {
    (2..=n).map(|i| ln(f64::from(i))).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negbin_tails_are_geometric_at_shape_one_and_poisson_at_large_shapes() {
        // Shape 1, mean 1: P(N >= k) = 2^-k.
        for k in [1u32, 3, 10, 30] {
            let p = negbin_tail(k, 1.0, 1.0);
            assert!((p / 0.5f32.powi(k as i32) - 1.0).abs() < 1e-3, "{k}: {p}");
        }
        assert_eq!(negbin_tail(0, 0.5, 3.0), 1.0);
        for (k, mean) in [(2u32, 5.0f32), (8, 0.3), (40, 10.0)] {
            let (nb, po) = (negbin_tail(k, 1e5, mean), poisson_tail(k, mean));
            assert!((nb / po - 1.0).abs() < 1e-2, "{k} {mean}: {nb} vs {po}");
        }
        // A short history (small shape) makes a surprise smaller.
        assert!(negbin_tail(5, 0.5, 0.2) > 10.0 * poisson_tail(5, 0.2));
    }

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() <= 1e-5 * b.abs().max(1e-30)
    }

    #[test]
    fn logarithm_and_exponential_match_the_platform() {
        for x in [
            1e-300, 1e-20, 0.001, 0.5, 1.0, 1.5, 2.0, 10.0, 12345.678, 1e300,
        ] {
            let (ours, platform) = (ln(x), x.ln());
            assert!(
                (ours - platform).abs() <= 1e-14 * platform.abs().max(1.0),
                "ln {x}: {ours} {platform}"
            );
        }
        for x in [-700.0, -20.0, -1.0, -1e-9, 0.0, 0.3, 1.0, 5.5, 300.0, 700.0] {
            let (ours, platform) = (exp(x), x.exp());
            assert!(
                (ours - platform).abs() <= 1e-14 * platform,
                "exp {x}: {ours} {platform}"
            );
        }
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert!(ln(-1.0).is_nan());
        assert_eq!(exp(-1000.0), 0.0);
        assert!((log2(8.0) - 3.0).abs() < 1e-15);
        assert!((log10(1000.0) - 3.0).abs() < 1e-15);
    }

    #[test]
    fn evidence_adds_up_under_noisy_or() {
        assert_eq!(score_of_evidence(0.0), 0.0);
        assert_eq!(score_of_evidence(-1.0), 0.0);
        assert!((score_of_evidence(6.0) - 60.19).abs() < 0.01);
        assert!((evidence_of_score(score_of_evidence(2.5)) - 2.5).abs() < 1e-4);
        // Two hits of 3 decades combine (1 - (1-a)(1-b)) into one of 6.
        let a = score_of_evidence(3.0) / 100.0;
        let both = 100.0 * (1.0 - (1.0 - a) * (1.0 - a));
        assert!((both - score_of_evidence(6.0)).abs() < 1e-3);
    }

    #[test]
    fn poisson_tail_matches_direct_sums() {
        assert_eq!(poisson_tail(0, 3.0), 1.0);
        // P(N >= 1) = 1 - e^-m
        assert!(close(poisson_tail(1, 0.5), 1.0 - (-0.5f64).exp()));
        // P(N >= 3 | 0.15) = 1 - e^-m (1 + m + m^2/2)
        let m = 0.15f64;
        let expected = 1.0 - (-m).exp() * (1.0 + m + m * m / 2.0);
        assert!(
            close(poisson_tail(3, 0.15), expected),
            "{}",
            poisson_tail(3, 0.15)
        );
        // Bulk side: P(N >= 2 | 10) = 1 - 11 e^-10
        assert!(close(poisson_tail(2, 10.0), 1.0 - 11.0 * (-10.0f64).exp()));
        // Far tail: P(N >= 10 | 0.5), summed term by term.
        let mut term = (-0.5f64).exp();
        let mut tail = 0.0;
        for i in 0..60 {
            if i >= 10 {
                tail += term;
            }
            term *= 0.5 / f64::from(i + 1);
        }
        assert!(
            close(poisson_tail(10, 0.5), tail),
            "{} vs {tail}",
            poisson_tail(10, 0.5)
        );
        // Beyond f32: 0, which is the most surprising there is.
        assert_eq!(surprise(poisson_tail(40, 0.01)), 30.0);
        assert!((surprise(0.001) - 3.0).abs() < 1e-4);
    }
}
