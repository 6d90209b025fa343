use super::window::WindowEntry;
use super::*;
use proptest::prelude::*;

#[test]
fn windows_count_logins_distinct_and_new_computers() {
    let mut s = EngineState::default();
    let f = s.observe(0, 0, 0);
    assert_eq!(
        f.flags,
        FLAG_NEW_USER | FLAG_NEW_DEVICE_FOR_USER | FLAG_NEW_COMPUTER
    );
    assert_eq!(
        (
            f.user_logins_1h,
            f.user_distinct_computers_1h,
            f.user_new_computers_1h
        ),
        (1, 1, 1)
    );
    let f = s.observe(10, 0, 0);
    assert_eq!(f.flags, 0);
    assert_eq!(
        (f.user_logins_1h, f.user_distinct_computers_1h, f.user_gap_s),
        (2, 1, 10)
    );
    let f = s.observe(20, 0, 1);
    assert_eq!(
        (
            f.user_distinct_computers_1h,
            f.user_new_computers_1h,
            f.user_known_computers
        ),
        (2, 2, 2)
    );
    // One hour after t=10: events at 0 and 10 left the hour, computer 0 with them.
    let f = s.observe(3_610, 0, 1);
    assert_eq!((f.user_logins_1h, f.user_logins_24h), (2, 4));
    assert_eq!(
        (f.user_distinct_computers_1h, f.user_distinct_computers_24h),
        (1, 2)
    );
    assert_eq!((f.user_new_computers_1h, f.user_new_computers_24h), (1, 2));
    assert_eq!(f.user_tenure_s, 3_610);
    // A day later everything but the newest left the day.
    let f = s.observe(3_610 + DAY, 0, 0);
    assert_eq!(
        (
            f.user_logins_24h,
            f.user_distinct_computers_24h,
            f.user_new_computers_24h
        ),
        (1, 1, 0)
    );
    assert_eq!(
        f.flags & FLAG_NEW_DEVICE_FOR_USER,
        0,
        "computer 0 is in the history forever"
    );
    assert_eq!((s.first_seen(0, 1), s.first_seen(1, 0)), (Some(20), None));
}

proptest! {
    /// With a bounded window, the counts stay those of the entries
    /// still in it, whatever leaves early: logins, distinct and new
    /// computers per hour and day, recounted from the window.
    #[test]
    fn a_bounded_window_counts_what_it_holds(
        max in 1usize..6,
        events in proptest::collection::vec((0i64..600, 0u32..4), 1..200),
    ) {
        let mut s = EngineState::default();
        s.set_max_window_events(max);
        let mut time = 0;
        for (step, computer) in events {
            time += step;
            let f = s.observe(time, 0, computer);
            let user = &s.users[0];
            prop_assert!(user.window.len() <= max);
            prop_assert_eq!(f.user_logins_24h as usize, user.window.len());
            let recount = |entries: &[WindowEntry]| {
                let mut distinct = std::collections::HashSet::new();
                let mut new = 0;
                for e in entries {
                    let device = &s.devices[e.device as usize];
                    distinct.insert(e.device);
                    new += u32::from(device.first_seq == e.seq);
                }
                (distinct.len() as u32, new)
            };
            let window: Vec<WindowEntry> = user.window.iter().collect();
            let hour = &window[user.hour_start..];
            prop_assert_eq!(
                (f.user_distinct_computers_24h, f.user_new_computers_24h),
                recount(&window)
            );
            prop_assert_eq!(
                (f.user_distinct_computers_1h, f.user_new_computers_1h),
                recount(hour)
            );
        }
    }
}

#[test]
fn host_popularity_ever_and_today() {
    let mut s = EngineState::default();
    assert_eq!(s.observe(0, 0, 7).host_users_ever, 1);
    let f = s.observe(5, 1, 7);
    assert_eq!(
        (
            f.host_users_ever,
            f.host_users_today,
            f.flags & FLAG_NEW_COMPUTER
        ),
        (2, 2, 0)
    );
    assert_eq!(s.observe(6, 1, 7).host_users_today, 2);
    let next_day = s.observe(DAY + 1, 1, 7);
    assert_eq!(
        (next_day.host_users_ever, next_day.host_users_today),
        (2, 1)
    );
}

/// The incremental windows agree with counting from scratch.
fn brute_force(history: &[(i64, u32, u32)], now: i64, user: u32) -> (u32, u32, u32, u32, u32, u32) {
    let mine: Vec<_> = history.iter().filter(|e| e.1 == user).collect();
    let first_use = |c: u32| mine.iter().find(|e| e.2 == c).map(|e| e.0).unwrap();
    let within = |w: i64| mine.iter().filter(move |e| e.0 > now - w);
    let distinct = |w: i64| {
        let mut cs: Vec<u32> = within(w).map(|e| e.2).collect();
        cs.sort();
        cs.dedup();
        cs
    };
    let new_in = |w: i64| {
        distinct(w)
            .into_iter()
            .filter(|&c| first_use(c) > now - w)
            .count() as u32
    };
    (
        within(HOUR).count() as u32,
        within(DAY).count() as u32,
        distinct(HOUR).len() as u32,
        distinct(DAY).len() as u32,
        new_in(HOUR),
        new_in(DAY),
    )
}

/// The baselines and the computer's windows, counted from scratch:
/// (user peak clock hour before this one, logins before, logins at this
/// hour of day before, user baseline (count, seconds), host users this
/// clock hour, host new users 1h and 24h, host baseline (count, seconds),
/// host busiest clock hour's distinct users before this one).
#[allow(clippy::type_complexity)]
fn brute_force_v2(
    history: &[(i64, u32, u32)],
    now: i64,
    user: u32,
    computer: u32,
) -> (u32, u32, u32, (u32, u32), u32, u32, u32, (u32, u32), u32) {
    let (past, _) = history.split_at(history.len() - 1);
    let mine: Vec<_> = past.iter().filter(|e| e.1 == user).collect();
    let hour = now.div_euclid(HOUR);
    let mut per_hour = std::collections::BTreeMap::<i64, u32>::new();
    for e in mine.iter().filter(|e| e.0.div_euclid(HOUR) < hour) {
        *per_hour.entry(e.0.div_euclid(HOUR)).or_default() += 1;
    }
    let hod = |t: i64| t.rem_euclid(DAY) / HOUR;
    // First use of each pair, in the whole history so far.
    let mut firsts = std::collections::BTreeMap::<(u32, u32), i64>::new();
    for e in history {
        firsts.entry((e.1, e.2)).or_insert(e.0);
    }
    let baseline = |times: Vec<i64>, first_seen: i64| {
        let (from, to) = (first_seen + DAY, now - DAY);
        if to <= from {
            return (0, 0);
        }
        let n = times.iter().filter(|&&t| t >= from && t <= to).count() as u32;
        (n, (to - from) as u32)
    };
    let user_first = history.iter().find(|e| e.1 == user).unwrap().0;
    let user_discoveries: Vec<i64> = firsts
        .iter()
        .filter(|((u, _), _)| *u == user)
        .map(|(_, &t)| t)
        .collect();
    let host_first = history.iter().find(|e| e.2 == computer).unwrap().0;
    let host_discoveries: Vec<i64> = firsts
        .iter()
        .filter(|((_, c), _)| *c == computer)
        .map(|(_, &t)| t)
        .collect();
    let mut users_this_hour: Vec<u32> = history
        .iter()
        .filter(|e| e.2 == computer && e.0.div_euclid(HOUR) == hour)
        .map(|e| e.1)
        .collect();
    users_this_hour.sort();
    users_this_hour.dedup();
    let new_users_in = |w: i64| host_discoveries.iter().filter(|&&t| t > now - w).count() as u32;
    let mut host_hours = std::collections::BTreeMap::<i64, Vec<u32>>::new();
    for e in past
        .iter()
        .filter(|e| e.2 == computer && e.0.div_euclid(HOUR) < hour)
    {
        let users = host_hours.entry(e.0.div_euclid(HOUR)).or_default();
        if !users.contains(&e.1) {
            users.push(e.1);
        }
    }
    (
        per_hour.values().copied().max().unwrap_or(0),
        mine.len() as u32,
        mine.iter().filter(|e| hod(e.0) == hod(now)).count() as u32,
        baseline(user_discoveries, user_first),
        users_this_hour.len() as u32,
        new_users_in(HOUR),
        new_users_in(DAY),
        baseline(host_discoveries, host_first),
        host_hours
            .values()
            .map(|u| u.len() as u32)
            .max()
            .unwrap_or(0),
    )
}

proptest! {
    #[test]
    fn baselines_and_host_windows_match_brute_force(steps in prop::collection::vec((0i64..20_000, 0u32..3, 0u32..4), 1..150)) {
        let mut s = EngineState::default();
        let mut history: Vec<(i64, u32, u32)> = Vec::new();
        let mut t = 0;
        for (dt, user, computer) in steps {
            t += dt;
            // Deduplicated input, as the orderer hands it on.
            if history.contains(&(t, user, computer)) {
                continue;
            }
            let f = s.observe(t, user, computer);
            history.push((t, user, computer));
            let expected = brute_force_v2(&history, t, user, computer);
            prop_assert_eq!(
                (f.user_peak_logins_1h, f.user_logins_before, f.user_logins_at_hour_before,
                 (f.user_baseline_new_computers, f.user_baseline_s), f.host_users_this_hour,
                 f.host_new_users_1h, f.host_new_users_24h,
                 (f.host_baseline_new_users, f.host_baseline_s), f.host_peak_users_hour),
                expected
            );
        }
    }

    #[test]
    fn incremental_windows_match_brute_force(steps in prop::collection::vec((0i64..5_000, 0u32..3, 0u32..6), 1..200)) {
        let mut s = EngineState::default();
        let mut history = Vec::new();
        let mut t = 0;
        for (dt, user, computer) in steps {
            t += dt;
            let f = s.observe(t, user, computer);
            history.push((t, user, computer));
            let expected = brute_force(&history, t, user);
            prop_assert_eq!(
                (f.user_logins_1h, f.user_logins_24h, f.user_distinct_computers_1h,
                 f.user_distinct_computers_24h, f.user_new_computers_1h, f.user_new_computers_24h),
                expected
            );
        }
    }
}
