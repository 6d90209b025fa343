//! An event's way from its rules' verdicts to its entities: the user-side
//! rules' part of its risk is added to its user, the computer-side rules'
//! part to its computer ([`EntityRisk`]), and their incidents are opened,
//! extended or updated ([`AlertEngine`]).

use crate::alerts::AlertEngine;
use crate::entity::{Contribution, EntityKind, EntityRisk, MAX_RULES};
use crate::event::{Event, Interner, TimeBase};
use crate::rules::RuleSet;

/// A batch's step from scores to entity risk and incidents: the entity
/// state, the rules that scored the batch, and who its ids stand for.
pub(super) struct Escalation<'a> {
    pub(super) entities: &'a mut EntityRisk,
    pub(super) alerts: &'a mut AlertEngine,
    pub(super) rules: &'a RuleSet,
    pub(super) time_base: TimeBase,
    pub(super) users: &'a Interner,
    pub(super) computers: &'a Interner,
    /// Whether computers' incidents are decided here, event by event (in a
    /// fleet they are decided behind what every worker has scored:
    /// `pipeline::shared_risk`).
    pub(super) decides_computers: bool,
}

impl Escalation<'_> {
    /// Closes the incidents that have been quiet too long by event time `now`.
    #[inline]
    pub(super) fn close_due(&mut self, now: i64) {
        if self.alerts.any_due(now) {
            self.alerts.close_due(now);
        }
    }

    /// Adds event `i` of the batch, scored `event_score`, on which the
    /// counting rules `fired` fired, to its user's and its computer's risk,
    /// and opens, extends or updates their incidents.
    pub(super) fn add(&mut self, i: usize, event: &Event, event_score: u8, fired: u32) {
        let rules = self.rules;
        let event_id = event.event_id(self.time_base, self.users, self.computers);
        let mut reasons = [0u8; MAX_RULES];
        for (r, rule) in rules.rules.iter().enumerate() {
            if fired & (1 << r) != 0 {
                reasons[r] = rule.verdicts[i].reason.min(255) as u8;
            }
        }
        let sides = [
            (
                EntityKind::User,
                event.user,
                self.users,
                fired & !(rules.computer_mask | rules.source_mask),
            ),
            (
                EntityKind::Computer,
                event.computer,
                self.computers,
                fired & rules.computer_mask,
            ),
            (
                EntityKind::Computer,
                event.detail.source_computer.unwrap_or(event.computer),
                self.computers,
                fired & rules.source_mask,
            ),
        ];
        for (kind, id, names, side) in sides {
            if side == 0 {
                continue;
            }
            let score = rules.side_score(i, side);
            let contribution = Contribution {
                time: event.event_time,
                weight: f32::from(score) / 100.0,
                event_id,
                user: event.user,
                computer: event.computer,
                event_score,
                rules: side,
                reasons,
            };
            let risk = self.entities.add(kind, id, contribution);
            if kind == EntityKind::Computer && !self.decides_computers {
                continue;
            }
            self.alerts.observe(
                (kind, id),
                &contribution,
                risk,
                self.entities.contributions(kind, id, event.event_time),
                rules,
                names,
            );
        }
    }
}
