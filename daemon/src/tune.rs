//! Tuning a policy's parameters on labelled campaigns, and the honest
//! measure of it: leave-one-family-out. A family of attacks (`Kind::family`)
//! is kept out of the objective, the search picks its values without it,
//! and that family is then reported on seeds the search never saw. A rule
//! whose setting only pays off on the shape it was written for shows up
//! there as a family that drops.
//!
//! The search is one round of coordinate search from the base policy:
//! every knob of the grid is tried alone at each of its values; each
//! knob's best value that beats the base by `min_gain` joins a
//! combination; the best of the base, the best single change and the
//! combination wins. Candidates are judged on the tuning seeds only. The
//! measuring (an `eval` per candidate and seed) is the caller's: this
//! module holds the grid, the objective and the choices, so they can be
//! tested without running a pipeline.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use authpulse_generator::Kind;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use crate::eval::Scorecard;

/// A grid or knob that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("tuning grid: {0}")]
    Grid(String),
    #[error("knob {path}: {message}")]
    Knob { path: String, message: String },
    #[error("the base policy is not a YAML mapping")]
    Base(#[source] serde_yaml_ng::Error),
}

/// What the search weighs: detection against noise.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Objective {
    /// Recall (0..1) given up for one more false alert a day.
    pub false_alert_cost: f64,
    /// Recall given up for each benign case that alerts.
    pub benign_cost: f64,
    /// Candidates with more false alerts a day than this are out.
    pub max_false_alerts_per_day: f64,
    /// A change is taken only when it gains at least this much: less is
    /// noise between seeds (one campaign in 168, two seeds of 84, is 0.006).
    pub min_gain: f64,
}

impl Default for Objective {
    fn default() -> Self {
        Objective {
            false_alert_cost: 0.02,
            benign_cost: 0.02,
            max_false_alerts_per_day: 3.0,
            min_gain: 0.005,
        }
    }
}

/// One policy parameter and the values to try besides the base policy's.
#[derive(Clone, Debug, Serialize)]
pub struct Knob {
    /// A path into the policy: mapping keys joined by dots, a rule by its
    /// id (`rules.slow_spread.params.min_surprise`, `risk.bands.high`).
    pub path: String,
    pub values: Vec<Value>,
}

/// The knobs to search and the objective.
#[derive(Clone, Debug)]
pub struct Grid {
    pub knobs: Vec<Knob>,
    pub objective: Objective,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GridFile {
    knobs: serde_yaml_ng::Mapping,
    #[serde(default)]
    objective: Objective,
}

impl Grid {
    /// Parses a grid file:
    ///
    /// ```yaml
    /// knobs:
    ///   rules.slow_spread.params.min_surprise: [3, 5]
    ///   risk.bands.high: [50, 70]
    /// objective: { false_alert_cost: 0.02 }   # optional
    /// ```
    pub fn parse(text: &str) -> Result<Grid, TuneError> {
        let file: GridFile =
            serde_yaml_ng::from_str(text).map_err(|e| TuneError::Grid(e.to_string()))?;
        let mut knobs = Vec::new();
        for (path, values) in file.knobs {
            let Value::String(path) = path else {
                return Err(TuneError::Grid(format!(
                    "a knob is named by its path, not {path:?}"
                )));
            };
            let Value::Sequence(values) = values else {
                return Err(TuneError::Knob {
                    path,
                    message: "give a list of values to try".into(),
                });
            };
            if values.is_empty() {
                return Err(TuneError::Knob {
                    path,
                    message: "the list of values is empty".into(),
                });
            }
            knobs.push(Knob { path, values });
        }
        if knobs.is_empty() {
            return Err(TuneError::Grid("no knobs to tune".into()));
        }
        Ok(Grid {
            knobs,
            objective: file.objective,
        })
    }
}

/// A candidate policy: the base with some knobs changed.
#[derive(Clone, Debug)]
pub struct Variant {
    /// `base`, or the changes (`slow_spread.min_surprise=3,...`).
    pub name: String,
    pub changes: Vec<(String, Value)>,
    /// The policy text to run.
    pub text: String,
}

/// Builds variants of one base policy.
pub struct Variants {
    base_text: String,
    base: Value,
}

impl Variants {
    pub fn new(base_text: &str) -> Result<Variants, TuneError> {
        let base: Value = serde_yaml_ng::from_str(base_text).map_err(TuneError::Base)?;
        Ok(Variants {
            base_text: base_text.to_string(),
            base,
        })
    }

    pub fn base(&self) -> Variant {
        Variant {
            name: "base".into(),
            changes: Vec::new(),
            text: self.base_text.clone(),
        }
    }

    /// The base with `changes` applied; an unknown path is an error.
    pub fn with(&self, changes: &[(String, Value)]) -> Result<Variant, TuneError> {
        if changes.is_empty() {
            return Ok(self.base());
        }
        let mut doc = self.base.clone();
        for (path, value) in changes {
            *slot(&mut doc, path)? = value.clone();
        }
        let text = serde_yaml_ng::to_string(&doc).map_err(TuneError::Base)?;
        Ok(Variant {
            name: name(changes),
            changes: changes.to_vec(),
            text,
        })
    }

    /// Every knob alone at each of its values (the base's own value skipped).
    pub fn singles(&self, grid: &Grid) -> Result<Vec<Variant>, TuneError> {
        let mut out = Vec::new();
        for knob in &grid.knobs {
            let current = slot(&mut self.base.clone(), &knob.path)?.clone();
            for value in &knob.values {
                if *value != current {
                    out.push(self.with(&[(knob.path.clone(), value.clone())])?);
                }
            }
        }
        Ok(out)
    }
}

/// `slow_spread.min_surprise=3,bands.high=50`: the paths without the
/// `rules.`/`params.`/`risk.` that every one of them would repeat.
fn name(changes: &[(String, Value)]) -> String {
    let mut out = String::new();
    for (i, (path, value)) in changes.iter().enumerate() {
        let short: Vec<&str> = path
            .split('.')
            .filter(|part| !matches!(*part, "rules" | "params" | "risk"))
            .collect();
        let value = match value {
            Value::String(s) => s.clone(),
            other => serde_yaml_ng::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let _ = write!(
            out,
            "{}{}={value}",
            if i > 0 { "," } else { "" },
            short.join(".")
        );
    }
    out
}

/// The value at `path` in a policy document: mapping keys, and in a list
/// the element whose `id` is the part (`rules.fan_in`).
fn slot<'a>(doc: &'a mut Value, path: &str) -> Result<&'a mut Value, TuneError> {
    let mut here = doc;
    let mut walked = String::new();
    for part in path.split('.') {
        let missing = |walked: &str, what: &str| TuneError::Knob {
            path: path.to_string(),
            message: if walked.is_empty() {
                format!("the policy has no {what} `{part}`")
            } else {
                format!("{walked} has no {what} `{part}`")
            },
        };
        here = match here {
            Value::Mapping(map) => map.get_mut(part).ok_or_else(|| missing(&walked, "field"))?,
            Value::Sequence(items) => items
                .iter_mut()
                .find(|item| item.get("id").and_then(Value::as_str) == Some(part))
                .ok_or_else(|| missing(&walked, "entry with id"))?,
            _ => return Err(missing(&walked, "field")),
        };
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(part);
    }
    Ok(here)
}

/// One evaluation (a candidate on a seed), as much of it as the search needs.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Outcome {
    pub kinds: Vec<KindOutcome>,
    pub false_alerts: u64,
    /// Alerts after an attack on its entities: not false, not detections
    /// (`eval::AFTER_ATTACK_S`). Required, so that an evaluation cached
    /// before they were counted apart is run again.
    pub after_attack: u64,
    /// Days after the burn-in (the false alerts' denominator).
    pub judged_days: u32,
    /// Benign cases that alerted.
    pub benign_alerted: u32,
    /// The most alerts on one day of the burn-in (a cold start).
    pub burn_in_max: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct KindOutcome {
    pub kind: Kind,
    pub detected: u32,
    pub campaigns: u32,
}

impl Outcome {
    pub fn of(scorecard: &Scorecard, judged_days: u32) -> Outcome {
        Outcome {
            kinds: scorecard
                .kinds
                .iter()
                .map(|k| KindOutcome {
                    kind: k.kind,
                    detected: k.detected,
                    campaigns: k.campaigns,
                })
                .collect(),
            false_alerts: scorecard.authpulse.false_alerts,
            after_attack: scorecard.authpulse.after_attack,
            judged_days,
            benign_alerted: scorecard.benign.iter().map(|b| b.alerted).sum(),
            burn_in_max: scorecard.burn_in_alerts.iter().copied().max().unwrap_or(0),
        }
    }
}

/// Outcomes of one candidate over several seeds, added up.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pooled {
    /// Per kind: detected and campaigns.
    pub kinds: BTreeMap<Kind, (u32, u32)>,
    pub false_alerts: u64,
    pub judged_days: u32,
    pub benign_alerted: u32,
    pub burn_in_max: u64,
}

impl Pooled {
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Pooled {
        let mut pooled = Pooled::default();
        for outcome in outcomes {
            for k in &outcome.kinds {
                let slot = pooled.kinds.entry(k.kind).or_default();
                slot.0 += k.detected;
                slot.1 += k.campaigns;
            }
            pooled.false_alerts += outcome.false_alerts;
            pooled.judged_days += outcome.judged_days;
            pooled.benign_alerted += outcome.benign_alerted;
            pooled.burn_in_max = pooled.burn_in_max.max(outcome.burn_in_max);
        }
        pooled
    }

    /// Detected and campaigns over the kinds `keep` accepts.
    pub fn detected(&self, keep: impl Fn(Kind) -> bool) -> (u32, u32) {
        self.kinds
            .iter()
            .filter(|(kind, _)| keep(**kind))
            .fold((0, 0), |(d, c), (_, (kd, kc))| (d + kd, c + kc))
    }

    pub fn false_alerts_per_day(&self) -> f64 {
        self.false_alerts as f64 / f64::from(self.judged_days.max(1))
    }
}

impl Objective {
    /// The objective over `pooled` with `left_out`'s kinds ignored; `None`
    /// when the candidate is out (too many false alerts a day).
    pub fn value(&self, pooled: &Pooled, left_out: Option<&str>) -> Option<f64> {
        let fa = pooled.false_alerts_per_day();
        if fa > self.max_false_alerts_per_day {
            return None;
        }
        let (detected, campaigns) = pooled.detected(|kind| Some(kind.family()) != left_out);
        let recall = f64::from(detected) / f64::from(campaigns.max(1));
        Some(
            recall
                - self.false_alert_cost * fa
                - self.benign_cost * f64::from(pooled.benign_alerted),
        )
    }

    /// Per knob, its best single change when that beats the base by
    /// `min_gain`. `singles` are the measured single-knob variants.
    pub fn improvements<'a>(
        &self,
        base: &Pooled,
        singles: impl IntoIterator<Item = (&'a Variant, &'a Pooled)>,
        left_out: Option<&str>,
    ) -> Vec<(String, Value)> {
        let floor = self
            .value(base, left_out)
            .map_or(f64::NEG_INFINITY, |v| v + self.min_gain);
        let mut best: BTreeMap<String, (f64, Value)> = BTreeMap::new();
        for (variant, pooled) in singles {
            let Some(value) = self.value(pooled, left_out) else {
                continue;
            };
            let [(path, setting)] = variant.changes.as_slice() else {
                continue;
            };
            if value >= floor && best.get(path).is_none_or(|(v, _)| value > *v) {
                best.insert(path.clone(), (value, setting.clone()));
            }
        }
        best.into_iter()
            .map(|(path, (_, setting))| (path, setting))
            .collect()
    }

    /// The best of the candidates (`None` scores lowest); the first wins a tie.
    pub fn best<'a, T>(
        &self,
        candidates: impl IntoIterator<Item = (T, &'a Pooled)>,
        left_out: Option<&str>,
    ) -> Option<T> {
        let mut best: Option<(f64, T)> = None;
        for (candidate, pooled) in candidates {
            let value = self.value(pooled, left_out).unwrap_or(f64::NEG_INFINITY);
            if best.as_ref().is_none_or(|(v, _)| value > *v) {
                best = Some((value, candidate));
            }
        }
        best.map(|(_, candidate)| candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "risk:\n  bands: { medium: 30, high: 60, critical: 85 }\nrules:\n  - id: fan_in\n    params: { min_surprise: 4 }\n  - id: burst\n    params: { score: 65 }\n";

    fn outcome(kinds: &[(Kind, u32, u32)], false_alerts: u64, benign: u32) -> Outcome {
        Outcome {
            kinds: kinds
                .iter()
                .map(|&(kind, detected, campaigns)| KindOutcome {
                    kind,
                    detected,
                    campaigns,
                })
                .collect(),
            false_alerts,
            after_attack: 0,
            judged_days: 7,
            benign_alerted: benign,
            burn_in_max: 0,
        }
    }

    #[test]
    fn knobs_reach_mappings_and_rules_by_id() {
        let variants = Variants::new(BASE).unwrap();
        let v = variants
            .with(&[
                ("rules.fan_in.params.min_surprise".into(), Value::from(3)),
                ("risk.bands.high".into(), Value::from(50)),
            ])
            .unwrap();
        assert_eq!(v.name, "fan_in.min_surprise=3,bands.high=50");
        let doc: Value = serde_yaml_ng::from_str(&v.text).unwrap();
        assert_eq!(doc["rules"][0]["params"]["min_surprise"], Value::from(3));
        assert_eq!(doc["rules"][1]["params"]["score"], Value::from(65));
        assert_eq!(doc["risk"]["bands"]["high"], Value::from(50));
    }

    #[test]
    fn an_unknown_path_says_where_it_stops() {
        let variants = Variants::new(BASE).unwrap();
        let err = variants
            .with(&[("rules.fan_in.params.min_surprse".into(), Value::from(3))])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "knob rules.fan_in.params.min_surprse: rules.fan_in.params has no field `min_surprse`"
        );
        let err = variants
            .with(&[("rules.fan_out.weight".into(), Value::from(1))])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "knob rules.fan_out.weight: rules has no entry with id `fan_out`"
        );
    }

    #[test]
    fn singles_skip_the_base_value() {
        let grid = Grid::parse("knobs:\n  rules.fan_in.params.min_surprise: [3, 4, 5]\n").unwrap();
        let names: Vec<String> = Variants::new(BASE)
            .unwrap()
            .singles(&grid)
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["fan_in.min_surprise=3", "fan_in.min_surprise=5"]);
    }

    #[test]
    fn grid_errors_name_the_knob() {
        assert_eq!(
            Grid::parse("knobs:\n  risk.bands.high: 50\n")
                .unwrap_err()
                .to_string(),
            "knob risk.bands.high: give a list of values to try"
        );
        assert!(Grid::parse("knobs: {}\n").is_err());
        assert!(Grid::parse("knobs: { a: [1] }\nobjective: { cost: 1 }\n").is_err());
    }

    #[test]
    fn a_left_out_family_does_not_steer_the_choice() {
        let objective = Objective::default();
        let variants = Variants::new(BASE).unwrap();
        let base = Pooled::of([&outcome(&[(Kind::Spray, 5, 6), (Kind::FanIn, 3, 6)], 7, 0)]);
        // Looser fan-in: catches every fan-in, at a false alert a day more.
        let looser = variants
            .with(&[("rules.fan_in.params.min_surprise".into(), Value::from(3))])
            .unwrap();
        let looser_pooled =
            Pooled::of([&outcome(&[(Kind::Spray, 5, 6), (Kind::FanIn, 6, 6)], 14, 0)]);
        let chosen = objective.improvements(&base, [(&looser, &looser_pooled)], None);
        assert_eq!(
            chosen.len(),
            1,
            "with fan_in in view, the looser value wins"
        );
        let chosen = objective.improvements(&base, [(&looser, &looser_pooled)], Some("fan_in"));
        assert!(chosen.is_empty(), "without it, only its noise is seen");
    }

    #[test]
    fn too_many_false_alerts_rule_a_candidate_out() {
        let objective = Objective::default();
        let noisy = Pooled::of([&outcome(&[(Kind::Spray, 6, 6)], 22, 0)]);
        let quiet = Pooled::of([&outcome(&[(Kind::Spray, 4, 6)], 0, 1)]);
        assert_eq!(objective.value(&noisy, None), None);
        let value = objective.value(&quiet, None).unwrap();
        assert!((value - (4.0 / 6.0 - 0.02)).abs() < 1e-9, "{value}");
        assert_eq!(
            objective.best([("noisy", &noisy), ("quiet", &quiet)], None),
            Some("quiet")
        );
    }
}
