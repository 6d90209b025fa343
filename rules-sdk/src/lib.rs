//! # AuthPulse rules SDK
//!
//! A detection rule is a pure function from one event's [`Features`] (computed by the
//! host, which owns all state) and the rule's own parameters to an optional [`Hit`].
//! Write it as a type implementing [`Rule`], export it with [`export_rule!`], and build
//! the crate for `wasm32-unknown-unknown`: the result is a sandboxed module the
//! AuthPulse daemon loads. The same code builds natively, so the rule's unit tests
//! run with plain `cargo test` (see [`testing`]).
//!
//! ```
//! use authpulse_rules_sdk::{
//!     export_rule, Entity, Events, Features, Hit, Metadata, ParamKind, ParamSpec, Params, Rule,
//!     Severity,
//! };
//!
//! pub struct TooManyLogins {
//!     factor: f32,
//!     score: f32,
//! }
//!
//! // Each parameter once, as a const: listed in the metadata, read in `new`.
//! const FACTOR: ParamSpec = ParamSpec::new(
//!     "factor",
//!     ParamKind::Factor,
//!     3.0,
//!     "Fire above this multiple of the user's busiest hour",
//! )
//! .range(1.0, 100.0);
//! const SCORE: ParamSpec = ParamSpec::score(50.0, "Risk contribution of a hit");
//!
//! impl Rule for TooManyLogins {
//!     const METADATA: Metadata = Metadata {
//!         name: "too_many_logins",
//!         version: "1.0.0",
//!         description: "Far more logins in an hour than the user's busiest hour so far",
//!         severity: Severity::Medium,
//!         mitre: &["T1110"],
//!         entity: Entity::User,
//!         events: Events::All,
//!         params: &[FACTOR, SCORE],
//!         reasons: &["logins in the last hour far above the user's busiest hour"],
//!     };
//!
//!     fn new(params: &Params) -> Self {
//!         TooManyLogins {
//!             factor: params.value(&FACTOR) as f32,
//!             score: params.value(&SCORE) as f32,
//!         }
//!     }
//!
//!     fn evaluate(&self, f: &Features) -> Option<Hit> {
//!         let busiest = f.user_peak_logins_1h.max(10) as f32;
//!         (f.user_logins_1h as f32 > self.factor * busiest).then(|| Hit::new(self.score, 0))
//!     }
//! }
//!
//! export_rule!(TooManyLogins);
//!
//! // Natively, in the rule's own tests:
//! let rule = authpulse_rules_sdk::testing::RuleHarness::<TooManyLogins>::with_defaults();
//! let busy = Features { user_logins_1h: 301, user_peak_logins_1h: 100, ..Default::default() };
//! assert_eq!(rule.evaluate(&busy), Some(Hit::new(50.0, 0)));
//! ```
//!
//! ## The ABI (version [`ABI_VERSION`])
//! A module imports nothing and exports `memory` plus:
//!
//! | export | signature | meaning |
//! |---|---|---|
//! | `authpulse_abi_version` | `() -> i32` | must equal [`ABI_VERSION`] |
//! | `authpulse_metadata` | `() -> i64` | `(ptr << 32) \| len` of the metadata JSON in memory |
//! | `authpulse_reserve` | `(capacity: i32, n_params: i32) -> i32` | pointer to a buffer laid out as [`BufferLayout`], 0 on failure |
//! | `authpulse_configure` | `() -> i32` | reads the parameter values from the buffer; 0 = ok |
//! | `authpulse_evaluate` | `(n: i32) -> i32` | scores the first `n` feature records into the verdict slots; returns the number of hits, or < 0 on error |
//!
//! The host calls `authpulse_evaluate` once per batch, not once per event.
//!
//! Version 2 made the feature record 128 bytes: the 64 bytes of version 1,
//! unchanged, followed by each entity's baselines; metadata gained `entity`
//! (whose risk the hits add to) and `events` (which events the rule judges:
//! the host passes a `new_devices` rule only the new-device events of a batch,
//! so `n` counts those).
//! Version 3 made it 192 bytes: the 128 of version 2, unchanged, followed by
//! longer horizons (new computers over 72 hours against the user's history
//! before them), rarely used computers counted apart, the user's peers on
//! the computer, and the population's pace and daily rhythm.
//! Version 4 made it 256 bytes: the 192 of version 3, unchanged, followed by
//! what a richer record says (source computer and account, logon type,
//! package, outcome and failure reason) and what follows from it: the
//! user's logon types so far, failed logons on the account and from the
//! source, and the source's destinations against its own baseline.
//! A host speaking version 4 still runs modules of versions 1 to 3, handing
//! them the first 64, 128 or 192 bytes of each record ([`record_bytes`]).

mod baselines;
mod features;
mod metadata;
pub mod native;
pub mod stats;
pub mod testing;
mod verdict;

#[doc(hidden)]
pub mod __guest;

pub use baselines::{
    DEFAULT_INTRUDER_USUAL_SOURCE, DEFAULT_RARE_SHARE, History, PRIOR_DAYS,
    PRIOR_NEW_PER_KNOWN_PER_DAY, ROAMER_NEW_PER_DAY, ROAMER_SHARE,
};
pub use features::{
    AUTH_KERBEROS, AUTH_NEGOTIATE, AUTH_NTLM, AUTH_OTHER, FAILURE_BAD_PASSWORD, FAILURE_DISABLED,
    FAILURE_LOCKED, FAILURE_NO_SUCH_USER, FAILURE_OTHER, FAILURE_PASSWORD_EXPIRED,
    FAILURE_RESTRICTED, FEATURES_V1_BYTES, FEATURES_V2_BYTES, FEATURES_V3_BYTES, FLAG_NEW_COMPUTER,
    FLAG_NEW_DEVICE_FOR_USER, FLAG_NEW_USER, Features, LOGON_BATCH, LOGON_CACHED_INTERACTIVE,
    LOGON_INTERACTIVE, LOGON_NETWORK, LOGON_NETWORK_CLEARTEXT, LOGON_NEW_CREDENTIALS,
    LOGON_REMOTE_INTERACTIVE, LOGON_SERVICE, LOGON_UNLOCK, NO_PREVIOUS_LOGIN, OUTCOME_FAILURE,
    OUTCOME_SUCCESS, ROLLOUT_DAY_S, ROLLOUT_USERS,
};
pub use metadata::{Entity, Events, Metadata, ParamKind, ParamSpec, Severity};
pub use verdict::{Hit, Verdict};

#[cfg(target_endian = "big")]
compile_error!(
    "the AuthPulse rule ABI is little-endian (as WebAssembly is); big-endian hosts are not supported"
);

/// Version of the host/guest contract described in the crate docs, which
/// modules built with this SDK declare.
pub const ABI_VERSION: u32 = 4;

/// Size of one feature record for a module of ABI version `abi`, or `None`
/// for a version this SDK does not know.
pub const fn record_bytes(abi: u32) -> Option<usize> {
    match abi {
        1 => Some(FEATURES_V1_BYTES),
        2 => Some(FEATURES_V2_BYTES),
        3 => Some(FEATURES_V3_BYTES),
        4 => Some(size_of::<Features>()),
        _ => None,
    }
}

/// Names of the exports a rule module must provide.
pub mod exports {
    pub const MEMORY: &str = "memory";
    pub const ABI_VERSION: &str = "authpulse_abi_version";
    pub const METADATA: &str = "authpulse_metadata";
    pub const RESERVE: &str = "authpulse_reserve";
    pub const CONFIGURE: &str = "authpulse_configure";
    pub const EVALUATE: &str = "authpulse_evaluate";
}

/// Where the parameters, feature records and verdicts sit in the buffer that
/// `authpulse_reserve(capacity, n_params)` returns. Offsets are relative to its pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferLayout {
    pub capacity: usize,
    pub n_params: usize,
    /// `n_params` little-endian `f64` values, at offset 0.
    pub params_offset: usize,
    /// `capacity` feature records ([`record_bytes`] each).
    pub features_offset: usize,
    /// `capacity` [`Verdict`] records (8 bytes each).
    pub verdicts_offset: usize,
    /// Total size in bytes.
    pub len: usize,
}

impl BufferLayout {
    /// The layout of this SDK's ABI version.
    pub const fn new(capacity: usize, n_params: usize) -> BufferLayout {
        BufferLayout::with_record(capacity, n_params, size_of::<Features>())
    }

    /// The layout for feature records of `record_bytes` each (64 for a
    /// version-1 module).
    pub const fn with_record(
        capacity: usize,
        n_params: usize,
        record_bytes: usize,
    ) -> BufferLayout {
        let features_offset = n_params * 8;
        let verdicts_offset = features_offset + capacity * record_bytes;
        let len = verdicts_offset + capacity * size_of::<Verdict>();
        BufferLayout {
            capacity,
            n_params,
            params_offset: 0,
            features_offset,
            verdicts_offset,
            len,
        }
    }
}

/// Parameter values as the host resolved them from the policy, in the order of
/// `Metadata::params`.
#[derive(Clone, Copy, Debug)]
pub struct Params<'a> {
    specs: &'static [ParamSpec],
    values: &'a [f64],
}

impl<'a> Params<'a> {
    /// `values[i]` is the value of `specs[i]`. Missing trailing values take defaults.
    pub fn new(specs: &'static [ParamSpec], values: &'a [f64]) -> Params<'a> {
        Params { specs, values }
    }

    /// The value of parameter `spec` (a `const` the rule declares and
    /// lists in its metadata).
    ///
    /// # Panics
    /// If the rule's metadata does not list it (see [`Params::get`]).
    pub fn value(&self, spec: &ParamSpec) -> f64 {
        self.get(spec.name)
    }

    /// The value of the parameter called `name`.
    ///
    /// # Panics
    /// If the rule's metadata declares no such parameter: that is a bug in the rule,
    /// and the host refuses the module when it first configures it.
    pub fn get(&self, name: &str) -> f64 {
        let index = self
            .specs
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("rule asked for undeclared parameter `{name}`"));
        self.values
            .get(index)
            .copied()
            .unwrap_or(self.specs[index].default)
    }
}

/// A detection rule. Implement this and export it with [`export_rule!`].
///
/// A rule holds no state across events: the host may run it on any batch, in any
/// instance, and swap it at any time between batches.
pub trait Rule: Sized + 'static {
    /// What the rule declares about itself (name, parameters, reasons, ...).
    const METADATA: Metadata;

    /// Builds the rule from its parameter values (already range-checked by the host).
    fn new(params: &Params) -> Self;

    /// Scores one event.
    fn evaluate(&self, features: &Features) -> Option<Hit>;

    /// Scores a batch. The default calls [`Rule::evaluate`] per record.
    #[inline]
    fn evaluate_batch(&self, features: &[Features], verdicts: &mut [Verdict]) -> usize {
        let mut hits = 0;
        for (f, v) in features.iter().zip(verdicts.iter_mut()) {
            *v = self.evaluate(f).into();
            hits += usize::from(v.is_hit());
        }
        hits
    }
}

/// Exports a [`Rule`] type as an AuthPulse rule module (on `wasm32` targets only;
/// natively the macro expands to nothing, so the crate also builds for tests).
#[macro_export]
macro_rules! export_rule {
    ($rule:ty) => {
        /// The rule this crate exports, for a host that links it natively
        /// (the daemon's built-in rules under `--engine native`).
        pub type ExportedRule = $rule;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            static GUEST: $crate::__guest::Guest<$rule> = $crate::__guest::Guest::new();

            #[unsafe(no_mangle)]
            pub extern "C" fn authpulse_abi_version() -> u32 {
                $crate::ABI_VERSION
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn authpulse_metadata() -> u64 {
                GUEST.metadata()
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn authpulse_reserve(capacity: u32, n_params: u32) -> u32 {
                GUEST.reserve(capacity, n_params)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn authpulse_configure() -> i32 {
                GUEST.configure()
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn authpulse_evaluate(n: u32) -> i32 {
                GUEST.evaluate(n)
            }
        };
    };
}
