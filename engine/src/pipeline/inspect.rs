//! What the operations API asks of a running pipeline: a user's state and
//! risk, the rules it runs, how big its state is, and how long batches took.
//! Read between batches on the pipeline's own thread (the daemon hands the
//! questions over there), so scoring takes no lock for them.

use serde::Serialize;

use super::Pipeline;
use crate::entity::EntityKind;
use crate::policy::RuleMode;
use crate::state::UserProfile;

/// A user as the engine sees them now.
#[derive(Clone, Debug, Serialize)]
pub struct UserView {
    pub user: String,
    pub profile: UserProfile,
    /// Accumulated risk at the latest event time read, 0..=100.
    pub risk: f32,
    /// The events that added to it, still inside the entity-risk window,
    /// newest first.
    pub recent_risky_events: Vec<RiskyEvent>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RiskyEvent {
    /// RFC 3339.
    pub event_time: String,
    pub event_id: String,
    pub computer: String,
    /// The event's risk score, 0..=100.
    pub event_score: u8,
    /// Its part in the user's risk, 0..=1.
    pub weight: f32,
    /// Rules that fired, by flag label.
    pub rules: Vec<String>,
}

/// One rule of the running policy.
#[derive(Clone, Debug, Serialize)]
pub struct RuleInfo {
    pub id: String,
    pub name: String,
    /// The module's own version.
    pub version: String,
    pub module_sha256: String,
    pub mode: RuleMode,
    pub weight: f32,
    pub severity: String,
    pub entity: crate::rules::RuleEntity,
    /// Switched off by its failure policy until the next reload.
    pub disabled: bool,
}

/// How much the pipeline holds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sizes {
    pub users: u64,
    pub computers: u64,
    pub device_pairs: u64,
    /// Heap bytes of windows, device history, host popularity, baselines
    /// and entity risk.
    pub state_bytes: u64,
    /// Events the watermark holds.
    pub held_events: u64,
    pub open_incidents: u64,
    /// Latest event time read (Unix seconds).
    pub latest_event_time: Option<i64>,
}

/// At most this many batch durations wait to be drained (a publisher that
/// stops draining costs no more memory than this).
pub(super) const MAX_PENDING_DURATIONS: usize = 1 << 16;

impl Pipeline<'_> {
    /// `name`'s state, risk and recent risky events; `None` for a user
    /// the engine has no state for.
    pub fn user_view(&self, name: &str) -> Option<UserView> {
        let id = self.users.get(name.as_bytes())?;
        let profile = self.state.user_profile(id)?;
        let now = self.orderer.latest().unwrap_or(profile.last_seen);
        let labels = &self.rules.flag_labels;
        let mut recent_risky_events: Vec<RiskyEvent> = self
            .entities
            .contributions(EntityKind::User, id, now)
            .map(|c| RiskyEvent {
                event_time: rfc3339(c.time),
                event_id: c.event_id.to_string(),
                computer: self.computers.name(c.computer).to_string(),
                event_score: c.event_score,
                weight: c.weight,
                rules: labels
                    .iter()
                    .enumerate()
                    .filter(|(r, _)| c.rules & (1 << r) != 0)
                    .map(|(_, label)| label.clone())
                    .collect(),
            })
            .collect();
        recent_risky_events.reverse();
        Some(UserView {
            user: name.to_string(),
            profile,
            risk: self.entities.risk(EntityKind::User, id, now),
            recent_risky_events,
        })
    }

    /// The running policy's rules.
    pub fn rules_info(&self) -> Vec<RuleInfo> {
        self.rules
            .rules
            .iter()
            .map(|rule| RuleInfo {
                id: rule.id.clone(),
                name: rule.metadata.name.clone(),
                version: rule.metadata.version.clone(),
                module_sha256: rule.module_sha256.clone(),
                mode: rule.mode,
                weight: rule.weight,
                severity: rule.metadata.severity.clone(),
                entity: rule.metadata.entity,
                disabled: rule.stats.disabled,
            })
            .collect()
    }

    /// How much the pipeline holds now.
    pub fn sizes(&self) -> Sizes {
        Sizes {
            users: self.users.len() as u64,
            computers: self.computers.len() as u64,
            device_pairs: self.state.device_pairs() as u64,
            state_bytes: (self.state.heap_bytes() + self.entities.heap_bytes()) as u64,
            held_events: self.orderer.held() as u64,
            open_incidents: self.alerts.open_incidents() as u64,
            latest_event_time: self.orderer.latest(),
        }
    }

    /// Hands each batch's scoring time (seconds) since the last call to
    /// `record`, oldest first. Kept only once asked for
    /// ([`Pipeline::time_batches`]).
    pub fn drain_batch_durations(&mut self, mut record: impl FnMut(f64)) {
        if let Some(durations) = self.counters.batch_durations.as_mut() {
            for seconds in durations.drain(..) {
                record(f64::from(seconds));
            }
        }
    }

    /// Starts keeping each batch's scoring time for
    /// [`Pipeline::drain_batch_durations`].
    pub fn time_batches(&mut self) {
        self.counters.batch_durations.get_or_insert_with(Vec::new);
    }
}

fn rfc3339(time: i64) -> String {
    chrono::DateTime::from_timestamp(time, 0).map_or_else(|| time.to_string(), |t| t.to_rfc3339())
}
