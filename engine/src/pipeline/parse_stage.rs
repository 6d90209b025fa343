//! The parse stage: lines parsed on threads of their own, ahead of the
//! pipeline thread, and handed back in order.
//!
//! `consume` copies each line the source returns into a [`Chunk`] (up to
//! [`CHUNK_LINES`] lines or [`CHUNK_BYTES`] bytes); a full chunk goes to the
//! next parser in turn over a bounded channel, and the pipeline thread takes
//! parsed chunks back in the order they were sent, so records reach the
//! event clock exactly as they would if it parsed them itself: the results do
//! not depend on the number of parsers. At most [`IN_FLIGHT_PER_PARSER`]
//! chunks wait per parser; a pipeline that falls behind stops the reading
//! (backpressure), and a parser that falls behind makes the pipeline wait.
//! Every line in flight is taken back before a checkpoint (whose position
//! must be what the pipeline holds), a stop, and after each read of the
//! source (so that a trickling stream is scored as it arrives).
//!
//! What the stage takes off the pipeline thread is parsing and validation:
//! little for LANL's three fields (35 ns a line), most of the work for an OCSF
//! or ECS document (1-2 us). A chunk parses into spans of its own bytes, so
//! nothing is allocated per line once the chunks are warm (they are reused).

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use crate::event::{EventId, TimeBase};
use crate::input::{self, Format, Record, Reject};
use crate::logon::{AuthPackage, FailureReason, LogonType, Outcome, RecordDetail};

use super::Pipeline;
use super::ingest::is_blank;

/// Most lines in a chunk.
const CHUNK_LINES: usize = 1024;
/// A chunk is sent once its lines reach this many bytes (one long line may
/// take it past).
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks sent to a parser and not yet taken back, at most.
const IN_FLIGHT_PER_PARSER: usize = 2;

/// How many parser threads to start when none are set: one beside the
/// pipeline thread for JSON input (OCSF, ECS, our own), where parsing is
/// most of an event's cost, on a machine with a second core; none for LANL
/// lines, whose parsing costs less than handing them over would. `first` is
/// the input's first line, for a format detected per line.
pub(super) fn auto_parse_threads(format: Option<Format>, first: &[u8]) -> usize {
    let json = match format {
        Some(format) => matches!(format, Format::Json | Format::Ocsf | Format::Ecs),
        None => first.trim_ascii_start().first() == Some(&b'{'),
    };
    match std::thread::available_parallelism() {
        Ok(cores) if json && cores.get() >= 2 => 1,
        _ => 0,
    }
}

/// Bytes of a chunk: `start..end` of its lines' text followed by the names
/// a parser had to unescape.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    end: usize,
}

/// A parsed record whose text lives in its chunk.
#[derive(Debug)]
struct Held {
    event_time: i64,
    user: Span,
    computer: Span,
    event_id: Option<EventId>,
    ingestion_time: Option<i64>,
    source_computer: Option<Span>,
    source_user: Option<Span>,
    logon_type: LogonType,
    auth_package: AuthPackage,
    outcome: Outcome,
    failure_reason: FailureReason,
    source_event_id: Option<Span>,
}

#[derive(Debug)]
enum Parsed {
    /// Not parsed yet.
    Waiting,
    /// Whitespace only: skipped, as the pipeline skips it.
    Blank,
    Done(Format, Result<Held, Reject>),
}

#[derive(Debug)]
struct ChunkLine {
    line_no: u64,
    text: Span,
    parsed: Parsed,
}

/// Lines on their way through the stage, and then their records.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    text: Vec<u8>,
    /// Names a parser unescaped (JSON), after which spans past `text` point.
    unescaped: Vec<u8>,
    lines: Vec<ChunkLine>,
}

impl Chunk {
    fn add(&mut self, line_no: u64, line: &[u8]) {
        let start = self.text.len();
        self.text.extend_from_slice(line);
        let text = Span {
            start,
            end: self.text.len(),
        };
        self.lines.push(ChunkLine {
            line_no,
            text,
            parsed: Parsed::Waiting,
        });
    }

    fn is_full(&self) -> bool {
        self.lines.len() >= CHUNK_LINES || self.text.len() >= CHUNK_BYTES
    }

    fn clear(&mut self) {
        self.text.clear();
        self.unescaped.clear();
        self.lines.clear();
    }

    fn bytes(&self, span: Span) -> &[u8] {
        match span.start.checked_sub(self.text.len()) {
            None => &self.text[span.start..span.end],
            Some(start) => &self.unescaped[start..span.end - self.text.len()],
        }
    }

    /// Parses every line as [`input::parse_line`] does on the pipeline
    /// thread; `scratch` is the parser's own unescaping buffer.
    fn parse(&mut self, format: Option<Format>, base: TimeBase, scratch: &mut Vec<u8>) {
        let Chunk {
            text,
            unescaped,
            lines,
        } = self;
        for line in lines.iter_mut() {
            let bytes = &text[line.text.start..line.text.end];
            line.parsed = if is_blank(bytes) {
                Parsed::Blank
            } else {
                let (format, parsed) = input::parse_line(format, bytes, base, scratch);
                let held = parsed.map(|record| hold(&record, text, unescaped));
                Parsed::Done(format, held)
            };
        }
    }

    /// The record `held` stands for, borrowed from the chunk.
    fn record(&self, held: &Held) -> Record<'_> {
        let bytes = |span: Span| self.bytes(span);
        Record {
            event_time: held.event_time,
            user: bytes(held.user),
            computer: bytes(held.computer),
            event_id: held.event_id,
            ingestion_time: held.ingestion_time,
            detail: RecordDetail {
                source_computer: held.source_computer.map(bytes),
                source_user: held.source_user.map(bytes),
                logon_type: held.logon_type,
                auth_package: held.auth_package,
                outcome: held.outcome,
                failure_reason: held.failure_reason,
            },
            source_event_id: held.source_event_id.map(bytes),
        }
    }
}

/// `record`'s text as spans of the chunk: a slice of a line is where it
/// is, a name the parser unescaped into its scratch is copied after the
/// lines.
fn hold(record: &Record<'_>, text: &[u8], unescaped: &mut Vec<u8>) -> Held {
    let text_at = text.as_ptr() as usize;
    let mut span = |bytes: &[u8]| {
        let at = bytes.as_ptr() as usize;
        if at >= text_at && at + bytes.len() <= text_at + text.len() {
            let start = at - text_at;
            Span {
                start,
                end: start + bytes.len(),
            }
        } else {
            let start = text.len() + unescaped.len();
            unescaped.extend_from_slice(bytes);
            Span {
                start,
                end: start + bytes.len(),
            }
        }
    };
    let detail = &record.detail;
    Held {
        event_time: record.event_time,
        user: span(record.user),
        computer: span(record.computer),
        event_id: record.event_id,
        ingestion_time: record.ingestion_time,
        source_computer: detail.source_computer.map(&mut span),
        source_user: detail.source_user.map(&mut span),
        logon_type: detail.logon_type,
        auth_package: detail.auth_package,
        outcome: detail.outcome,
        failure_reason: detail.failure_reason,
        source_event_id: record.source_event_id.map(&mut span),
    }
}

/// The parse stage of one `consume`: started (or not) at the first line,
/// which says what the input is.
#[derive(Default)]
pub(super) struct Staging(Option<Option<ParseStage>>);

impl Staging {
    /// The stage `line` goes through, if any.
    pub(super) fn for_line(
        &mut self,
        pipeline: &Pipeline<'_>,
        line: &[u8],
    ) -> io::Result<Option<&mut ParseStage>> {
        if self.0.is_none() {
            self.0 = Some(ParseStage::start(pipeline, line)?);
        }
        Ok(self.running())
    }

    /// The stage, if one was started.
    fn running(&mut self) -> Option<&mut ParseStage> {
        self.0.as_mut().and_then(Option::as_mut)
    }

    /// Whether every line pushed is in the pipeline.
    pub(super) fn is_drained(&self) -> bool {
        self.0
            .as_ref()
            .and_then(Option::as_ref)
            .is_none_or(|stage| stage.in_flight == 0 && stage.filling.lines.is_empty())
    }

    /// See [`ParseStage::drain`].
    pub(super) fn drain(&mut self, pipeline: &mut Pipeline<'_>) -> io::Result<()> {
        self.running().map_or(Ok(()), |stage| stage.drain(pipeline))
    }
}

struct Parser {
    chunks: SyncSender<Chunk>,
    parsed: Receiver<Chunk>,
    thread: Option<JoinHandle<()>>,
}

/// The parser threads of one `consume`, and the chunks on their way.
pub(super) struct ParseStage {
    format: Option<Format>,
    base: TimeBase,
    parsers: Vec<Parser>,
    /// The parser the next chunk goes to, and the one the next comes from.
    next_out: usize,
    next_in: usize,
    in_flight: usize,
    filling: Chunk,
    spare: Vec<Chunk>,
    /// For a chunk parsed on the pipeline thread (a trickle).
    scratch: Vec<u8>,
}

impl ParseStage {
    /// Starts the parsers `pipeline`'s options ask for (`None`: none), given
    /// the input's first line.
    fn start(pipeline: &Pipeline<'_>, first: &[u8]) -> io::Result<Option<Self>> {
        let (format, base) = (pipeline.format, pipeline.options.time_base);
        let threads = pipeline
            .options
            .parse_threads
            .unwrap_or_else(|| auto_parse_threads(format, first));
        if threads == 0 {
            return Ok(None);
        }
        let mut parsers = Vec::with_capacity(threads);
        for index in 0..threads {
            let (chunks, to_parse) = sync_channel::<Chunk>(IN_FLIGHT_PER_PARSER);
            let (done, parsed) = sync_channel::<Chunk>(IN_FLIGHT_PER_PARSER);
            let thread = std::thread::Builder::new()
                .name(format!("parse-{index}"))
                .spawn(move || {
                    let mut scratch = Vec::new();
                    while let Ok(mut chunk) = to_parse.recv() {
                        chunk.parse(format, base, &mut scratch);
                        if done.send(chunk).is_err() {
                            break;
                        }
                    }
                })?;
            parsers.push(Parser {
                chunks,
                parsed,
                thread: Some(thread),
            });
        }
        Ok(Some(ParseStage {
            format,
            base,
            parsers,
            next_out: 0,
            next_in: 0,
            in_flight: 0,
            filling: Chunk::default(),
            spare: Vec::new(),
            scratch: Vec::new(),
        }))
    }

    /// Takes a line the source returned; the pipeline gets it (parsed) at
    /// the latest when the stage is drained.
    pub(super) fn push(
        &mut self,
        pipeline: &mut Pipeline<'_>,
        line_no: u64,
        line: &[u8],
    ) -> io::Result<()> {
        self.filling.add(line_no, line);
        if self.filling.is_full() {
            self.send(pipeline)?;
        }
        Ok(())
    }

    /// Everything pushed so far into the pipeline: before a checkpoint (the
    /// source's position must match what the pipeline holds), a line the
    /// stage does not carry, a stop, and after each read of the source (so
    /// a trickling stream is scored as it arrives).
    pub(super) fn drain(&mut self, pipeline: &mut Pipeline<'_>) -> io::Result<()> {
        if self.in_flight == 0 {
            // Nothing in flight to keep the order behind: a partial chunk
            // is parsed here rather than woken a thread for.
            if !self.filling.lines.is_empty() {
                self.filling
                    .parse(self.format, self.base, &mut self.scratch);
                pipeline.push_chunk(&self.filling)?;
                self.filling.clear();
            }
            return Ok(());
        }
        if !self.filling.lines.is_empty() {
            self.send(pipeline)?;
        }
        while self.in_flight > 0 {
            self.take_one(pipeline)?;
        }
        Ok(())
    }

    fn send(&mut self, pipeline: &mut Pipeline<'_>) -> io::Result<()> {
        if self.in_flight == self.parsers.len() * IN_FLIGHT_PER_PARSER {
            self.take_one(pipeline)?;
        }
        let chunk = std::mem::replace(&mut self.filling, self.spare.pop().unwrap_or_default());
        let parser = &self.parsers[self.next_out];
        parser.chunks.send(chunk).map_err(|_| stopped())?;
        self.next_out = (self.next_out + 1) % self.parsers.len();
        self.in_flight += 1;
        Ok(())
    }

    /// The oldest chunk in flight, parsed, into the pipeline.
    fn take_one(&mut self, pipeline: &mut Pipeline<'_>) -> io::Result<()> {
        let mut chunk = self.parsers[self.next_in]
            .parsed
            .recv()
            .map_err(|_| stopped())?;
        self.next_in = (self.next_in + 1) % self.parsers.len();
        self.in_flight -= 1;
        let pushed = pipeline.push_chunk(&chunk);
        chunk.clear();
        self.spare.push(chunk);
        pushed
    }
}

impl Drop for ParseStage {
    fn drop(&mut self) {
        for parser in &mut self.parsers {
            // Closing its channel ends the parser's loop.
            let (closed, _) = sync_channel(0);
            drop(std::mem::replace(&mut parser.chunks, closed));
            // Take back what it still holds, so that it is not blocked
            // sending it.
            while parser.parsed.recv().is_ok() {}
            if let Some(thread) = parser.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("a parser thread stopped")
}

impl Pipeline<'_> {
    /// Takes in a chunk's lines, in order, as [`Pipeline::push_line`] takes
    /// each.
    pub(super) fn push_chunk(&mut self, chunk: &Chunk) -> io::Result<()> {
        for line in &chunk.lines {
            let Parsed::Done(format, parsed) = &line.parsed else {
                // A blank line; a line not parsed is a bug in the stage.
                debug_assert!(matches!(line.parsed, Parsed::Blank));
                continue;
            };
            let bytes = chunk.bytes(line.text);
            if self.is_header(bytes) {
                continue;
            }
            self.counters.events_read += 1;
            let parsed = match parsed {
                Ok(held) => Ok(chunk.record(held)),
                Err(reject) => Err(reject.clone()),
            };
            self.take_parsed(line.line_no, bytes, *format, parsed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(lines: &[&[u8]], format: Option<Format>) -> Chunk {
        let mut chunk = Chunk::default();
        for (n, line) in lines.iter().enumerate() {
            chunk.add(n as u64 + 1, line);
        }
        chunk.parse(format, TimeBase::DEFAULT, &mut Vec::new());
        chunk
    }

    #[test]
    fn a_chunk_holds_what_the_parser_returned() {
        let lines: [&[u8]; 4] = [
            b"1,U1@DOM1,C1",
            b"   ",
            br#"{"event_time":"2024-01-01T00:00:01Z","user_id":"U\u0032","computer_id":"C\"2\""}"#,
            b"1,U1",
        ];
        let chunk = parsed(&lines, None);
        let mut scratch = Vec::new();
        for (line, text) in chunk.lines.iter().zip(lines) {
            match &line.parsed {
                Parsed::Blank => assert!(is_blank(text)),
                Parsed::Done(format, held) => {
                    let (expected_format, expected) =
                        input::parse_line(None, text, TimeBase::DEFAULT, &mut scratch);
                    assert_eq!(*format, expected_format);
                    match (held, expected) {
                        (Ok(held), Ok(expected)) => {
                            let record = chunk.record(held);
                            assert_eq!(record.event_time, expected.event_time);
                            assert_eq!(record.user, expected.user);
                            assert_eq!(record.computer, expected.computer);
                            assert_eq!(record.event_id, expected.event_id);
                        }
                        (Err(reject), Err(expected)) => assert_eq!(*reject, expected),
                        (held, expected) => panic!("{held:?} against {expected:?}"),
                    }
                }
                Parsed::Waiting => panic!("line {} not parsed", line.line_no),
            }
        }
        // The JSON names were unescaped, so they live after the lines.
        let Parsed::Done(_, Ok(held)) = &chunk.lines[2].parsed else {
            panic!("the JSON line did not parse");
        };
        assert_eq!(chunk.record(held).user, b"U2");
        assert_eq!(chunk.record(held).computer, b"C\"2\"");
        assert!(held.user.start >= chunk.text.len());
    }

    #[test]
    fn a_chunk_is_sent_when_full() {
        let mut chunk = Chunk::default();
        for n in 0..CHUNK_LINES as u64 - 1 {
            chunk.add(n, b"1,U1,C1");
        }
        assert!(!chunk.is_full());
        chunk.add(CHUNK_LINES as u64, b"1,U1,C1");
        assert!(chunk.is_full());
        let mut long = Chunk::default();
        long.add(1, &vec![b'x'; CHUNK_BYTES]);
        assert!(long.is_full());
    }
}
