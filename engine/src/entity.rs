//! Entity risk: what each user and each computer has recently done, added up.
//!
//! Attacks are rarely one logon; they are an account (or a computer) doing
//! several individually modest things within hours. So every event's rule
//! contributions also go to its entities: the user-side rules' part to the
//! user, the computer-side rules' part to the computer. An entity's
//! accumulated risk combines its recent contributions the way an event's
//! score combines its rules (independent probabilities, "noisy OR"), each
//! contribution fading with a half-life and dropped after the window:
//!
//! ```text
//! risk(t) = 100 * (1 - prod_i (1 - c_i * 2^(-(t - t_i) / half_life)))    for t - t_i < window
//! ```
//!
//! One loud event (c = 0.9) and four quiet ones within an hour (c = 0.25
//! each) both pass a threshold of 60. The ledger of an entity keeps its
//! last [`MAX_CONTRIBUTIONS`] contributions inside the window: they are the
//! evidence an alert shows. Only events on which an enforcing rule fired
//! contribute, so the ledgers hold a small fraction of the traffic; ledgers
//! with nothing left inside the window are dropped by [`EntityRisk::expire`].

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::event::{EventId, NameId};

/// Contributions an entity's ledger keeps (the most recent ones).
pub const MAX_CONTRIBUTIONS: usize = 64;

/// Rules a policy may have: rule flags are a 32-bit set.
pub const MAX_RULES: usize = 32;

/// Which side of a logon an entity is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    User,
    Computer,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::User => "user",
            EntityKind::Computer => "computer",
        }
    }
}

/// One event's part in an entity's risk.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub time: i64,
    /// The event's risk from this entity's rules, 0..=1.
    pub weight: f32,
    pub event_id: EventId,
    pub user: NameId,
    pub computer: NameId,
    /// The event's risk score (all rules), 0..=100.
    pub event_score: u8,
    /// Rules that fired for this entity (bit per rule position).
    pub rules: u32,
    /// Each fired rule's reason index (by rule position; saturated at 255).
    pub reasons: [u8; MAX_RULES],
}

#[derive(Default, Serialize, Deserialize)]
struct Ledger {
    recent: VecDeque<Contribution>,
}

/// Accumulated risk per user and per computer. Serialised whole into state
/// snapshots; the window and half-life are the policy's again on restore.
#[derive(Serialize, Deserialize)]
pub struct EntityRisk {
    window: i64,
    /// Decay per second, as a factor of ln 2 / half-life (0: no decay).
    decay_per_s: f64,
    users: FxHashMap<NameId, Ledger>,
    computers: FxHashMap<NameId, Ledger>,
}

impl EntityRisk {
    /// Contributions count for `window_s` seconds, halving every
    /// `half_life_s` (0: they keep full weight until they leave the window).
    pub fn new(window_s: u64, half_life_s: u64) -> EntityRisk {
        EntityRisk {
            window: window_s.min(i64::MAX as u64 / 4) as i64,
            decay_per_s: if half_life_s == 0 {
                0.0
            } else {
                std::f64::consts::LN_2 / half_life_s as f64
            },
            users: FxHashMap::default(),
            computers: FxHashMap::default(),
        }
    }

    /// How long a contribution counts, in seconds.
    pub fn window_s(&self) -> i64 {
        self.window
    }

    /// Takes a reloaded policy's window and half-life; the ledgers carry on.
    pub fn reconfigure(&mut self, window_s: u64, half_life_s: u64) {
        let fresh = EntityRisk::new(window_s, half_life_s);
        self.window = fresh.window;
        self.decay_per_s = fresh.decay_per_s;
    }

    fn ledgers(&mut self, kind: EntityKind) -> &mut FxHashMap<NameId, Ledger> {
        match kind {
            EntityKind::User => &mut self.users,
            EntityKind::Computer => &mut self.computers,
        }
    }

    /// Adds `contribution` to the entity's ledger and returns the entity's
    /// accumulated risk at the contribution's time, 0..=100.
    pub fn add(&mut self, kind: EntityKind, id: NameId, contribution: Contribution) -> f32 {
        let window = self.window;
        let ledger = self.ledgers(kind).entry(id).or_default();
        let now = contribution.time;
        while ledger
            .recent
            .front()
            .is_some_and(|c| c.time <= now - window)
        {
            ledger.recent.pop_front();
        }
        if ledger.recent.len() == MAX_CONTRIBUTIONS {
            ledger.recent.pop_front();
        }
        ledger.recent.push_back(contribution);
        self.risk(kind, id, now)
    }

    /// Puts `with` in place of the computer-side contribution of event
    /// `event_id` to computer `id` (a fleet's first visit judged again;
    /// `None`: takes it out), so that the ledger a state snapshot keeps
    /// holds the verdict the computer was decided with. A contribution
    /// with a bit of `keep` (one to the computer as a source) stays; a
    /// judged one with no contribution to replace is added in its place.
    pub fn judge_again(
        &mut self,
        id: NameId,
        event_id: EventId,
        with: Option<Contribution>,
        keep: u32,
    ) {
        let ledger = self.computers.entry(id).or_default();
        let at = ledger
            .recent
            .iter()
            .position(|c| c.event_id == event_id && c.rules & keep == 0);
        match (at, with) {
            (Some(at), Some(with)) => ledger.recent[at] = with,
            (Some(at), None) => {
                ledger.recent.remove(at);
            }
            (None, Some(with)) => {
                self.merge(EntityKind::Computer, id, with);
            }
            (None, None) => {}
        }
    }

    /// The entity's accumulated risk at `now`, 0..=100.
    pub fn risk(&self, kind: EntityKind, id: NameId, now: i64) -> f32 {
        let ledgers = match kind {
            EntityKind::User => &self.users,
            EntityKind::Computer => &self.computers,
        };
        let Some(ledger) = ledgers.get(&id) else {
            return 0.0;
        };
        let mut unexplained = 1.0f64;
        for c in ledger.recent.iter().filter(|c| c.time > now - self.window) {
            let age = (now - c.time).max(0) as f64;
            let weight = f64::from(c.weight) * (-self.decay_per_s * age).exp();
            unexplained *= 1.0 - weight.clamp(0.0, 1.0);
        }
        ((1.0 - unexplained) * 100.0) as f32
    }

    /// Takes in a contribution scored elsewhere (another fleet worker's
    /// evidence on a computer whose incidents this worker opens), in its
    /// place by event time, and returns the entity's risk at its time.
    /// `None`: it is already in the ledger (a share traded again), or too
    /// old to count (outside the window of the ledger's newest, or older
    /// than everything in a full ledger), so taking the same share in twice
    /// never counts anything twice.
    pub fn merge(
        &mut self,
        kind: EntityKind,
        id: NameId,
        contribution: Contribution,
    ) -> Option<f32> {
        let (window, decay_per_s) = (self.window, self.decay_per_s);
        let ledger = self.ledgers(kind).entry(id).or_default();
        let at = contribution.time;
        if ledger
            .recent
            .iter()
            .any(|c| c.event_id == contribution.event_id)
        {
            return None;
        }
        let newest = ledger.recent.back().map_or(at, |c| c.time.max(at));
        let full = ledger.recent.len() == MAX_CONTRIBUTIONS;
        if at <= newest - window || (full && ledger.recent.front().is_some_and(|c| at < c.time)) {
            return None;
        }
        if full {
            ledger.recent.pop_front();
        }
        let place = ledger.recent.partition_point(|c| c.time <= at);
        ledger.recent.insert(place, contribution);
        // Its risk as of its own time: later contributions had not happened.
        let mut unexplained = 1.0f64;
        for c in ledger
            .recent
            .iter()
            .filter(|c| c.time > at - window && c.time <= at)
        {
            let weight = f64::from(c.weight) * (-decay_per_s * (at - c.time) as f64).exp();
            unexplained *= 1.0 - weight.clamp(0.0, 1.0);
        }
        Some(((1.0 - unexplained) * 100.0) as f32)
    }

    /// Every computer's ledger, oldest contribution first.
    pub fn computer_ledgers(&self) -> impl Iterator<Item = (NameId, &VecDeque<Contribution>)> {
        self.computers.iter().map(|(&id, l)| (id, &l.recent))
    }

    /// The entity's contributions still inside the window at `now`, oldest first.
    pub fn contributions(
        &self,
        kind: EntityKind,
        id: NameId,
        now: i64,
    ) -> impl Iterator<Item = &Contribution> {
        let ledgers = match kind {
            EntityKind::User => &self.users,
            EntityKind::Computer => &self.computers,
        };
        let window = self.window;
        ledgers
            .get(&id)
            .into_iter()
            .flat_map(|l| l.recent.iter())
            .filter(move |c| c.time > now - window)
    }

    /// Drops the ledgers with nothing inside the window at `now`.
    pub fn expire(&mut self, now: i64) {
        let window = self.window;
        for ledgers in [&mut self.users, &mut self.computers] {
            ledgers.retain(|_, l| l.recent.back().is_some_and(|c| c.time > now - window));
        }
    }

    /// Moves each contribution's rule bits and reasons from the positions of
    /// `old_rules` to those of `new_rules` (rule labels by position), when a
    /// policy change reorders the rules; a rule the new policy lacks leaves.
    pub fn remap_rules(&mut self, old_rules: &[String], new_rules: &[String]) {
        let Some(moves) = RuleMoves::between(old_rules, new_rules) else {
            return;
        };
        for ledger in self.users.values_mut().chain(self.computers.values_mut()) {
            for c in &mut ledger.recent {
                let mut reasons = [0u8; MAX_RULES];
                for (old, new) in moves.kept() {
                    reasons[new] = c.reasons[old];
                }
                c.rules = moves.bits(c.rules);
                c.reasons = reasons;
            }
        }
    }

    /// Drops the ledgers of the users `dropped` says.
    pub(crate) fn drop_users(&mut self, dropped: impl Fn(NameId) -> bool) {
        self.users.retain(|&id, _| !dropped(id));
    }

    /// Moves the ledgers of `users` (`(id in from, id here)`) out of `from`,
    /// and those of computers only `from` has one for; `user_ids` and
    /// `computer_ids` map all of `from`'s ids to ids here.
    pub(crate) fn take_users(
        &mut self,
        from: &mut EntityRisk,
        users: &[(NameId, NameId)],
        user_ids: &[NameId],
        computer_ids: &[NameId],
    ) {
        let renumber = |mut ledger: Ledger| {
            for c in &mut ledger.recent {
                c.user = user_ids[c.user as usize];
                c.computer = computer_ids[c.computer as usize];
            }
            ledger
        };
        for &(source, target) in users {
            if let Some(ledger) = from.users.remove(&source) {
                self.users.insert(target, renumber(ledger));
            }
        }
        for (source, ledger) in std::mem::take(&mut from.computers) {
            let target = computer_ids[source as usize];
            self.computers
                .entry(target)
                .or_insert_with(|| renumber(ledger));
        }
    }

    /// Heap memory the ledgers hold, in bytes.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        [&self.users, &self.computers]
            .iter()
            .map(|ledgers| {
                crate::state::hash_table_bytes(ledgers.capacity(), size_of::<(NameId, Ledger)>())
                    + ledgers
                        .values()
                        .map(|l| l.recent.capacity() * size_of::<Contribution>())
                        .sum::<usize>()
            })
            .sum()
    }

    /// Entities with a ledger (for memory reports).
    pub fn len(&self) -> usize {
        self.users.len() + self.computers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where each rule of one rule set sits in another (rules by label, bit
/// `r` for the rule at position `r`): what state keeping rule bits (entity
/// ledgers, open incidents) needs when a policy change or a snapshot of
/// another policy reorders the rules. A rule the new set lacks leaves.
pub(crate) struct RuleMoves(Vec<Option<usize>>);

impl RuleMoves {
    /// The moves from `old` to `new`; `None` when nothing moves.
    pub(crate) fn between(old: &[String], new: &[String]) -> Option<RuleMoves> {
        if old == new {
            return None;
        }
        let moved = old
            .iter()
            .map(|id| new.iter().position(|n| n == id).filter(|&p| p < MAX_RULES))
            .collect();
        Some(RuleMoves(moved))
    }

    /// Each kept rule as `(old position, new position)`.
    pub(crate) fn kept(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(old, new)| new.map(|new| (old, new)))
    }

    /// A bit set of old positions as one of new positions.
    pub(crate) fn bits(&self, bits: u32) -> u32 {
        self.kept()
            .filter(|&(old, _)| bits & (1 << old) != 0)
            .fold(0, |acc, (_, new)| acc | 1 << new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contribution(time: i64, weight: f32) -> Contribution {
        Contribution {
            time,
            weight,
            event_id: EventId::derive(time, "U1", "C1"),
            user: 0,
            computer: 0,
            event_score: (weight * 100.0) as u8,
            rules: 1,
            reasons: [0; MAX_RULES],
        }
    }

    #[test]
    fn quiet_contributions_add_up_and_fade() {
        let mut risk = EntityRisk::new(86_400, 3_600);
        let user = EntityKind::User;
        assert!((risk.add(user, 1, contribution(0, 0.25)) - 25.0).abs() < 1e-3);
        // Two at once: 1 - 0.75^2.
        assert!((risk.add(user, 1, contribution(0, 0.25)) - 43.75).abs() < 1e-3);
        // An hour later both count half: 1 - 0.875^2, and a third full one.
        let r = risk.add(user, 1, contribution(3_600, 0.25));
        let expected = 100.0 * (1.0 - 0.875f32 * 0.875 * 0.75);
        assert!((r - expected).abs() < 1e-3, "{r} vs {expected}");
        // Other entities are separate.
        assert_eq!(risk.risk(EntityKind::Computer, 1, 3_600), 0.0);
        assert_eq!(risk.risk(user, 2, 3_600), 0.0);
        // Past the window nothing counts, and the ledger goes.
        assert_eq!(risk.risk(user, 1, 3_600 + 86_400), 0.0);
        assert_eq!(risk.contributions(user, 1, 3_600).count(), 3);
        risk.expire(3_600 + 86_400);
        assert!(risk.is_empty());
    }

    #[test]
    fn without_decay_contributions_keep_their_weight_in_the_window() {
        let mut risk = EntityRisk::new(600, 0);
        risk.add(EntityKind::User, 1, contribution(0, 0.5));
        let r = risk.add(EntityKind::User, 1, contribution(599, 0.5));
        assert!((r - 75.0).abs() < 1e-3);
        assert!((risk.risk(EntityKind::User, 1, 600) - 50.0).abs() < 1e-3);
    }

    #[test]
    fn a_merged_contribution_counts_once_in_its_place() {
        let mut risk = EntityRisk::new(86_400, 0);
        let computer = EntityKind::Computer;
        risk.add(computer, 3, contribution(100, 0.5));
        risk.add(computer, 3, contribution(300, 0.5));
        // Scored elsewhere, between the two: its risk is as of its time.
        let r = risk.merge(computer, 3, contribution(200, 0.5)).unwrap();
        assert!((r - 75.0).abs() < 1e-3, "{r}");
        let times: Vec<i64> = risk
            .contributions(computer, 3, 300)
            .map(|c| c.time)
            .collect();
        assert_eq!(times, [100, 200, 300]);
        // Traded again: nothing more.
        assert_eq!(risk.merge(computer, 3, contribution(200, 0.5)), None);
        // Older than the window of the newest: nothing.
        assert_eq!(
            risk.merge(computer, 3, contribution(300 - 86_400, 0.5)),
            None
        );
        assert_eq!(risk.contributions(computer, 3, 300).count(), 3);
        assert_eq!(risk.computer_ledgers().count(), 1);
    }

    #[test]
    fn ledgers_are_bounded() {
        let mut risk = EntityRisk::new(86_400, 0);
        for t in 0..200 {
            risk.add(EntityKind::Computer, 3, contribution(t, 0.01));
        }
        assert_eq!(
            risk.contributions(EntityKind::Computer, 3, 200).count(),
            MAX_CONTRIBUTIONS
        );
    }
}
