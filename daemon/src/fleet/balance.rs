//! Which leases a worker takes, as the KCL decides it: from a consistent
//! read of the whole table and what this worker has observed of each
//! lease's counter over time. A pure function of those, so that every rule
//! is tested without a table.
//!
//! - A lease is **expired** when its counter has not moved for the failover
//!   time, measured on this worker's own clock from the moment it first saw
//!   that counter (so clocks of different machines never need to agree). A
//!   lease nobody owns is available at once.
//! - **Target**: the unfinished leases divided by the live workers (the
//!   owners of unexpired leases, and this one), rounded up.
//! - Below its target, a worker takes **expired** leases first. With none
//!   left it **steals** one from the busiest worker, if that one holds more
//!   than the target (or exactly the target while this worker lacks two or
//!   more), so a fleet converges a lease at a time without a thundering herd.
//! - Finished leases (`SHARD_END`) are never taken. A lease whose parents
//!   are not finished yet may be taken; its shard is read only once they are
//!   (the reader's rule, [`parents_finished`]).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::lease::Lease;

/// The last counter seen of each lease and when it was first seen.
#[derive(Debug, Default)]
pub struct Observations {
    seen: HashMap<String, (u64, Instant)>,
}

impl Observations {
    /// Records a consistent read of the table made at `now`.
    pub fn observe(&mut self, leases: &[Lease], now: Instant) {
        self.seen
            .retain(|key, _| leases.iter().any(|l| &l.key == key));
        for lease in leases {
            match self.seen.get_mut(&lease.key) {
                Some((counter, since)) if *counter != lease.counter => {
                    *counter = lease.counter;
                    *since = now;
                }
                Some(_) => {}
                None => {
                    self.seen.insert(lease.key.clone(), (lease.counter, now));
                }
            }
        }
    }

    /// Whether `lease` is free to take: nobody owns it, or its counter has
    /// stood still for `failover` on this worker's clock.
    pub fn is_expired(&self, lease: &Lease, now: Instant, failover: Duration) -> bool {
        if lease.owner.is_none() {
            return true;
        }
        match self.seen.get(&lease.key) {
            Some((counter, since)) if *counter == lease.counter => {
                now.duration_since(*since) >= failover
            }
            _ => false,
        }
    }
}

/// Whether every parent of `lease` is finished (or gone from the table,
/// which the KCL does once a finished lease has been cleaned up).
pub fn parents_finished(lease: &Lease, leases: &[Lease]) -> bool {
    lease.parents.iter().all(|parent| {
        leases
            .iter()
            .find(|l| &l.key == parent)
            .is_none_or(Lease::is_finished)
    })
}

/// What to take this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Expired or unowned leases.
    pub take: Vec<String>,
    /// A live lease of the busiest worker.
    pub steal: Option<String>,
    /// Leases per worker the fleet should converge to.
    pub target: usize,
    /// Live workers, this one included.
    pub workers: usize,
}

/// Decides which leases `worker` takes, given a read of the whole table
/// and which of its leases are expired.
pub fn plan(worker: &str, leases: &[Lease], expired: impl Fn(&Lease) -> bool) -> Plan {
    let open: Vec<&Lease> = leases.iter().filter(|l| !l.is_finished()).collect();
    let mut held: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
    held.insert(worker, Vec::new());
    for lease in &open {
        if let Some(owner) = lease.owner.as_deref()
            && (owner == worker || !expired(lease))
        {
            held.entry(owner).or_default().push(lease);
        }
    }
    let workers = held.len();
    let target = open.len().div_ceil(workers);
    let mine = held[worker].len();
    let mut plan = Plan {
        take: Vec::new(),
        steal: None,
        target,
        workers,
    };
    if mine >= target {
        return plan;
    }
    let needed = target - mine;
    // Expired ones, in an order of this worker's own so that workers
    // starting together try different leases first.
    let mut free: Vec<&Lease> = open
        .iter()
        .copied()
        .filter(|l| !l.is_owned_by(worker) && expired(l))
        .collect();
    free.sort_by_key(|l| spread(worker, &l.key));
    plan.take = free.iter().take(needed).map(|l| l.key.clone()).collect();
    if !plan.take.is_empty() {
        return plan;
    }
    let busiest = held
        .iter()
        .filter(|(owner, _)| **owner != worker)
        .max_by_key(|(owner, leases)| (leases.len(), std::cmp::Reverse(**owner)));
    if let Some((_, leases)) = busiest
        && (leases.len() > target || (leases.len() == target && needed > 1))
    {
        // Its lease of the highest key: a choice every thief agrees on.
        plan.steal = leases.iter().map(|l| l.key.clone()).max();
    }
    plan
}

/// A per-worker order of lease keys (FNV-1a of worker and key).
fn spread(worker: &str, key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in worker.bytes().chain([0]).chain(key.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::lease::LeaseCheckpoint;

    fn lease(key: &str, owner: Option<&str>) -> Lease {
        let mut lease = Lease::new(key, LeaseCheckpoint::TrimHorizon);
        lease.owner = owner.map(str::to_string);
        lease
    }

    fn keys(n: usize, owner: Option<&str>) -> Vec<Lease> {
        (0..n)
            .map(|i| lease(&format!("shard-{i}"), owner))
            .collect()
    }

    #[test]
    fn a_first_worker_takes_every_unowned_lease() {
        let leases = keys(4, None);
        let plan = plan("a", &leases, |l| l.owner.is_none());
        assert_eq!((plan.target, plan.workers), (4, 1));
        assert_eq!(plan.take.len(), 4);
    }

    #[test]
    fn a_second_worker_steals_one_at_a_time_down_to_the_target() {
        let leases = keys(4, Some("a"));
        let plan = plan("b", &leases, |_| false);
        assert_eq!((plan.target, plan.workers), (2, 2));
        assert!(plan.take.is_empty());
        assert_eq!(plan.steal.as_deref(), Some("shard-3"));
        // Balanced: 2 and 2, nothing more to do.
        let mut leases = keys(4, Some("a"));
        leases[3].owner = Some("b".into());
        leases[2].owner = Some("b".into());
        assert_eq!(plan_for("b", &leases).steal, None);
        // Three workers on four leases: target 2; c holds none and a holds
        // exactly two, b one: c needs two, so it steals from a.
        leases[1].owner = Some("b".into());
        leases[0].owner = Some("a".into());
        let mut third = leases.clone();
        third[1].owner = Some("a".into());
        assert_eq!(plan_for("c", &third).steal.as_deref(), Some("shard-1"));
    }

    fn plan_for(worker: &str, leases: &[Lease]) -> Plan {
        plan(worker, leases, |l| l.owner.is_none())
    }

    #[test]
    fn expired_leases_are_taken_before_stealing_and_dead_workers_do_not_count() {
        let mut leases = keys(4, Some("a"));
        leases[2].owner = Some("dead".into());
        leases[3].owner = Some("dead".into());
        let plan = plan("a", &leases, |l| l.owner.as_deref() == Some("dead"));
        // The dead worker is not live: a alone, target 4, takes both.
        assert_eq!((plan.target, plan.workers), (4, 1));
        let mut taken = plan.take.clone();
        taken.sort();
        assert_eq!(taken, ["shard-2", "shard-3"]);
        assert_eq!(plan.steal, None);
    }

    #[test]
    fn finished_leases_are_never_taken() {
        let mut leases = keys(3, None);
        leases[0].checkpoint = LeaseCheckpoint::ShardEnd;
        leases[1].parents = vec!["shard-0".into()];
        leases[2].parents = vec!["shard-0".into(), "shard-9".into()];
        let plan = plan_for("a", &leases);
        assert_eq!(plan.target, 2);
        assert!(!plan.take.contains(&"shard-0".to_string()));
        assert!(parents_finished(&leases[1], &leases));
        // A parent gone from the table counts as finished.
        assert!(parents_finished(&leases[2], &leases));
        leases[0].checkpoint = LeaseCheckpoint::TrimHorizon;
        assert!(!parents_finished(&leases[1], &leases));
    }

    #[test]
    fn expiry_is_measured_on_the_observers_clock() {
        let t0 = Instant::now();
        let failover = Duration::from_secs(10);
        let mut seen = Observations::default();
        let mut leases = keys(1, Some("a"));
        seen.observe(&leases, t0);
        assert!(!seen.is_expired(&leases[0], t0 + Duration::from_secs(9), failover));
        assert!(seen.is_expired(&leases[0], t0 + failover, failover));
        // A renewal (counter moved) restarts the clock.
        leases[0].counter += 1;
        seen.observe(&leases, t0 + Duration::from_secs(12));
        assert!(!seen.is_expired(&leases[0], t0 + Duration::from_secs(20), failover));
        assert!(seen.is_expired(&leases[0], t0 + Duration::from_secs(22), failover));
        // Unowned: free at once, even unseen.
        assert!(Observations::default().is_expired(&lease("x", None), t0, failover));
    }
}
