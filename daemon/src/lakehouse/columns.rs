//! Arrow columns from the pipeline's compact rows, built on the writer threads.
//!
//! The pipeline keeps users and computers as dense interned ids. Rather than
//! copy names into every row on the pipeline thread, a sink sends each name to
//! its writer once ([`NameLog`] collects the names interned since the last
//! chunk), and the writer keeps its own copy ([`Names`]) to turn id columns
//! into string columns.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, StringArray, TimestampMicrosecondArray, new_null_array};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::DataType;
use iceberg::arrow::UTC_TIME_ZONE;

use authpulse_engine::event::{Event, EventId, Interner, NameId, TimeBase};
use authpulse_engine::logon::Detail;

/// The user and computer names a chunk's rows introduce, in id order.
#[derive(Default)]
pub(super) struct NewNames {
    users: Vec<Box<str>>,
    computers: Vec<Box<str>>,
}

/// Pipeline side: the names the interners gained since they were last sent.
#[derive(Default)]
pub(super) struct NameLog {
    users: InternerLog,
    computers: InternerLog,
}

impl NameLog {
    /// Notes the names the interners gained since the last call (two
    /// comparisons when there are none).
    #[inline]
    pub(super) fn catch_up(&mut self, users: &Interner, computers: &Interner) {
        self.users.catch_up(users);
        self.computers.catch_up(computers);
    }

    /// The names noted since the last call.
    pub(super) fn take(&mut self) -> NewNames {
        NewNames {
            users: std::mem::take(&mut self.users.new),
            computers: std::mem::take(&mut self.computers.new),
        }
    }
}

#[derive(Default)]
struct InternerLog {
    known: usize,
    new: Vec<Box<str>>,
}

impl InternerLog {
    #[inline]
    fn catch_up(&mut self, interner: &Interner) {
        if interner.len() > self.known {
            self.new
                .extend((self.known..interner.len()).map(|id| interner.name(id as NameId).into()));
            self.known = interner.len();
        }
    }
}

/// What a row's derived `event_id` hashes.
pub(super) struct RowIdentity {
    pub event_time: i64,
    pub user: NameId,
    pub computer: NameId,
    pub detail: Detail,
}

/// Writer side: user and computer names by id, as received from a [`NameLog`].
#[derive(Default)]
pub(super) struct Names {
    users: NameTable,
    computers: NameTable,
}

/// Names by id, back to back in one buffer. A writer reads two names for
/// every row (for its columns and its event id); tens of thousands of
/// names boxed one by one lay scattered over the heap, and reading them
/// was a writer's costliest copy.
#[derive(Default)]
struct NameTable {
    text: String,
    /// Where each name ends in `text`; it starts where the one before ends.
    ends: Vec<usize>,
}

impl NameTable {
    fn extend(&mut self, names: Vec<Box<str>>) {
        for name in names {
            self.text.push_str(&name);
            self.ends.push(self.text.len());
        }
    }

    #[inline]
    fn get(&self, id: NameId) -> &str {
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

impl Names {
    pub(super) fn learn(&mut self, new: NewNames) {
        self.users.extend(new.users);
        self.computers.extend(new.computers);
    }

    pub(super) fn user(&self, id: NameId) -> &str {
        self.users.get(id)
    }

    pub(super) fn computer(&self, id: NameId) -> &str {
        self.computers.get(id)
    }

    /// The `event_id` of a row: as the input gave it (or the pipeline
    /// derived it), else derived here, on the writer's thread, exactly as
    /// [`Event::event_id`] would.
    pub(super) fn event_id(
        &self,
        base: TimeBase,
        given: Option<EventId>,
        row: RowIdentity,
    ) -> EventId {
        let event = Event {
            event_time: row.event_time,
            user: row.user,
            computer: row.computer,
            ingestion_time: 0,
            event_id: given,
            detail: row.detail,
        };
        event.event_id_named(base, |u| self.user(u), |c| self.computer(c))
    }

    /// The column of the names of user ids `ids`. Every id was interned, and
    /// so sent, before a row could carry it.
    pub(super) fn users(&self, ids: impl ExactSizeIterator<Item = NameId>) -> StringArray {
        strings(ids.map(|id| self.user(id)))
    }

    /// The column of the names of computer ids `ids`.
    pub(super) fn computers(&self, ids: impl ExactSizeIterator<Item = NameId>) -> StringArray {
        strings(ids.map(|id| self.computer(id)))
    }
}

/// A string column from exactly-sized values, in one pass and two buffers.
pub(super) fn strings<'a>(values: impl ExactSizeIterator<Item = &'a str>) -> StringArray {
    let mut offsets = Vec::with_capacity(values.len() + 1);
    let mut bytes: Vec<u8> = Vec::with_capacity(values.len() * 8);
    offsets.push(0i32);
    for value in values {
        bytes.extend_from_slice(value.as_bytes());
        offsets.push(i32::try_from(bytes.len()).expect("a chunk's strings fit in 2 GiB"));
    }
    StringArray::new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(bytes),
        None,
    )
}

/// The `event_id` column: 32 lower-case hex characters per id, written
/// straight into the column's buffer.
pub(super) fn event_ids(ids: impl ExactSizeIterator<Item = EventId>) -> StringArray {
    /// The two hex digits of every byte value.
    const PAIRS: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut table = [[0u8; 2]; 256];
        let mut b = 0;
        while b < 256 {
            table[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
            b += 1;
        }
        table
    };
    let rows = ids.len();
    let mut bytes = vec![0u8; rows * 32];
    for (id, hex) in ids.zip(bytes.chunks_exact_mut(32)) {
        for (byte, pair) in
            id.0.get()
                .to_be_bytes()
                .into_iter()
                .zip(hex.chunks_exact_mut(2))
        {
            pair.copy_from_slice(&PAIRS[byte as usize]);
        }
    }
    let offsets = (0..=rows).map(|i| i32::try_from(i * 32).expect("a chunk's ids fit in 2 GiB"));
    StringArray::new(
        OffsetBuffer::new(ScalarBuffer::from_iter(offsets)),
        Buffer::from_vec(bytes),
        None,
    )
}

/// A UTC timestamp column from Unix seconds.
pub(super) fn timestamps(seconds: impl ExactSizeIterator<Item = i64>) -> TimestampMicrosecondArray {
    micros(seconds.map(|s| s * 1_000_000))
}

/// A UTC timestamp column from Unix microseconds.
pub(super) fn micros(values: impl ExactSizeIterator<Item = i64>) -> TimestampMicrosecondArray {
    TimestampMicrosecondArray::from_iter_values(values)
        .with_timezone_opt(Some(Arc::<str>::from(UTC_TIME_ZONE)))
}

pub(super) fn int32s(values: impl ExactSizeIterator<Item = u32>) -> Int32Array {
    Int32Array::from_iter_values(values.map(|v| i32::try_from(v).unwrap_or(i32::MAX)))
}

/// The detail columns of the event tables, in schema order
/// ([`super::tables::DETAIL_COLUMNS`]): `src_computer_id`, `src_user_id`,
/// `logon_type`, `auth_package`, `outcome`, `failure_reason`; null where
/// the record did not say. Chunks of LANL records (no detail) cost six
/// null columns.
pub(super) fn detail_columns(names: &Names, details: &[Detail]) -> [ArrayRef; 6] {
    if details.iter().all(Detail::is_empty) {
        return std::array::from_fn(|_| new_null_array(&DataType::Utf8, details.len()));
    }
    fn column<'n>(details: &[Detail], value: impl Fn(&Detail) -> Option<&'n str>) -> ArrayRef {
        Arc::new(details.iter().map(value).collect::<StringArray>())
    }
    let code = |i: usize| column(details, |d| d.coded_fields()[i].1);
    [
        column(details, |d| d.source_computer.map(|id| names.computer(id))),
        column(details, |d| d.source_user.map(|id| names.user(id))),
        code(0),
        code(1),
        code(2),
        code(3),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use std::num::NonZeroU128;

    #[test]
    fn event_ids_match_the_display_form() {
        let ids = [
            EventId::derive(1, "U1", "C1"),
            EventId(NonZeroU128::MIN),
            EventId(NonZeroU128::MAX),
        ];
        let column = event_ids(ids.iter().copied());
        assert_eq!(column.len(), 3);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(column.value(i), id.to_string());
        }
        assert_eq!(column.value(0), "9341c1af8b819d9bfb1ffee11659a83f");
    }

    #[test]
    fn names_arrive_once_and_resolve_ids() {
        let (mut users, mut computers) = (Interner::default(), Interner::default());
        let mut log = NameLog::default();
        let mut names = Names::default();
        users.intern(b"U1");
        users.intern(b"U2");
        computers.intern(b"C1");
        log.catch_up(&users, &computers);
        log.catch_up(&users, &computers);
        names.learn(log.take());
        users.intern(b"ANONYMOUS LOGON");
        log.catch_up(&users, &computers);
        let sent = log.take();
        assert_eq!(sent.users.len(), 1, "only the new name is sent");
        assert!(sent.computers.is_empty());
        names.learn(sent);
        let column = names.users([2, 0, 1, 0].into_iter());
        let values: Vec<&str> = column.iter().map(Option::unwrap).collect();
        assert_eq!(values, ["ANONYMOUS LOGON", "U1", "U2", "U1"]);
        assert_eq!(names.computer(0), "C1");
        let again = log.take();
        assert!(again.users.is_empty() && again.computers.is_empty());
    }
}
