//! The engine's event and its identity: interned user/computer ids, the
//! LANL time base, the `event_id` (first 32 hex chars of sha256 of
//! `time|user|computer`), and [`Event`], an accepted record with its names
//! interned.

use std::num::NonZeroU128;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::logon::Detail;
use sha2::{Digest, Sha256};

/// Dense id of an interned name; index into per-user / per-computer state.
pub type NameId = u32;

/// Maps names (`U123`, `C456`) to dense ids and back. Names are copied once, on
/// first sight; every later lookup borrows the input bytes.
#[derive(Default)]
pub struct Interner {
    /// Names of up to [`INLINE_NAME`] bytes, packed into the key itself: a
    /// lookup compares two integers instead of following a pointer to the
    /// name (a cache miss per event at this table's size). LANL names
    /// (`U1234@DOM1`, `C1234`) are nearly all this short.
    short: FxHashMap<u128, NameId>,
    long: FxHashMap<Box<[u8]>, NameId>,
    /// Validated once, when first interned, so lookups never re-check UTF-8.
    names: Vec<Box<str>>,
    /// First 8 bytes of each name, big-endian, zero-padded: comparing these
    /// orders names like comparing the bytes (names hold no NUL), without
    /// touching the names themselves unless the prefixes tie.
    order_keys: Vec<u64>,
}

impl Interner {
    /// The id of `name`, interning it if new. Returns `(id, was_new)`.
    #[inline]
    pub fn intern(&mut self, name: &[u8]) -> (NameId, bool) {
        let packed = pack(name);
        let found = match packed {
            Some(key) => self.short.get(&key),
            None => self.long.get(name),
        };
        if let Some(&id) = found {
            return (id, false);
        }
        let id = NameId::try_from(self.names.len()).expect("fewer than 2^32 distinct names");
        let text: Box<str> = String::from_utf8_lossy(name).into();
        let mut prefix = [0u8; 8];
        let n = name.len().min(8);
        prefix[..n].copy_from_slice(&name[..n]);
        self.order_keys.push(u64::from_be_bytes(prefix));
        self.names.push(text);
        match packed {
            Some(key) => self.short.insert(key, id),
            None => self.long.insert(name.into(), id),
        };
        (id, true)
    }

    /// The id of `name` if it is interned.
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<NameId> {
        match pack(name) {
            Some(key) => self.short.get(&key),
            None => self.long.get(name),
        }
        .copied()
    }

    /// Orders two interned names as their bytes would (fast path: 8-byte prefixes).
    #[inline]
    pub fn cmp_names(&self, a: NameId, b: NameId) -> std::cmp::Ordering {
        if a == b {
            return std::cmp::Ordering::Equal;
        }
        let (ka, kb) = (self.order_keys[a as usize], self.order_keys[b as usize]);
        if ka != kb {
            return ka.cmp(&kb);
        }
        self.names[a as usize].cmp(&self.names[b as usize])
    }

    /// The name of `id` (input names are validated UTF-8; anything else was
    /// stored with replacement characters).
    #[inline]
    pub fn name(&self, id: NameId) -> &str {
        &self.names[id as usize]
    }

    #[inline]
    pub fn name_bytes(&self, id: NameId) -> &[u8] {
        self.names[id as usize].as_bytes()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Every name, in id order (what a state snapshot keeps).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|name| &**name)
    }

    /// An interner holding `names` with ids `0..`, in that order: the one
    /// [`Interner::names`] came from.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Interner {
        let mut interner = Interner::default();
        for name in names {
            interner.intern(name.as_bytes());
        }
        interner
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Longest name kept inline in [`Interner`]'s keys.
const INLINE_NAME: usize = 15;

/// `name`'s bytes and length in one integer, if it has at most
/// [`INLINE_NAME`] bytes (the length byte keeps `U1` and `U1\0` apart).
#[inline]
fn pack(name: &[u8]) -> Option<u128> {
    if name.len() > INLINE_NAME {
        return None;
    }
    let mut bytes = [0u8; 16];
    bytes[..name.len()].copy_from_slice(name);
    bytes[INLINE_NAME] = name.len() as u8;
    Some(u128::from_le_bytes(bytes))
}

/// An `event_id`: the first 16 bytes of sha256(`lanl_time|user|computer`),
/// written as 32 lower-case hex characters.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct EventId(pub NonZeroU128);

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
        let mut hasher = Sha256::new();
        let mut buf = itoa::Buffer::new();
        hasher.update(buf.format(lanl_time).as_bytes());
        hasher.update(b"|");
        hasher.update(user.as_bytes());
        hasher.update(b"|");
        hasher.update(computer.as_bytes());
        detail(&mut |bytes: &[u8]| hasher.update(bytes));
        let digest = hasher.finalize();
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
    fn interner_is_dense_and_stable() {
        let mut i = Interner::default();
        assert_eq!(i.intern(b"U1"), (0, true));
        assert_eq!(i.intern(b"U2"), (1, true));
        assert_eq!(i.intern(b"U1"), (0, false));
        assert_eq!(i.name(1), "U2");
        // Short (inline) and long names, and names that differ only in a
        // trailing NUL or in length.
        let names: [&[u8]; 6] = [
            b"U1\0",
            b"ANONYMOUS LOGON@C586",
            b"123456789012345",
            b"1234567890123456",
            b"",
            b"U1\0\0",
        ];
        for (k, name) in names.iter().enumerate() {
            assert_eq!(i.intern(name), (2 + k as NameId, true), "{name:?}");
        }
        for (k, name) in names.iter().enumerate() {
            assert_eq!(i.intern(name), (2 + k as NameId, false), "{name:?}");
            assert_eq!(i.name_bytes(2 + k as NameId), *name);
        }
        assert_eq!(i.intern(b"U1"), (0, false));
    }

    #[test]
    fn name_order_matches_byte_order() {
        let names: [&[u8]; 8] = [
            b"U1",
            b"U10",
            b"U2",
            b"ANONYMOUS LOGON",
            b"ANONYMOUS LOGOFF",
            b"U1\x7f",
            b"",
            b"Zz",
        ];
        let mut i = Interner::default();
        for n in names {
            i.intern(n);
        }
        for (a, na) in names.iter().enumerate() {
            for (b, nb) in names.iter().enumerate() {
                assert_eq!(
                    i.cmp_names(a as NameId, b as NameId),
                    na.cmp(nb),
                    "{na:?} vs {nb:?}"
                );
            }
        }
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
