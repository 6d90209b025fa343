//! The main correctness property: results depend only on the set of events, not
//! on how they are cut into batches, reordered within the allowed lateness,
//! parsed by how many threads, or interrupted by a restart from a state
//! snapshot.

mod common;

use std::sync::atomic::AtomicBool;

use authpulse_engine::input::{LineReader, MAX_LINE_DEFAULT};
use authpulse_engine::pipeline::{self, Outputs, Pipeline, PipelineOptions, Restore, Summary};
use authpulse_engine::policy::Policy;
use authpulse_engine::rules::Engine;
use authpulse_engine::shards::Snapshot;
use authpulse_engine::sinks::Collect;
use authpulse_engine::snapshot::{self, SnapshotError};
use common::{comparable, detailed_rules, generate_kinds, score_default, score_parsed_by};
use proptest::prelude::*;

/// Generated once: 6 days, 200 users, one attack of each kind from the
/// fifth day on (once the accounts have the days of history `slow_spread`
/// judges the last ones against).
fn data() -> &'static [u8] {
    static DATA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        use authpulse_generator::Kind::*;
        let kinds = [Spray, Burst, Chain, Stealth, Rare, FanIn, OffHours];
        generate_kinds(200, 6, 60_000, 7, 11, &kinds, 4).0
    })
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
    // Every rule that judges LANL lines fires somewhere; those that judge
    // only what richer records say are quiet on them.
    let detailed = detailed_rules();
    assert!(
        r.summary
            .rule_hits
            .iter()
            .all(|(id, &h)| (h > 0) != detailed.contains(id)),
        "every rule fires somewhere, but the richer records' ones: {:?}",
        r.summary.rule_hits
    );
    assert_eq!(r.collected.rows.len() as u64, r.summary.events_scored);
}

/// `data` with a header, and at random places blank lines, broken lines,
/// JSON records (one with escaped names) and the full LANL record: every
/// path a line takes through parsing.
fn with_every_kind_of_line(data: &[u8], seed: u64) -> Vec<u8> {
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut out = b"time,user,computer\n".to_vec();
    for line in data.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line);
        let time = line.split(|&b| b == b',').next().unwrap_or(b"0");
        let time = std::str::from_utf8(time).unwrap_or("0");
        match next() % 1000 {
            0 => out.extend_from_slice(b"   \n"),
            1 => out.extend_from_slice(b"not,a\n"),
            2 => out.extend_from_slice(format!("{time},U1@DOM1,\n").as_bytes()),
            3 => out.extend_from_slice(
                format!("{time},U9@DOM1,U9@DOM1,C17,C18,NTLM,Network,LogOn,Fail\n").as_bytes(),
            ),
            4 => out.extend_from_slice(
                format!(
                    r#"{{"event_time":"{}","user_id":"U\u0037","computer_id":"C\"7\""}}"#,
                    rfc3339(time.parse().unwrap_or(0))
                )
                .as_bytes(),
            ),
            5 => out.extend_from_slice(b"{\"event_time\":\n"),
            _ => continue,
        }
        if out.last() != Some(&b'\n') {
            out.push(b'\n');
        }
    }
    out
}

/// LANL time `t` (seconds from 2024-01-01, within the month) in RFC 3339.
fn rfc3339(t: u64) -> String {
    let (day, rest) = (t / 86_400, t % 86_400);
    format!(
        "2024-01-{:02}T{:02}:{:02}:{:02}Z",
        day + 1,
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Delays every line by at most `max_shift_s` seconds of event time
/// (sorting by its time plus a random offset), which keeps each line well
/// within the 5-minute lateness however sparse the data (quiet nights have
/// a minute between lines).
fn shuffle_locally(data: &[u8], seed: u64, max_shift_s: u64) -> Vec<u8> {
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut state = seed | 1;
    let mut keyed: Vec<(u64, usize, &[u8])> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let time: u64 = std::str::from_utf8(l.split(|&b| b == b',').next().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            (time + state % (max_shift_s + 1), i, *l)
        })
        .collect();
    keyed.sort_by_key(|&(k, i, _)| (k, i));
    let mut out = Vec::with_capacity(data.len());
    for (_, _, l) in keyed {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

/// Scores `data` in two processes' worth: the first pipeline reads up to the
/// line boundary at or after `cut`, writes a snapshot and is dropped without
/// finishing (as a killed process would be); a second one restores it and
/// reads the rest. Outputs of both go to the same collectors.
fn score_with_restart(data: &[u8], cut: usize, batch_size: usize) -> (Summary, Collect, u64) {
    score_with_restart_through(data, cut, batch_size, |snapshot| snapshot)
}

/// [`score_with_restart`], the snapshot going through `between` on its way.
fn score_with_restart_through(
    data: &[u8],
    cut: usize,
    batch_size: usize,
    between: impl Fn(Vec<u8>) -> Vec<u8>,
) -> (Summary, Collect, u64) {
    let cut = data[cut..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(data.len(), |i| cut + i + 1);
    let (mut dead, mut alerts, mut rows) =
        (Collect::default(), Collect::default(), Collect::default());
    let options = PipelineOptions {
        batch_size,
        ..PipelineOptions::default()
    };
    let stop = AtomicBool::new(false);
    let mut snapshot = Vec::new();
    {
        let mut first = Pipeline::new(
            Policy::builtin(),
            options.clone(),
            Outputs {
                dead_letters: &mut dead,
                alerts: &mut alerts,
                scored: &mut rows,
                received: None,
            },
        )
        .unwrap();
        let mut lines = LineReader::new(&data[..cut], MAX_LINE_DEFAULT);
        pipeline::consume(&mut first, &mut lines, &stop, |_, _| {}).unwrap();
        first.write_snapshot(&mut snapshot).unwrap();
    }
    let snapshot = between(snapshot);
    let mut second = Pipeline::new(
        Policy::builtin(),
        options,
        Outputs {
            dead_letters: &mut dead,
            alerts: &mut alerts,
            scored: &mut rows,
            received: None,
        },
    )
    .unwrap();
    let meta = second
        .restore_snapshot(&mut snapshot.as_slice(), Restore::Resume)
        .unwrap();
    assert_eq!(
        meta.events_read,
        data[..cut].iter().filter(|&&b| b == b'\n').count() as u64
    );
    let mut lines = LineReader::new(&data[cut..], MAX_LINE_DEFAULT);
    pipeline::consume(&mut second, &mut lines, &stop, |_, _| {}).unwrap();
    let summary = second.finish().unwrap();
    let collected = Collect {
        dead_letters: dead.dead_letters,
        alerts: alerts.alerts,
        rows: rows.rows,
    };
    (summary, collected, snapshot.len() as u64)
}

#[test]
fn a_snapshot_is_refused_when_it_cannot_be_taken_back() {
    let mut dead = Collect::default();
    let mut alerts = Collect::default();
    let mut rows = Collect::default();
    let mut fresh = || {
        Pipeline::new(
            Policy::builtin(),
            PipelineOptions::default(),
            Outputs {
                dead_letters: &mut dead,
                alerts: &mut alerts,
                scored: &mut rows,
                received: None,
            },
        )
        .unwrap()
        .restore_snapshot(&mut b"APSTATE\0\x09\0\0\0rest".as_slice(), Restore::Resume)
        .map(|_| ())
    };
    let error = fresh().unwrap_err();
    assert!(
        matches!(
            error,
            SnapshotError::Version {
                found: 9,
                supported: snapshot::FORMAT_VERSION
            }
        ),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "state snapshot format version 9, but this build reads versions 2 to {}: start without it \
             (the state is rebuilt from the input) or with the release that wrote it",
            snapshot::FORMAT_VERSION
        )
    );
    let mut pipeline = Pipeline::new(
        Policy::builtin(),
        PipelineOptions::default(),
        Outputs {
            dead_letters: &mut dead,
            alerts: &mut alerts,
            scored: &mut rows,
            received: None,
        },
    )
    .unwrap();
    let not_one =
        pipeline.restore_snapshot(&mut b"time,user,computer\n".as_slice(), Restore::Resume);
    assert!(matches!(not_one, Err(SnapshotError::NotASnapshot)));
    let mut snapshot = Vec::new();
    pipeline.write_snapshot(&mut snapshot).unwrap();
    let truncated =
        pipeline.restore_snapshot(&mut &snapshot[..snapshot.len() - 3], Restore::Resume);
    assert!(
        matches!(truncated, Err(SnapshotError::Decode(_))),
        "{truncated:?}"
    );
    // Once events were read, the state is the pipeline's own.
    pipeline
        .push_line(1, authpulse_engine::input::Line::Complete(b"1,U1,C1"))
        .unwrap();
    let late = pipeline.restore_snapshot(&mut snapshot.as_slice(), Restore::Resume);
    assert!(matches!(late, Err(SnapshotError::NotFresh)), "{late:?}");
}

/// A user's part of the state, by a stand-in for the shard its name
/// hashes to.
fn in_first_part(name: &str) -> bool {
    name.bytes().map(u32::from).sum::<u32>() % 2 == 0
}

/// Splits a snapshot in two by user and joins the parts the other way round
/// (the second part receiving the first), so that every id is renumbered.
fn split_and_join(snapshot: Vec<u8>) -> Vec<u8> {
    let whole = Snapshot::read(&mut snapshot.as_slice()).unwrap();
    let all: Vec<String> = whole.users().map(str::to_string).collect();
    let first = Snapshot::read(&mut snapshot.as_slice())
        .unwrap()
        .split(in_first_part);
    let second = whole.split(|name| !in_first_part(name));
    let (a, b): (Vec<&str>, Vec<&str>) = (first.users().collect(), second.users().collect());
    assert!(!a.is_empty() && !b.is_empty(), "both parts hold users");
    assert!(a.iter().all(|u| in_first_part(u)));
    assert!(b.iter().all(|u| !in_first_part(u)));
    assert_eq!(a.len() + b.len(), all.len(), "each user is in one part");
    assert!(first.meta().device_pairs + second.meta().device_pairs > 0);
    let joined = second.merge(first).unwrap();
    let mut joined_users: Vec<&str> = joined.users().collect();
    joined_users.sort_unstable();
    let mut all_sorted: Vec<&str> = all.iter().map(String::as_str).collect();
    all_sorted.sort_unstable();
    assert_eq!(joined_users, all_sorted);
    let mut out = Vec::new();
    joined.write_to(&mut out).unwrap();
    out
}

#[test]
fn a_snapshot_split_by_user_and_joined_again_scores_as_the_whole() {
    let r = reference();
    for cut_permille in [250, 600, 900] {
        let cut = data().len() * cut_permille / 1000;
        let (summary, collected, _) = score_with_restart_through(data(), cut, 1000, split_and_join);
        assert_eq!(comparable(&summary), comparable(&r.summary));
        assert!(
            collected.rows == r.collected.rows,
            "scored rows differ after a split and join at {cut}"
        );
        assert_eq!(collected.alerts, r.collected.alerts);
    }
}

#[test]
fn parts_with_a_user_in_both_do_not_join() {
    let mut snapshot = Vec::new();
    let mut dead = Collect::default();
    let mut alerts = Collect::default();
    let mut rows = Collect::default();
    let mut pipeline = Pipeline::new(
        Policy::builtin(),
        PipelineOptions::default(),
        Outputs {
            dead_letters: &mut dead,
            alerts: &mut alerts,
            scored: &mut rows,
            received: None,
        },
    )
    .unwrap();
    let stop = AtomicBool::new(false);
    let mut lines = LineReader::new(&data()[..data().len() / 2], MAX_LINE_DEFAULT);
    pipeline::consume(&mut pipeline, &mut lines, &stop, |_, _| {}).unwrap();
    pipeline.write_snapshot(&mut snapshot).unwrap();
    let read = || Snapshot::read(&mut snapshot.as_slice()).unwrap();
    let error = read().merge(read()).err().expect("a user in both parts");
    assert!(
        matches!(&error, SnapshotError::Merge(why) if why.contains("has state in both parts")),
        "{error}"
    );
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
    fn a_restart_from_a_snapshot_does_not_change_results(cut_permille in 1usize..1000, batch_size in 1usize..5000) {
        let r = reference();
        let cut = data().len() * cut_permille / 1000;
        let (summary, collected, bytes) = score_with_restart(data(), cut, batch_size);
        prop_assert!(bytes > 0);
        prop_assert_eq!(comparable(&summary), comparable(&r.summary));
        prop_assert!(collected.rows == r.collected.rows, "scored rows differ after a restart at {}", cut);
        prop_assert_eq!(&collected.alerts, &r.collected.alerts);
    }

    #[test]
    fn parse_threads_do_not_change_results(threads in 1usize..5, seed in any::<u64>()) {
        let data = with_every_kind_of_line(data(), seed);
        let policy = Policy::builtin();
        let alone = score_parsed_by(&data, &policy, 4096, Engine::Native, Some(0));
        prop_assert!(alone.summary.invalid >= 10, "{:?}", alone.summary);
        let staged = score_parsed_by(&data, &policy, 4096, Engine::Native, Some(threads));
        prop_assert_eq!(comparable(&staged.summary), comparable(&alone.summary));
        prop_assert!(staged.collected.rows == alone.collected.rows, "scored rows differ with {} parse threads", threads);
        prop_assert_eq!(&staged.collected.alerts, &alone.collected.alerts);
        prop_assert_eq!(&staged.collected.dead_letters, &alone.collected.dead_letters);
    }

    #[test]
    fn arrival_order_within_lateness_does_not_change_results(seed in any::<u64>(), batch_size in 1usize..3000) {
        let r = reference();
        let shuffled = shuffle_locally(data(), seed, 120);
        prop_assume!(shuffled != data());
        let other = score_default(&shuffled, batch_size);
        prop_assert_eq!(other.summary.late, 0);
        prop_assert_eq!(comparable(&other.summary), comparable(&r.summary));
        prop_assert!(other.collected.rows == r.collected.rows, "scored rows differ after reordering");
        prop_assert_eq!(&other.collected.alerts, &r.collected.alerts);
    }
}
