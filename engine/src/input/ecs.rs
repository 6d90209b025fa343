//! Windows logon events in the Elastic Common Schema, one JSON document per
//! line, as Winlogbeat and Elastic Agent ship them (nested objects, not
//! dotted keys). The events mapped, by `event.code`:
//!
//! | code | what | account | computer | source |
//! |---|---|---|---|---|
//! | 4624 / 4625 | logon succeeded / failed | `user.name` (else `TargetUserName`) | `host.name` | `WorkstationName`, else `source.domain`, `source.ip` |
//! | 4648 | logon with explicit credentials | `TargetUserName` | `TargetServerName` (else `host.name`) | `host.name`; account `SubjectUserName` |
//! | 4768 | Kerberos TGT requested | `TargetUserName` | `host.name` (the domain controller) | `IpAddress`, `source.ip` |
//! | 4769 | Kerberos service ticket | `TargetUserName` | `ServiceName` without `$` | `IpAddress`, `source.ip` |
//! | 4776 | NTLM credentials validated | `TargetUserName` | `host.name` (the domain controller) | `Workstation` |
//!
//! (`TargetUserName` and the like are under `winlog.event_data`.) The time
//! is `@timestamp`; the outcome `event.outcome`; the logon type
//! `winlog.logon.type` (Winlogbeat's words) or `LogonType` (the number);
//! the package `AuthenticationPackageName` (4624/4625), Kerberos (4768,
//! 4769) or NTLM (4776); the reason of a failure `SubStatus`, else
//! `Status`; the record's own id `event.id`, else `winlog.record_id`.
//! Other event codes, events without an account or computer, and
//! the operating system's own logons (`SYSTEM`, `LOCAL SERVICE`, `DWM-1`,
//! ...) are refused as unmapped. Field by field in `docs/formats.md`.

use std::borrow::Cow;

use serde::Deserialize;

use super::json::{Mapped, NumberOrText, from_line, parse_rfc3339};
use super::{Record, Reject, local_system_account};
use crate::logon::{AuthPackage, FailureReason, LogonType, Outcome};

#[derive(Deserialize)]
struct Document<'a> {
    #[serde(rename = "@timestamp", borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow)]
    event: Event<'a>,
    #[serde(borrow, default)]
    user: Option<Named<'a>>,
    #[serde(borrow, default)]
    host: Option<Host<'a>>,
    #[serde(borrow, default)]
    source: Option<Source<'a>>,
    #[serde(borrow, default)]
    winlog: Option<Winlog<'a>>,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow, default)]
    code: Option<NumberOrText<'a>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    outcome: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    domain: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Host<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    hostname: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Source<'a> {
    #[serde(borrow, default)]
    domain: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    ip: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Winlog<'a> {
    #[serde(borrow, default)]
    event_data: Option<EventData<'a>>,
    #[serde(borrow, default)]
    record_id: Option<NumberOrText<'a>>,
    #[serde(borrow, default)]
    logon: Option<Logon<'a>>,
}

#[derive(Deserialize)]
struct Logon<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<NumberOrText<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct EventData<'a> {
    #[serde(borrow, default)]
    target_user_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    target_domain_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    subject_user_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    workstation_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    workstation: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    ip_address: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    logon_type: Option<NumberOrText<'a>>,
    #[serde(borrow, default)]
    authentication_package_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sub_status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    service_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    target_server_name: Option<Cow<'a, str>>,
}

/// A value Windows writes when it has none.
fn given(value: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    value.filter(|v| !matches!(&**v, "" | "-" | "::1" | "127.0.0.1" | "localhost"))
}

/// Parses one ECS document. Names that JSON escapes had to be undone for
/// are copied into `scratch` (rare).
pub fn parse_ecs<'a>(line: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<Record<'a>, Reject> {
    let doc: Document<'a> = from_line(line)?;
    let code = match &doc.event.code {
        Some(NumberOrText::Number(n)) => *n,
        Some(NumberOrText::Text(text)) => text.trim().parse().unwrap_or(0),
        None => return Err(Reject::Unmapped("no `event.code`".into())),
    };
    let event_time = parse_rfc3339("@timestamp", &doc.timestamp)?;
    let data = doc.winlog.as_ref().and_then(|w| w.event_data.as_ref());
    let field = |get: for<'r> fn(&'r EventData<'a>) -> &'r Option<Cow<'a, str>>| {
        given(data.and_then(|d| get(d).clone()))
    };
    let host = doc
        .host
        .as_ref()
        .and_then(|h| given(h.name.clone()).or_else(|| given(h.hostname.clone())));
    let source_address = doc
        .source
        .as_ref()
        .and_then(|s| given(s.domain.clone()).or_else(|| given(s.ip.clone())));
    let target_user = field(|d| &d.target_user_name);
    let mut source_user = None;
    let (account, computer, source_computer, auth_package) = match code {
        4624 | 4625 => (
            given(doc.user.as_ref().and_then(|u| u.name.clone())).or(target_user),
            host,
            field(|d| &d.workstation_name).or(source_address),
            field(|d| &d.authentication_package_name)
                .map_or(AuthPackage::Unknown, |p: Cow<'_, str>| {
                    AuthPackage::from_name(&p)
                }),
        ),
        4648 => {
            source_user = field(|d| &d.subject_user_name);
            let server = field(|d| &d.target_server_name);
            (
                target_user,
                server.or(host.clone()),
                host,
                AuthPackage::Unknown,
            )
        }
        4768 => (
            target_user,
            host,
            field(|d| &d.ip_address).or(source_address),
            AuthPackage::Kerberos,
        ),
        4769 => {
            let service = field(|d| &d.service_name).map(|s| match s {
                Cow::Borrowed(s) => Cow::Borrowed(s.strip_suffix('$').unwrap_or(s)),
                Cow::Owned(s) => Cow::Owned(s.strip_suffix('$').unwrap_or(&s).to_string()),
            });
            (
                target_user,
                service,
                field(|d| &d.ip_address).or(source_address),
                AuthPackage::Kerberos,
            )
        }
        4776 => (
            target_user,
            host,
            field(|d| &d.workstation),
            AuthPackage::Ntlm,
        ),
        other => {
            return Err(Reject::Unmapped(format!(
                "Windows event {other} is not a logon event this format maps"
            )));
        }
    };
    let account = account.ok_or_else(|| Reject::Unmapped("no account name".into()))?;
    let domain = field(|d| &d.target_domain_name)
        .or_else(|| given(doc.user.as_ref().and_then(|u| u.domain.clone())));
    if local_system_account(&account, domain.as_deref().unwrap_or("")) {
        return Err(Reject::Unmapped(format!(
            "`{account}` is the operating system's own account"
        )));
    }
    let computer = computer.ok_or_else(|| Reject::Unmapped("no computer name".into()))?;
    let source_user = source_user.filter(|u| *u != account);

    let outcome = match doc.event.outcome.as_deref() {
        Some(outcome) => Outcome::from_name(outcome),
        None if code == 4625 => Outcome::Failure,
        None if code == 4624 => Outcome::Success,
        None => Outcome::Unknown,
    };
    let failure_reason = if outcome == Outcome::Failure {
        field(|d| &d.sub_status)
            .filter(|s| {
                !s.trim_start_matches("0x")
                    .trim_start_matches('0')
                    .is_empty()
            })
            .or_else(|| field(|d| &d.status))
            .map_or(FailureReason::Unknown, |code: Cow<'_, str>| {
                FailureReason::from_ntstatus(&code)
            })
    } else {
        FailureReason::Unknown
    };
    let logon_kind = doc
        .winlog
        .as_ref()
        .and_then(|w| w.logon.as_ref())
        .and_then(|l| l.kind.as_ref())
        .or(data.and_then(|d| d.logon_type.as_ref()));
    let logon_type = match logon_kind {
        Some(kind) => kind.logon_type()?,
        None => LogonType::UNKNOWN,
    };
    // The record's own id: `event.id`, else the event log's record number.
    let source_event_id = doc.event.id.filter(|id| !id.is_empty()).or_else(|| {
        match doc.winlog.and_then(|w| w.record_id)? {
            NumberOrText::Number(n) => Some(Cow::Owned(n.to_string())),
            NumberOrText::Text(text) => Some(text).filter(|t| !t.is_empty()),
        }
    });
    Mapped {
        event_time,
        names: [
            ("user.name", Some(account)),
            ("host.name", Some(computer)),
            ("source", source_computer),
            ("SubjectUserName", source_user),
            ("event.id", source_event_id),
        ],
        logon_type,
        auth_package,
        outcome,
        failure_reason,
    }
    .into_record(scratch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Record<'_>, Reject> {
        let scratch = Box::leak(Box::new(Vec::new()));
        parse_ecs(line.as_bytes(), scratch)
    }

    #[test]
    fn maps_a_failed_logon() {
        let r = parse(
            r#"{"@timestamp":"2024-01-01T00:00:01.250Z","event":{"code":"4625","outcome":"failure","provider":"Microsoft-Windows-Security-Auditing"},
            "user":{"name":"bob","domain":"CORP"},"host":{"name":"fs01.corp.example"},
            "source":{"ip":"10.0.0.7","domain":"WS007"},
            "winlog":{"logon":{"type":"Network","failure":{"reason":"Unknown user name or bad password."}},
            "event_data":{"TargetUserName":"bob","WorkstationName":"WS007","LogonType":"3",
            "AuthenticationPackageName":"NTLM","Status":"0xC000006D","SubStatus":"0xC0000064"}}}"#,
        )
        .unwrap();
        assert_eq!(r.event_time, 1_704_067_201);
        assert_eq!(
            (r.user, r.computer),
            (&b"bob"[..], &b"fs01.corp.example"[..])
        );
        assert_eq!(r.detail.source_computer, Some(&b"WS007"[..]));
        assert_eq!(r.detail.logon_type, LogonType::NETWORK);
        assert_eq!(r.detail.auth_package, AuthPackage::Ntlm);
        assert_eq!(r.detail.outcome, Outcome::Failure);
        assert_eq!(r.detail.failure_reason, FailureReason::NoSuchUser);
    }

    #[test]
    fn maps_kerberos_and_explicit_credentials() {
        let tgs = parse(
            r#"{"@timestamp":"2024-01-01T00:00:02Z","event":{"code":4769,"outcome":"success"},
            "host":{"name":"dc1"},"winlog":{"event_data":{"TargetUserName":"carol@CORP.EXAMPLE",
            "ServiceName":"SQL01$","IpAddress":"::ffff:10.0.0.9","Status":"0x0"}}}"#,
        )
        .unwrap();
        assert_eq!(
            (tgs.user, tgs.computer),
            (&b"carol@CORP.EXAMPLE"[..], &b"SQL01"[..])
        );
        assert_eq!(tgs.detail.source_computer, Some(&b"::ffff:10.0.0.9"[..]));
        assert_eq!(tgs.detail.auth_package, AuthPackage::Kerberos);
        assert_eq!(tgs.detail.failure_reason, FailureReason::Unknown);

        let explicit = parse(
            r#"{"@timestamp":"2024-01-01T00:00:03Z","event":{"code":"4648"},"host":{"name":"ws1"},
            "winlog":{"event_data":{"SubjectUserName":"dave","TargetUserName":"admin","TargetServerName":"srv9"}}}"#,
        )
        .unwrap();
        assert_eq!(
            (explicit.user, explicit.computer),
            (&b"admin"[..], &b"srv9"[..])
        );
        assert_eq!(explicit.detail.source_user, Some(&b"dave"[..]));
        assert_eq!(explicit.detail.source_computer, Some(&b"ws1"[..]));
        assert_eq!(explicit.detail.outcome, Outcome::Unknown);
    }

    #[test]
    fn refuses_what_it_cannot_map() {
        let kind = |line: &str| parse(line).unwrap_err().kind();
        assert_eq!(
            kind(
                r#"{"@timestamp":"2024-01-01T00:00:01Z","event":{"code":"4634"},"host":{"name":"h"},"user":{"name":"a"}}"#
            ),
            "unmapped"
        );
        assert_eq!(
            kind(
                r#"{"@timestamp":"2024-01-01T00:00:01Z","event":{"code":"4624"},"host":{"name":"h"},"user":{"name":"SYSTEM"}}"#
            ),
            "unmapped"
        );
        assert_eq!(
            kind(
                r#"{"@timestamp":"2024-01-01T00:00:01Z","event":{"code":"4624"},"host":{"name":"h"},"user":{"name":"DWM-3","domain":"Window Manager"}}"#
            ),
            "unmapped"
        );
        assert_eq!(
            kind(
                r#"{"@timestamp":"2024-01-01T00:00:01Z","event":{"code":"4624"},"user":{"name":"a"}}"#
            ),
            "unmapped"
        );
        assert_eq!(
            kind(
                r#"{"@timestamp":"soon","event":{"code":"4624"},"host":{"name":"h"},"user":{"name":"a"}}"#
            ),
            "bad_time"
        );
        assert_eq!(kind(r#"{"event":{"code":"4624"}}"#), "bad_json");
    }
}
