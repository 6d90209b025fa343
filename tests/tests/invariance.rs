//! The main correctness property: results depend only on the set of events, not
//! on how they are cut into batches or reordered within the allowed lateness.

mod common;

use common::{comparable, generate_kinds, score_default};
use proptest::prelude::*;

/// Generated once: 4 days, 300 users, one attack of each kind.
fn data() -> &'static [u8] {
    static DATA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DATA.get_or_init(|| generate_kinds(300, 4, 60_000, 6, 11, &[]).0)
}

fn reference() -> &'static common::Outcome {
    static OUT: std::sync::OnceLock<common::Outcome> = std::sync::OnceLock::new();
    OUT.get_or_init(|| score_default(data(), 4096))
}

#[test]
fn reference_run_is_meaningful() {
    let r = reference();
    assert!(r.summary.events_scored > 55_000, "{:?}", r.summary);
    assert!(
        r.summary.alerts >= 2,
        "the hidden attacks alert: {:?}",
        r.summary
    );
    assert!(
        r.summary.rule_hits.values().all(|&h| h > 0),
        "every rule fires somewhere: {:?}",
        r.summary.rule_hits
    );
    assert_eq!(r.collected.rows.len() as u64, r.summary.events_scored);
}

/// Displaces every line by at most `max_shift` positions (sorting by index
/// plus a random offset), which keeps each line well within the 5-minute
/// lateness in this data (a few seconds to a minute between lines).
fn shuffle_locally(data: &[u8], seed: u64, max_shift: usize) -> Vec<u8> {
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut state = seed | 1;
    let mut keyed: Vec<(usize, &[u8])> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (i + (state as usize % (max_shift + 1)), *l)
        })
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    let mut out = Vec::with_capacity(data.len());
    for (_, l) in keyed {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn batch_size_does_not_change_results(batch_size in prop_oneof![Just(1usize), 2usize..100, 100usize..5000]) {
        let r = reference();
        let other = score_default(data(), batch_size);
        prop_assert_eq!(comparable(&other.summary), comparable(&r.summary));
        prop_assert!(other.collected.rows == r.collected.rows, "scored rows differ at batch size {}", batch_size);
        prop_assert_eq!(&other.collected.alerts, &r.collected.alerts);
    }

    #[test]
    fn arrival_order_within_lateness_does_not_change_results(seed in any::<u64>(), batch_size in 1usize..3000) {
        let r = reference();
        let shuffled = shuffle_locally(data(), seed, 8);
        prop_assume!(shuffled != data());
        let other = score_default(&shuffled, batch_size);
        prop_assert_eq!(other.summary.late, 0);
        prop_assert_eq!(comparable(&other.summary), comparable(&r.summary));
        prop_assert!(other.collected.rows == r.collected.rows, "scored rows differ after reordering");
        prop_assert_eq!(&other.collected.alerts, &r.collected.alerts);
    }
}
