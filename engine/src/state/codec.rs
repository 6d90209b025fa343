//! How a user's window goes into a state snapshot: as columns of small
//! numbers (times and sequence numbers as differences from the entry before,
//! both ascending), which encode in a byte or two each and compress well,
//! instead of one 16-byte entry after another. The windows are most of a
//! snapshot (an entry per event of the last 24 hours).
//!
//! Used as `#[serde(with = "codec")]` on the window.

use std::collections::VecDeque;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::WindowEntry;

#[derive(Serialize, Deserialize)]
struct Columns {
    first_time: i64,
    first_seq: u32,
    time_steps: Vec<u32>,
    seq_steps: Vec<u32>,
    devices: Vec<u32>,
}

pub fn serialize<S: Serializer>(
    window: &VecDeque<WindowEntry>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let first = window.front();
    let mut columns = Columns {
        first_time: first.map_or(0, |e| e.time),
        first_seq: first.map_or(0, |e| e.seq),
        time_steps: Vec::with_capacity(window.len()),
        seq_steps: Vec::with_capacity(window.len()),
        devices: Vec::with_capacity(window.len()),
    };
    let (mut time, mut seq) = (columns.first_time, columns.first_seq);
    for entry in window {
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

pub fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<VecDeque<WindowEntry>, D::Error> {
    let columns = Columns::deserialize(deserializer)?;
    let n = columns.devices.len();
    if columns.time_steps.len() != n || columns.seq_steps.len() != n {
        return Err(serde::de::Error::custom(
            "window columns of different lengths",
        ));
    }
    let (mut time, mut seq) = (columns.first_time, columns.first_seq);
    let mut window = VecDeque::with_capacity(n);
    for i in 0..n {
        time += i64::from(columns.time_steps[i]);
        seq = seq.wrapping_add(columns.seq_steps[i]);
        window.push_back(WindowEntry {
            time,
            device: columns.devices[i],
            seq,
        });
    }
    Ok(window)
}
