//! The LANL CSV form: `time,user,computer`, e.g. `1,U1,C1`.

use super::{MAX_UNIX_TIME, Record, Reject, check_name, check_name_length};
use crate::event::TimeBase;
use crate::logon::RecordDetail;

/// Parses one CSV line (without its `\n`; a trailing `\r` is allowed).
#[inline]
pub fn parse_csv(line: &[u8], base: TimeBase) -> Result<Record<'_>, Reject> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // One pass finds the commas and whether every byte is printable ASCII,
    // as every real name is: on lines this short, three `memchr` calls and
    // a pass over each name cost more (416 instructions a line against 326).
    let (mut first, mut second, mut commas) = (0, 0, 0);
    let mut printable = true;
    for (i, &b) in line.iter().enumerate() {
        if b == b',' {
            match commas {
                0 => first = i,
                1 => second = i,
                _ => {}
            }
            commas += 1;
        }
        printable &= (0x20..0x7f).contains(&b);
    }
    if commas != 2 {
        return Err(Reject::FieldCount { found: commas + 1 });
    }
    let (time, user, computer) = (
        &line[..first],
        &line[first + 1..second],
        &line[second + 1..],
    );
    let lanl_time = parse_time(time)?;
    if printable {
        check_name_length("user", user)?;
        check_name_length("computer", computer)?;
    } else {
        check_name("user", user)?;
        check_name("computer", computer)?;
    }
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
        // Names beyond printable ASCII take the slower check, and pass it.
        let r = parse_csv("7,Jürgen@DOM1,C7".as_bytes(), BASE).unwrap();
        assert_eq!(r.user, "Jürgen@DOM1".as_bytes());
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
        assert_eq!(
            parse_csv(b"1,U1,C1,x,y", BASE).unwrap_err(),
            Reject::FieldCount { found: 5 }
        );
        assert_eq!(
            parse_csv(b"1\x01,U1,C1", BASE).unwrap_err().kind(),
            "bad_time"
        );
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
