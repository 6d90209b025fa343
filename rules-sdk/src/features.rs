//! The per-event feature record the host computes and hands to every rule.
//!
//! The layout is part of the ABI: 256 bytes, `repr(C)`, little-endian, no
//! padding. Its first 64 bytes are the record of ABI version 1, its first
//! 128 that of version 2 and its first 192 that of version 3, unchanged, so
//! a module built for an older version receives exactly those. The host owns all
//! state (windows, device history, host popularity, each entity's own
//! history); a rule sees only this record, so a rule is a pure function of it
//! and of its parameters.
//!
//! What the record says against each entity's history (usual rates, the
//! evidence in a new computer or a source) is in `baselines`; what a rule
//! answers is in `verdict`.

/// `flags` bit: this is the first time this user has logged on to this computer.
pub const FLAG_NEW_DEVICE_FOR_USER: u32 = 1 << 0;
/// `flags` bit: this is the first time anyone has logged on to this computer.
pub const FLAG_NEW_COMPUTER: u32 = 1 << 1;
/// `flags` bit: this is the user's first event ever.
pub const FLAG_NEW_USER: u32 = 1 << 2;

/// `user_gap_s` value when the user has no previous login.
pub const NO_PREVIOUS_LOGIN: u32 = u32::MAX;

/// Size of the record a module of ABI version 1 receives: the first 64 bytes
/// of [`Features`].
pub const FEATURES_V1_BYTES: usize = 64;
/// Size of the record a module of ABI version 2 receives: the first 128
/// bytes of [`Features`].
pub const FEATURES_V2_BYTES: usize = 128;
/// Size of the record a module of ABI version 3 receives: the first 192
/// bytes of [`Features`].
pub const FEATURES_V3_BYTES: usize = 192;

/// `logon_type` values (Windows' numbers).
pub const LOGON_INTERACTIVE: u8 = 2;
pub const LOGON_NETWORK: u8 = 3;
pub const LOGON_BATCH: u8 = 4;
pub const LOGON_SERVICE: u8 = 5;
pub const LOGON_UNLOCK: u8 = 7;
pub const LOGON_NETWORK_CLEARTEXT: u8 = 8;
pub const LOGON_NEW_CREDENTIALS: u8 = 9;
pub const LOGON_REMOTE_INTERACTIVE: u8 = 10;
pub const LOGON_CACHED_INTERACTIVE: u8 = 11;

/// `auth_package` values.
pub const AUTH_NTLM: u8 = 1;
pub const AUTH_KERBEROS: u8 = 2;
pub const AUTH_NEGOTIATE: u8 = 3;
pub const AUTH_OTHER: u8 = 4;

/// `outcome` values.
pub const OUTCOME_SUCCESS: u8 = 1;
pub const OUTCOME_FAILURE: u8 = 2;

/// `failure_reason` values.
pub const FAILURE_BAD_PASSWORD: u8 = 1;
pub const FAILURE_NO_SUCH_USER: u8 = 2;
pub const FAILURE_LOCKED: u8 = 3;
pub const FAILURE_DISABLED: u8 = 4;
pub const FAILURE_PASSWORD_EXPIRED: u8 = 5;
pub const FAILURE_RESTRICTED: u8 = 6;
pub const FAILURE_OTHER: u8 = 7;

/// One authentication event and everything the host knows about it, as of its event time.
///
/// All counts include the event itself unless they say "before". Windows are
/// sliding over event time: "last 1h" means `(event_time - 3600, event_time]`.
/// Clock hours and days are UTC.
///
/// **Baselines.** An entity's first day of history is when it shows most of
/// what it already had (on a first start, every computer a user touches is
/// new to the pipeline), so its usual rate of new computers (or new users,
/// for a computer) is measured over its *baseline period*: from the end of
/// its first day to the start of the last 24 hours. The `*_baseline_*`
/// fields give the count and the length of that period; it is empty (0 s)
/// until an entity has been seen for two days. See
/// [`Features::usual_new_computers_per_day`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    // ---- ABI version 1 (64 bytes) ----
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

    // ---- added in ABI version 2: baselines from each entity's own history ----
    /// The user's logins in their busiest clock hour before the current one
    /// (0 until a clock hour of theirs has ended).
    pub user_peak_logins_1h: u32,
    /// The user's logins before this event, ever.
    pub user_logins_before: u32,
    /// Of those, the logins in this event's hour of day (UTC), on any day.
    pub user_logins_at_hour_before: u32,
    /// Computers the user first used during their baseline period.
    pub user_baseline_new_computers: u32,
    /// Length of the user's baseline period, seconds.
    pub user_baseline_s: u32,
    /// Distinct users who logged on to this computer in this clock hour (UTC).
    pub host_users_this_hour: u32,
    /// Users who logged on to this computer for the first time within the last hour.
    pub host_new_users_1h: u32,
    /// Users who logged on to this computer for the first time within the last 24 hours.
    pub host_new_users_24h: u32,
    /// Users new to this computer during its baseline period.
    pub host_baseline_new_users: u32,
    /// Length of the computer's baseline period, seconds.
    pub host_baseline_s: u32,
    /// Seconds since anyone first logged on to this computer (saturating).
    pub host_tenure_s: u32,
    /// Distinct users of this computer in its busiest clock hour before the
    /// current one.
    pub host_peak_users_hour: u32,
    /// Added in ABI version 4 (zero for a record that does not say a
    /// source): distinct accounts that logged on from this event's source
    /// computer in this clock hour and the one before, this one included
    /// when it succeeded. How many accounts a source serves is what its
    /// failures are weighed against.
    pub source_users_2h: u32,
    /// Added in ABI version 4: the user's earlier logons (successful) whose
    /// record named a source computer.
    pub user_sourced_logins_before: u32,
    /// Zero; room for later fields within the same record size.
    pub reserved: [u32; 2],

    // ---- added in ABI version 3: longer horizons, kinds, peers, population ----
    /// Computers the user used for the first time within the last 72 hours,
    /// after their first day (a first day shows what they already had).
    pub user_new_computers_72h: u32,
    /// Of the user's new computers within the last 24 hours (after their
    /// first day), those that one or two other users had used before
    /// (rarely used computers).
    pub user_rare_new_computers_24h: u32,
    /// The same within the last 72 hours.
    pub user_rare_new_computers_72h: u32,
    /// Length of the user's *history period*: from the end of their first
    /// day to the start of the last 72 hours (0 until they have been seen
    /// for four days).
    pub user_history_s: u32,
    /// Computers the user first used during their history period.
    pub user_history_new_computers: u32,
    /// Of those, the rarely used ones (one or two other users then).
    pub user_history_rare_new_computers: u32,
    /// On a user's first logon to a computer used by at most 20 others: how
    /// many of its earlier users (the most recent 64 asked) share another
    /// computer used by at most 20 with this user (their *peers*). 0
    /// otherwise.
    pub host_peer_users: u32,
    /// How many earlier users of the computer were asked for
    /// `host_peer_users`.
    pub host_peers_asked: u32,
    /// The population's pace of new computers: computers first used per
    /// known computer per day, in millionths, over users past their first
    /// day (the last weeks weigh most: counts halve every 7 days). 0 until
    /// the population has a day of history.
    pub population_new_per_known_ppm: u32,
    /// Share of those first uses that were of rarely used computers, in
    /// millionths.
    pub population_rare_share_ppm: u32,
    /// The population's share of logins at this event's hour of day (UTC),
    /// in millionths.
    pub population_hour_share_ppm: u32,
    /// The same for the hour of day before (the last hour's window reaches
    /// into it).
    pub population_previous_hour_share_ppm: u32,
    /// The user's logins before this event in the hour of day before this
    /// event's, on any day.
    pub user_logins_at_previous_hour_before: u32,
    /// The logins the user would have had in the last hour had they kept
    /// their share of all logins since they were first seen (the
    /// population's last hour times that share; 0 for a first login). The
    /// daily cycle is in it: a new account's pace at night does not make
    /// its morning look like a burst.
    pub user_paced_logins_1h: u32,
    /// Added in ABI version 4: the user's earlier logons from this event's
    /// source computer (0 when the record names none).
    pub user_logins_from_source_before: u32,
    /// Added in ABI version 4: distinct source computers the user logged on
    /// from before this event.
    pub user_sources_before: u32,

    // ---- added in ABI version 4: what a richer record says ----
    // All zero for a record that does not say: a LANL `time,user,computer`
    // line. Windows below are this clock hour and the one before (UTC):
    // between one and two hours.
    /// The computer the logon came from: one more than its host-interned
    /// id (among the computers, as `computer`), 0 when not said.
    pub source_computer: u32,
    /// The account that acted, when it is not `user`: one more than its
    /// host-interned id (among the users), 0 when not said.
    pub source_user: u32,
    /// The Windows logon type (`LOGON_*`; OCSF's numbers are the same), 0
    /// when not said.
    pub logon_type: u8,
    /// `AUTH_*`, 0 when not said.
    pub auth_package: u8,
    /// `OUTCOME_*`, 0 when not said. A failed logon changes none of the
    /// user's windows, device history or the computer's popularity: the
    /// user did not log on. It counts in the failure fields below.
    pub outcome: u8,
    /// `FAILURE_*`: why it failed, 0 when not said.
    pub failure_reason: u8,
    /// Logon types the user had before this event: bit `t` for type `t`
    /// (types past 30 share bit 31).
    pub user_logon_types_before: u32,
    /// The user's logons before this event with this event's logon type.
    pub user_logins_this_type_before: u32,
    /// The user's logons before this event whose logon type was said.
    pub user_typed_logins_before: u32,
    /// Failed logons on this account (as the one logged on to), this event
    /// included.
    pub user_failures_2h: u32,
    /// Distinct source computers of those.
    pub user_failed_sources_2h: u32,
    /// Failed logons from this event's source computer, this one included.
    pub source_failures_2h: u32,
    /// Distinct accounts those failed on.
    pub source_failed_users_2h: u32,
    /// Distinct computers logged on to from the source computer.
    pub source_destinations_2h: u32,
    /// Of those, the ones the source reached for the first time.
    pub source_new_destinations_2h: u32,
    /// Computers ever logged on to from the source, this one included.
    pub source_known_destinations: u32,
    /// Seconds since the source computer was first seen as one.
    pub source_tenure_s: u32,
    /// New destinations of the source during its baseline period: from the
    /// end of its first day to the start of the clock hour before this one.
    pub source_baseline_new_destinations: u32,
    /// Length of that period, seconds (0 until it has one).
    pub source_baseline_s: u32,
}

const _: () = assert!(core::mem::size_of::<Features>() == 256);
const _: () = assert!(core::mem::align_of::<Features>() == 8);
const _: () = assert!(core::mem::offset_of!(Features, user_peak_logins_1h) == FEATURES_V1_BYTES);
const _: () = assert!(core::mem::offset_of!(Features, user_new_computers_72h) == FEATURES_V2_BYTES);
const _: () = assert!(core::mem::offset_of!(Features, source_computer) == FEATURES_V3_BYTES);

/// A computer that this many users started on within its first
/// [`ROLLOUT_DAY_S`] is being rolled out ([`Features::is_rolling_out`]).
pub const ROLLOUT_USERS: u32 = 5;
/// A computer's first day, in seconds.
pub const ROLLOUT_DAY_S: u32 = 86_400;

impl Features {
    /// The records as the bytes the ABI moves into a module's memory.
    pub fn slice_as_bytes(records: &[Features]) -> &[u8] {
        // SAFETY: `Features` is `repr(C)` with only integer fields and no padding
        // (its size is asserted above), so every byte is initialised.
        unsafe { core::slice::from_raw_parts(records.as_ptr().cast::<u8>(), size_of_val(records)) }
    }

    /// A record from the bytes [`Features::slice_as_bytes`] gives for one
    /// (`None`: not one record's size).
    pub fn from_bytes(bytes: &[u8]) -> Option<Features> {
        if bytes.len() != size_of::<Features>() {
            return None;
        }
        // SAFETY: `Features` has only integer fields and no padding, so
        // every bit pattern is one; the read does not assume alignment.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Features>()) })
    }

    /// True when the record says the logon failed.
    #[inline]
    pub fn is_failure(&self) -> bool {
        self.outcome == OUTCOME_FAILURE
    }

    /// True when the record said more than who, where and when: what
    /// `Events::Detailed` rules are handed.
    #[inline]
    pub fn is_detailed(&self) -> bool {
        self.outcome != 0 || self.source_computer != 0 || self.logon_type != 0
    }

    /// True when the record names the computer the logon came from.
    #[inline]
    pub fn has_source(&self) -> bool {
        self.source_computer != 0
    }

    /// True when this event's logon type is one the user had never used
    /// before, though they had `at_least` logons whose type was said.
    #[inline]
    pub fn is_new_logon_type(&self, at_least: u32) -> bool {
        self.logon_type != 0
            && self.user_typed_logins_before >= at_least
            && self.user_logins_this_type_before == 0
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

    /// True when the computer is being rolled out: at least
    /// [`ROLLOUT_USERS`] users started on it within its first day (a new
    /// server a team moves to, a migration's targets). Its users are not
    /// spreading; they are being moved.
    #[inline]
    pub fn is_rolling_out(&self) -> bool {
        self.host_tenure_s < ROLLOUT_DAY_S && self.host_new_users_24h >= ROLLOUT_USERS
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
