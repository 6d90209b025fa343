//! State snapshots: the whole engine state in one compact, versioned file,
//! so that a restart resumes with its history instead of a blind day.
//!
//! A snapshot holds everything scoring depends on: the user and computer
//! names (their ids are positions), the events the watermark still holds
//! (with the latest event time, so deduplication and lateness carry on),
//! the windows, device history, host popularity and baselines
//! ([`EngineState`]), the entity risk ledgers, the open incidents, and the
//! run's counters. Restored into a fresh pipeline at the same point of the
//! input, it makes the rest of the run score exactly as an uninterrupted
//! one would (tests check it).
//!
//! # Format
//!
//! ```text
//! "APSTATE\0"            8 bytes, magic
//! format version         u32, little-endian (FORMAT_VERSION)
//! payload CRC-32         u32, little-endian, of the uncompressed payload
//! zstd frame             of the payload: the postcard encoding of `Body`,
//!                        then of `Extras`, then of `Habits`, then of the
//!                        held events' details (`HeldDetails`), then of
//!                        what richer records added to the state, then
//!                        how far a fleet worker had decided its
//!                        computers' incidents
//! ```
//!
//! postcard (<https://postcard.jamesmunns.com/wire-format>) writes the
//! fields of [`Body`] in declaration order, integers as varints, sequences
//! and maps length-first; its wire format is stable since 1.0. Any change
//! to what `Body` holds, field order included, is a new format version: a
//! snapshot of another version is refused with both versions named, and the
//! state is rebuilt from the input (or a warm start) instead. Versions 2
//! (no checksum, no `Extras`), 3 (no `Habits`: the longer history starts
//! from each user's count of new computers) and 4 (no details: every held
//! event was a LANL record's) are still read, as are 5 to 7 (windows as
//! columns of numbers rather than the codes they hold).
//!
//! The checksum is over the payload, not the compressed frame (zstd checks
//! its own): a snapshot whose payload was altered and compressed again is
//! refused as corrupt, as is any truncated or damaged file.
//!
//! This file is the format; `flavors` encodes a payload into a buffer or
//! straight into the compressor, and `store` keeps the files.

use std::cell::Cell;
use std::io::{self, Read, Write};

use postcard::ser_flavors::Flavor;
use serde::{Deserialize, Serialize};

use crate::alerts::Incident;
use crate::clock::ClockSnapshot;
use crate::entity::EntityRisk;
use crate::logon::Detail;
use crate::order::OrdererSnapshot;
use crate::rules::RuleReport;
use crate::state::{EngineState, WindowLayout, in_window_layout};

mod flavors;
mod store;

use flavors::{Buffer, Counted, Streamed};
pub use store::{LocalFiles, SnapshotFiles, SnapshotStore, StateStore, write_atomically};

/// What this build writes and reads.
/// Version 2 added the orderer's floor and the state limits' counts;
/// version 3 the payload checksum and [`Extras`] (the event clock); version
/// 4 the longer history ([`crate::habits::Habits`]) after them; version 5
/// the details of held events that had some ([`HeldDetails`]) and what
/// richer records added to the state (logon types, failures, sources);
/// version 6 where accounts log on from (`Origins` in `state/logons.rs`) after
/// those; version 7 how far a fleet worker had decided the incidents of the
/// computers it opens them for ([`ComputersDecided`]) after that; version 8
/// each window as the codes it holds rather than columns
/// (`state/window/layout.rs`).
pub const FORMAT_VERSION: u32 = 8;

/// The earlier versions this build still reads.
const PREVIOUS_VERSION: u32 = 2;
const VERSION_3: u32 = 3;
const VERSION_4: u32 = 4;
const VERSION_5: u32 = 5;
const VERSION_6: u32 = 6;
const VERSION_7: u32 = 7;

/// The detail of each held event that has one (a richer record's source,
/// logon type, outcome), by position among the orderer's held events and
/// then the clock's pending arrivals: an event's own encoding leaves it
/// out, so that it stays what older snapshots hold.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct HeldDetails(Vec<(u32, Detail)>);

impl HeldDetails {
    pub(crate) fn of(orderer: &OrdererSnapshot, clock: &ClockSnapshot) -> HeldDetails {
        let events = orderer
            .held
            .iter()
            .chain(clock.pending.iter().map(|a| &a.event));
        HeldDetails(
            events
                .enumerate()
                .filter(|(_, e)| !e.detail.is_empty())
                .map(|(i, e)| (i as u32, e.detail))
                .collect(),
        )
    }

    /// Gives each held event its detail back.
    fn restore(
        self,
        orderer: &mut OrdererSnapshot,
        clock: &mut ClockSnapshot,
    ) -> Result<(), SnapshotError> {
        let held = orderer.held.len();
        for (i, detail) in self.0 {
            let i = i as usize;
            let event = if i < held {
                orderer.held.get_mut(i)
            } else {
                clock.pending.get_mut(i - held).map(|a| &mut a.event)
            };
            event
                .ok_or_else(|| {
                    SnapshotError::Decode(format!(
                        "a detail for held event {i}, which is not there"
                    ))
                })?
                .detail = detail;
        }
        Ok(())
    }
}

const MAGIC: &[u8; 8] = b"APSTATE\0";

/// zstd level: the fast end (a full-scale snapshot is tens of MB before
/// compression, and it is written at every commit).
const ZSTD_LEVEL: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("not an AuthPulse state snapshot (no APSTATE header)")]
    NotASnapshot,
    #[error(
        "state snapshot format version {found}, but this build reads versions {PREVIOUS_VERSION} to {supported}: \
         start without it (the state is rebuilt from the input) or with the release that wrote it"
    )]
    Version { found: u32, supported: u32 },
    #[error("corrupt state snapshot: {0}")]
    Decode(String),
    #[error(
        "corrupt state snapshot: its payload's checksum is {found:08x}, the header records {recorded:08x}"
    )]
    Checksum { recorded: u32, found: u32 },
    #[error(
        "the state snapshot was taken with base date {snapshot} (Unix {snapshot_unix}), this run uses {run_unix}"
    )]
    TimeBase {
        snapshot: String,
        snapshot_unix: i64,
        run_unix: i64,
    },
    #[error("cannot merge the state snapshots: {0}")]
    Merge(String),
    #[error("a snapshot can only be restored into a pipeline that has read nothing yet")]
    NotFresh,
}

impl From<SnapshotError> for io::Error {
    fn from(error: SnapshotError) -> io::Error {
        match error {
            SnapshotError::Io(e) => e,
            other => io::Error::other(other),
        }
    }
}

/// What a snapshot says about itself (cheap to show; part of the body).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The policy version that scored up to the snapshot.
    pub policy_version: String,
    pub events_read: u64,
    pub events_scored: u64,
    /// Alert publications and dead letters written so far: a resumed run
    /// keeps that many lines of its alert and dead-letter files.
    pub alert_publications: u64,
    pub dead_letters: u64,
    /// Latest event time read (Unix seconds), if any.
    pub latest_event_time: Option<i64>,
    pub users: u64,
    pub computers: u64,
    pub device_pairs: u64,
    /// When it was taken (Unix seconds, wall clock).
    pub taken_at: i64,
}

/// The run's counters, so that a resumed run's summary counts the whole run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub events_read: u64,
    pub invalid: u64,
    pub duplicates: u64,
    pub late: u64,
    pub scored: u64,
    pub alerts: u64,
    pub alert_publications: u64,
    pub by_level: [u64; 4],
    pub invalid_by_reason: Vec<(String, u64)>,
    pub policy_reloads: u64,
    pub policy_reloads_refused: u64,
    /// Per rule id, its totals so far (all policy versions).
    pub rules: Vec<(String, RuleReport)>,
    /// Times each state limit was hit.
    pub state_caps: crate::limits::CapHits,
}

/// Everything a snapshot holds, in format order. Owned when read; the
/// pipeline writes the same layout from borrowed parts ([`BodyRef`]).
#[derive(Serialize, Deserialize)]
pub(crate) struct Body {
    pub meta: SnapshotMeta,
    /// `TimeBase::base_unix` of the run: LANL times and derived event ids
    /// depend on it.
    pub time_base_unix: i64,
    /// Names by id.
    pub users: Vec<String>,
    pub computers: Vec<String>,
    pub orderer: OrdererSnapshot,
    pub state: EngineState,
    pub entities: EntityRisk,
    /// The rules' flag labels by position: what rule bits in `entities`
    /// and `incidents` refer to.
    pub rule_labels: Vec<String>,
    pub incidents: Vec<Incident>,
    /// Event time up to which incidents have been closed.
    pub closed_through: i64,
    pub counts: Counts,
    /// State of the sinks that keep some (by name): their open windows.
    pub sinks: Vec<(String, Vec<u8>)>,
    /// Encoded after the body (version 3 on).
    #[serde(skip)]
    pub extras: Extras,
    /// How far a fleet worker had decided its computers' incidents; `None`:
    /// everything scored was decided (one process, or a version before 7).
    #[serde(skip)]
    pub computers_decided: Option<ComputersDecided>,
}

/// How far a fleet worker had decided computers' incidents
/// (`pipeline::shared_risk`): every computer's through `everything`, and
/// the computers it decided, each through the newest contribution it took.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ComputersDecided {
    pub everything: i64,
    pub computers: Vec<(String, i64)>,
}

impl ComputersDecided {
    /// What one process's state stands for: everything it scored decided.
    pub fn all_through(time: i64) -> ComputersDecided {
        ComputersDecided {
            everything: time,
            computers: Vec::new(),
        }
    }

    /// Both parts' decisions: a computer is decided as far as either says.
    pub fn join(self, other: ComputersDecided) -> ComputersDecided {
        let mut computers: std::collections::BTreeMap<String, i64> =
            self.computers.into_iter().collect();
        for (name, time) in other.computers {
            let at = computers.entry(name).or_insert(time);
            *at = (*at).max(time);
        }
        ComputersDecided {
            everything: self.everything.max(other.everything),
            computers: computers.into_iter().collect(),
        }
    }
}

/// What version 3 added, encoded after [`Body`] so that a version 2 body
/// still reads as one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Extras {
    /// The event clock's time the orderer was last advanced to.
    pub orderer_clock: Option<i64>,
    /// The event clock, with the arrivals waiting for their neighbours.
    pub clock: ClockSnapshot,
    /// Events refused as dated too far ahead.
    pub future: u64,
}

impl Extras {
    /// A version 2 snapshot's: its watermark followed the latest event.
    fn of_version_2(body: &Body) -> Extras {
        let latest = body.orderer.max_time;
        Extras {
            orderer_clock: latest,
            clock: ClockSnapshot {
                now: latest,
                latest_admitted: latest,
                recent: Vec::new(),
                pending: Vec::new(),
            },
            future: 0,
        }
    }
}

/// [`Body`]'s layout, from borrowed parts.
#[derive(Serialize)]
pub(crate) struct BodyRef<'a> {
    pub meta: &'a SnapshotMeta,
    pub time_base_unix: i64,
    pub users: Vec<&'a str>,
    pub computers: Vec<&'a str>,
    pub orderer: OrdererSnapshot,
    pub state: &'a EngineState,
    pub entities: &'a EntityRisk,
    pub rule_labels: &'a [String],
    pub incidents: Vec<Incident>,
    pub closed_through: i64,
    pub counts: Counts,
    pub sinks: Vec<(String, Vec<u8>)>,
}

/// A snapshot encoded but not yet compressed or written. Encoding needs the
/// state and so runs on the pipeline's thread; compression, the write and
/// the sync (two thirds of the time at full scale) need only this, so a
/// [`StateStore`] may do them on another thread.
pub struct EncodedSnapshot {
    encoded: Vec<u8>,
}

impl EncodedSnapshot {
    /// Encodes `parts` into `buffer` (emptied first; a store hands back the
    /// last snapshot's, so that tens of MB are not allocated at every
    /// checkpoint).
    pub(crate) fn encode<B: Serialize>(
        parts: &SnapshotParts<'_, B>,
        mut buffer: Vec<u8>,
    ) -> Result<EncodedSnapshot, SnapshotError> {
        buffer.clear();
        let encode_error = |e: postcard::Error| SnapshotError::Decode(e.to_string());
        let Buffer(encoded) = parts.encode_into(Buffer(buffer)).map_err(encode_error)?;
        Ok(EncodedSnapshot { encoded })
    }

    /// The buffer, for the next snapshot.
    pub fn into_buffer(self) -> Vec<u8> {
        self.encoded
    }

    /// Writes the snapshot file's bytes to `out`; returns how many.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<u64, SnapshotError> {
        // The checksum here, on the store's thread, not the pipeline's.
        let checksum = crc32fast::hash(&self.encoded);
        write_file(out, checksum, |compressor| {
            Ok(compressor.write_all(&self.encoded)?)
        })
    }
}

/// Writes a snapshot file: the header, which carries the payload's
/// checksum, then the payload `write_payload` writes, compressed as it
/// goes (no second buffer the size of the compressed snapshot). Returns the
/// bytes written.
fn write_file(
    out: &mut dyn Write,
    checksum: u32,
    write_payload: impl FnOnce(&mut dyn Write) -> Result<(), SnapshotError>,
) -> Result<u64, SnapshotError> {
    let mut out = Counted { out, bytes: 0 };
    out.write_all(MAGIC)?;
    out.write_all(&FORMAT_VERSION.to_le_bytes())?;
    out.write_all(&checksum.to_le_bytes())?;
    let mut compressor = zstd::stream::write::Encoder::new(&mut out, ZSTD_LEVEL)?;
    write_payload(&mut compressor)?;
    compressor.finish()?;
    Ok(out.bytes)
}

/// What a snapshot's payload is made of, borrowed, in the order it is
/// written: encoded into a buffer ([`EncodedSnapshot::encode`]) or written
/// without holding the payload ([`SnapshotParts::write_to`]).
pub(crate) struct SnapshotParts<'a, B: Serialize> {
    pub body: &'a B,
    pub extras: &'a Extras,
    pub state: &'a EngineState,
    pub details: &'a HeldDetails,
    pub computers_decided: Option<&'a ComputersDecided>,
}

impl<B: Serialize> SnapshotParts<'_, B> {
    /// Writes the snapshot file's bytes to `out`, as
    /// [`EncodedSnapshot::write_to`] does for the same parts, encoding them
    /// twice instead of holding the payload: once for the checksum, which
    /// the header carries before the compressed frame, and once into the
    /// compressor. For a snapshot nothing is waiting to overlap with (a
    /// run's last), where the payload (tens of MB at scale) would be the
    /// process's peak.
    pub(crate) fn write_to(&self, out: &mut dyn Write) -> Result<u64, SnapshotError> {
        let checksum = self.encode(&mut io::sink())?;
        // The parts are borrowed, so the second encoding is the first's.
        write_file(out, checksum, |compressor| {
            self.encode(compressor)?;
            Ok(())
        })
    }

    /// Encodes the parts into `out` as they are encoded; returns the
    /// checksum of the payload.
    fn encode(&self, out: &mut dyn Write) -> Result<u32, SnapshotError> {
        let error = Cell::new(None);
        let fail = |e: postcard::Error| match error.take() {
            Some(io) => SnapshotError::Io(io),
            None => SnapshotError::Decode(e.to_string()),
        };
        let mut flavor = self.encode_into(Streamed::new(out, &error)).map_err(fail)?;
        flavor.drain().map_err(fail)?;
        Ok(flavor.crc.finalize())
    }

    /// Serializes the parts into `flavor`: the one place that lists them,
    /// in the order they are read back.
    fn encode_into<F: Flavor<Output = F>>(&self, flavor: F) -> postcard::Result<F> {
        let flavor = postcard::serialize_with_flavor(self.body, flavor)?;
        let flavor = postcard::serialize_with_flavor(self.extras, flavor)?;
        let flavor = postcard::serialize_with_flavor(&self.state.habits, flavor)?;
        let flavor = postcard::serialize_with_flavor(self.details, flavor)?;
        let flavor = postcard::serialize_with_flavor(&self.state.logons, flavor)?;
        let flavor = postcard::serialize_with_flavor(&self.state.logons.origins, flavor)?;
        postcard::serialize_with_flavor(&self.computers_decided, flavor)
    }
}

/// Reads a snapshot [`EncodedSnapshot::write_to`] wrote.
pub(crate) fn read(input: &mut impl Read) -> Result<Body, SnapshotError> {
    let (version, payload) = read_payload(input)?;
    let layout = if version <= VERSION_7 {
        WindowLayout::Columns
    } else {
        WindowLayout::Codes
    };
    let (mut body, extras): (Body, &[u8]) =
        in_window_layout(layout, || postcard::take_from_bytes(&payload))
            .map_err(|e| SnapshotError::Decode(e.to_string()))?;
    let decode_error = |e: postcard::Error| SnapshotError::Decode(e.to_string());
    let habits = match version {
        PREVIOUS_VERSION => {
            body.extras = Extras::of_version_2(&body);
            None
        }
        VERSION_3 => {
            body.extras = postcard::from_bytes(extras).map_err(decode_error)?;
            None
        }
        VERSION_4 => {
            let (decoded, habits) = postcard::take_from_bytes(extras).map_err(decode_error)?;
            body.extras = decoded;
            Some(postcard::from_bytes(habits).map_err(decode_error)?)
        }
        _ => {
            let (decoded, rest) = postcard::take_from_bytes(extras).map_err(decode_error)?;
            body.extras = decoded;
            let (habits, rest) = postcard::take_from_bytes(rest).map_err(decode_error)?;
            let (details, rest): (HeldDetails, _) =
                postcard::take_from_bytes(rest).map_err(decode_error)?;
            details.restore(&mut body.orderer, &mut body.extras.clock)?;
            let (logons, rest) = postcard::take_from_bytes(rest).map_err(decode_error)?;
            body.state.logons = logons;
            if version != VERSION_5 {
                let (origins, rest) = postcard::take_from_bytes(rest).map_err(decode_error)?;
                body.state.logons.origins = origins;
                if version != VERSION_6 {
                    body.computers_decided = postcard::from_bytes(rest).map_err(decode_error)?;
                }
            }
            Some(habits)
        }
    };
    body.state.restore_habits(habits);
    Ok(body)
}

/// Checks a snapshot's header and checksum; returns its version and its
/// payload.
fn read_payload(input: &mut impl Read) -> Result<(u32, Vec<u8>), SnapshotError> {
    let mut header = [0u8; 12];
    input.read_exact(&mut header).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => SnapshotError::NotASnapshot,
        _ => SnapshotError::Io(e),
    })?;
    if &header[..8] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if ![
        FORMAT_VERSION,
        VERSION_7,
        VERSION_6,
        VERSION_5,
        VERSION_4,
        VERSION_3,
        PREVIOUS_VERSION,
    ]
    .contains(&version)
    {
        return Err(SnapshotError::Version {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let recorded = if version != PREVIOUS_VERSION {
        let mut checksum = [0u8; 4];
        input
            .read_exact(&mut checksum)
            .map_err(|_| SnapshotError::Decode("the header ends before its checksum".into()))?;
        Some(u32::from_le_bytes(checksum))
    } else {
        None
    };
    let mut payload = Vec::new();
    zstd::stream::copy_decode(input, &mut payload)
        .map_err(|e| SnapshotError::Decode(format!("zstd: {e}")))?;
    if let Some(recorded) = recorded {
        let found = crc32fast::hash(&payload);
        if found != recorded {
            return Err(SnapshotError::Checksum { recorded, found });
        }
    }
    Ok((version, payload))
}

/// Reads only what a snapshot says about itself (its checksum checked).
pub fn read_meta(input: &mut impl Read) -> Result<SnapshotMeta, SnapshotError> {
    let (_, payload) = read_payload(input)?;
    // The meta is the body's first field.
    postcard::take_from_bytes(&payload)
        .map(|(meta, _)| meta)
        .map_err(|e| SnapshotError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests;
