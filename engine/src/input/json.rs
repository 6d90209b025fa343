//! The JSON event form the replay producer writes:
//! `{"event_id":"…32 hex…","event_time":"2024-01-01T00:00:01Z","user_id":"U1","computer_id":"C1","ingestion_time":"…"}`.
//! `event_id` and `ingestion_time` are optional; unknown fields are ignored.

use std::borrow::Cow;

use serde::Deserialize;

use super::{MAX_UNIX_TIME, Record, Reject, check_name};
use crate::event::EventId;

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
}

/// Parses one JSON line. Names that JSON escapes had to be unescaped for are
/// copied into `scratch` (rare); the common case borrows the line.
pub fn parse_json<'a>(line: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<Record<'a>, Reject> {
    let ev: JsonEvent<'a> = serde_json::from_slice(line).map_err(|e| {
        if std::str::from_utf8(line).is_err() {
            Reject::NotUtf8
        } else {
            Reject::BadJson(e.to_string())
        }
    })?;
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

    // Both names borrowed from the line, or both copied into scratch.
    let (user, computer): (&'a [u8], &'a [u8]) = match (ev.user_id, ev.computer_id) {
        (Cow::Borrowed(u), Cow::Borrowed(c)) => (u.as_bytes(), c.as_bytes()),
        (u, c) => {
            scratch.clear();
            scratch.extend_from_slice(u.as_bytes());
            scratch.extend_from_slice(c.as_bytes());
            let (u_part, c_part) = scratch.split_at(u.len());
            (u_part, c_part)
        }
    };
    Ok(Record {
        event_time,
        user,
        computer,
        event_id,
        ingestion_time,
    })
}

fn parse_rfc3339(field: &str, value: &str) -> Result<i64, Reject> {
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
