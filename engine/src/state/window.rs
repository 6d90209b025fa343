//! A user's events of the last 24 hours, in 8 bytes each: the window is
//! most of the engine's memory at scale (an entry per event of the last
//! day: 12M for the LANL set's 11,362 users), so an entry keeps only its
//! time as seconds after the window's base and its device. Its user-local
//! sequence number (which tells whether it is its device's first or latest
//! occurrence) is not stored: every event enters the window, so entry `k`
//! is `first_seq + k`.
//!
//! In a state snapshot a window is columns of small numbers (times and
//! sequence numbers as differences from the entry before), which encode in
//! a byte or two each and compress well.

use std::collections::VecDeque;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One entry, as the state reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WindowEntry {
    pub time: i64,
    pub device: u32,
    pub seq: u32,
}

/// The least a full window grows by.
const MIN_GROWTH: usize = 8;

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Seconds after [`Window::base`].
    offset: u32,
    device: u32,
}

#[derive(Default, Debug)]
pub(super) struct Window {
    /// The time offsets count from: the first entry's when the window was
    /// last empty (entries arrive in event-time order).
    base: i64,
    /// The sequence number of the oldest entry.
    first_seq: u32,
    slots: VecDeque<Slot>,
}

impl Window {
    #[inline]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// The heap memory it holds.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
    }

    #[inline]
    fn entry(&self, index: usize, slot: Slot) -> WindowEntry {
        WindowEntry {
            time: self.base + i64::from(slot.offset),
            device: slot.device,
            seq: self.first_seq.wrapping_add(index as u32),
        }
    }

    #[inline]
    pub fn get(&self, index: usize) -> Option<WindowEntry> {
        self.slots.get(index).map(|&slot| self.entry(index, slot))
    }

    #[inline]
    pub fn front(&self) -> Option<WindowEntry> {
        self.get(0)
    }

    /// Adds the user's next event; `seq` must follow the last entry's.
    #[inline]
    pub fn push_back(&mut self, time: i64, device: u32, seq: u32) {
        if self.slots.is_empty() {
            self.base = time;
            self.first_seq = seq;
        }
        debug_assert_eq!(seq, self.first_seq.wrapping_add(self.slots.len() as u32));
        let offset = match u32::try_from(time - self.base) {
            Ok(offset) => offset,
            Err(_) => self.rebase(time),
        };
        if self.slots.len() == self.slots.capacity() {
            // By a quarter, not the default doubling: windows are most of the
            // engine's memory, and a doubled buffer is up to half empty (a
            // quarter on average) where this one is at most a fifth.
            self.slots
                .reserve_exact((self.slots.len() / 4).max(MIN_GROWTH));
        }
        self.slots.push_back(Slot { offset, device });
    }

    /// Moves the base to the oldest entry, for a window that has not been
    /// empty for 136 years of event time (or an event that far apart).
    #[cold]
    fn rebase(&mut self, time: i64) -> u32 {
        let oldest = self.front().map_or(time, |e| e.time).min(time);
        let shift = oldest - self.base;
        for slot in &mut self.slots {
            slot.offset = (i64::from(slot.offset) - shift) as u32;
        }
        self.base = oldest;
        u32::try_from(time - self.base).unwrap_or(u32::MAX)
    }

    #[inline]
    pub fn pop_front(&mut self) -> Option<WindowEntry> {
        let slot = self.slots.pop_front()?;
        let entry = self.entry(0, slot);
        self.first_seq = self.first_seq.wrapping_add(1);
        Some(entry)
    }

    pub fn shrink_to(&mut self, capacity: usize) {
        self.slots.shrink_to(capacity);
    }

    pub fn iter(&self) -> impl Iterator<Item = WindowEntry> + '_ {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, &slot)| self.entry(i, slot))
    }

    /// Each entry's device, to renumber.
    pub fn devices_mut(&mut self) -> impl Iterator<Item = &mut u32> {
        self.slots.iter_mut().map(|slot| &mut slot.device)
    }
}

#[derive(Serialize, Deserialize)]
struct Columns {
    first_time: i64,
    first_seq: u32,
    time_steps: Vec<u32>,
    seq_steps: Vec<u32>,
    devices: Vec<u32>,
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let first = self.front();
        let mut columns = Columns {
            first_time: first.map_or(0, |e| e.time),
            first_seq: first.map_or(0, |e| e.seq),
            time_steps: Vec::with_capacity(self.len()),
            seq_steps: Vec::with_capacity(self.len()),
            devices: Vec::with_capacity(self.len()),
        };
        let (mut time, mut seq) = (columns.first_time, columns.first_seq);
        for entry in self.iter() {
            // Entries are in event-time order, within 24 hours of each other.
            columns
                .time_steps
                .push(u32::try_from(entry.time - time).unwrap_or(u32::MAX));
            columns.seq_steps.push(entry.seq.wrapping_sub(seq));
            columns.devices.push(entry.device);
            (time, seq) = (entry.time, entry.seq);
        }
        columns.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Window, D::Error> {
        let columns = Columns::deserialize(deserializer)?;
        let n = columns.devices.len();
        if columns.time_steps.len() != n || columns.seq_steps.len() != n {
            return Err(serde::de::Error::custom(
                "window columns of different lengths",
            ));
        }
        // Every event enters its user's window: the sequence numbers run on
        // by one (the first step is from the first entry to itself).
        let consecutive = columns
            .seq_steps
            .iter()
            .enumerate()
            .all(|(i, &step)| step == u32::from(i > 0));
        if !consecutive {
            return Err(serde::de::Error::custom(
                "window sequence numbers do not run on by one",
            ));
        }
        let mut window = Window {
            base: columns.first_time,
            first_seq: columns.first_seq,
            slots: VecDeque::with_capacity(n),
        };
        let mut offset: u64 = 0;
        for i in 0..n {
            offset += u64::from(columns.time_steps[i]);
            let offset = u32::try_from(offset)
                .map_err(|_| serde::de::Error::custom("a window longer than 136 years"))?;
            window.slots.push_back(Slot {
                offset,
                device: columns.devices[i],
            });
        }
        Ok(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_window_grows_by_a_quarter() {
        let mut window = Window::default();
        for i in 0..1_030u32 {
            window.push_back(i64::from(i), i % 5, i);
        }
        // Doubling would hold 2,048.
        assert!(window.capacity() >= 1_030);
        assert!(
            window.capacity() <= 1_030 + 1_030 / 4 + MIN_GROWTH,
            "{}",
            window.capacity()
        );
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
        // Emptied, the next entry sets a new base.
        window.pop_front();
        window.pop_front();
        window.push_back(5_000_000_000, 1, 44);
        assert_eq!(
            window.front().map(|e| (e.time, e.seq)),
            Some((5_000_000_000, 44))
        );
        assert_eq!(size_of::<Slot>(), 8);
    }

    #[test]
    fn an_entry_136_years_on_rebases_the_window() {
        let mut window = Window::default();
        window.push_back(0, 1, 0);
        window.push_back(100, 2, 1);
        window.pop_front();
        window.push_back(50 + (1 << 32), 3, 2);
        let times: Vec<i64> = window.iter().map(|e| e.time).collect();
        assert_eq!(times, [100, 50 + (1 << 32)]);
        assert_eq!(window.get(1).unwrap().seq, 2);
    }

    #[test]
    fn a_snapshot_with_gaps_in_the_sequence_is_refused() {
        let columns = Columns {
            first_time: 0,
            first_seq: 3,
            time_steps: vec![0, 1],
            seq_steps: vec![0, 2],
            devices: vec![1, 2],
        };
        let json = serde_json::to_value(&columns).unwrap();
        let error = serde_json::from_value::<Window>(json).unwrap_err();
        assert!(
            error.to_string().contains("do not run on by one"),
            "{error}"
        );
    }
}
