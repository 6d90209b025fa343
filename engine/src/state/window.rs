//! A user's events of the last 24 hours, in about two bytes each: the
//! window is most of the engine's memory at scale (an entry per event of
//! the last day: 12M for the LANL set's 11,362 users). Each entry is coded
//! after the one before it: one byte when it is on the same device within
//! two minutes of it (most of a busy account's logons), else a marker, the
//! seconds since it and the device as varints. Its
//! user-local sequence number (which tells whether it is its device's first
//! or latest occurrence) is not stored: every event enters the window, so
//! entry `k` is `first_seq + k`.
//!
//! The state reads a window at two places only, its oldest entry and the
//! oldest of the last hour, and both only move on: each is a decoded
//! cursor, so reading on is a byte or a few.
//!
//! In a state snapshot a window is its oldest entry and the codes of the
//! rest as they are held (`layout.rs`).

use std::collections::VecDeque;

mod layout;

pub(crate) use layout::{Layout, in_layout};

/// One entry, as the state reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WindowEntry {
    pub time: i64,
    pub device: u32,
    pub seq: u32,
}

/// The least a full window grows by, in bytes.
const MIN_GROWTH: usize = 16;

/// A byte below this is a whole entry: the seconds since the entry before,
/// on its device. [`LONG`] starts an entry coded in full.
const SHORT_LIMIT: u8 = 0x80;
const LONG: u8 = 0x80;

/// An entry, decoded, and where the next one's bytes start (counted from
/// the first byte the window ever held, so that it survives the front's
/// bytes leaving).
#[derive(Clone, Copy, Debug, Default)]
struct Cursor {
    time: i64,
    device: u32,
    seq: u32,
    next: u64,
}

#[derive(Default, Debug)]
pub(super) struct Window {
    bytes: VecDeque<u8>,
    /// Bytes that have left from the front, ever.
    dropped: u64,
    len: usize,
    /// The oldest entry (when there is one; when the window is empty, the
    /// newest that left, which the next entry is coded after).
    front: Cursor,
    /// The entry [`Window::get`] last found.
    probe: Cursor,
    /// The newest entry, which the next is coded after.
    newest: Cursor,
}

impl Window {
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The heap memory it holds.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// The entry after `at`, decoded from the bytes at `at.next`.
    #[inline]
    fn next_after(&self, at: &Cursor) -> Cursor {
        let mut position = (at.next - self.dropped) as usize;
        let first = self.bytes[position];
        position += 1;
        let (time, device) = if first < SHORT_LIMIT {
            (at.time + i64::from(first), at.device)
        } else {
            let step = unzigzag(self.varint(&mut position));
            let device = self.varint(&mut position) as u32;
            (at.time + step, device)
        };
        Cursor {
            time,
            device,
            seq: at.seq.wrapping_add(1),
            next: self.dropped + position as u64,
        }
    }

    #[inline]
    fn varint(&self, position: &mut usize) -> u64 {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = self.bytes[*position];
            *position += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return value;
            }
            shift += 7;
        }
    }

    fn entry(cursor: &Cursor) -> WindowEntry {
        WindowEntry {
            time: cursor.time,
            device: cursor.device,
            seq: cursor.seq,
        }
    }

    /// The entry `index` places after the oldest. Cheap when `index` is the
    /// one asked for last or a little after it.
    #[inline]
    pub fn get(&mut self, index: usize) -> Option<WindowEntry> {
        if index >= self.len {
            return None;
        }
        let probed = self.probe.seq.wrapping_sub(self.front.seq) as usize;
        let mut at = if probed <= index && probed < self.len {
            self.probe
        } else {
            self.front
        };
        let target = self.front.seq.wrapping_add(index as u32);
        while at.seq != target {
            at = self.next_after(&at);
        }
        self.probe = at;
        Some(Self::entry(&at))
    }

    #[inline]
    pub fn front(&self) -> Option<WindowEntry> {
        (self.len > 0).then(|| Self::entry(&self.front))
    }

    /// Adds the user's next event; `seq` must follow the last entry's, and
    /// `time` must not be before it.
    #[inline]
    pub fn push_back(&mut self, time: i64, device: u32, seq: u32) {
        let last = self.newest;
        debug_assert!(self.len == 0 || seq == last.seq.wrapping_add(1));
        let step = time - last.time;
        let start = self.dropped + self.bytes.len() as u64;
        if device == last.device && (0..i64::from(SHORT_LIMIT)).contains(&step) {
            self.make_room(1);
            self.bytes.push_back(step as u8);
        } else {
            self.push_long(step, device);
        }
        let entry = Cursor {
            time,
            device,
            seq,
            next: self.dropped + self.bytes.len() as u64,
        };
        debug_assert!(entry.next > start);
        if self.len == 0 {
            // The probe is always an entry the window has held: one that
            // left has a sequence number before the front's.
            self.front = entry;
            self.probe = entry;
        }
        self.len += 1;
        self.newest = entry;
    }

    /// An entry coded in full: the marker, the step, the device.
    fn push_long(&mut self, step: i64, device: u32) {
        let mut code = [0u8; 16];
        code[0] = LONG;
        let n = 1 + put_varint(&mut code[1..], zigzag(step));
        let n = n + put_varint(&mut code[n..], u64::from(device));
        self.make_room(n);
        self.bytes.extend(&code[..n]);
    }

    #[inline]
    fn make_room(&mut self, n: usize) {
        if self.bytes.len() + n > self.bytes.capacity() {
            self.grow(n);
        }
    }

    /// By a quarter, not the default doubling: windows are most of the
    /// engine's memory, and a doubled buffer is up to half empty (a quarter
    /// on average) where this one is at most a fifth.
    #[cold]
    fn grow(&mut self, n: usize) {
        self.bytes
            .reserve_exact((self.bytes.len() / 4).max(MIN_GROWTH).max(n));
    }

    #[inline]
    pub fn pop_front(&mut self) -> Option<WindowEntry> {
        if self.len == 0 {
            return None;
        }
        let popped = self.front;
        self.len -= 1;
        if self.len > 0 {
            self.front = self.next_after(&popped);
        }
        let gone = (popped.next - self.dropped) as usize;
        self.bytes.drain(..gone);
        self.dropped = popped.next;
        Some(Self::entry(&popped))
    }

    /// Gives back most of its room once a burst has left it a quarter full,
    /// so that memory follows the last day's events rather than the
    /// busiest day ever.
    pub fn release_spare(&mut self) {
        let capacity = self.bytes.capacity();
        if capacity > 1024 && self.bytes.len() < capacity / 4 {
            self.bytes.shrink_to(self.bytes.len() * 2);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = WindowEntry> + '_ {
        let mut at = self.front;
        (0..self.len).map(move |i| {
            if i > 0 {
                at = self.next_after(&at);
            }
            Self::entry(&at)
        })
    }

    /// Gives each entry's device a new number.
    pub fn renumber_devices(&mut self, mut renumbered: impl FnMut(u32) -> u32) {
        let entries: Vec<WindowEntry> = self.iter().collect();
        *self = Window::default();
        for entry in entries {
            self.push_back(entry.time, renumbered(entry.device), entry.seq);
        }
    }
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Writes `value` as a varint (7 bits a byte, low first); returns its length.
fn put_varint(out: &mut [u8], mut value: u64) -> usize {
    let mut n = 0;
    while value >= 0x80 {
        out[n] = (value as u8) | 0x80;
        value >>= 7;
        n += 1;
    }
    out[n] = value as u8;
    n + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_window_grows_by_a_quarter() {
        let mut window = Window::default();
        // One long entry, then 1,029 of a byte each.
        for i in 0..1_030u32 {
            window.push_back(i64::from(i), 3, i);
        }
        // Doubling would hold 2,048.
        let held = window.heap_bytes();
        assert!(held >= 1_032, "{held}");
        assert!(held <= 1_032 + 1_032 / 4 + MIN_GROWTH, "{held}");
    }

    proptest::proptest! {
        /// Pushes (a step in seconds, a device) and pops, against the
        /// entries kept as they are.
        #[test]
        fn entries_read_back_as_they_went_in(
            ops in proptest::collection::vec(
                (0u8..4, 0i64..200, 0u32..4, proptest::bool::ANY), 1..400),
            first_seq in proptest::sample::select(vec![0u32, 1, 7, u32::MAX - 3]),
        ) {
            let mut window = Window::default();
            let mut kept: VecDeque<WindowEntry> = VecDeque::new();
            let (mut time, mut seq) = (1_700_000_000i64, first_seq);
            let mut hour_start = 0usize;
            for (op, step, device, far) in ops {
                if op == 0 {
                    proptest::prop_assert_eq!(window.pop_front(), kept.pop_front());
                    hour_start = hour_start.saturating_sub(1);
                } else {
                    time += if far { step * 100_000 } else { step };
                    let device = if device == 3 { 1_000_000 + seq % 1_000 } else { device };
                    window.push_back(time, device, seq);
                    kept.push_back(WindowEntry { time, device, seq });
                    seq = seq.wrapping_add(1);
                }
                proptest::prop_assert_eq!(window.len(), kept.len());
                proptest::prop_assert_eq!(window.front(), kept.front().copied());
                // The state's way of reading: an index that only moves on.
                if op == 2 && hour_start < kept.len() {
                    hour_start += 1;
                }
                proptest::prop_assert_eq!(window.get(hour_start), kept.get(hour_start).copied());
            }
            proptest::prop_assert!(window.iter().eq(kept.iter().copied()));
            for index in (0..kept.len()).rev() {
                proptest::prop_assert_eq!(window.get(index), kept.get(index).copied());
            }
            let bytes = postcard::to_allocvec(&window).unwrap();
            let back: Window = postcard::from_bytes(&bytes).unwrap();
            proptest::prop_assert!(back.iter().eq(kept.iter().copied()));
            let mut renumbered = window;
            renumbered.renumber_devices(|d| d + 5);
            let moved = kept.iter().map(|e| WindowEntry { device: e.device + 5, ..*e });
            let same = renumbered.iter().eq(moved);
            proptest::prop_assert!(same);
        }
    }

    #[test]
    fn entries_keep_their_time_device_and_sequence() {
        let mut window = Window::default();
        window.push_back(1_000, 7, 41);
        window.push_back(1_005, 8, 42);
        window.push_back(90_000, 7, 43);
        assert_eq!(
            window.get(1),
            Some(WindowEntry {
                time: 1_005,
                device: 8,
                seq: 42
            })
        );
        assert_eq!(
            window.pop_front().map(|e| (e.time, e.seq)),
            Some((1_000, 41))
        );
        assert_eq!(window.front().map(|e| (e.time, e.seq)), Some((1_005, 42)));
        // Through a snapshot: the same entries.
        let bytes = postcard::to_allocvec(&window).unwrap();
        let back: Window = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            window.iter().collect::<Vec<_>>()
        );
        // Emptied, the next entry is coded after the last that left.
        window.pop_front();
        window.pop_front();
        window.push_back(5_000_000_000, 1, 44);
        assert_eq!(
            window.front().map(|e| (e.time, e.seq)),
            Some((5_000_000_000, 44))
        );
    }

    #[test]
    fn entries_far_apart_keep_their_times() {
        let mut window = Window::default();
        window.push_back(0, 1, 0);
        window.push_back(100, 2, 1);
        window.pop_front();
        window.push_back(50 + (1 << 32), 3, 2);
        let times: Vec<i64> = window.iter().map(|e| e.time).collect();
        assert_eq!(times, [100, 50 + (1 << 32)]);
        assert_eq!(window.get(1).unwrap().seq, 2);
    }
}
