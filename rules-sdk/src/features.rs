//! The per-event feature record the host computes and hands to every rule.
//!
//! The layout is part of the ABI: 64 bytes, `repr(C)`, little-endian, no padding.
//! The host owns all state (windows, device history, host popularity); a rule sees
//! only this record, so a rule is a pure function of it and of its parameters.

/// `flags` bit: this is the first time this user has logged on to this computer.
pub const FLAG_NEW_DEVICE_FOR_USER: u32 = 1 << 0;
/// `flags` bit: this is the first time anyone has logged on to this computer.
pub const FLAG_NEW_COMPUTER: u32 = 1 << 1;
/// `flags` bit: this is the user's first event ever.
pub const FLAG_NEW_USER: u32 = 1 << 2;

/// `user_gap_s` value when the user has no previous login.
pub const NO_PREVIOUS_LOGIN: u32 = u32::MAX;

/// One authentication event and everything the host knows about it, as of its event time.
///
/// All counts include the event itself. Windows are sliding over event time:
/// "last 1h" means `(event_time - 3600, event_time]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// Event time, seconds since the Unix epoch (UTC).
    pub event_time: i64,
    /// Host-interned user id. Stable within one run; opaque to rules.
    pub user: u32,
    /// Host-interned computer id. Stable within one run; opaque to rules.
    pub computer: u32,
    /// The user's logins in the last hour.
    pub user_logins_1h: u32,
    /// The user's logins in the last 24 hours.
    pub user_logins_24h: u32,
    /// Distinct computers the user logged on to in the last hour.
    pub user_distinct_computers_1h: u32,
    /// Distinct computers the user logged on to in the last 24 hours.
    pub user_distinct_computers_24h: u32,
    /// Computers the user used for the first time ever within the last hour.
    pub user_new_computers_1h: u32,
    /// Computers the user used for the first time ever within the last 24 hours.
    pub user_new_computers_24h: u32,
    /// Distinct computers the user has ever used (the size of their device history).
    pub user_known_computers: u32,
    /// Seconds since the user's first event (saturating). Rules use it for burn-in.
    pub user_tenure_s: u32,
    /// Seconds since the user's previous login, or [`NO_PREVIOUS_LOGIN`].
    pub user_gap_s: u32,
    /// Distinct users who have ever logged on to this computer.
    pub host_users_ever: u32,
    /// Distinct users who logged on to this computer on this UTC day.
    pub host_users_today: u32,
    /// Bit set of `FLAG_*` constants.
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<Features>() == 64);
const _: () = assert!(core::mem::align_of::<Features>() == 8);

impl Features {
    /// The records as the bytes the ABI moves into a module's memory.
    pub fn slice_as_bytes(records: &[Features]) -> &[u8] {
        // SAFETY: `Features` is `repr(C)` with only integer fields and no padding
        // (its size is asserted above), so every byte is initialised.
        unsafe { core::slice::from_raw_parts(records.as_ptr().cast::<u8>(), size_of_val(records)) }
    }

    /// True when this user had never used this computer before this event.
    #[inline]
    pub fn is_new_device(&self) -> bool {
        self.flags & FLAG_NEW_DEVICE_FOR_USER != 0
    }

    /// True when nobody had ever used this computer before this event.
    #[inline]
    pub fn is_new_computer(&self) -> bool {
        self.flags & FLAG_NEW_COMPUTER != 0
    }

    /// Distinct users of this computer before this event
    /// (so 0 for a brand-new computer, 1 when exactly one other user had used it
    /// and this user is new to it).
    #[inline]
    pub fn host_users_before(&self) -> u32 {
        if self.is_new_device() {
            self.host_users_ever.saturating_sub(1)
        } else {
            self.host_users_ever
        }
    }
}

/// What a rule says about one event: nothing, or a hit with a score and a reason.
///
/// Part of the ABI: 8 bytes, `repr(C)`. A `score` of 0 means "no hit".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Verdict {
    /// Risk contribution, in `(0, 100]`; 0 means the rule did not fire.
    pub score: f32,
    /// Index into the rule's `Metadata::reasons`.
    pub reason: u32,
}

const _: () = assert!(core::mem::size_of::<Verdict>() == 8);

impl Verdict {
    /// The records as writable bytes, for copying verdicts out of a module's memory.
    pub fn slice_as_bytes_mut(records: &mut [Verdict]) -> &mut [u8] {
        // SAFETY: `Verdict` is `repr(C)` { f32, u32 } with no padding; every bit
        // pattern is a valid value, so arbitrary bytes may be written.
        unsafe {
            core::slice::from_raw_parts_mut(records.as_mut_ptr().cast::<u8>(), size_of_val(records))
        }
    }

    /// The "did not fire" verdict.
    pub const NONE: Verdict = Verdict {
        score: 0.0,
        reason: 0,
    };

    /// Whether the rule fired.
    #[inline]
    pub fn is_hit(&self) -> bool {
        self.score != 0.0
    }
}

/// A rule firing: its risk contribution (0..=100) and which of its reasons applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// Risk contribution in `(0, 100]`. The host rejects NaN and out-of-range values.
    pub score: f32,
    /// Index into the rule's `Metadata::reasons`.
    pub reason: u32,
}

impl Hit {
    /// A hit with `score` (clamped to 0..=100) and reason index `reason`.
    pub fn new(score: f32, reason: u32) -> Hit {
        Hit {
            score: score.clamp(0.0, 100.0),
            reason,
        }
    }
}

impl From<Option<Hit>> for Verdict {
    #[inline]
    fn from(hit: Option<Hit>) -> Verdict {
        match hit {
            Some(h) => Verdict {
                score: h.score,
                reason: h.reason,
            },
            None => Verdict::NONE,
        }
    }
}
