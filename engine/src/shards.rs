//! Dividing a state snapshot between workers, and joining parts: the state
//! side of splitting a Kinesis stream's shards.
//!
//! Kinesis puts a record in the shard whose hash-key range holds the MD5 of
//! its partition key. With the user name as the partition key (AuthPulse's
//! producer's, and the documented contract for others), all of a user's
//! events are in one shard, and so is everything the engine keeps about
//! the user: the window, device history and baselines, the entity risk
//! ledger, open user incidents and held events. That part of a snapshot is
//! selected by user ([`Snapshot::split`]) and moved alone.
//!
//! The computer-side state (host popularity, per-computer baselines and
//! risk, open computer incidents) is built from every shard's users, so it
//! cannot be cut by shard. A split part keeps all of it; a worker's view of
//! a computer is then of the users it has read since. [`Snapshot::merge`]
//! keeps the receiving part's computer-side state and takes from the other
//! part only the computers the receiving one has never seen.
//!
//! A part holds no open aggregate windows (the aggregate tables' current
//! hour and day) and keeps the counters of the run it was cut from. Parts
//! may stand at different event times; the joined clock and watermark are
//! the earlier part's (see [`Snapshot::merge`]).

use std::collections::HashMap;
use std::io::{Read, Write};

use crate::alerts::Incident;
use crate::entity::EntityKind;
use crate::event::NameId;
use crate::snapshot::{self, Body, ComputersDecided, SnapshotError, SnapshotMeta};

/// A state snapshot read whole, to be divided or joined.
pub struct Snapshot {
    body: Body,
}

impl Snapshot {
    /// Reads a snapshot (any source: a file, an object).
    pub fn read(input: &mut impl Read) -> Result<Snapshot, SnapshotError> {
        Ok(Snapshot {
            body: snapshot::read(input)?,
        })
    }

    /// What it says about itself, its names and device pairs counted as
    /// they are now (after a split or merge).
    pub fn meta(&self) -> &SnapshotMeta {
        &self.body.meta
    }

    /// Names of the users it holds state for.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        let state = &self.body.state;
        self.body
            .users
            .iter()
            .enumerate()
            .filter(|&(id, _)| state.has_user(id as NameId))
            .map(|(_, name)| name.as_str())
    }

    /// Writes it (the same format the pipeline writes); returns bytes written.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<u64, SnapshotError> {
        let details = snapshot::HeldDetails::of(&self.body.orderer, &self.body.extras.clock);
        let parts = snapshot::SnapshotParts {
            body: &self.body,
            extras: &self.body.extras,
            state: &self.body.state,
            details: &details,
            computers_decided: self.body.computers_decided.as_ref(),
        };
        snapshot::EncodedSnapshot::encode(&parts, Vec::new())?.write_to(out)
    }

    /// The part of the state that belongs to the users `keep` accepts (by
    /// name), with all of the computer-side state.
    pub fn split(mut self, keep: impl Fn(&str) -> bool) -> Snapshot {
        let body = &mut self.body;
        let kept: Vec<bool> = body.users.iter().map(|name| keep(name)).collect();
        let is_kept = |id: NameId| kept.get(id as usize).copied().unwrap_or(false);
        body.state.clear_users(|id| !is_kept(id));
        body.entities.drop_users(|id| !is_kept(id));
        body.incidents
            .retain(|i| i.entity == EntityKind::Computer || is_kept(i.id));
        body.orderer.held.retain(|event| is_kept(event.user));
        body.extras
            .clock
            .pending
            .retain(|arrival| is_kept(arrival.event.user));
        body.sinks.clear();
        self.recount();
        self
    }

    /// Joins `other`'s user-side state into this one's, and its
    /// computer-side state for computers this one has never seen. Both must
    /// have been taken with the same base date and the same rules, and no
    /// user may have state in both.
    pub fn merge(mut self, other: Snapshot) -> Result<Snapshot, SnapshotError> {
        let (into, mut from) = (&mut self.body, other.body);
        if into.time_base_unix != from.time_base_unix {
            return Err(SnapshotError::Merge(format!(
                "the parts were taken with different base dates (Unix {} and {})",
                into.time_base_unix, from.time_base_unix
            )));
        }
        if into.rule_labels != from.rule_labels {
            return Err(SnapshotError::Merge(format!(
                "the parts were taken under different rules ({} and {})",
                into.rule_labels.join(", "),
                from.rule_labels.join(", ")
            )));
        }
        let user_ids = intern_all(&mut into.users, &from.users);
        let computer_ids = intern_all(&mut into.computers, &from.computers);
        let moved: Vec<(NameId, NameId)> = user_ids
            .iter()
            .enumerate()
            .map(|(source, &target)| (source as NameId, target))
            .collect();
        into.state
            .take_users(&mut from.state, &moved, &computer_ids)
            .map_err(|id| {
                SnapshotError::Merge(format!(
                    "user {} has state in both parts",
                    into.users[id as usize]
                ))
            })?;
        into.entities
            .take_users(&mut from.entities, &moved, &user_ids, &computer_ids);
        for mut incident in from.incidents {
            let target = match incident.entity {
                EntityKind::User => user_ids[incident.id as usize],
                EntityKind::Computer => {
                    // Each part holds the computer incidents its worker
                    // had open; one of them is kept (in a fleet, only the
                    // worker deciding a computer has its incident open).
                    let target = computer_ids[incident.id as usize];
                    let held = |i: &Incident| i.entity == EntityKind::Computer && i.id == target;
                    if into.incidents.iter().any(held) {
                        continue;
                    }
                    target
                }
            };
            incident.id = target;
            into.incidents.push(incident);
        }
        into.incidents.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
        for mut event in from.orderer.held {
            event.user = user_ids[event.user as usize];
            event.computer = computer_ids[event.computer as usize];
            into.orderer.held.push(event);
        }
        // The parts may stand at different event times (a fleet worker
        // takes over a shard that lags its own): the joined clock is the
        // earlier part's, so that the lagging part's next events are not
        // late. The stream's merge hands out its older events first.
        let (extras, other) = (&mut into.extras, from.extras);
        extras.orderer_clock = earlier(extras.orderer_clock, other.orderer_clock);
        extras.clock.now = earlier(extras.clock.now, other.clock.now);
        extras.clock.latest_admitted =
            earlier(extras.clock.latest_admitted, other.clock.latest_admitted);
        for mut arrival in other.clock.pending {
            arrival.event.user = user_ids[arrival.event.user as usize];
            arrival.event.computer = computer_ids[arrival.event.computer as usize];
            extras.clock.pending.push(arrival);
        }
        // Both parts' waiting arrivals, in the order they arrived.
        extras.clock.pending.sort_by_key(|arrival| arrival.line);
        into.orderer.max_time = into.orderer.max_time.max(from.orderer.max_time);
        into.orderer.floor = earlier(into.orderer.floor, from.orderer.floor);
        // A part of one process's decided all it scored; a fleet worker's,
        // what its record says.
        if into.computers_decided.is_some() || from.computers_decided.is_some() {
            let decided = |record: Option<ComputersDecided>, closed_through| {
                record.unwrap_or_else(|| ComputersDecided::all_through(closed_through))
            };
            let ours = decided(into.computers_decided.take(), into.closed_through);
            let theirs = decided(from.computers_decided.take(), from.closed_through);
            into.computers_decided = Some(ours.join(theirs));
        }
        into.closed_through = into.closed_through.min(from.closed_through);
        into.meta.latest_event_time = into.meta.latest_event_time.max(from.meta.latest_event_time);
        self.recount();
        Ok(self)
    }

    /// Forgets how far event time has got (the event clock, its recent
    /// arrivals, the orderer's clock and floor), keeping the held events: the
    /// next arrivals set the clock again. For state whose shards stand at
    /// different event times (a fleet worker's, some of whose shards start
    /// from their beginning or lag the others): the stream's merge hands out
    /// the oldest events first, so the clock follows the shard that lags
    /// instead of dead-lettering its events as late.
    pub fn rewind_clock(&mut self) {
        let body = &mut self.body;
        body.extras.orderer_clock = None;
        body.extras.clock.now = None;
        body.extras.clock.latest_admitted = None;
        body.extras.clock.recent.clear();
        body.orderer.floor = None;
    }

    fn recount(&mut self) {
        let body = &mut self.body;
        body.meta.users = body.users.len() as u64;
        body.meta.computers = body.computers.len() as u64;
        body.meta.device_pairs = body.state.device_pairs() as u64;
    }
}

/// The earlier of two times either of which may be unknown.
fn earlier<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Adds the names of `from` missing in `names`; returns each `from` id's
/// id in `names`.
fn intern_all(names: &mut Vec<String>, from: &[String]) -> Vec<NameId> {
    let mut ids: HashMap<&str, NameId> = HashMap::with_capacity(names.len());
    for (id, name) in names.iter().enumerate() {
        ids.insert(name, id as NameId);
    }
    let mut added = Vec::new();
    let mut mapped = Vec::with_capacity(from.len());
    for name in from {
        let id = match ids.get(name.as_str()) {
            Some(&id) => id,
            None => {
                let id = (names.len() + added.len()) as NameId;
                added.push(name.clone());
                id
            }
        };
        mapped.push(id);
    }
    drop(ids);
    names.extend(added);
    mapped
}
