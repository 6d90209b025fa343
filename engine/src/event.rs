//! The engine's event and its identity: the LANL time base, the
//! `event_id` (first 32 hex chars of sha256 of `time|user|computer`), and
//! [`Event`], an accepted record with its names interned ([`crate::names`]).

use std::num::NonZeroU128;

use serde::{Deserialize, Serialize};

pub use crate::names::{Interner, NameId};

use crate::logon::Detail;
use sha2::{Digest, Sha256};

/// Seconds in an hour and a day (event time is Unix seconds, UTC).
pub const HOUR: i64 = 3_600;
pub const DAY: i64 = 86_400;

/// An `event_id`: the first 16 bytes of sha256(`lanl_time|user|computer`),
/// written as 32 lower-case hex characters.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct EventId(pub NonZeroU128);

/// The text an [`EventId`] hashes, put together before it is hashed: fed
/// to SHA-256 piece by piece, each piece was copied once more into the
/// hasher's block buffer. Kept on the stack up to a length nearly every
/// record stays under, streamed into the hasher past it.
struct IdText {
    short: [u8; 119],
    len: usize,
    long: Option<Sha256>,
}

impl Default for IdText {
    fn default() -> Self {
        IdText {
            short: [0; 119],
            len: 0,
            long: None,
        }
    }
}

impl IdText {
    #[inline]
    fn push(&mut self, bytes: &[u8]) {
        if let Some(hasher) = &mut self.long {
            hasher.update(bytes);
        } else if let Some(room) = self.short.get_mut(self.len..self.len + bytes.len()) {
            room.copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            let mut hasher = Sha256::new();
            hasher.update(&self.short[..self.len]);
            hasher.update(bytes);
            self.long = Some(hasher);
        }
    }

    fn digest(self) -> [u8; 32] {
        match self.long {
            Some(hasher) => hasher.finalize().into(),
            None => Sha256::digest(&self.short[..self.len]).into(),
        }
    }
}

impl EventId {
    /// The id of the LANL record `lanl_time,user,computer`.
    pub fn derive(lanl_time: i64, user: &str, computer: &str) -> EventId {
        EventId::derive_detailed(lanl_time, user, computer, |_| {})
    }

    /// The id of a record with more fields: `detail` feeds what it adds
    /// after `lanl_time|user|computer` (nothing for a LANL record, whose
    /// id is then [`EventId::derive`]'s).
    pub fn derive_detailed(
        lanl_time: i64,
        user: &str,
        computer: &str,
        detail: impl FnOnce(&mut dyn FnMut(&[u8])),
    ) -> EventId {
        let mut text = IdText::default();
        let mut buf = itoa::Buffer::new();
        text.push(buf.format(lanl_time).as_bytes());
        text.push(b"|");
        text.push(user.as_bytes());
        text.push(b"|");
        text.push(computer.as_bytes());
        detail(&mut |bytes: &[u8]| text.push(bytes));
        let digest = text.digest();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        // A zero prefix has probability 2^-128; map it to 1 rather than panic.
        EventId(NonZeroU128::new(u128::from_be_bytes(first)).unwrap_or(NonZeroU128::MIN))
    }

    /// Parses 32 hex characters.
    #[inline]
    pub fn parse(hex: &str) -> Option<EventId> {
        let bytes = hex.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        // A nibble at a time: `u128::from_str_radix` checks for overflow at
        // every digit, and this runs for every JSON event.
        let mut v: u128 = 0;
        for &b in bytes {
            let nibble = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return None,
            };
            v = (v << 4) | u128::from(nibble);
        }
        Some(EventId(NonZeroU128::new(v).unwrap_or(NonZeroU128::MIN)))
    }
}

impl EventId {
    /// Writes the 32 hex characters into `buf` without allocating.
    #[inline]
    pub fn write_hex(self, buf: &mut [u8; 32]) -> &str {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let v = self.0.get();
        for (i, slot) in buf.iter_mut().enumerate() {
            *slot = DIGITS[((v >> (124 - 4 * i)) & 0xf) as usize];
        }
        std::str::from_utf8(buf).expect("hex digits are ASCII")
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0.get())
    }
}

/// Maps LANL times (seconds from the data set's start) to Unix time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeBase {
    /// Unix time of LANL time 0.
    pub base_unix: i64,
}

impl Default for TimeBase {
    fn default() -> Self {
        TimeBase::DEFAULT
    }
}

impl TimeBase {
    /// 2024-01-01T00:00:00Z, a Monday, so the generator's weekly cycle lines up.
    pub const DEFAULT: TimeBase = TimeBase {
        base_unix: 1_704_067_200,
    };

    #[inline]
    pub fn to_unix(self, lanl_time: i64) -> i64 {
        self.base_unix + lanl_time
    }

    #[inline]
    pub fn to_lanl(self, unix: i64) -> i64 {
        unix - self.base_unix
    }

    /// Parses `YYYY-MM-DD` or an RFC 3339 timestamp.
    pub fn parse(s: &str) -> Result<TimeBase, String> {
        if let Ok(date) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            let dt = date
                .and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc();
            return Ok(TimeBase {
                base_unix: dt.timestamp(),
            });
        }
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|dt| TimeBase {
                base_unix: dt.timestamp(),
            })
            .map_err(|e| format!("`{s}` is neither YYYY-MM-DD nor RFC 3339: {e}"))
    }
}

/// Formats Unix seconds as RFC 3339 UTC (`2024-01-01T00:00:01Z`).
pub fn format_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|dt| dt.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| unix.to_string())
}

/// The engine's event: an accepted record with its names interned, as it
/// is held for ordering, scored, and handed to the sinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub event_time: i64,
    pub user: NameId,
    pub computer: NameId,
    /// Unix seconds the event was ingested.
    pub ingestion_time: i64,
    /// As given by the input; derived on output otherwise.
    pub event_id: Option<EventId>,
    /// What a richer record adds (none of it for a LANL line). Snapshots
    /// keep it in a section of its own (see [`crate::snapshot`]), so that
    /// an event's encoding stays what older snapshots hold.
    #[serde(skip)]
    pub detail: Detail,
}

impl Event {
    /// Its `event_id`: as given by the input, or derived from the record.
    pub fn event_id(&self, base: TimeBase, users: &Interner, computers: &Interner) -> EventId {
        self.event_id_named(base, |u| users.name(u), |c| computers.name(c))
    }

    /// [`Event::event_id`] with the names looked up by `user` and
    /// `computer`: a table writer derives the ids of its rows on its own
    /// thread, from its own copy of the names.
    pub fn event_id_named<'n>(
        &self,
        base: TimeBase,
        user: impl Fn(NameId) -> &'n str + Copy,
        computer: impl Fn(NameId) -> &'n str + Copy,
    ) -> EventId {
        self.event_id.unwrap_or_else(|| {
            EventId::derive_detailed(
                base.to_lanl(self.event_time),
                user(self.user),
                computer(self.computer),
                |feed| self.detail.feed_id_named(user, computer, feed),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_of_long_records_hash_the_whole_text() {
        for len in [50, 109, 110, 111, 200] {
            let user = "U".repeat(len);
            let text = format!("86400|{user}|C1");
            let digest = Sha256::digest(text.as_bytes());
            let expected = u128::from_be_bytes(digest[..16].try_into().unwrap());
            let id = EventId::derive(86400, &user, "C1");
            assert_eq!(id.0.get(), expected, "{} bytes", text.len());
        }
    }

    #[test]
    fn event_id_is_sha256_prefix_of_lanl_record() {
        // `printf '1|U1|C1' | sha256sum` = 9341c1af8b819d9bfb1ffee11659a83f b891...
        let id = EventId::derive(1, "U1", "C1");
        let expected = "9341c1af8b819d9bfb1ffee11659a83f";
        assert_eq!(id.to_string(), expected);
        assert_eq!(EventId::parse(expected), Some(id));
        assert_eq!(id.write_hex(&mut [0; 32]), expected);
        assert_eq!(EventId::parse("xyz"), None);
        assert_eq!(EventId::parse(&expected.to_uppercase()), Some(id));
        for bad in [
            "+341c1af8b819d9bfb1ffee11659a83f",
            "9341c1af8b819d9bfb1ffee11659a83",
            "9341c1af8b819d9bfb1ffee11659a83f0",
            "9341c1af8b819d9bfb1ffee11659a83g",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad}");
        }
        assert_eq!(
            EventId::parse("ffffffffffffffffffffffffffffffff").map(|id| id.to_string()),
            Some("f".repeat(32))
        );
    }

    #[test]
    fn time_base_parses_dates() {
        assert_eq!(TimeBase::parse("2024-01-01").unwrap(), TimeBase::DEFAULT);
        assert_eq!(
            format_time(TimeBase::DEFAULT.to_unix(1)),
            "2024-01-01T00:00:01Z"
        );
        assert!(TimeBase::parse("yesterday").is_err());
    }
}
