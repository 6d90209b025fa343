//! Bounds on what the engine keeps, so that input it does not control (a
//! flood of made-up names, an account with millions of logins a day, a
//! stream stuck far behind its latest event) cannot exhaust its memory.
//! Hitting a bound is never silent: each is counted (`state_caps` in the
//! summary and the snapshot's counters) and logged, the first time at once
//! and then at each checkpoint while it keeps happening.

use serde::{Deserialize, Serialize};

/// The bounds. The defaults are far above any real enterprise (LANL: 11,362
/// users, 22,284 computers, at most a few thousand events a day per user)
/// and keep a full engine under a few GB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateLimits {
    /// Distinct users kept. An event of a user not yet known once this many
    /// are is dead-lettered (reason `state_cap_users`).
    pub max_users: usize,
    /// Distinct computers kept. An event on a computer not yet known once
    /// this many are is dead-lettered (reason `state_cap_computers`).
    pub max_computers: usize,
    /// Events kept in one user's 24-hour window. Past it the oldest leave
    /// early: that user's 24-hour (and, for a burst of more than this in an
    /// hour, 1-hour) counts cover less than the window.
    pub max_window_events: usize,
    /// Events the watermark holds back for ordering. Past it the earliest
    /// second is released before its lateness has passed, and the watermark
    /// moves up to it: events arriving later for that second are late.
    pub max_held_events: usize,
}

impl Default for StateLimits {
    fn default() -> Self {
        StateLimits {
            max_users: 5_000_000,
            max_computers: 5_000_000,
            max_window_events: 1_000_000,
            max_held_events: 20_000_000,
        }
    }
}

/// Which bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    Users,
    Computers,
    WindowEvents,
    HeldEvents,
}

impl Cap {
    pub const ALL: [Cap; 4] = [
        Cap::Users,
        Cap::Computers,
        Cap::WindowEvents,
        Cap::HeldEvents,
    ];

    /// Its name in the summary and the logs.
    pub fn name(self) -> &'static str {
        match self {
            Cap::Users => "users",
            Cap::Computers => "computers",
            Cap::WindowEvents => "window_events",
            Cap::HeldEvents => "held_events",
        }
    }

    /// What hitting it does, for the log.
    pub fn effect(self) -> &'static str {
        match self {
            Cap::Users => "events of users not yet known are dead-lettered (state_cap_users)",
            Cap::Computers => {
                "events on computers not yet known are dead-lettered (state_cap_computers)"
            }
            Cap::WindowEvents => {
                "the oldest events leave a user's window early: its 24 h counts cover less"
            }
            Cap::HeldEvents => {
                "the earliest held events are released before their lateness has passed"
            }
        }
    }
}

/// How often each bound was hit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapHits {
    pub users: u64,
    pub computers: u64,
    pub window_events: u64,
    pub held_events: u64,
}

impl CapHits {
    pub fn get(&self, cap: Cap) -> u64 {
        match cap {
            Cap::Users => self.users,
            Cap::Computers => self.computers,
            Cap::WindowEvents => self.window_events,
            Cap::HeldEvents => self.held_events,
        }
    }

    pub fn add(&mut self, cap: Cap, n: u64) {
        match cap {
            Cap::Users => self.users += n,
            Cap::Computers => self.computers += n,
            Cap::WindowEvents => self.window_events += n,
            Cap::HeldEvents => self.held_events += n,
        }
    }
}
