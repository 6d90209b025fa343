//! OCSF 1.x Authentication events (class 3002), one JSON object per line,
//! as AWS Security Lake and OCSF-emitting tools write them. The mapping,
//! field by field, is in `docs/formats.md`:
//!
//! - the account is `user.name` (else `user.uid`); the account that acted,
//!   `actor.user.name`, is the source account when it differs;
//! - the computer is `dst_endpoint.hostname`, else `dst_endpoint.name`,
//!   `device.hostname`, `dst_endpoint.ip`, `device.ip`; the source computer
//!   `src_endpoint.hostname`, else `.name`, else `.ip`;
//! - `time` (milliseconds since the epoch) is the event time;
//! - `logon_type_id`, `auth_protocol_id` (or `auth_protocol`), `status_id`
//!   and `status_code` (an NTSTATUS code) or `status_detail` fill the rest;
//! - `metadata.uid` is the record's own id (`source_event_id`).
//!
//! Refused as unmapped: another class, a logoff (`activity_id` 2), no
//! account or no computer, and logons of the operating system's own
//! accounts (`user.type_id` 3, `SYSTEM`, `LOCAL SERVICE`, ...), which are no
//! one's. Machine accounts (`NAME$`) and `ANONYMOUS LOGON` are accounts.

use std::borrow::Cow;

use serde::Deserialize;

use super::json::{Mapped, from_line, unix_seconds};
use super::{Record, Reject, local_system_account};
use crate::logon::{AuthPackage, FailureReason, LogonType, Outcome};

/// The Authentication class.
pub const CLASS_UID: u64 = 3002;

#[derive(Deserialize)]
struct Authentication<'a> {
    class_uid: u64,
    #[serde(default)]
    activity_id: Option<u64>,
    time: i64,
    #[serde(borrow, default)]
    user: Option<User<'a>>,
    #[serde(borrow, default)]
    actor: Option<Actor<'a>>,
    #[serde(borrow, default)]
    src_endpoint: Option<Endpoint<'a>>,
    #[serde(borrow, default)]
    dst_endpoint: Option<Endpoint<'a>>,
    #[serde(borrow, default)]
    device: Option<Endpoint<'a>>,
    #[serde(default)]
    logon_type_id: Option<u64>,
    #[serde(default)]
    auth_protocol_id: Option<u64>,
    #[serde(borrow, default)]
    auth_protocol: Option<Cow<'a, str>>,
    #[serde(default)]
    status_id: Option<u64>,
    #[serde(borrow, default)]
    status_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status_detail: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metadata: Option<Metadata<'a>>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow, default)]
    uid: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct User<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    uid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    domain: Option<Cow<'a, str>>,
    #[serde(default)]
    type_id: Option<u64>,
}

#[derive(Deserialize)]
struct Actor<'a> {
    #[serde(borrow, default)]
    user: Option<User<'a>>,
}

#[derive(Deserialize)]
struct Endpoint<'a> {
    #[serde(borrow, default)]
    hostname: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    ip: Option<Cow<'a, str>>,
}

impl<'a> Endpoint<'a> {
    /// Its best name: host name, name, address.
    fn best(self) -> Option<Cow<'a, str>> {
        [self.hostname, self.name, self.ip]
            .into_iter()
            .flatten()
            .find(|n| !n.is_empty())
    }
}

/// OCSF `user.type_id` of the system itself.
const SYSTEM_USER: u64 = 3;

/// Parses one OCSF Authentication line. Names that JSON escapes had to be
/// undone for are copied into `scratch` (rare).
pub fn parse_ocsf<'a>(line: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<Record<'a>, Reject> {
    let event: Authentication<'a> = from_line(line)?;
    if event.class_uid != CLASS_UID {
        return Err(Reject::Unmapped(format!(
            "OCSF class {} is not Authentication ({CLASS_UID})",
            event.class_uid
        )));
    }
    if event.activity_id == Some(2) {
        return Err(Reject::Unmapped("a logoff ends a session".into()));
    }
    let event_time = unix_seconds("time", event.time.div_euclid(1000))?;
    let user = event
        .user
        .ok_or_else(|| Reject::Unmapped("no `user`".into()))?;
    let domain = user.domain.as_deref().unwrap_or("");
    let account = [user.name, user.uid]
        .into_iter()
        .flatten()
        .find(|n| !n.is_empty())
        .ok_or_else(|| Reject::Unmapped("no `user.name` or `user.uid`".into()))?;
    if user.type_id == Some(SYSTEM_USER) || local_system_account(&account, domain) {
        return Err(Reject::Unmapped(format!(
            "`{account}` is the operating system's own account"
        )));
    }
    let computer = [event.dst_endpoint, event.device]
        .into_iter()
        .flatten()
        .filter_map(Endpoint::best)
        .next()
        .ok_or_else(|| Reject::Unmapped("no `dst_endpoint` or `device` name".into()))?;
    let source_computer = event.src_endpoint.and_then(Endpoint::best);
    let source_user = event
        .actor
        .and_then(|a| a.user)
        .and_then(|u| u.name)
        .filter(|n| !n.is_empty() && **n != *account);

    let outcome = match event.status_id {
        Some(1) => Outcome::Success,
        Some(2) => Outcome::Failure,
        _ => Outcome::Unknown,
    };
    let failure_reason = match (outcome, &event.status_code, &event.status_detail) {
        (Outcome::Failure, Some(code), _) if !code.is_empty() => FailureReason::from_ntstatus(code),
        (Outcome::Failure, _, Some(detail)) => FailureReason::from_name(detail),
        _ => FailureReason::Unknown,
    };
    let auth_package = match (event.auth_protocol_id, event.auth_protocol.as_deref()) {
        (Some(0) | None, None) => AuthPackage::Unknown,
        (Some(id @ 1..=2), _) => AuthPackage::from_ocsf(id),
        (_, Some(name)) => AuthPackage::from_name(name),
        (Some(id), None) => AuthPackage::from_ocsf(id),
    };
    Mapped {
        event_time,
        names: [
            ("user.name", Some(account)),
            ("dst_endpoint", Some(computer)),
            ("src_endpoint", source_computer),
            ("actor.user.name", source_user),
            (
                "metadata.uid",
                event.metadata.and_then(|m| m.uid).filter(|u| !u.is_empty()),
            ),
        ],
        logon_type: event
            .logon_type_id
            .map_or(LogonType::UNKNOWN, LogonType::from_number),
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
        parse_ocsf(line.as_bytes(), scratch)
    }

    #[test]
    fn maps_a_failed_network_logon() {
        let r = parse(
            r#"{"class_uid":3002,"category_uid":3,"activity_id":1,"time":1704067201500,
            "user":{"name":"alice","domain":"CORP","type_id":1},
            "src_endpoint":{"hostname":"ws042","ip":"10.0.0.42"},
            "dst_endpoint":{"hostname":"fs01","ip":"10.0.1.5"},
            "logon_type_id":3,"auth_protocol_id":1,"status_id":2,"status_code":"0xC000006A",
            "metadata":{"uid":"a4c1","version":"1.1.0","product":{"name":"x"}}}"#,
        )
        .unwrap();
        assert_eq!(r.event_time, 1_704_067_201);
        assert_eq!((r.user, r.computer), (&b"alice"[..], &b"fs01"[..]));
        assert_eq!(r.detail.source_computer, Some(&b"ws042"[..]));
        assert_eq!(r.detail.logon_type, LogonType::NETWORK);
        assert_eq!(r.detail.auth_package, AuthPackage::Ntlm);
        assert_eq!(r.detail.outcome, Outcome::Failure);
        assert_eq!(r.detail.failure_reason, FailureReason::BadPassword);
        assert_eq!(r.source_event_id, Some(&b"a4c1"[..]));
    }

    #[test]
    fn falls_back_to_the_device_and_names_the_actor() {
        let r = parse(
            r#"{"class_uid":3002,"time":1704067201000,"user":{"uid":"S-1-5-21-1"},
            "actor":{"user":{"name":"svc_backup"}},"device":{"hostname":"db7"},
            "auth_protocol_id":99,"auth_protocol":"Negotiate","status_id":1}"#,
        )
        .unwrap();
        assert_eq!((r.user, r.computer), (&b"S-1-5-21-1"[..], &b"db7"[..]));
        assert_eq!(r.detail.source_user, Some(&b"svc_backup"[..]));
        assert_eq!(r.detail.auth_package, AuthPackage::Negotiate);
        assert_eq!(r.detail.outcome, Outcome::Success);
        assert_eq!(r.detail.logon_type, LogonType::UNKNOWN);
    }

    #[test]
    fn refuses_what_it_cannot_map() {
        let kind = |line: &str| parse(line).unwrap_err().kind();
        let base = r#""time":1704067201000,"dst_endpoint":{"hostname":"h"}"#;
        assert_eq!(
            kind(&format!(
                r#"{{"class_uid":3001,{base},"user":{{"name":"a"}}}}"#
            )),
            "unmapped"
        );
        assert_eq!(
            kind(&format!(
                r#"{{"class_uid":3002,"activity_id":2,{base},"user":{{"name":"a"}}}}"#
            )),
            "unmapped"
        );
        assert_eq!(kind(&format!(r#"{{"class_uid":3002,{base}}}"#)), "unmapped");
        assert_eq!(
            kind(&format!(
                r#"{{"class_uid":3002,{base},"user":{{"name":"SYSTEM","domain":"NT AUTHORITY"}}}}"#
            )),
            "unmapped"
        );
        assert_eq!(
            kind(r#"{"class_uid":3002,"time":1704067201000,"user":{"name":"a"}}"#),
            "unmapped"
        );
        assert_eq!(
            kind(r#"{"class_uid":3002,"user":{"name":"a"}}"#),
            "bad_json"
        );
        assert_eq!(
            kind(
                r#"{"class_uid":3002,"time":-5,"dst_endpoint":{"hostname":"h"},"user":{"name":"a"}}"#
            ),
            "bad_time"
        );
    }
}
