//! The full LANL 2015 authentication record (`auth.txt`), nine fields:
//! `time,src_user@domain,dst_user@domain,src_computer,dst_computer,auth_type,logon_type,orientation,success|fail`,
//! e.g. `1,C625$@DOM1,U147@DOM1,C625,C625,Negotiate,Batch,LogOn,Success`.
//!
//! The account is the source user (the one the red-team file names); the
//! computer is the destination. The destination user is kept as the source
//! account only when it differs (a logon as another account, `ANONYMOUS
//! LOGON`). `LogOff` records end a session rather than start one and are
//! refused as unmapped; `?` in any coded field means unknown.

use memchr::memchr_iter;

use super::{MAX_UNIX_TIME, Record, Reject, check_name};
use crate::event::TimeBase;
use crate::logon::{AuthPackage, LogonType, Outcome, RecordDetail};

/// Fields of a full LANL record.
pub const FIELDS: usize = 9;

/// Parses one nine-field LANL line (without its `\n`; a trailing `\r` is
/// allowed).
pub fn parse_lanl_auth(line: &[u8], base: TimeBase) -> Result<Record<'_>, Reject> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let found = 1 + memchr_iter(b',', line).count();
    if found != FIELDS {
        return Err(Reject::FieldCount { found });
    }
    let mut fields = [&line[..0]; FIELDS];
    for (slot, field) in fields.iter_mut().zip(line.split(|&b| b == b',')) {
        *slot = field;
    }
    let [
        time,
        src_user,
        dst_user,
        src_computer,
        dst_computer,
        auth,
        logon,
        orientation,
        outcome,
    ] = fields;
    let lanl_time = super::csv::parse_time(time)?;
    check_name("src_user", src_user)?;
    check_name("dst_computer", dst_computer)?;
    let event_time = base.to_unix(lanl_time);
    if event_time > MAX_UNIX_TIME {
        return Err(Reject::BadTime(format!(
            "{lanl_time} is too far in the future"
        )));
    }
    fn text<'a>(field: &'static str, value: &'a [u8]) -> Result<&'a str, Reject> {
        std::str::from_utf8(value).map_err(|_| Reject::BadField(field, lossy(value)))
    }
    let orientation = text("orientation", orientation)?;
    if orientation.eq_ignore_ascii_case("LogOff") {
        return Err(Reject::Unmapped("a LogOff ends a session".into()));
    }
    let logon = text("logon_type", logon)?;
    let logon_type =
        LogonType::from_name(logon).ok_or_else(|| Reject::BadField("logon_type", logon.into()))?;
    let outcome_text = text("outcome", outcome)?;
    let outcome = match Outcome::from_name(outcome_text) {
        Outcome::Unknown if outcome_text != "?" => {
            return Err(Reject::BadField("outcome", outcome_text.into()));
        }
        outcome => outcome,
    };
    let source_user = known("dst_user", dst_user)?.filter(|&u| u != src_user);
    let detail = RecordDetail {
        source_computer: known("src_computer", src_computer)?,
        source_user,
        logon_type,
        auth_package: AuthPackage::from_name(text("auth_type", auth)?),
        outcome,
        failure_reason: Default::default(),
    };
    Ok(Record {
        event_time,
        user: src_user,
        computer: dst_computer,
        event_id: None,
        ingestion_time: None,
        detail,
        source_event_id: None,
    })
}

/// A name field, `None` when empty or `?`.
fn known<'a>(name: &'static str, value: &'a [u8]) -> Result<Option<&'a [u8]>, Reject> {
    if value.is_empty() || value == b"?" {
        return Ok(None);
    }
    check_name(name, value)?;
    Ok(Some(value))
}

fn lossy(value: &[u8]) -> String {
    String::from_utf8_lossy(&value[..value.len().min(64)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logon::FailureReason;

    #[test]
    fn reads_every_field() {
        let r = parse_lanl_auth(
            b"3,U22@DOM1,U22@DOM1,C1065,C586,Kerberos,Network,LogOn,Fail",
            TimeBase::DEFAULT,
        )
        .unwrap();
        assert_eq!(r.event_time, TimeBase::DEFAULT.to_unix(3));
        assert_eq!((r.user, r.computer), (&b"U22@DOM1"[..], &b"C586"[..]));
        assert_eq!(
            r.detail,
            RecordDetail {
                source_computer: Some(b"C1065"),
                source_user: None,
                logon_type: LogonType::NETWORK,
                auth_package: AuthPackage::Kerberos,
                outcome: Outcome::Failure,
                failure_reason: FailureReason::Unknown,
            }
        );
    }

    #[test]
    fn another_account_and_unknowns() {
        let r = parse_lanl_auth(
            b"1,C625$@DOM1,ANONYMOUS LOGON@C586,C625,C586,?,?,AuthMap,Success\r",
            TimeBase::DEFAULT,
        )
        .unwrap();
        assert_eq!(r.detail.source_user, Some(&b"ANONYMOUS LOGON@C586"[..]));
        assert_eq!(r.detail.logon_type, LogonType::UNKNOWN);
        assert_eq!(r.detail.auth_package, AuthPackage::Unknown);
        assert_eq!(r.detail.outcome, Outcome::Success);
    }

    #[test]
    fn refuses_what_it_cannot_map() {
        let kind = |line: &[u8]| parse_lanl_auth(line, TimeBase::DEFAULT).unwrap_err().kind();
        assert_eq!(
            kind(b"1,U1@D,U1@D,C1,C2,NTLM,Network,LogOff,Success"),
            "unmapped"
        );
        assert_eq!(kind(b"1,U1@D,U1@D,C1,C2,NTLM,Network,LogOn"), "field_count");
        assert_eq!(
            kind(b"1,U1@D,U1@D,C1,C2,NTLM,Network,LogOn,Success,x"),
            "field_count"
        );
        assert_eq!(
            kind(b"1,U1@D,U1@D,C1,C2,NTLM,Teleport,LogOn,Success"),
            "bad_field"
        );
        assert_eq!(
            kind(b"1,U1@D,U1@D,C1,C2,NTLM,Network,LogOn,Maybe"),
            "bad_field"
        );
        assert_eq!(
            kind(b"x,U1@D,U1@D,C1,C2,NTLM,Network,LogOn,Success"),
            "bad_time"
        );
        assert_eq!(
            kind(b"1,,U1@D,C1,C2,NTLM,Network,LogOn,Success"),
            "empty_field"
        );
    }
}
