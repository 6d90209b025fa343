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

/// A postcard flavor that appends to a buffer and stays one after each
/// part (postcard's own gives up its buffer at the end of a value).
struct Buffer(Vec<u8>);

impl Flavor for Buffer {
    type Output = Self;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Self> {
        Ok(self)
    }
}

/// A postcard flavor that hashes what it is given and passes it on to a
/// writer (a buffer, a compressor, or nothing: `io::sink`), a chunk at a time (postcard hands over a varint a
/// byte at a time). The writer's error, which postcard's own error cannot
/// carry, is kept in `error`.
struct Streamed<'w> {
    crc: crc32fast::Hasher,
    chunk: Vec<u8>,
    out: &'w mut dyn Write,
    error: &'w Cell<Option<io::Error>>,
}

impl<'w> Streamed<'w> {
    const CHUNK: usize = 64 << 10;

    fn new(out: &'w mut dyn Write, error: &'w Cell<Option<io::Error>>) -> Self {
        Streamed {
            crc: crc32fast::Hasher::new(),
            chunk: Vec::with_capacity(Self::CHUNK),
            out,
            error,
        }
    }

    fn drain(&mut self) -> postcard::Result<()> {
        self.crc.update(&self.chunk);
        let written = self.out.write_all(&self.chunk);
        self.chunk.clear();
        self.pass_on(written)
    }

    /// A write's outcome, its error kept for [`SnapshotParts::encode`].
    fn pass_on(&self, written: io::Result<()>) -> postcard::Result<()> {
        written.map_err(|e| {
            self.error.set(Some(e));
            postcard::Error::SerializeBufferFull
        })
    }
}

impl Flavor for Streamed<'_> {
    type Output = Self;

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.chunk.len() == Self::CHUNK {
            self.drain()?;
        }
        self.chunk.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if self.chunk.len() + bytes.len() > Self::CHUNK {
            self.drain()?;
        }
        if bytes.len() < Self::CHUNK {
            self.chunk.extend_from_slice(bytes);
            return Ok(());
        }
        // A long one (a busy account's window) goes as it is.
        self.crc.update(bytes);
        let written = self.out.write_all(bytes);
        self.pass_on(written)
    }

    /// Each part of the payload ends here; the last chunk is drained by
    /// [`SnapshotParts::encode`] after the last part.
    fn finalize(self) -> postcard::Result<Self> {
        Ok(self)
    }
}

/// A writer that counts what passes through it.
struct Counted<'a> {
    out: &'a mut dyn Write,
    bytes: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
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

/// Writes `path` through a hidden temporary file beside it, synced and
/// renamed over it, the directory synced too: a crash leaves the old file or
/// the new one, never part of one.
pub fn write_atomically<T>(
    path: &std::path::Path,
    write: impl FnOnce(&mut dyn Write) -> Result<T, SnapshotError>,
) -> Result<T, SnapshotError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map_or_else(|| "snapshot".into(), |n| n.to_string_lossy().into_owned());
    let temporary = dir.join(format!(".{name}.partial"));
    let value = {
        let file = std::fs::File::create(&temporary)?;
        let mut out = io::BufWriter::with_capacity(1 << 20, &file);
        let value = write(&mut out)?;
        out.flush()?;
        drop(out);
        file.sync_all()?;
        value
    };
    std::fs::rename(&temporary, path)?;
    // The rename itself must survive a crash.
    std::fs::File::open(dir)?.sync_all()?;
    Ok(value)
}

/// Where snapshot files are kept: a local directory ([`LocalFiles`]), or an
/// object store beside the warehouse (the daemon's S3 files).
pub trait SnapshotFiles: Send + Sync + 'static {
    /// Stores `name` whole, written by `write`: a crash leaves the old file
    /// (or none) or the new one, never part of one. Returns its size.
    fn put(
        &self,
        name: &str,
        write: &dyn Fn(&mut dyn Write) -> Result<u64, SnapshotError>,
    ) -> io::Result<u64>;
    fn exists(&self, name: &str) -> io::Result<bool>;
    /// Removes `name`; one that is not there is no error.
    fn delete(&self, name: &str) -> io::Result<()>;
    fn open(&self, name: &str) -> io::Result<Box<dyn Read>>;
    /// Where `name` is, for messages.
    fn location(&self, name: &str) -> String;
}

/// Snapshot files in a local directory, each written to a hidden temporary
/// file, synced and renamed into place.
pub struct LocalFiles {
    dir: std::path::PathBuf,
}

impl LocalFiles {
    /// Creates `dir` if need be.
    pub fn new(dir: impl Into<std::path::PathBuf>) -> io::Result<LocalFiles> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(LocalFiles { dir })
    }
}

impl SnapshotFiles for LocalFiles {
    fn put(
        &self,
        name: &str,
        write: &dyn Fn(&mut dyn Write) -> Result<u64, SnapshotError>,
    ) -> io::Result<u64> {
        Ok(write_atomically(&self.dir.join(name), |out| write(out))?)
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        self.dir.join(name).try_exists()
    }

    fn delete(&self, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.dir.join(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn Read>> {
        let file = std::fs::File::open(self.dir.join(name))?;
        Ok(Box::new(io::BufReader::with_capacity(1 << 20, file)))
    }

    fn location(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// Keeps each checkpoint's snapshot (`checkpoint-NNNNNNNNNN-RUN.apstate`)
/// in [`SnapshotFiles`]; the latest `keep` are kept. RUN tells the runs
/// over different inputs into one warehouse apart (their checkpoint
/// numbers repeat); a resumed run keeps the one its progress names.
///
/// A snapshot is compressed and written by a thread of the store's own
/// while the pipeline goes on; the next save (or [`StateStore::flush`])
/// waits for it. A crash can therefore leave a checkpoint committed in the
/// tables whose snapshot never landed: a resumed run then starts from the
/// latest checkpoint whose snapshot did ([`SnapshotStore::latest_kept`]).
pub struct SnapshotStore {
    run: String,
    writer: Option<SnapshotWriter>,
    /// A snapshot handed to the writer whose outcome is not yet known.
    in_flight: bool,
    /// The buffer of the last snapshot written, for the next one.
    spare: Vec<u8>,
    /// The newest checkpoint whose snapshot was handed to the writer.
    saved_through: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Where the writer keeps them, and how many, for a snapshot written
    /// on the caller's thread ([`StateStore::save_streamed`]).
    files: std::sync::Arc<dyn SnapshotFiles>,
    keep: u64,
}

/// The writer thread and its two channels: snapshots in, outcomes out.
struct SnapshotWriter {
    jobs: std::sync::mpsc::SyncSender<(String, u64, EncodedSnapshot)>,
    /// Each outcome, with the snapshot's buffer back.
    outcomes: std::sync::mpsc::Receiver<(io::Result<()>, Vec<u8>)>,
    thread: std::thread::JoinHandle<()>,
}

impl SnapshotStore {
    /// Keeps run `run`'s latest `keep` snapshots in `files`; starts the
    /// thread that writes them.
    pub fn new(
        files: std::sync::Arc<dyn SnapshotFiles>,
        keep: usize,
        run: &str,
    ) -> io::Result<SnapshotStore> {
        let keep = keep.max(1) as u64;
        let writer_files = files.clone();
        let (jobs, incoming) = std::sync::mpsc::sync_channel::<(String, u64, EncodedSnapshot)>(1);
        let (done, outcomes) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("authpulse-snapshot".into())
            .spawn(move || {
                for (run, checkpoint, snapshot) in incoming {
                    let outcome = keep_one(writer_files.as_ref(), keep, &run, checkpoint, &|out| {
                        snapshot.write_to(out)
                    });
                    if done.send((outcome, snapshot.into_buffer())).is_err() {
                        break;
                    }
                }
            })?;
        Ok(SnapshotStore {
            run: run.to_string(),
            writer: Some(SnapshotWriter {
                jobs,
                outcomes,
                thread,
            }),
            in_flight: false,
            spare: Vec::new(),
            saved_through: Default::default(),
            files,
            keep,
        })
    }

    /// Keeps the newest checkpoint whose snapshot this store is handed in
    /// `through` from now on: for whoever removes the run's snapshots once
    /// nothing needs them (a fleet worker's ended attempts).
    pub fn share_saved_through(&mut self, through: std::sync::Arc<std::sync::atomic::AtomicU64>) {
        self.saved_through = through;
    }

    /// A new run's id: 8 hex digits, from the clock and the process.
    pub fn new_run_id() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mixed = (nanos as u64 ^ (u64::from(std::process::id()) << 32))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        format!("{:08x}", (mixed >> 32) as u32)
    }

    /// The run a snapshot name belongs to (empty for the names without one
    /// that earlier releases wrote).
    pub fn run_of(name: &str) -> Option<&str> {
        let rest = name.strip_prefix("checkpoint-")?.strip_suffix(".apstate")?;
        match rest.split_once('-') {
            Some((_, run)) => Some(run),
            None => Some(""),
        }
    }

    /// The name of run `run`'s snapshot of checkpoint `checkpoint`.
    pub fn name_of(run: &str, checkpoint: u64) -> String {
        if run.is_empty() {
            format!("checkpoint-{checkpoint:010}.apstate")
        } else {
            format!("checkpoint-{checkpoint:010}-{run}.apstate")
        }
    }

    /// The latest checkpoint of run `run` at or before `checkpoint` whose
    /// snapshot is kept (of the `keep` a store keeps) and reads whole (its
    /// checksum holds), if any. A damaged one is logged and passed over for
    /// the one before.
    pub fn latest_kept(
        files: &dyn SnapshotFiles,
        run: &str,
        checkpoint: u64,
        keep: u64,
    ) -> io::Result<Option<u64>> {
        for candidate in (checkpoint.saturating_sub(keep.max(1))..=checkpoint).rev() {
            let name = Self::name_of(run, candidate);
            if candidate == 0 || !files.exists(&name)? {
                continue;
            }
            match files
                .open(&name)
                .map_err(SnapshotError::Io)
                .and_then(|mut input| read_meta(&mut input))
            {
                Ok(_) => return Ok(Some(candidate)),
                Err(SnapshotError::Io(e)) => return Err(e),
                Err(damaged) => tracing::warn!(
                    snapshot = %files.location(&name),
                    error = %damaged,
                    "a kept state snapshot does not read whole: trying the one before"
                ),
            }
        }
        Ok(None)
    }

    fn writer_gone() -> io::Error {
        io::Error::other("the state snapshot writer stopped")
    }
}

/// Writes checkpoint `checkpoint`'s snapshot and removes the one that falls
/// out of the latest `keep`.
fn keep_one(
    files: &dyn SnapshotFiles,
    keep: u64,
    run: &str,
    checkpoint: u64,
    write: &dyn Fn(&mut dyn Write) -> Result<u64, SnapshotError>,
) -> io::Result<()> {
    let started = std::time::Instant::now();
    let name = SnapshotStore::name_of(run, checkpoint);
    let bytes = files.put(&name, write)?;
    if checkpoint > keep {
        files.delete(&SnapshotStore::name_of(run, checkpoint - keep))?;
    }
    tracing::debug!(
        checkpoint,
        bytes,
        ms = started.elapsed().as_millis() as u64,
        location = %files.location(&name),
        "state snapshot written"
    );
    Ok(())
}

/// Where a pipeline keeps the state snapshot of each checkpoint.
pub trait StateStore {
    /// Keeps checkpoint `checkpoint`'s snapshot; returns its name, for the
    /// progress record. It may finish writing in the background.
    fn save(&mut self, checkpoint: u64, snapshot: EncodedSnapshot) -> io::Result<String>;
    /// Keeps checkpoint `checkpoint`'s snapshot, written by `write` on this
    /// thread and durable when this returns: for a run's last snapshot,
    /// which has nothing to overlap with and need not be held encoded.
    fn save_streamed(
        &mut self,
        checkpoint: u64,
        write: &dyn Fn(&mut dyn Write) -> Result<u64, SnapshotError>,
    ) -> io::Result<String>;
    /// Waits until every snapshot saved so far is durable.
    fn flush(&mut self) -> io::Result<()>;
    /// A buffer to encode the next snapshot into (the last one's, if the
    /// store has it back).
    fn buffer(&mut self) -> io::Result<Vec<u8>> {
        Ok(Vec::new())
    }
}

impl StateStore for SnapshotStore {
    fn save_streamed(
        &mut self,
        checkpoint: u64,
        write: &dyn Fn(&mut dyn Write) -> Result<u64, SnapshotError>,
    ) -> io::Result<String> {
        self.flush()?;
        // The buffer kept for the next snapshot is not needed again.
        self.spare = Vec::new();
        keep_one(self.files.as_ref(), self.keep, &self.run, checkpoint, write)?;
        self.saved_through
            .fetch_max(checkpoint, std::sync::atomic::Ordering::Relaxed);
        Ok(Self::name_of(&self.run, checkpoint))
    }

    fn save(&mut self, checkpoint: u64, snapshot: EncodedSnapshot) -> io::Result<String> {
        self.flush()?;
        let writer = self.writer.as_ref().ok_or_else(Self::writer_gone)?;
        writer
            .jobs
            .send((self.run.clone(), checkpoint, snapshot))
            .map_err(|_| Self::writer_gone())?;
        self.in_flight = true;
        self.saved_through
            .fetch_max(checkpoint, std::sync::atomic::Ordering::Relaxed);
        Ok(Self::name_of(&self.run, checkpoint))
    }

    fn flush(&mut self) -> io::Result<()> {
        if !std::mem::take(&mut self.in_flight) {
            return Ok(());
        }
        let writer = self.writer.as_ref().ok_or_else(Self::writer_gone)?;
        let (outcome, buffer) = writer.outcomes.recv().map_err(|_| Self::writer_gone())?;
        self.spare = buffer;
        outcome
    }

    fn buffer(&mut self) -> io::Result<Vec<u8>> {
        self.flush()?;
        Ok(std::mem::take(&mut self.spare))
    }
}

impl Drop for SnapshotStore {
    fn drop(&mut self) {
        if let Err(e) = StateStore::flush(self) {
            tracing::warn!(error = %e, "the last state snapshot was not written");
        }
        if let Some(writer) = self.writer.take() {
            drop(writer.jobs);
            let _ = writer.thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_carry_their_run() {
        let run = SnapshotStore::new_run_id();
        assert_eq!(run.len(), 8);
        let name = SnapshotStore::name_of(&run, 42);
        assert_eq!(name, format!("checkpoint-0000000042-{run}.apstate"));
        assert_eq!(SnapshotStore::run_of(&name), Some(run.as_str()));
        // Names without a run (earlier releases) stay readable.
        assert_eq!(
            SnapshotStore::name_of("", 7),
            "checkpoint-0000000007.apstate"
        );
        assert_eq!(
            SnapshotStore::run_of("checkpoint-0000000007.apstate"),
            Some("")
        );
        assert_eq!(SnapshotStore::run_of("history.apstate"), None);
    }

    /// A snapshot's bytes: a pipeline's after `input`.
    fn snapshot_of(input: &[u8]) -> Vec<u8> {
        crate::pipeline::with_native_pipeline(|pipeline| {
            let mut lines = crate::input::LineReader::new(input, 1024);
            let stop = std::sync::atomic::AtomicBool::new(false);
            crate::pipeline::consume(pipeline, &mut lines, &stop, |_, _| {}).unwrap();
            let mut bytes = Vec::new();
            pipeline.write_snapshot(&mut bytes).unwrap();
            bytes
        })
    }

    #[test]
    fn a_payload_altered_and_compressed_again_is_refused() {
        let bytes = snapshot_of(b"1,U1,C1\n2,U2,C2\n");
        assert_eq!(read_meta(&mut &bytes[..]).unwrap().events_read, 2);
        let mut payload = Vec::new();
        zstd::stream::copy_decode(&bytes[16..], &mut payload).unwrap();
        // The names, as an attacker would change them: U1 becomes U9.
        let at = payload.windows(2).position(|w| w == b"U1").unwrap();
        payload[at + 1] = b'9';
        let mut forged = bytes[..16].to_vec();
        forged.extend(zstd::stream::encode_all(&payload[..], 1).unwrap());
        let error = read(&mut &forged[..]).err().unwrap();
        assert!(matches!(error, SnapshotError::Checksum { .. }), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("corrupt state snapshot: its payload's checksum")
        );
        // Cut short: refused too.
        let error = read(&mut &bytes[..bytes.len() - 9]).err().unwrap();
        assert!(matches!(error, SnapshotError::Decode(_)), "{error}");
    }

    #[test]
    fn a_version_7_snapshot_reads_back_the_same_windows() {
        let mut input = String::new();
        for t in 0..600u32 {
            let (user, computer) = (t % 5, if t % 9 == 0 { t } else { t % 5 });
            input.push_str(&format!("{},U{user},C{computer}\n", t * 40));
        }
        let current = snapshot_of(input.as_bytes());
        let mut old = in_window_layout(WindowLayout::Columns, || snapshot_of(input.as_bytes()));
        old[8..12].copy_from_slice(&VERSION_7.to_le_bytes());
        let (current, old) = (
            read(&mut &current[..]).unwrap(),
            read(&mut &old[..]).unwrap(),
        );
        assert_eq!(current.meta.events_read, 600);
        let state = |body: &Body| postcard::to_allocvec(&body.state).unwrap();
        assert_eq!(state(&current), state(&old));
    }

    #[test]
    fn the_latest_kept_snapshot_of_a_run_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles::new(dir.path()).unwrap();
        let good = snapshot_of(b"1,U1,C1\n");
        for (run, checkpoint) in [("aaaaaaaa", 3), ("aaaaaaaa", 4), ("bbbbbbbb", 5)] {
            std::fs::write(
                dir.path().join(SnapshotStore::name_of(run, checkpoint)),
                &good,
            )
            .unwrap();
        }
        // Run a's checkpoint 5 is missing: its latest kept is 4, not run b's 5.
        assert_eq!(
            SnapshotStore::latest_kept(&files, "aaaaaaaa", 5, 3).unwrap(),
            Some(4)
        );
        assert_eq!(
            SnapshotStore::latest_kept(&files, "bbbbbbbb", 5, 3).unwrap(),
            Some(5)
        );
        assert_eq!(
            SnapshotStore::latest_kept(&files, "cccccccc", 5, 3).unwrap(),
            None
        );
        // Run b's newest is damaged: its one before is taken (none here),
        // and run a's 4, damaged, gives way to its 3.
        for (run, checkpoint) in [("aaaaaaaa", 4), ("bbbbbbbb", 5)] {
            let path = dir.path().join(SnapshotStore::name_of(run, checkpoint));
            std::fs::write(&path, &good[..good.len() / 2]).unwrap();
        }
        assert_eq!(
            SnapshotStore::latest_kept(&files, "aaaaaaaa", 5, 3).unwrap(),
            Some(3)
        );
        assert_eq!(
            SnapshotStore::latest_kept(&files, "bbbbbbbb", 5, 3).unwrap(),
            None
        );
    }
}
