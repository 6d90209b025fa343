//! A line reader over any `Read` that never holds more than a bounded line in
//! memory: a line longer than the limit is reported (with its length and a
//! prefix) and skipped, instead of growing a buffer without end. In follow mode
//! it waits at end of input for more data (a growing file) until told to stop.
//! Over a stream ([`super::StreamReader`]) a read that waited in vain is
//! reported as [`Line::Idle`]. A UTF-8 byte order mark at the start of the
//! input is not part of its first line, nor a Windows line end's `\r` of
//! any.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use memchr::memchr;

/// Default longest line: far beyond any real event, small enough to bound memory.
pub const MAX_LINE_DEFAULT: usize = 64 * 1024;

/// How much of an over-long line is kept for the dead-letter record.
const TOO_LONG_PREFIX: usize = 256;

/// How often follow mode polls a file that has stopped growing.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// One line of input (without its `\n`).
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    Complete(&'a [u8]),
    /// Longer than the limit `max`: its full length and its first bytes.
    TooLong {
        len: u64,
        max: usize,
        prefix: &'a [u8],
    },
    /// Follow mode or a stream: no new data arrived for a poll period. The
    /// caller can do periodic work (commits) and ask again.
    Idle,
    /// An event a source already holds decoded (a table read back): checked
    /// as every record is, but not parsed from text.
    Record(super::Record<'a>),
}

pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_line: usize,
    line_no: u64,
    bytes_consumed: u64,
    eof: bool,
    follow: Option<Arc<AtomicBool>>,
    /// Set when a follow-mode read found no data; reported once as `Line::Idle`.
    idle: bool,
    too_long_prefix: Vec<u8>,
    /// The next line is the input's first: a byte order mark may lead it.
    at_start: bool,
    /// Reads that returned data.
    reads: u64,
}

/// The UTF-8 byte order mark some Windows tools write first.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A line without the `\r` of a Windows line end.
#[inline]
fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R, max_line: usize) -> Self {
        let capacity = (1 << 20).max(max_line * 2);
        LineReader {
            inner,
            buf: vec![0; capacity],
            start: 0,
            end: 0,
            max_line,
            line_no: 0,
            bytes_consumed: 0,
            eof: false,
            follow: None,
            idle: false,
            too_long_prefix: Vec::new(),
            at_start: true,
            reads: 0,
        }
    }

    /// Counts lines and bytes from `line_no` and `bytes_consumed` on: for a
    /// reader over the rest of an input that was read that far before (a
    /// resumed run), so that positions and line numbers stay the input's.
    pub fn resuming_at(mut self, line_no: u64, bytes_consumed: u64) -> Self {
        self.line_no = line_no;
        self.bytes_consumed = bytes_consumed;
        self.at_start = bytes_consumed == 0;
        self
    }

    /// At end of input, wait for more data until `stop` is set.
    pub fn follow(mut self, stop: Arc<AtomicBool>) -> Self {
        self.follow = Some(stop);
        self
    }

    /// 1-based number of the line last returned.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// Bytes of input consumed so far (for progress).
    pub fn bytes_consumed(&self) -> u64 {
        self.bytes_consumed
    }

    /// Reads from the input that returned data, so far.
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// The next line, or `None` at end of input (or when a follower is stopped).
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        loop {
            if self.at_start {
                let read = &self.buf[self.start..self.end];
                if read.len() < BOM.len() && BOM.starts_with(read) && !self.eof {
                    // Too little read yet to tell.
                    self.fill()?;
                    if std::mem::take(&mut self.idle) {
                        return Ok(Some(Line::Idle));
                    }
                    continue;
                }
                self.at_start = false;
                if read.starts_with(BOM) {
                    self.start += BOM.len();
                    self.bytes_consumed += BOM.len() as u64;
                }
            }
            if let Some(i) = memchr(b'\n', &self.buf[self.start..self.end]) {
                let (s, e) = (self.start, self.start + i);
                self.start = e + 1;
                self.bytes_consumed += i as u64 + 1;
                self.line_no += 1;
                if i > self.max_line {
                    return Ok(Some(Line::TooLong {
                        len: i as u64,
                        max: self.max_line,
                        prefix: &self.buf[s..s + TOO_LONG_PREFIX.min(i)],
                    }));
                }
                return Ok(Some(Line::Complete(without_cr(&self.buf[s..e]))));
            }
            let pending = self.end - self.start;
            if pending > self.max_line {
                return self.skip_long_line().map(Some);
            }
            if std::mem::take(&mut self.idle) {
                return Ok(Some(Line::Idle));
            }
            if self.eof {
                if pending == 0 {
                    return Ok(None);
                }
                // Last line without a newline.
                let (s, e) = (self.start, self.end);
                self.start = e;
                self.bytes_consumed += pending as u64;
                self.line_no += 1;
                return Ok(Some(Line::Complete(without_cr(&self.buf[s..e]))));
            }
            self.fill()?;
        }
    }

    /// Reads more input after the pending bytes. Sets `eof` at end of input,
    /// unless following, where it waits for more data or the stop flag.
    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                // A stream with nothing to read for a while.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.idle = true;
                    return Ok(());
                }
                Ok(0) => match &self.follow {
                    Some(stop) if !stop.load(Ordering::Relaxed) => {
                        std::thread::sleep(FOLLOW_POLL);
                        self.idle = true;
                        return Ok(());
                    }
                    _ => {
                        self.eof = true;
                        return Ok(());
                    }
                },
                Ok(n) => {
                    self.end += n;
                    self.reads += 1;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Consumes the rest of an over-long line, keeping only its first bytes.
    fn skip_long_line(&mut self) -> io::Result<Line<'_>> {
        self.too_long_prefix.clear();
        self.too_long_prefix
            .extend_from_slice(&self.buf[self.start..self.start + TOO_LONG_PREFIX]);
        let mut len: u64 = 0;
        loop {
            if let Some(i) = memchr(b'\n', &self.buf[self.start..self.end]) {
                len += i as u64;
                self.start += i + 1;
                self.bytes_consumed += i as u64 + 1;
                break;
            }
            let pending = (self.end - self.start) as u64;
            len += pending;
            self.bytes_consumed += pending;
            self.start = self.end;
            if self.eof {
                break;
            }
            self.fill()?;
            if self.eof && self.start == self.end {
                break;
            }
        }
        self.line_no += 1;
        Ok(Line::TooLong {
            len,
            max: self.max_line,
            prefix: &self.too_long_prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], max: usize) -> Vec<String> {
        let mut r = LineReader::new(input, max);
        r.buf.truncate(8); // force refills mid-line
        let mut out = Vec::new();
        while let Some(line) = r.next_line().unwrap() {
            out.push(match line {
                Line::Complete(l) => String::from_utf8_lossy(l).into_owned(),
                Line::TooLong { len, prefix, .. } => {
                    format!("<{len}:{}>", String::from_utf8_lossy(&prefix[..4]))
                }
                Line::Idle | Line::Record(_) => unreachable!("not following, text only"),
            });
        }
        out
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_line() {
        assert_eq!(
            collect(b"\xEF\xBB\xBF1,U1,C1\n\xEF\xBB\xBF2", 64),
            ["1,U1,C1", "\u{feff}2"]
        );
        assert_eq!(collect(b"\xEF\xBB", 64), ["\u{fffd}"]);
        assert_eq!(collect(b"\xEF\xBB\xBF", 64), Vec::<String>::new());
        let mut r = LineReader::new(&b"\xEF\xBB\xBF{}\n"[..], 64);
        assert_eq!(r.next_line().unwrap(), Some(Line::Complete(b"{}")));
        assert_eq!(r.bytes_consumed(), 6);
    }

    #[test]
    fn windows_line_ends_are_line_ends() {
        assert_eq!(collect(b"a,b\r\nc\r\n\r\nd\r", 64), ["a,b", "c", "", "d"]);
    }

    #[test]
    fn splits_lines_across_refills() {
        assert_eq!(collect(b"a,b\nccc\n\nlast", 6), ["a,b", "ccc", "", "last"]);
    }

    #[test]
    fn skips_over_long_lines_and_keeps_going() {
        let mut input = b"ok1\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 5000));
        input.extend_from_slice(b"\nok2\n");
        let mut r = LineReader::new(&input[..], 100);
        let mut seen = Vec::new();
        while let Some(line) = r.next_line().unwrap() {
            seen.push(match line {
                Line::Complete(l) => String::from_utf8_lossy(l).into_owned(),
                Line::TooLong { len, prefix, .. } => format!("long {len} {}", prefix.len()),
                Line::Idle | Line::Record(_) => unreachable!("not following, text only"),
            });
        }
        assert_eq!(seen, ["ok1", "long 5000 256", "ok2"]);
        assert_eq!(r.line_no(), 3);
        assert_eq!(r.bytes_consumed(), input.len() as u64);
    }
}
