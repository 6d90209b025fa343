//! Risk aggregation: the rules' contributions for one event become a
//! `risk_score` (0..=100), a `risk_level` and `risk_flags`.
//!
//! Contributions combine like independent probabilities ("noisy OR"): each rule
//! that fired with score `s` and weight `w` leaves `1 - min(1, w*s/100)` of the
//! risk unexplained, and the score is what all of them together explain:
//! `100 * (1 - prod(1 - w_i*s_i/100))`. Two medium signals make a high one, no
//! number of signals passes 100, and a weight-0 rule never moves the score.
//! Levels come from the policy's bands ([`RiskBands::level`](crate::policy::RiskBands::level)).

use authpulse_rules_sdk::Verdict;

/// Score and flags of one event from its rules' verdicts, in policy order.
/// Bit `r` of the flags is set when rule `r` fired.
#[inline]
pub fn combine<'a>(verdicts: impl Iterator<Item = (f32, &'a Verdict)>) -> (u8, u32) {
    let mut unexplained = 1.0f32;
    let mut flags = 0u32;
    for (r, (weight, verdict)) in verdicts.enumerate() {
        if verdict.is_hit() {
            flags |= 1 << r;
            unexplained *= 1.0 - (weight * verdict.score / 100.0).clamp(0.0, 1.0);
        }
    }
    (((1.0 - unexplained) * 100.0).round() as u8, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(score: f32) -> Verdict {
        Verdict { score, reason: 0 }
    }

    #[test]
    fn noisy_or_combination() {
        let none = Verdict::NONE;
        assert_eq!(combine([(1.0, &none), (1.0, &none)].into_iter()), (0, 0));
        let (a, b) = (hit(40.0), hit(75.0));
        // 1 - 0.6 * 0.25 = 0.85
        assert_eq!(
            combine([(1.0, &a), (1.0, &none), (1.0, &b)].into_iter()),
            (85, 0b101)
        );
        // Weights scale contributions and saturate at 1.
        assert_eq!(combine([(0.5, &a)].into_iter()), (20, 1));
        assert_eq!(combine([(3.0, &b)].into_iter()), (100, 1));
        assert_eq!(combine([(0.0, &b)].into_iter()), (0, 1));
    }
}
