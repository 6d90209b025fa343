//! The JSON event form the replay producer writes:
//! `{"event_id":"…32 hex…","event_time":"2024-01-01T00:00:01Z","user_id":"U1","computer_id":"C1","ingestion_time":"…"}`.
//! `event_id` and `ingestion_time` are optional; unknown fields are ignored.
//! A richer record adds any of `src_computer_id`, `src_user_id`,
//! `logon_type` (a name such as `network`, or the Windows number),
//! `auth_package` (`ntlm`, `kerberos`, `negotiate`, ...), `outcome`
//! (`success`, `failure`) and `failure_reason` (`bad_password`,
//! `no_such_user`, ..., or the NTSTATUS code); see `docs/formats.md`.

use std::borrow::Cow;

use serde::Deserialize;

use super::{MAX_UNIX_TIME, Record, Reject, check_name};
use crate::event::EventId;
use crate::logon::{AuthPackage, FailureReason, LogonType, Outcome, RecordDetail};

#[derive(Deserialize)]
struct JsonEvent<'a> {
    #[serde(borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_time: Cow<'a, str>,
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    #[serde(borrow)]
    computer_id: Cow<'a, str>,
    #[serde(borrow, default)]
    ingestion_time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    src_computer_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    src_user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    logon_type: Option<NumberOrText<'a>>,
    #[serde(borrow, default)]
    auth_package: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    outcome: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    failure_reason: Option<Cow<'a, str>>,
}

/// A field that may be written as a number or as text. Read by hand: an
/// untagged enum would buffer every value first, for every event.
pub(super) enum NumberOrText<'a> {
    Number(u64),
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for NumberOrText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = NumberOrText<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(NumberOrText::Number(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(NumberOrText::Number)
                    .map_err(|_| E::custom(format!("{v} is negative")))
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(NumberOrText::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(NumberOrText::Text(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

impl NumberOrText<'_> {
    pub(super) fn logon_type(&self) -> Result<LogonType, Reject> {
        match self {
            NumberOrText::Number(n) => Ok(LogonType::from_number(*n)),
            NumberOrText::Text(text) => LogonType::from_name(text)
                .ok_or_else(|| Reject::BadField("logon_type", text.to_string())),
        }
    }
}

/// Parses one JSON line. Names that JSON escapes had to be unescaped for are
/// copied into `scratch` (rare); the common case borrows the line.
pub fn parse_json<'a>(line: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<Record<'a>, Reject> {
    let ev: JsonEvent<'a> = from_line(line)?;
    let event_time = parse_rfc3339("event_time", &ev.event_time)?;
    let ingestion_time = ev
        .ingestion_time
        .as_deref()
        .map(|t| parse_rfc3339("ingestion_time", t))
        .transpose()?;
    let event_id = match ev.event_id.as_deref() {
        None => None,
        Some(hex) => Some(EventId::parse(hex).ok_or(Reject::BadEventId)?),
    };
    check_name("user_id", ev.user_id.as_bytes())?;
    check_name("computer_id", ev.computer_id.as_bytes())?;
    for (field, name) in [
        ("src_computer_id", &ev.src_computer_id),
        ("src_user_id", &ev.src_user_id),
    ] {
        if let Some(name) = name {
            check_name(field, name.as_bytes())?;
        }
    }
    let logon_type = ev
        .logon_type
        .as_ref()
        .map_or(Ok(LogonType::UNKNOWN), NumberOrText::logon_type)?;
    let auth_package = ev
        .auth_package
        .as_deref()
        .map_or(AuthPackage::Unknown, AuthPackage::from_name);
    let outcome =
        ev.outcome
            .as_deref()
            .map_or(Ok(Outcome::Unknown), |o| match Outcome::from_name(o) {
                Outcome::Unknown if !o.eq_ignore_ascii_case("unknown") => {
                    Err(Reject::BadField("outcome", o.to_string()))
                }
                outcome => Ok(outcome),
            })?;
    let failure_reason = ev
        .failure_reason
        .as_deref()
        .map_or(FailureReason::Unknown, FailureReason::from_name);

    let [user, computer, source_computer, source_user] = lend(
        [
            Some(ev.user_id),
            Some(ev.computer_id),
            ev.src_computer_id,
            ev.src_user_id,
        ],
        scratch,
    );
    let detail = RecordDetail {
        source_computer,
        source_user,
        logon_type,
        auth_package,
        outcome,
        failure_reason,
    };
    let (user, computer) = (user.expect("given"), computer.expect("given"));
    Ok(Record {
        event_time,
        user,
        computer,
        event_id,
        ingestion_time,
        detail,
        source_event_id: None,
    })
}

/// One JSON line deserialised; a failure is the reject it is (`not_utf8`,
/// else `bad_json` with serde's reason).
pub(super) fn from_line<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Result<T, Reject> {
    serde_json::from_slice(line).map_err(|e| {
        if std::str::from_utf8(line).is_err() {
            Reject::NotUtf8
        } else {
            Reject::BadJson(e.to_string())
        }
    })
}

/// What a JSON format's mapping found, with its names as decoded and the
/// fields they came from (for a refusal's reason).
pub(super) struct Mapped<'a> {
    pub event_time: i64,
    /// `(field, name)` of the account, the computer, the source computer,
    /// the source account and the source's own id of the record.
    pub names: [(&'static str, Option<Cow<'a, str>>); 5],
    pub logon_type: LogonType,
    pub auth_package: AuthPackage,
    pub outcome: Outcome,
    pub failure_reason: FailureReason,
}

impl<'a> Mapped<'a> {
    /// The record: names checked and lent (from the line, or from `scratch`
    /// when JSON escapes had to be undone).
    pub(super) fn into_record(self, scratch: &'a mut Vec<u8>) -> Result<Record<'a>, Reject> {
        for (field, name) in &self.names {
            if let Some(name) = name {
                check_name(field, name.as_bytes())?;
            }
        }
        let [
            user,
            computer,
            source_computer,
            source_user,
            source_event_id,
        ] = lend(self.names.map(|(_, name)| name), scratch);
        let (Some(user), Some(computer)) = (user, computer) else {
            return Err(Reject::Unmapped("no account or no computer".into()));
        };
        Ok(Record {
            event_time: self.event_time,
            user,
            computer,
            event_id: None,
            ingestion_time: None,
            detail: RecordDetail {
                source_computer,
                source_user,
                logon_type: self.logon_type,
                auth_package: self.auth_package,
                outcome: self.outcome,
                failure_reason: self.failure_reason,
            },
            source_event_id,
        })
    }
}

/// Names as slices of the line, or, when JSON escapes had to be undone for
/// any (rare), all copied into `scratch`.
pub(super) fn lend<'a, const N: usize>(
    names: [Option<Cow<'a, str>>; N],
    scratch: &'a mut Vec<u8>,
) -> [Option<&'a [u8]>; N] {
    if !names.iter().any(|n| matches!(n, Some(Cow::Owned(_)))) {
        return names.map(|n| {
            n.map(|name| match name {
                Cow::Borrowed(name) => name.as_bytes(),
                Cow::Owned(_) => unreachable!("checked above"),
            })
        });
    }
    scratch.clear();
    let spans = names.map(|n| {
        n.map(|name| {
            let start = scratch.len();
            scratch.extend_from_slice(name.as_bytes());
            (start, scratch.len())
        })
    });
    let scratch: &'a [u8] = scratch;
    spans.map(|span| span.map(|(start, end)| &scratch[start..end]))
}

/// Unix seconds `seconds` of field `field`, if in range.
pub(super) fn unix_seconds(field: &str, seconds: i64) -> Result<i64, Reject> {
    if !(0..=MAX_UNIX_TIME).contains(&seconds) {
        return Err(Reject::BadTime(format!(
            "{field} {seconds} is out of range"
        )));
    }
    Ok(seconds)
}

pub(super) fn parse_rfc3339(field: &str, value: &str) -> Result<i64, Reject> {
    let t = chrono::DateTime::parse_from_rfc3339(value)
        .map_err(|e| Reject::BadTime(format!("{field} `{value}`: {e}")))?
        .timestamp();
    if !(0..=MAX_UNIX_TIME).contains(&t) {
        return Err(Reject::BadTime(format!(
            "{field} `{value}` is out of range"
        )));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_producer_events() {
        let line = br#"{"event_id":"9341c1af8b819d9bfb1ffee11659a83f","event_time":"2024-01-01T00:00:01Z","user_id":"U1","computer_id":"C1","ingestion_time":"2024-01-01T00:00:02.5Z","extra":1}"#;
        let mut scratch = Vec::new();
        let r = parse_json(line, &mut scratch).unwrap();
        assert_eq!(r.event_time, 1_704_067_201);
        assert_eq!(r.ingestion_time, Some(1_704_067_202));
        assert_eq!(r.user, b"U1");
        assert_eq!(
            r.event_id.unwrap().to_string(),
            "9341c1af8b819d9bfb1ffee11659a83f"
        );
    }

    #[test]
    fn unescapes_names() {
        let line =
            br#"{"event_time":"2024-01-01T00:00:01Z","user_id":"U\u0031","computer_id":"C1"}"#;
        let mut scratch = Vec::new();
        let r = parse_json(line, &mut scratch).unwrap();
        assert_eq!((r.user, r.computer), (&b"U1"[..], &b"C1"[..]));
    }

    #[test]
    fn refuses_bad_events() {
        let mut scratch = Vec::new();
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "bad_json"),
            (br#"{"event_time":"2024-01-01T00:00:01Z","user_id":"U1"}"#, "bad_json"),
            (br#"{"event_time":"yesterday","user_id":"U1","computer_id":"C1"}"#, "bad_time"),
            (br#"{"event_time":"2024-01-01T00:00:01Z","user_id":"","computer_id":"C1"}"#, "empty_field"),
            (br#"{"event_id":"zz","event_time":"2024-01-01T00:00:01Z","user_id":"U1","computer_id":"C1"}"#, "bad_event_id"),
            (b"{\"event_time\":\"\xff\"}", "not_utf8"),
        ];
        for (line, kind) in cases {
            let err = parse_json(line, &mut scratch).unwrap_err();
            assert_eq!(err.kind(), *kind, "{}", String::from_utf8_lossy(line));
        }
    }
}
