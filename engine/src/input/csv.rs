//! The LANL CSV form: `time,user,computer`, e.g. `1,U1,C1`.

use memchr::memchr;

use super::{MAX_UNIX_TIME, Record, Reject, check_name};
use crate::event::TimeBase;
use crate::logon::RecordDetail;

/// Parses one CSV line (without its `\n`; a trailing `\r` is allowed).
#[inline]
pub fn parse_csv(line: &[u8], base: TimeBase) -> Result<Record<'_>, Reject> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let first = memchr(b',', line).ok_or(Reject::FieldCount { found: 1 })?;
    let rest = &line[first + 1..];
    let second = memchr(b',', rest).ok_or(Reject::FieldCount { found: 2 })?;
    let (time, user, computer) = (&line[..first], &rest[..second], &rest[second + 1..]);
    if memchr(b',', computer).is_some() {
        let found = 3 + computer.iter().filter(|&&b| b == b',').count();
        return Err(Reject::FieldCount { found });
    }
    let lanl_time = parse_time(time)?;
    check_name("user", user)?;
    check_name("computer", computer)?;
    let event_time = base.to_unix(lanl_time);
    if event_time > MAX_UNIX_TIME {
        return Err(Reject::BadTime(format!(
            "{lanl_time} is too far in the future"
        )));
    }
    Ok(Record {
        event_time,
        user,
        computer,
        event_id: None,
        ingestion_time: None,
        detail: RecordDetail::default(),
        source_event_id: None,
    })
}

/// Seconds since the data set's start: 1 to 12 ASCII digits.
#[inline]
pub(super) fn parse_time(field: &[u8]) -> Result<i64, Reject> {
    if field.is_empty() {
        return Err(Reject::EmptyField("time"));
    }
    if field.len() > 12 {
        return Err(Reject::BadTime(format!(
            "`{}` has more than 12 digits",
            String::from_utf8_lossy(&field[..16.min(field.len())])
        )));
    }
    let mut value: i64 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return Err(Reject::BadTime(format!(
                "`{}` is not a whole number of seconds",
                String::from_utf8_lossy(field)
            )));
        }
        value = value * 10 + i64::from(b - b'0');
    }
    Ok(value)
}

/// True for the optional header line `time,user,computer`.
pub fn is_header(line: &[u8]) -> bool {
    line.strip_suffix(b"\r")
        .unwrap_or(line)
        .eq_ignore_ascii_case(b"time,user,computer")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: TimeBase = TimeBase::DEFAULT;

    #[test]
    fn parses_lanl_lines() {
        let r = parse_csv(b"1,U1,C1", BASE).unwrap();
        assert_eq!(r.event_time, BASE.base_unix + 1);
        assert_eq!((r.user, r.computer), (&b"U1"[..], &b"C1"[..]));
        let r = parse_csv(b"86400,ANONYMOUS LOGON,C586\r", BASE).unwrap();
        assert_eq!(r.computer, b"C586");
        assert_eq!(r.user, b"ANONYMOUS LOGON");
    }

    #[test]
    fn refuses_malformed_lines() {
        let cases: &[(&[u8], &str)] = &[
            (b"1,U1", "field_count"),
            (b"1,U1,C1,extra", "field_count"),
            (b",U1,C1", "empty_field"),
            (b"1,,C1", "empty_field"),
            (b"1,U1,", "empty_field"),
            (b"-5,U1,C1", "bad_time"),
            (b"1.5,U1,C1", "bad_time"),
            (b"99999999999999,U1,C1", "bad_time"),
            (b"1,U\x01,C1", "control_character"),
            (b"1,U\xff\xfe,C1", "not_utf8"),
            (b"garbage", "field_count"),
        ];
        for (line, kind) in cases {
            let err = parse_csv(line, BASE).unwrap_err();
            assert_eq!(err.kind(), *kind, "{:?}", String::from_utf8_lossy(line));
        }
        let long_name = format!("1,{},C1", "U".repeat(300));
        assert_eq!(
            parse_csv(long_name.as_bytes(), BASE).unwrap_err().kind(),
            "field_too_long"
        );
    }

    #[test]
    fn header_is_recognised() {
        assert!(is_header(b"time,user,computer"));
        assert!(is_header(b"TIME,USER,COMPUTER\r"));
        assert!(!is_header(b"1,U1,C1"));
    }
}
