//! Reading and validating input records: the chunked line reader, the reader
//! thread for streams, the two record forms (LANL CSV `time,user,computer`
//! and JSON events) and the reasons a record is refused. Nothing here panics
//! on input.

mod csv;
mod json;
mod lines;
mod stream;

pub use csv::{is_header, parse_csv};
pub use json::parse_json;
pub use lines::{Line, LineReader, MAX_LINE_DEFAULT};
pub use stream::StreamReader;

use std::{fmt, io};

use crate::event::EventId;

/// Where events come from: a file or stdin ([`LineReader`]) or a Kinesis
/// stream (`aws::kinesis::KinesisSource`). The pipeline reads every source
/// the same way, one line (one event) at a time.
pub trait Source {
    /// The next event, [`Line::Idle`] when none arrived for a while (a live
    /// source), or `None` at the end.
    fn next_line(&mut self) -> io::Result<Option<Line<'_>>>;
    /// Number of the event returned last (1-based): the dead-letter `line`.
    fn line_no(&self) -> u64;
    /// Bytes consumed so far, for progress.
    fn bytes_consumed(&self) -> u64;
    /// Reads from the underlying input that returned data, so far. The
    /// pipeline does its periodic work (a batch past its delay, commits,
    /// status) after each, so that a stream trickling in without ever going
    /// quiet is not held back for thousands of lines.
    fn reads(&self) -> u64 {
        0
    }
    /// Where the next record starts, as a checkpoint's progress records it
    /// (a file: byte offset and line number).
    fn position(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// The pipeline has started a checkpoint (a table commit), and the one
    /// it started before has landed. A source with positions of its own
    /// saves those that are now safe to resume from (see [`Frontier`]).
    fn checkpointed(&mut self, _frontier: Frontier) -> io::Result<()> {
        Ok(())
    }
    /// Everything returned so far is scored and committed (the end of a
    /// run): the source saves its current positions.
    fn finished(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Per partition of a streaming source (a Kinesis shard): how far behind
    /// the stream's tip the reader is, in milliseconds.
    fn iterator_ages_ms(&self) -> Vec<(String, i64)> {
        Vec::new()
    }
    /// Per partition of a streaming source: events read since it started.
    fn events_by_partition(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

impl<R: io::Read> Source for LineReader<R> {
    fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        LineReader::next_line(self)
    }

    fn line_no(&self) -> u64 {
        LineReader::line_no(self)
    }

    fn bytes_consumed(&self) -> u64 {
        LineReader::bytes_consumed(self)
    }

    fn reads(&self) -> u64 {
        LineReader::reads(self)
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({
            "offset": LineReader::bytes_consumed(self),
            "line": LineReader::line_no(self),
        })
    }
}

/// How far scoring had got when a checkpoint started, in event time: what
/// a source needs to tell which of its positions are safe to resume from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frontier {
    /// The latest event time read so far (`None`: nothing read).
    pub latest_read: Option<i64>,
    /// Every event read with an earlier event time has been scored and is
    /// part of this checkpoint; later ones are still held by the watermark
    /// or wait in a partial batch. `i64::MAX`: nothing is waiting.
    pub scored_before: i64,
}

/// Record form of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Decide from the first non-blank line (`{` means JSON).
    Auto,
    /// LANL `time,user,computer`, time in seconds from the data set's start.
    Csv,
    /// One JSON event per line (`event_id`, `event_time`, `user_id`, `computer_id`, `ingestion_time`).
    Json,
}

impl Format {
    /// The concrete format of a line (for `Auto`, by its first byte).
    pub fn detect(line: &[u8]) -> Format {
        match line.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Format::Json,
            _ => Format::Csv,
        }
    }
}

/// A valid record, borrowing the input line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Event time, Unix seconds.
    pub event_time: i64,
    pub user: &'a [u8],
    pub computer: &'a [u8],
    /// Given by JSON input; derived from the record otherwise.
    pub event_id: Option<EventId>,
    /// Given by JSON input (Unix seconds); the read time otherwise.
    pub ingestion_time: Option<i64>,
}

/// Longest user or computer name accepted.
pub const MAX_NAME_LEN: usize = 256;

/// Latest event time accepted: 9999-12-31T23:59:59Z.
pub const MAX_UNIX_TIME: i64 = 253_402_300_799;

/// Why a record was refused. Each becomes a dead-letter line and a counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    NotUtf8,
    LineTooLong {
        len: u64,
        max: usize,
    },
    FieldCount {
        found: usize,
    },
    EmptyField(&'static str),
    FieldTooLong(&'static str),
    ControlCharacter(&'static str),
    BadTime(String),
    BadJson(String),
    BadEventId,
    /// Older than the watermark when it arrived.
    Late {
        event_time: i64,
        watermark: i64,
    },
    /// Dated more than `max_ahead` seconds past `bound`: the event clock
    /// (what time the input's majority says it is) or, for a live source
    /// (`wall_clock`), the wall clock.
    Future {
        event_time: i64,
        bound: i64,
        max_ahead: i64,
        wall_clock: bool,
    },
    /// A new user or computer while the state holds as many as it may
    /// ([`crate::limits::StateLimits`]).
    StateCap {
        cap: crate::limits::Cap,
        limit: usize,
    },
}

impl Reject {
    /// Short, stable name for counters and dead-letter `kind`.
    /// Every [`Reject::kind`].
    pub const KINDS: [&'static str; 13] = [
        "not_utf8",
        "line_too_long",
        "field_count",
        "empty_field",
        "field_too_long",
        "control_character",
        "bad_time",
        "bad_json",
        "bad_event_id",
        "late",
        "future",
        "state_cap_users",
        "state_cap_computers",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Reject::NotUtf8 => "not_utf8",
            Reject::LineTooLong { .. } => "line_too_long",
            Reject::FieldCount { .. } => "field_count",
            Reject::EmptyField(_) => "empty_field",
            Reject::FieldTooLong(_) => "field_too_long",
            Reject::ControlCharacter(_) => "control_character",
            Reject::BadTime(_) => "bad_time",
            Reject::BadJson(_) => "bad_json",
            Reject::BadEventId => "bad_event_id",
            Reject::Late { .. } => "late",
            Reject::Future { .. } => "future",
            Reject::StateCap {
                cap: crate::limits::Cap::Users,
                ..
            } => "state_cap_users",
            Reject::StateCap { .. } => "state_cap_computers",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::NotUtf8 => write!(f, "line is not valid UTF-8"),
            Reject::LineTooLong { len, max } => {
                write!(f, "line is {len} bytes, longer than the {max}-byte limit")
            }
            Reject::FieldCount { found } => {
                write!(f, "expected 3 fields `time,user,computer`, found {found}")
            }
            Reject::EmptyField(field) => write!(f, "field `{field}` is empty"),
            Reject::FieldTooLong(field) => {
                write!(f, "field `{field}` is longer than {MAX_NAME_LEN} bytes")
            }
            Reject::ControlCharacter(field) => {
                write!(f, "field `{field}` contains a control character")
            }
            Reject::BadTime(detail) => write!(f, "bad time: {detail}"),
            Reject::BadJson(detail) => write!(f, "bad JSON event: {detail}"),
            Reject::BadEventId => write!(f, "event_id must be 32 hexadecimal characters"),
            Reject::Late {
                event_time,
                watermark,
            } => write!(
                f,
                "late: event time {} is before the watermark {}",
                crate::event::format_time(*event_time),
                crate::event::format_time(*watermark)
            ),
            Reject::Future {
                event_time,
                bound,
                max_ahead,
                wall_clock,
            } => write!(
                f,
                "future: event time {} is more than {} ahead of {}, {}",
                crate::event::format_time(*event_time),
                humantime::format_duration(std::time::Duration::from_secs(
                    (*max_ahead).max(0) as u64
                )),
                crate::event::format_time(*bound),
                if *wall_clock {
                    "the wall clock"
                } else {
                    "the time most of the stream around it has reached"
                },
            ),
            Reject::StateCap { cap, limit } => write!(
                f,
                "the state already holds {limit} {} (the limit): a new one is not taken in",
                cap.name()
            ),
        }
    }
}

/// A parsed record written out again in `format`: a dead letter's raw text
/// when the line itself is no longer at hand.
pub fn render(
    format: Format,
    event: &crate::event::Event,
    time_base: crate::event::TimeBase,
    users: &crate::event::Interner,
    computers: &crate::event::Interner,
) -> String {
    let (user, computer) = (users.name(event.user), computers.name(event.computer));
    match format {
        Format::Json => {
            let mut record = serde_json::json!({
                "event_time": crate::event::format_time(event.event_time),
                "user_id": user,
                "computer_id": computer,
                "ingestion_time": crate::event::format_time(event.ingestion_time),
            });
            if let Some(id) = event.event_id {
                record["event_id"] = id.to_string().into();
            }
            record.to_string()
        }
        Format::Csv | Format::Auto => {
            format!("{},{user},{computer}", time_base.to_lanl(event.event_time))
        }
    }
}

/// Checks a record that did not come from text (a [`Line::Record`]) as the
/// parsers check theirs: its names and the range of its times.
pub fn check(record: &Record<'_>) -> Result<(), Reject> {
    check_name("user_id", record.user)?;
    check_name("computer_id", record.computer)?;
    for (field, time) in [
        ("event_time", Some(record.event_time)),
        ("ingestion_time", record.ingestion_time),
    ] {
        if let Some(time) = time
            && !(0..=MAX_UNIX_TIME).contains(&time)
        {
            return Err(Reject::BadTime(format!("{field} {time} is out of range")));
        }
    }
    Ok(())
}

/// A record written out as a JSON event line: a dead letter's raw text when
/// the record came without one ([`Line::Record`]).
pub fn render_record(record: &Record<'_>) -> String {
    let mut line = serde_json::json!({
        "event_time": crate::event::format_time(record.event_time),
        "user_id": String::from_utf8_lossy(record.user),
        "computer_id": String::from_utf8_lossy(record.computer),
    });
    if let Some(id) = record.event_id {
        line["event_id"] = id.to_string().into();
    }
    if let Some(time) = record.ingestion_time {
        line["ingestion_time"] = crate::event::format_time(time).into();
    }
    line.to_string()
}

/// Checks a user or computer name.
fn check_name(field: &'static str, value: &[u8]) -> Result<(), Reject> {
    if value.is_empty() {
        return Err(Reject::EmptyField(field));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(Reject::FieldTooLong(field));
    }
    // Fast path: printable ASCII, which every real name is, is valid as is.
    if value.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    if value.iter().any(|b| b.is_ascii_control()) {
        return Err(Reject::ControlCharacter(field));
    }
    if std::str::from_utf8(value).is_err() {
        return Err(Reject::NotUtf8);
    }
    Ok(())
}
