//! Reading and validating input records: the chunked line reader, the reader
//! thread for streams, the record forms, one file each (LANL CSV
//! `time,user,computer`, the full LANL record, AuthPulse's JSON, OCSF
//! Authentication, ECS Windows logons; [`Format`] tells them apart line by
//! line), and the reasons a record is refused. Nothing here panics on
//! input.

mod csv;
mod ecs;
mod json;
mod lanl_auth;
mod lines;
mod ocsf;
mod stream;

pub use csv::{is_header, parse_csv};
pub use ecs::parse_ecs;
pub use json::parse_json;
pub use lanl_auth::parse_lanl_auth;
pub use lines::{Line, LineReader, MAX_LINE_DEFAULT};
pub use ocsf::parse_ocsf;
pub use stream::StreamReader;

use std::{fmt, io};

use crate::event::EventId;
use crate::logon::RecordDetail;

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

/// Record form of the input (`docs/formats.md` maps each field by field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Decide line by line: JSON with `class_uid` is OCSF, with `winlog` or
    /// `@timestamp` ECS, other JSON ours; a CSV line of nine fields the
    /// full LANL record, else the three-field one.
    Auto,
    /// LANL `time,user,computer`, time in seconds from the data set's start.
    Csv,
    /// The full LANL 2015 record: `time,src_user@domain,dst_user@domain,
    /// src_computer,dst_computer,auth_type,logon_type,orientation,success|fail`.
    LanlAuth,
    /// One JSON event per line (`event_id`, `event_time`, `user_id`,
    /// `computer_id`, `ingestion_time`, and optionally `src_computer_id`,
    /// `src_user_id`, `logon_type`, `auth_package`, `outcome`, `failure_reason`).
    Json,
    /// OCSF 1.x Authentication events (class 3002), one per line.
    Ocsf,
    /// Windows logon events (4624, 4625, 4648, 4768, 4769, 4776) in the
    /// Elastic Common Schema, as Winlogbeat and Elastic Agent ship them.
    Ecs,
}

impl Format {
    /// The concrete format of a line: for JSON, by the fields it names;
    /// otherwise `Csv` (a line of nine fields is then the full LANL record,
    /// which parsing tells).
    #[inline]
    pub fn detect(line: &[u8]) -> Format {
        match line.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => {
                if memchr::memmem::find(line, b"\"class_uid\"").is_some() {
                    Format::Ocsf
                } else if memchr::memmem::find(line, b"\"winlog\"").is_some()
                    || memchr::memmem::find(line, b"\"@timestamp\"").is_some()
                {
                    Format::Ecs
                } else {
                    Format::Json
                }
            }
            // The full LANL record is told by its field count when parsed.
            _ => Format::Csv,
        }
    }

    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Csv => "csv",
            Format::LanlAuth => "lanl-auth",
            Format::Json => "json",
            Format::Ocsf => "ocsf",
            Format::Ecs => "ecs",
        }
    }
}

/// Parses a line in `format` (`None`: the line's own, detected); returns
/// the format it was read in with the outcome. Names that JSON escapes
/// had to be undone for are copied into `scratch`.
#[inline(always)]
pub fn parse_line<'a>(
    format: Option<Format>,
    line: &'a [u8],
    base: crate::event::TimeBase,
    scratch: &'a mut Vec<u8>,
) -> (Format, Result<Record<'a>, Reject>) {
    let detected = format.unwrap_or_else(|| Format::detect(line));
    match parse(detected, line, base, scratch) {
        // Detected as CSV by its first byte: nine fields are the full
        // LANL record.
        Err(Reject::FieldCount {
            found: lanl_auth::FIELDS,
        }) if format.is_none() => (Format::LanlAuth, parse_lanl_auth(line, base)),
        parsed => (detected, parsed),
    }
}

/// Parses `line` in concrete format `format` (`Auto` reads CSV). Names
/// that JSON escapes had to be undone for are copied into `scratch`.
#[inline(always)]
pub fn parse<'a>(
    format: Format,
    line: &'a [u8],
    base: crate::event::TimeBase,
    scratch: &'a mut Vec<u8>,
) -> Result<Record<'a>, Reject> {
    match format {
        Format::Csv | Format::Auto => parse_csv(line, base),
        Format::LanlAuth => parse_lanl_auth(line, base),
        Format::Json => parse_json(line, scratch),
        Format::Ocsf => parse_ocsf(line, scratch),
        Format::Ecs => parse_ecs(line, scratch),
    }
}

/// Whether an account is the operating system's own rather than someone's:
/// `SYSTEM`, `LOCAL SERVICE`, `NETWORK SERVICE`, and the desktop window
/// manager's and font driver's per-session accounts (`DWM-1`, `UMFD-0`).
/// Their logons happen on every machine all day and say nothing about
/// anyone, so the formats refuse them as unmapped. `ANONYMOUS LOGON` and
/// machine accounts (`NAME$`) are accounts, and kept.
pub(crate) fn local_system_account(name: &str, domain: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    matches!(
        upper.as_str(),
        "SYSTEM" | "LOCAL SERVICE" | "NETWORK SERVICE"
    ) || domain.eq_ignore_ascii_case("Window Manager")
        || domain.eq_ignore_ascii_case("Font Driver Host")
        || upper.starts_with("DWM-")
        || upper.starts_with("UMFD-")
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
    /// What a richer record adds (nothing, for a LANL line).
    pub detail: RecordDetail<'a>,
    /// The source's own id of the record (OCSF `metadata.uid`, ECS
    /// `event.id`), if it has one: kept in `auth_events_raw` so that a row
    /// leads back to the record in the system that sent it.
    pub source_event_id: Option<&'a [u8]>,
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
    /// A field of a richer record with a value its format does not allow
    /// (`logon_type`, `outcome`, ...): the field and the value.
    BadField(&'static str, String),
    /// A well-formed record its format's mapping cannot use as a logon (an
    /// OCSF event of another class, a Windows event that is not a logon,
    /// no target account): why.
    Unmapped(String),
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
    pub const KINDS: [&'static str; 15] = [
        "not_utf8",
        "line_too_long",
        "field_count",
        "empty_field",
        "field_too_long",
        "control_character",
        "bad_time",
        "bad_json",
        "bad_event_id",
        "bad_field",
        "unmapped",
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
            Reject::BadField(..) => "bad_field",
            Reject::Unmapped(_) => "unmapped",
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
            Reject::BadField(field, value) => write!(f, "field `{field}` cannot be `{value}`"),
            Reject::Unmapped(why) => write!(f, "not a logon to score: {why}"),
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
        Format::Csv | Format::Auto if event.detail.is_empty() => {
            format!("{},{user},{computer}", time_base.to_lanl(event.event_time))
        }
        // A richer record is written in the JSON form, which keeps all of it.
        _ => {
            let mut record = serde_json::json!({
                "event_time": crate::event::format_time(event.event_time),
                "user_id": user,
                "computer_id": computer,
                "ingestion_time": crate::event::format_time(event.ingestion_time),
            });
            if let Some(id) = event.event_id {
                record["event_id"] = id.to_string().into();
            }
            let detail = &event.detail;
            let source_computer = detail.source_computer.map(|c| computers.name(c));
            let source_user = detail.source_user.map(|u| users.name(u));
            add_detail(
                &mut record,
                source_computer,
                source_user,
                detail.coded_fields(),
            );
            record.to_string()
        }
    }
}

/// Adds what a richer record says to its JSON form.
fn add_detail(
    record: &mut serde_json::Value,
    source_computer: Option<&str>,
    source_user: Option<&str>,
    codes: [(&'static str, Option<&'static str>); 4],
) {
    if let Some(name) = source_computer {
        record["src_computer_id"] = name.into();
    }
    if let Some(name) = source_user {
        record["src_user_id"] = name.into();
    }
    for (field, value) in codes {
        if let Some(value) = value {
            record[field] = value.into();
        }
    }
}

/// Checks a record that did not come from text (a [`Line::Record`]) as the
/// parsers check theirs: its names and the range of its times.
pub fn check(record: &Record<'_>) -> Result<(), Reject> {
    check_name("user_id", record.user)?;
    check_name("computer_id", record.computer)?;
    if let Some(name) = record.detail.source_computer {
        check_name("src_computer_id", name)?;
    }
    if let Some(name) = record.detail.source_user {
        check_name("src_user_id", name)?;
    }
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
    let detail = &record.detail;
    let (source_computer, source_user) = (
        detail.source_computer.map(String::from_utf8_lossy),
        detail.source_user.map(String::from_utf8_lossy),
    );
    let codes = detail.coded_fields();
    add_detail(
        &mut line,
        source_computer.as_deref(),
        source_user.as_deref(),
        codes,
    );
    line.to_string()
}

/// What [`check_name`] asks of a name known to be printable ASCII.
#[inline]
fn check_name_length(field: &'static str, value: &[u8]) -> Result<(), Reject> {
    if value.is_empty() {
        return Err(Reject::EmptyField(field));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(Reject::FieldTooLong(field));
    }
    Ok(())
}

/// Checks a user or computer name.
fn check_name(field: &'static str, value: &[u8]) -> Result<(), Reject> {
    check_name_length(field, value)?;
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
