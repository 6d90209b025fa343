//! The per-event feature record the host computes and hands to every rule.
//!
//! The layout is part of the ABI: 256 bytes, `repr(C)`, little-endian, no
//! padding. Its first 64 bytes are the record of ABI version 1, its first
//! 128 that of version 2 and its first 192 that of version 3, unchanged, so
//! a module built for an older version receives exactly those. The host owns all
//! state (windows, device history, host popularity, each entity's own
//! history); a rule sees only this record, so a rule is a pure function of it
//! and of its parameters.

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

const DAY: f32 = 86_400.0;

/// What [`Features::usual_new_computer_rate`] assumes before a user's own
/// history speaks: each day a user starts using about this share of the
/// computers they already know (the LANL set's pace after its first month).
pub const PRIOR_NEW_PER_KNOWN_PER_DAY: f32 = 0.03;
/// A computer that this many users started on within its first
/// [`ROLLOUT_DAY_S`] is being rolled out ([`Features::is_rolling_out`]).
pub const ROLLOUT_USERS: u32 = 5;
/// A computer's first day, in seconds.
pub const ROLLOUT_DAY_S: u32 = 86_400;
/// How many days of history that assumption weighs.
pub const PRIOR_DAYS: f32 = 2.0;
/// The share of rarely used computers among new ones assumed before the
/// population's is measured.
pub const DEFAULT_RARE_SHARE: f32 = 0.15;
/// The share of accounts whose work is reaching computers new to them
/// (help desks, desktop support, deployment and scanning accounts), as
/// [`Features::predicted_new_computer_rate`] assumes before an account's
/// own history says which kind it is.
pub const ROAMER_SHARE: f32 = 0.02;
/// How many new computers a day such an account reaches.
pub const ROAMER_NEW_PER_DAY: f32 = 8.0;
/// The share of intrusions that work from the stolen account's usual
/// computers (malware on the victim's workstation) rather than from a
/// foothold elsewhere, assumed by [`Features::source_evidence`]'s callers.
pub const DEFAULT_INTRUDER_USUAL_SOURCE: f32 = 0.3;

/// A user's history of new computers, as [`Features::judged_history`]
/// gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct History {
    /// Computers first used in it.
    pub new_computers: u32,
    /// Of those, the rarely used ones.
    pub rare_new_computers: u32,
    /// Its length in days.
    pub days: f32,
}

impl Features {
    /// The records as the bytes the ABI moves into a module's memory.
    pub fn slice_as_bytes(records: &[Features]) -> &[u8] {
        // SAFETY: `Features` is `repr(C)` with only integer fields and no padding
        // (its size is asserted above), so every byte is initialised.
        unsafe { core::slice::from_raw_parts(records.as_ptr().cast::<u8>(), size_of_val(records)) }
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

    /// How many computers a day this user usually starts using: the
    /// baseline period's rate, shrunk toward `prior_per_day` as if
    /// `prior_days` more days had shown that rate. A user with a short
    /// history gets a rate near the prior; a long history speaks for itself.
    #[inline]
    pub fn usual_new_computers_per_day(&self, prior_per_day: f32, prior_days: f32) -> f32 {
        shrunk_rate(
            self.user_baseline_new_computers,
            self.user_baseline_s,
            prior_per_day,
            prior_days,
        )
    }

    /// The rate rules judge a user's new computers against:
    /// [`Features::usual_new_computers_per_day`] with the default prior
    /// ([`Features::prior_new_per_known_per_day`] of the computers the user
    /// knows, weighing [`PRIOR_DAYS`] days), and never below that prior. A few
    /// quiet days are no proof that a user is quieter than users of their
    /// size; a busy history does show that they are busier.
    #[inline]
    pub fn usual_new_computer_rate(&self) -> f32 {
        let prior = self.prior_new_per_known_per_day() * self.user_known_computers.max(1) as f32;
        self.usual_new_computers_per_day(prior, PRIOR_DAYS)
            .max(prior)
    }

    /// The pace of new computers this user's history predicts, knowing that
    /// accounts come in two kinds: most at their own usual rate
    /// ([`Features::usual_new_computer_rate`]), and a few ([`ROAMER_SHARE`])
    /// whose work is reaching new computers ([`ROAMER_NEW_PER_DAY`]). Which
    /// kind this account is, is weighed by its baseline period's new
    /// computers and by those of the last 24 hours before this one (two
    /// Poisson counts under each pace). Days of a quiet baseline rule the
    /// roamer out, so a settled account is judged at its own rate; a young
    /// account, whose baseline is short, that keeps finding new computers is
    /// soon judged a roamer: weak history, weak evidence.
    #[inline]
    pub fn predicted_new_computer_rate(&self) -> f32 {
        let ordinary = self.usual_new_computer_rate();
        let roamer = ROAMER_NEW_PER_DAY;
        if roamer <= ordinary {
            return ordinary;
        }
        let today = self
            .user_new_computers_24h
            .saturating_sub(u32::from(self.is_new_device()));
        let baseline_days = self.user_baseline_s as f32 / DAY;
        let count = (self.user_baseline_new_computers + today) as f32;
        // log L(roamer) - log L(ordinary) of `count` new computers over the
        // baseline and the last day.
        // The SDK's own ln and exp: the same bits natively and in WebAssembly.
        let log_ratio = f64::from(count) * crate::stats::ln(f64::from(roamer / ordinary))
            - f64::from(roamer - ordinary) * f64::from(baseline_days + 1.0);
        let odds =
            f64::from(ROAMER_SHARE / (1.0 - ROAMER_SHARE)) * crate::stats::exp(log_ratio.min(80.0));
        let roamer_weight = (odds / (1.0 + odds)) as f32;
        ordinary + roamer_weight * (roamer - ordinary)
    }

    /// Decades of evidence in this user starting on a new computer: how much
    /// likelier that is from an intruder reaching `attack_per_day` new
    /// computers a day than from this user at the pace their history
    /// predicts, `log10(attack_per_day / predicted_new_computer_rate)`.
    /// Negative for a user who starts on new computers faster than that
    /// anyway.
    #[inline]
    pub fn new_computer_evidence(&self, attack_per_day: f32) -> f32 {
        crate::stats::log10(f64::from(
            attack_per_day / self.predicted_new_computer_rate(),
        )) as f32
    }

    /// True when the record names a source computer other than the one
    /// logged on to. A logon at the console names the computer itself,
    /// which says nothing about where the person came from.
    #[inline]
    pub fn has_remote_source(&self) -> bool {
        self.source_computer != 0 && self.source_computer != self.computer.wrapping_add(1)
    }

    /// The share of the user's sourced logons that came from this event's
    /// source, `n / (N + 2)`: its `n` logons from here out of `N` that named
    /// a source, as if two more had come from elsewhere.
    #[inline]
    pub fn source_share(&self) -> f32 {
        self.user_logins_from_source_before as f32 / (self.user_sourced_logins_before as f32 + 2.0)
    }

    /// True when the logon came from the computer the user made most of its
    /// sourced logons from (its desk, or the jump host it works on): a
    /// [`Features::source_share`] above one half.
    #[inline]
    pub fn is_from_own_desk(&self) -> bool {
        self.has_remote_source() && self.source_share() > 0.5
    }

    /// Decades of evidence in *where this logon came from*, as the user's
    /// own history tells. `u` is how likely the user is to log on from this
    /// source: `n / (N + 2)` for one they used `n` times out of `N` sourced
    /// logons, and their pace of new sources `(K + 1) / (N + 2)` (`K`
    /// distinct so far) for one they never used. An intruder works from
    /// the account's usual computers with probability
    /// `intruder_usual_share` (malware on the victim's own workstation) and
    /// from somewhere else otherwise (their foothold), so the evidence is
    /// `log10((q u + (1 - q)(1 - u)) / u)`: negative (down to `log10(q)`)
    /// from the one computer the user always works at, large from a
    /// computer new to an account that keeps to one or two, and small for
    /// an account that shows up from a different computer every other
    /// logon. Zero when the record names no remote source or the user has
    /// no sourced history yet.
    #[inline]
    pub fn source_evidence(&self, intruder_usual_share: f32) -> f32 {
        if !self.has_remote_source() || self.user_sourced_logins_before == 0 {
            return 0.0;
        }
        let u = if self.user_logins_from_source_before > 0 {
            self.source_share()
        } else {
            (self.user_sources_before as f32 + 1.0) / (self.user_sourced_logins_before as f32 + 2.0)
        }
        .clamp(f32::MIN_POSITIVE, 1.0);
        let q = intruder_usual_share.clamp(0.0, 1.0);
        let ratio = (q * u + (1.0 - q) * (1.0 - u)) / u;
        crate::stats::log10(f64::from(ratio.max(f32::MIN_POSITIVE))) as f32
    }

    /// [`Features::usual_new_users_per_day`] for a computer, as
    /// [`Features::usual_new_computer_rate`] does for a user: the same share
    /// of the users the computer already has is the prior and the floor.
    #[inline]
    pub fn usual_new_user_rate(&self) -> f32 {
        let prior = self.prior_new_per_known_per_day() * self.host_users_ever.max(1) as f32;
        self.usual_new_users_per_day(prior, PRIOR_DAYS).max(prior)
    }

    /// How many new destinations a day this event's source computer usually
    /// reaches: its baseline period's rate, shrunk toward
    /// [`PRIOR_NEW_PER_KNOWN_PER_DAY`] of the destinations it knows as
    /// [`Features::usual_new_computers_per_day`] does for a user, and never
    /// below that prior.
    #[inline]
    pub fn usual_new_destination_rate(&self) -> f32 {
        let prior = PRIOR_NEW_PER_KNOWN_PER_DAY * self.source_known_destinations.max(1) as f32;
        shrunk_rate(
            self.source_baseline_new_destinations,
            self.source_baseline_s,
            prior,
            PRIOR_DAYS,
        )
        .max(prior)
    }

    /// How many new users a day this computer usually gets, as
    /// [`Features::usual_new_computers_per_day`] does for users.
    #[inline]
    pub fn usual_new_users_per_day(&self, prior_per_day: f32, prior_days: f32) -> f32 {
        shrunk_rate(
            self.host_baseline_new_users,
            self.host_baseline_s,
            prior_per_day,
            prior_days,
        )
    }

    /// The pace [`Features::usual_new_computer_rate`] and
    /// [`Features::usual_new_user_rate`] assume and never go below:
    /// [`PRIOR_NEW_PER_KNOWN_PER_DAY`], or the population's pace when it is
    /// faster (in the first days after a first start, when every account
    /// is still finding computers it always had).
    #[inline]
    pub fn prior_new_per_known_per_day(&self) -> f32 {
        self.population_new_per_known_per_day()
            .map_or(PRIOR_NEW_PER_KNOWN_PER_DAY, |pace| {
                pace.max(PRIOR_NEW_PER_KNOWN_PER_DAY)
            })
    }

    /// The population's pace of new computers, per known computer per
    /// day, once measured.
    #[inline]
    pub fn population_new_per_known_per_day(&self) -> Option<f32> {
        (self.population_new_per_known_ppm > 0)
            .then_some(self.population_new_per_known_ppm as f32 * 1e-6)
    }

    /// New computers the user's history predicts in `days` days, as the
    /// `(shape, mean)` of a gamma-Poisson (negative binomial) count for
    /// [`crate::stats::negbin_tail`]: the judged history's new computers
    /// ([`Features::judged_history`])
    /// (`rare` ones only, if asked) plus a prior of [`PRIOR_DAYS`] days at
    /// the population's pace for a user who knows this many computers
    /// ([`PRIOR_NEW_PER_KNOWN_PER_DAY`] until the population has one; for
    /// rare ones, times the population's rare share). A short history
    /// leaves the rate uncertain (a small shape, a heavy tail), so little
    /// is surprising; a long one speaks for itself.
    #[inline]
    pub fn expected_new_computers(&self, days: f32, rare: bool) -> (f32, f32) {
        let pace = self
            .population_new_per_known_per_day()
            .unwrap_or(PRIOR_NEW_PER_KNOWN_PER_DAY);
        let mut prior_per_day = pace * self.user_known_computers.max(1) as f32;
        let history = self.judged_history();
        let mut seen = history.new_computers;
        if rare {
            prior_per_day *= self.population_rare_share();
            seen = history.rare_new_computers;
        }
        // The prior weighs PRIOR_DAYS at the population's pace: a gamma
        // with a small shape, so a few days of a busy history (a help desk
        // among other people's workstations) speak for themselves.
        let shape = seen as f32 + prior_per_day * PRIOR_DAYS;
        let per_day = shape / (history.days + PRIOR_DAYS);
        (shape, per_day * days)
    }

    /// What the user's history says of their new computers, as the rules
    /// that compare the last days with it judge them. Once the history
    /// period is at least as long as the 72 hours it leaves out (so that
    /// an intruder's own days do not become the account's normal), it is
    /// the history period. Before, it is the account's whole life after its
    /// first day, the last 72 hours included: a young account's recent days
    /// are all that shows its habit (a help desk's first week), and with
    /// so little history any surprise is weak evidence.
    #[inline]
    pub fn judged_history(&self) -> History {
        let recent_s = 3.0 * DAY;
        if self.user_history_s as f32 >= recent_s {
            return History {
                new_computers: self.user_history_new_computers,
                rare_new_computers: self.user_history_rare_new_computers,
                days: self.user_history_s as f32 / DAY,
            };
        }
        History {
            new_computers: self.user_history_new_computers + self.user_new_computers_72h,
            rare_new_computers: self.user_history_rare_new_computers
                + self.user_rare_new_computers_72h,
            days: (self.user_tenure_s as f32 - DAY).max(0.0) / DAY,
        }
    }

    /// The population's share of rarely used computers among new ones
    /// ([`DEFAULT_RARE_SHARE`] until measured).
    #[inline]
    pub fn population_rare_share(&self) -> f32 {
        if self.population_rare_share_ppm > 0 {
            self.population_rare_share_ppm as f32 * 1e-6
        } else {
            DEFAULT_RARE_SHARE
        }
    }

    /// The user's usual share of rarely used computers among their new
    /// ones: their judged history's ([`Features::judged_history`]), shrunk
    /// toward the population's as if `prior` more new computers had shown
    /// it.
    #[inline]
    pub fn usual_rare_share(&self, prior: f32) -> f32 {
        let history = self.judged_history();
        (history.rare_new_computers as f32 + prior * self.population_rare_share())
            / (history.new_computers as f32 + prior)
    }

    /// The share of the user's earlier logins that fell in this event's hour
    /// of day, or `None` before their first login.
    #[inline]
    pub fn hour_of_day_share(&self) -> Option<f32> {
        (self.user_logins_before > 0)
            .then(|| self.user_logins_at_hour_before as f32 / self.user_logins_before as f32)
    }
}

#[inline]
fn shrunk_rate(count: u32, seconds: u32, prior_per_day: f32, prior_days: f32) -> f32 {
    let days = seconds as f32 / DAY;
    let weight = days + prior_days;
    if weight <= 0.0 {
        return prior_per_day;
    }
    (count as f32 + prior_per_day * prior_days) / weight
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A user new to a computer, knowing ten, with `baseline_new` new
    /// computers over `baseline_days` and `today` earlier new ones in the
    /// last 24 hours.
    fn roaming(baseline_days: u32, baseline_new: u32, today: u32) -> Features {
        Features {
            flags: FLAG_NEW_DEVICE_FOR_USER,
            user_known_computers: 10,
            user_baseline_s: baseline_days * 86_400,
            user_baseline_new_computers: baseline_new,
            user_new_computers_24h: today + 1,
            ..Default::default()
        }
    }

    #[test]
    fn weak_history_that_keeps_finding_computers_is_judged_a_roamer() {
        // A settled account, a week without new computers: five new today
        // still count at its own rate.
        let settled = roaming(7, 0, 5);
        let own = settled.usual_new_computer_rate();
        assert!(settled.predicted_new_computer_rate() < 1.01 * own);
        // Its second day: five new computers before this one, no baseline
        // yet: most likely an account whose work this is.
        let young = roaming(0, 0, 5);
        assert!(young.predicted_new_computer_rate() > 0.9 * ROAMER_NEW_PER_DAY);
        assert!(young.new_computer_evidence(24.0) < 0.55);
        // The first new computer of a young account is still judged at the
        // ordinary pace: nothing says otherwise yet.
        let first = roaming(0, 0, 0);
        assert!(first.predicted_new_computer_rate() < 0.2 * ROAMER_NEW_PER_DAY);
        // A busy baseline is a roamer's however quiet the last day.
        let desk = roaming(5, 40, 0);
        assert!(desk.predicted_new_computer_rate() >= desk.usual_new_computer_rate());
    }

    #[test]
    fn a_young_account_is_judged_by_its_whole_life_after_its_first_day() {
        // Three days old: no history period yet, ten new computers (all of
        // them rarely used) in the last 72 hours.
        let young = Features {
            user_tenure_s: 3 * 86_400,
            user_new_computers_72h: 10,
            user_rare_new_computers_72h: 10,
            user_known_computers: 15,
            ..Default::default()
        };
        let history = young.judged_history();
        assert_eq!(
            (history.new_computers, history.rare_new_computers),
            (10, 10)
        );
        assert_eq!(history.days, 2.0);
        assert!(young.usual_rare_share(2.0) > 0.8);
        // Ten days of history: the last 72 hours are left out of it.
        let settled = Features {
            user_history_s: 10 * 86_400,
            user_history_new_computers: 2,
            user_tenure_s: 14 * 86_400,
            ..young
        };
        let history = settled.judged_history();
        assert_eq!((history.new_computers, history.rare_new_computers), (2, 0));
        assert!(settled.usual_rare_share(2.0) < 0.2);
    }

    #[test]
    fn usual_rates_shrink_toward_the_prior() {
        let f = Features::default();
        assert_eq!(f.usual_new_computers_per_day(0.5, 3.0), 0.5);
        // Ten days with two new computers, prior 0.5/day over 2 days: 3 / 12.
        let f = Features {
            user_baseline_new_computers: 2,
            user_baseline_s: 10 * 86_400,
            ..Features::default()
        };
        assert!((f.usual_new_computers_per_day(0.5, 2.0) - 0.25).abs() < 1e-6);
        assert_eq!(Features::default().usual_new_users_per_day(0.0, 0.0), 0.0);
        assert_eq!(Features::default().hour_of_day_share(), None);
        let f = Features {
            user_logins_before: 40,
            user_logins_at_hour_before: 10,
            ..Features::default()
        };
        assert_eq!(f.hour_of_day_share(), Some(0.25));
    }
}
