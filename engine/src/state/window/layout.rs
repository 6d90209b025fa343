//! A window in a state snapshot.
//!
//! Since snapshot format 8 a window is written as it is held: its oldest
//! entry in full, then the codes of the others, each after the one before
//! (a byte for most; `window.rs`), as one byte string. That is what the
//! window already holds, so writing it is a copy; at the LANL set's
//! density a snapshot's payload is a quarter smaller than with the columns
//! before it (its compressed file larger: the codes are already dense).
//!
//! Formats 2 to 7 wrote columns of small numbers (time and sequence steps,
//! devices). Serde has no place to pass the format a snapshot was written
//! in down to a nested field, so the snapshot reader says which layout to
//! read with [`in_layout`], for the thread and the duration of its decode.

use std::cell::Cell;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{LONG, SHORT_LIMIT, Window, unzigzag};

/// How windows are written and read on this thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Formats 2 to 7.
    Columns,
    /// Format 8 on.
    Codes,
}

thread_local! {
    static LAYOUT: Cell<Layout> = const { Cell::new(Layout::Codes) };
}

/// Runs `f` with windows written and read in `layout`.
pub(crate) fn in_layout<R>(layout: Layout, f: impl FnOnce() -> R) -> R {
    /// Puts the layout back, also when `f` panics.
    struct Restore(Layout);
    impl Drop for Restore {
        fn drop(&mut self) {
            LAYOUT.set(self.0);
        }
    }
    let _restore = Restore(LAYOUT.replace(layout));
    f()
}

/// Format 8's window: the oldest entry and the codes after it.
#[derive(Serialize)]
struct CodesRef<'a> {
    len: u32,
    first_time: i64,
    first_device: u32,
    first_seq: u32,
    /// The codes, in the two parts the ring buffer holds them in.
    #[serde(with = "serde_bytes")]
    codes: &'a [u8],
    #[serde(with = "serde_bytes")]
    codes_wrapped: &'a [u8],
}

#[derive(Deserialize)]
struct Codes {
    len: u32,
    first_time: i64,
    first_device: u32,
    first_seq: u32,
    #[serde(with = "serde_bytes")]
    codes: Vec<u8>,
    #[serde(with = "serde_bytes")]
    codes_wrapped: Vec<u8>,
}

/// Formats 2 to 7's window.
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
        match LAYOUT.get() {
            Layout::Codes => self.codes().serialize(serializer),
            Layout::Columns => self.columns().serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Window, D::Error> {
        let window = match LAYOUT.get() {
            Layout::Codes => Window::from_codes(Codes::deserialize(deserializer)?),
            Layout::Columns => Window::from_columns(Columns::deserialize(deserializer)?),
        };
        window.map_err(serde::de::Error::custom)
    }
}

impl Window {
    fn codes(&self) -> CodesRef<'_> {
        let (mut codes, mut codes_wrapped) = self.bytes.as_slices();
        // The bytes start with the oldest entry's own code, which is written
        // in full instead.
        let skip = if self.len > 0 {
            (self.front.next - self.dropped) as usize
        } else {
            self.bytes.len()
        };
        if skip <= codes.len() {
            codes = &codes[skip..];
        } else {
            codes_wrapped = &codes_wrapped[skip - codes.len()..];
            codes = &[];
        }
        CodesRef {
            len: self.len as u32,
            first_time: self.front.time,
            first_device: self.front.device,
            first_seq: self.front.seq,
            codes,
            codes_wrapped,
        }
    }

    /// Decodes a snapshot's codes, checking them as it goes: a snapshot is
    /// input, and one altered in a way its checksum misses must fail here,
    /// not index past the end.
    fn from_codes(written: Codes) -> Result<Window, &'static str> {
        let mut window = Window::default();
        if written.len == 0 {
            return Ok(window);
        }
        let mut codes = written.codes.iter().chain(&written.codes_wrapped).copied();
        let mut byte = || {
            codes
                .next()
                .ok_or("a window's codes end before its entries")
        };
        let (mut time, mut device, mut seq) =
            (written.first_time, written.first_device, written.first_seq);
        window.push_back(time, device, seq);
        for _ in 1..written.len {
            let first = byte()?;
            let step = if first < SHORT_LIMIT {
                i64::from(first)
            } else if first == LONG {
                let step = unzigzag(varint(&mut byte)?);
                device =
                    u32::try_from(varint(&mut byte)?).map_err(|_| "a window device past u32")?;
                step
            } else {
                return Err("an unknown window code");
            };
            time = time
                .checked_add(step)
                .ok_or("a window past the end of time")?;
            seq = seq.wrapping_add(1);
            window.push_back(time, device, seq);
        }
        if byte().is_ok() {
            return Err("a window's codes run on past its entries");
        }
        Ok(window)
    }

    /// The columns formats 2 to 7 wrote: this build writes them only when
    /// told to (the tests that older snapshots still read).
    fn columns(&self) -> Columns {
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
        columns
    }

    fn from_columns(columns: Columns) -> Result<Window, &'static str> {
        let n = columns.devices.len();
        if columns.time_steps.len() != n || columns.seq_steps.len() != n {
            return Err("window columns of different lengths");
        }
        // Every event enters its user's window: the sequence numbers run on
        // by one (the first step is from the first entry to itself).
        let consecutive = columns
            .seq_steps
            .iter()
            .enumerate()
            .all(|(i, &step)| step == u32::from(i > 0));
        if !consecutive {
            return Err("window sequence numbers do not run on by one");
        }
        let mut window = Window::default();
        let mut time = columns.first_time;
        for i in 0..n {
            time = time
                .checked_add(i64::from(columns.time_steps[i]))
                .ok_or("a window past the end of time")?;
            let seq = columns.first_seq.wrapping_add(i as u32);
            window.push_back(time, columns.devices[i], seq);
        }
        Ok(window)
    }
}

/// A varint as `window.rs` writes them, from untrusted bytes.
fn varint(byte: &mut impl FnMut() -> Result<u8, &'static str>) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = byte()?;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("a window varint longer than ten bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::window::WindowEntry;

    /// A window whose ring buffer has wrapped, with long and short codes.
    fn a_window() -> Window {
        let mut window = Window::default();
        let (mut seq, mut time) = (u32::MAX - 40, 1_000);
        for i in 0..400i64 {
            let device = if i % 7 == 0 { 20_000 + i as u32 } else { 3 };
            time += if i % 11 == 0 { 5_000 } else { i % 4 * 20 };
            window.push_back(time, device, seq);
            seq = seq.wrapping_add(1);
            if i % 3 == 0 {
                window.pop_front();
            }
        }
        // As many in as out, until the ring buffer's used part wraps round.
        for _ in 0..10_000 {
            if !window.bytes.as_slices().1.is_empty() {
                return window;
            }
            let newest = window.newest;
            window.push_back(newest.time + 1, newest.device, newest.seq.wrapping_add(1));
            window.pop_front();
        }
        panic!("the ring buffer never wrapped");
    }

    fn entries(window: &Window) -> Vec<WindowEntry> {
        window.iter().collect()
    }

    #[test]
    fn both_layouts_read_back_the_same_entries() {
        let window = a_window();
        for layout in [Layout::Codes, Layout::Columns] {
            let bytes = in_layout(layout, || postcard::to_allocvec(&window).unwrap());
            let back: Window = in_layout(layout, || postcard::from_bytes(&bytes).unwrap());
            assert_eq!(entries(&back), entries(&window), "{layout:?}");
        }
        let empty = Window::default();
        let bytes = postcard::to_allocvec(&empty).unwrap();
        assert_eq!(postcard::from_bytes::<Window>(&bytes).unwrap().len(), 0);
    }

    #[test]
    fn codes_are_smaller_than_columns() {
        let window = a_window();
        let codes = postcard::to_allocvec(&window).unwrap().len();
        let columns = in_layout(Layout::Columns, || postcard::to_allocvec(&window).unwrap()).len();
        assert!(codes * 3 < columns * 2, "{codes} against {columns}");
    }

    #[test]
    fn damaged_codes_are_refused() {
        let window = a_window();
        let good = window.codes();
        let mut all = good.codes.to_vec();
        all.extend_from_slice(good.codes_wrapped);
        let written = |len: u32, codes: Vec<u8>| Codes {
            len,
            first_time: good.first_time,
            first_device: good.first_device,
            first_seq: good.first_seq,
            codes,
            codes_wrapped: Vec::new(),
        };
        let back = Window::from_codes(written(good.len, all.clone())).unwrap();
        assert_eq!(entries(&back), entries(&window));
        let error = Window::from_codes(written(good.len + 1, all.clone())).err();
        assert_eq!(error, Some("a window's codes end before its entries"));
        let error = Window::from_codes(written(good.len - 1, all.clone())).err();
        assert_eq!(error, Some("a window's codes run on past its entries"));
        let error = Window::from_codes(written(
            2,
            vec![
                LONG, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1,
            ],
        ))
        .err();
        assert_eq!(error, Some("a window varint longer than ten bytes"));
        let error =
            Window::from_codes(written(2, vec![LONG, 0, 0xff, 0xff, 0xff, 0xff, 0x7f])).err();
        assert_eq!(error, Some("a window device past u32"));
        let error = Window::from_codes(written(2, vec![0x81, 0, 0])).err();
        assert_eq!(error, Some("an unknown window code"));
    }

    #[test]
    fn columns_with_gaps_in_the_sequence_are_refused() {
        let columns = Columns {
            first_time: 0,
            first_seq: 3,
            time_steps: vec![0, 1],
            seq_steps: vec![0, 2],
            devices: vec![1, 2],
        };
        // postcard's errors drop a custom message: read through JSON.
        let json = serde_json::to_value(&columns).unwrap();
        let error = in_layout(Layout::Columns, || serde_json::from_value::<Window>(json))
            .err()
            .unwrap();
        assert!(
            error.to_string().contains("do not run on by one"),
            "{error}"
        );
    }
}
