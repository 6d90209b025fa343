//! What a rule says about itself: name, version, severity, MITRE ATT&CK ids,
//! parameter schema and the reasons it can give. The host reads it from the
//! module (as JSON, see [`Metadata::to_json`]) before it runs a single event.

/// How bad it is when the rule fires, carried into alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Lower-case name, as written in metadata JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Which entity a rule's evidence is about: its hits add to that entity's
/// accumulated risk (see the engine's entity risk), and an alert it raises is
/// about that user or that computer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    /// The account that logged on (most rules).
    User,
    /// The computer logged on to (many accounts arriving at one host).
    Computer,
    /// The computer the logon came from (one source reaching or failing on
    /// many accounts or computers; ABI version 4). On an event that names
    /// no source, the computer logged on to.
    Source,
}

impl Entity {
    /// Lower-case name, as written in metadata JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Entity::User => "user",
            Entity::Computer => "computer",
            Entity::Source => "source",
        }
    }
}

/// Which events a rule judges. The host hands a rule only these (the rest
/// get no hit without a call), so a rule about new computers costs almost
/// nothing on the great majority of logons, which are to known ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Events {
    /// Every event.
    All,
    /// Only events where the user logs on to a computer for the first time
    /// ([`Features::is_new_device`](crate::Features::is_new_device)).
    NewDevices,
    /// Only events whose record said more than who, where and when (a
    /// source, a logon type or an outcome; ABI version 4): a rule about
    /// failures or sources costs nothing on LANL `time,user,computer` lines.
    Detailed,
}

impl Events {
    /// Lower-case name, as written in metadata JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Events::All => "all",
            Events::NewDevices => "new_devices",
            Events::Detailed => "detailed",
        }
    }
}

/// What a parameter measures; decides how the policy file may write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A count of things (logins, computers, users).
    Count,
    /// A duration in seconds; the policy may write it as `"24h"`, `"15m"`, ...
    Seconds,
    /// A risk score in 0..=100.
    Score,
    /// A ratio in 0..=1.
    Ratio,
    /// A multiplier (e.g. "5x the baseline").
    Factor,
}

impl ParamKind {
    /// Lower-case name, as written in metadata JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            ParamKind::Count => "count",
            ParamKind::Seconds => "seconds",
            ParamKind::Score => "score",
            ParamKind::Ratio => "ratio",
            ParamKind::Factor => "factor",
        }
    }
}

/// One tunable parameter of a rule. Values travel as `f64`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub kind: ParamKind,
    pub default: f64,
    /// Smallest value the policy may set (inclusive).
    pub min: f64,
    /// Largest value the policy may set (inclusive).
    pub max: f64,
}

impl ParamSpec {
    /// A parameter of `kind` with the kind's whole range (a count from 0,
    /// a ratio in 0..=1, a score in 0..=100, a factor from 0, seconds up to
    /// a year); narrow it with [`ParamSpec::range`]. Declare each as a
    /// `const` and read it with [`Params::value`](crate::Params::value), so
    /// that its name is written once:
    ///
    /// ```
    /// use authpulse_rules_sdk::{ParamKind, ParamSpec};
    /// const MIN_LOGINS: ParamSpec =
    ///     ParamSpec::new("min_logins", ParamKind::Count, 60.0, "Never fire below this many logins")
    ///         .range(1.0, 1e9);
    /// assert_eq!((MIN_LOGINS.min, MIN_LOGINS.max), (1.0, 1e9));
    /// ```
    pub const fn new(
        name: &'static str,
        kind: ParamKind,
        default: f64,
        description: &'static str,
    ) -> ParamSpec {
        let (min, max) = match kind {
            ParamKind::Count => (0.0, 1e9),
            ParamKind::Seconds => (0.0, 31_536_000.0),
            ParamKind::Score => (0.0, 100.0),
            ParamKind::Ratio => (0.0, 1.0),
            ParamKind::Factor => (0.0, 1e6),
        };
        ParamSpec {
            name,
            description,
            kind,
            default,
            min,
            max,
        }
    }

    /// The same parameter, with values from `min` to `max` (inclusive).
    pub const fn range(self, min: f64, max: f64) -> ParamSpec {
        ParamSpec { min, max, ..self }
    }

    /// `burn_in`: how long an entity must have been seen before the rule
    /// judges it (0 to a year; the policy may write `"24h"`).
    pub const fn burn_in(default_s: f64) -> ParamSpec {
        ParamSpec {
            name: "burn_in",
            description: "Stay quiet until the entity has been seen for this long",
            kind: ParamKind::Seconds,
            default: default_s,
            min: 0.0,
            max: 31_536_000.0,
        }
    }

    /// `source_weight`: how much [`Features::source_evidence`](crate::Features::source_evidence),
    /// the evidence in where a logon came from, counts in a rule's own
    /// (0 to 4; 0 ignores it).
    pub const fn source_weight(default: f64) -> ParamSpec {
        ParamSpec {
            name: "source_weight",
            description: "How much the evidence of where the logon came from counts (0: not at all)",
            kind: ParamKind::Factor,
            default,
            min: 0.0,
            max: 4.0,
        }
    }

    /// `day_shape`: how much certainty an entity's own history lends
    /// today's count, as the shape of a gamma-Poisson (days vary: a day's
    /// rate differs from the usual by about `1/sqrt(day_shape)`); 1e9 takes
    /// the usual rate as today's exactly.
    pub const fn day_shape(default: f64, description: &'static str) -> ParamSpec {
        ParamSpec {
            name: "day_shape",
            description,
            kind: ParamKind::Factor,
            default,
            min: 0.1,
            max: 1e9,
        }
    }

    /// `attack_per_day`: the pace of new computers an intruder is assumed to
    /// keep, for [`Features::new_computer_evidence`](crate::Features::new_computer_evidence).
    pub const fn attack_per_day(default: f64) -> ParamSpec {
        ParamSpec {
            name: "attack_per_day",
            description: "New computers a day an intruder is assumed to reach (the evidence is log10 of this over the user's own rate)",
            kind: ParamKind::Factor,
            default,
            min: 0.01,
            max: 1e6,
        }
    }

    /// `score`: the rule's risk contribution (0..=100).
    pub const fn score(default: f64, description: &'static str) -> ParamSpec {
        ParamSpec {
            name: "score",
            description,
            kind: ParamKind::Score,
            default,
            min: 0.0,
            max: 100.0,
        }
    }
}

/// Everything a rule declares about itself.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metadata {
    /// Stable identifier, `snake_case`; the policy refers to the rule by it.
    pub name: &'static str,
    /// Semantic version of the rule logic.
    pub version: &'static str,
    /// One sentence on what the rule detects.
    pub description: &'static str,
    pub severity: Severity,
    /// MITRE ATT&CK technique ids, e.g. `"T1021"`.
    pub mitre: &'static [&'static str],
    /// The entity whose risk the rule's hits add to.
    pub entity: Entity,
    /// The events the rule judges; it must give no hit on others.
    pub events: Events,
    /// Parameters, in the order the host passes their values.
    pub params: &'static [ParamSpec],
    /// Human-readable reasons; a hit's `reason` indexes this list.
    pub reasons: &'static [&'static str],
}

impl Metadata {
    /// Index of the parameter called `name`.
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }

    /// The parameters' defaults, in declaration order.
    pub fn default_values(&self) -> impl Iterator<Item = f64> + '_ {
        self.params.iter().map(|p| p.default)
    }

    /// Metadata as the JSON document a module exports (ABI: `authpulse_metadata`).
    ///
    /// Hand-written so that rule modules need no serialisation dependency.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(512);
        out.push_str("{\"abi_version\":");
        push_u64(&mut out, u64::from(crate::ABI_VERSION));
        out.push_str(",\"name\":");
        push_str(&mut out, self.name);
        out.push_str(",\"version\":");
        push_str(&mut out, self.version);
        out.push_str(",\"description\":");
        push_str(&mut out, self.description);
        out.push_str(",\"severity\":");
        push_str(&mut out, self.severity.as_str());
        out.push_str(",\"entity\":");
        push_str(&mut out, self.entity.as_str());
        out.push_str(",\"events\":");
        push_str(&mut out, self.events.as_str());
        out.push_str(",\"mitre\":[");
        for (i, id) in self.mitre.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(&mut out, id);
        }
        out.push_str("],\"params\":[");
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            push_str(&mut out, p.name);
            out.push_str(",\"description\":");
            push_str(&mut out, p.description);
            out.push_str(",\"kind\":");
            push_str(&mut out, p.kind.as_str());
            out.push_str(",\"default\":");
            push_f64(&mut out, p.default);
            out.push_str(",\"min\":");
            push_f64(&mut out, p.min);
            out.push_str(",\"max\":");
            push_f64(&mut out, p.max);
            out.push('}');
        }
        out.push_str("],\"reasons\":[");
        for (i, r) in self.reasons.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(&mut out, r);
        }
        out.push_str("]}");
        out
    }
}

fn push_u64(out: &mut String, v: u64) {
    use core::fmt::Write;
    let _ = write!(out, "{v}");
}

fn push_f64(out: &mut String, v: f64) {
    use core::fmt::Write;
    if v.is_finite() {
        // `{:?}` always keeps a decimal point or exponent, so it round-trips as JSON.
        let _ = write!(out, "{v:?}");
    } else {
        out.push_str("null");
    }
}

fn push_str(out: &mut String, s: &str) {
    use core::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_and_lists_everything() {
        const META: Metadata = Metadata {
            name: "x",
            version: "1.2.3",
            description: "says \"hi\"\n",
            severity: Severity::High,
            mitre: &["T1021", "T1078"],
            entity: Entity::Computer,
            events: Events::NewDevices,
            params: &[ParamSpec {
                name: "limit",
                description: "d",
                kind: ParamKind::Count,
                default: 10.0,
                min: 1.0,
                max: 1e6,
            }],
            reasons: &["r0", "r1"],
        };
        let json = META.to_json();
        assert_eq!(
            json,
            "{\"abi_version\":4,\"name\":\"x\",\"version\":\"1.2.3\",\
             \"description\":\"says \\\"hi\\\"\\n\",\"severity\":\"high\",\"entity\":\"computer\",\"events\":\"new_devices\",\
             \"mitre\":[\"T1021\",\"T1078\"],\"params\":[{\"name\":\"limit\",\
             \"description\":\"d\",\"kind\":\"count\",\"default\":10.0,\"min\":1.0,\
             \"max\":1000000.0}],\"reasons\":[\"r0\",\"r1\"]}"
        );
    }
}
