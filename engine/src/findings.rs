//! Alert publications as OCSF Detection Findings (class 2004, OCSF 1.1.0),
//! the form AWS Security Lake, SIEMs and OCSF tooling read as they are: one
//! finding per publication of an incident, its opening `Create`, its
//! updates `Update`, its closing `Close`, all with the incident's id as
//! `finding_info.uid`. Field by field in `docs/formats.md`.

use std::io;

use serde_json::{Value, json};

use crate::alerts::{Alert, AlertStatus};
use crate::entity::EntityKind;
use crate::policy::RiskLevel;
use crate::sinks::{AlertSink, Commit, JsonLinesFile};

/// The OCSF version the findings follow.
pub const OCSF_VERSION: &str = "1.1.0";
/// Detection Finding.
pub const CLASS_UID: u32 = 2004;
/// Findings.
pub const CATEGORY_UID: u32 = 2;

/// How alert publications are written (`--alert-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertFormat {
    /// AuthPulse's own alert JSON (`docs/operations.md`).
    #[default]
    Json,
    /// OCSF 1.1.0 Detection Finding (class 2004).
    Ocsf,
}

/// The finding of one alert publication.
pub fn detection_finding(alert: &Alert) -> Value {
    let (activity_id, activity) = match alert.status {
        AlertStatus::Open => (1, "Create"),
        AlertStatus::Update => (2, "Update"),
        AlertStatus::Closed => (3, "Close"),
    };
    // An incident closes when it has been quiet for the dedup window:
    // nobody resolved it, so it is "other", not "resolved".
    let (status_id, status) = match alert.status {
        AlertStatus::Open | AlertStatus::Update => (1, "New"),
        AlertStatus::Closed => (99, "Closed"),
    };
    let (severity_id, severity, risk_level_id) = match alert.risk_level {
        RiskLevel::Low => (2, "Low", 1),
        RiskLevel::Medium => (3, "Medium", 2),
        RiskLevel::High => (4, "High", 3),
        RiskLevel::Critical => (5, "Critical", 4),
    };
    let millis = |rfc3339: &str| {
        chrono::DateTime::parse_from_rfc3339(rfc3339).map_or(0, |t| t.timestamp_millis())
    };
    let last = millis(&alert.last_event_time);
    let resource_type = match alert.entity_type {
        EntityKind::User => "User",
        EntityKind::Computer => "Computer",
    };
    let strongest = alert.rules.iter().max_by_key(|r| r.hits);
    let attacks: Vec<Value> = alert
        .rules
        .iter()
        .flat_map(|rule| rule.mitre.iter())
        .fold(Vec::<&String>::new(), |mut seen, t| {
            if !seen.contains(&t) {
                seen.push(t);
            }
            seen
        })
        .into_iter()
        .map(|technique| json!({"technique": {"uid": technique}, "version": "14.0"}))
        .collect();
    let related: Vec<Value> = alert
        .events
        .iter()
        .map(|e| {
            json!({
                "uid": e.event_id,
                "time": millis(&e.event_time),
                "type_uid": 300_201,
                "type_name": "Authentication: Logon",
            })
        })
        .collect();
    let title = format!(
        "{} {} at {} risk: {}",
        resource_type,
        alert.entity_id,
        alert.risk_level.as_str(),
        alert.risk_flags.join(", ")
    );
    json!({
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": format!("Detection Finding: {activity}"),
        "time": last,
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "risk_score": alert.risk_score,
        "risk_level_id": risk_level_id,
        "risk_level": severity,
        "message": alert.summary,
        "count": alert.event_count,
        "finding_info": {
            "uid": alert.alert_id,
            "title": title,
            "desc": alert.summary,
            "types": alert.risk_flags,
            "created_time": millis(&alert.opened_event_time),
            "first_seen_time": millis(&alert.first_event_time),
            "last_seen_time": last,
            "modified_time": last,
            "analytic": {
                "name": strongest.map_or("authpulse", |r| r.id.as_str()),
                "uid": strongest.map_or("", |r| r.id.as_str()),
                "version": strongest.map_or("", |r| r.version.as_str()),
                "desc": strongest.map_or("", |r| r.reason.as_str()),
                "type_id": 1,
                "type": "Rule",
            },
            "attacks": attacks,
            "related_events": related,
        },
        "resources": [{"type": resource_type, "name": alert.entity_id, "uid": alert.entity_id}],
        "metadata": {
            "version": OCSF_VERSION,
            "uid": format!("{}-{}", alert.alert_id, alert.sequence),
            "correlation_uid": alert.alert_id,
            "sequence": alert.sequence,
            "product": {
                "name": "AuthPulse",
                "vendor_name": "AuthPulse",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "labels": [format!("policy:{}", alert.policy_version)],
        },
        "unmapped": {
            "max_event_score": alert.max_event_score,
            "users": alert.users,
            "computers": alert.computers,
            "rules": alert.rules.iter().map(|r| json!({"id": r.id, "hits": r.hits, "reason": r.reason})).collect::<Vec<_>>(),
        },
    })
}

/// An alerts file in a chosen form (`--alerts`, `--alert-format`).
pub struct AlertsFile {
    pub file: JsonLinesFile,
    pub format: AlertFormat,
}

impl Commit for AlertsFile {
    fn flush(&mut self) -> io::Result<()> {
        Commit::flush(&mut self.file)
    }
}

impl AlertSink for AlertsFile {
    fn send(&mut self, alert: &Alert) -> io::Result<()> {
        match self.format {
            AlertFormat::Json => self.file.send(alert),
            AlertFormat::Ocsf => self.file.send_value(&detection_finding(alert)),
        }
    }
}
