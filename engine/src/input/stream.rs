//! Reading a stream (stdin, a pipe, a fifo, a character device) on a thread
//! of its own, so that the pipeline never blocks in `open` or `read`.
//!
//! Opening a fifo blocks until a writer opens it, and a read from a pipe
//! blocks until its writer writes: a pipeline blocked there would score
//! nothing of what it already read, report nothing, and not hear a signal.
//! The thread does the blocking; the pipeline asks with a timeout, and a
//! read that times out answers [`io::ErrorKind::WouldBlock`], which the
//! [`super::LineReader`] reports as [`super::Line::Idle`]. A stream is read
//! once, in order: nothing seeks it or reads it twice.

use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

/// Bytes the thread reads at a time.
const CHUNK: usize = 64 * 1024;

/// Chunks read ahead of the pipeline: bounded, so a fast writer waits for
/// a slow pipeline instead of filling memory.
const AHEAD: usize = 8;

pub struct StreamReader {
    chunks: Receiver<io::Result<Vec<u8>>>,
    /// Chunks handed back to the thread to read into again.
    spare: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    poll: Duration,
    ended: bool,
}

impl StreamReader {
    /// Starts a thread (`name`) that opens the stream with `open` and reads
    /// it to its end. A read waits at most `poll` for data.
    pub fn spawn(
        name: &str,
        open: impl FnOnce() -> io::Result<Box<dyn Read + Send>> + Send + 'static,
        poll: Duration,
    ) -> io::Result<StreamReader> {
        let (send, chunks) = mpsc::sync_channel::<io::Result<Vec<u8>>>(AHEAD);
        let (spare, returned) = mpsc::sync_channel::<Vec<u8>>(AHEAD + 2);
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut input = match open() {
                    Ok(input) => input,
                    Err(e) => {
                        let _ = send.send(Err(e));
                        return;
                    }
                };
                loop {
                    let mut chunk = returned.try_recv().unwrap_or_default();
                    chunk.resize(CHUNK, 0);
                    match input.read(&mut chunk) {
                        Ok(0) => return,
                        Ok(n) => {
                            chunk.truncate(n);
                            if send.send(Ok(chunk)).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = send.send(Err(e));
                            return;
                        }
                    }
                }
            })?;
        Ok(StreamReader {
            chunks,
            spare,
            current: Vec::new(),
            at: 0,
            poll,
            ended: false,
        })
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            match self.chunks.recv_timeout(self.poll) {
                Ok(Ok(chunk)) => {
                    let done = std::mem::replace(&mut self.current, chunk);
                    let _ = self.spare.try_send(done);
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.ended = true;
                    return Err(e);
                }
                Err(RecvTimeoutError::Timeout) => return Err(io::ErrorKind::WouldBlock.into()),
                Err(RecvTimeoutError::Disconnected) => {
                    self.ended = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Line, LineReader};

    /// A reader that hands out its parts one at a time, then blocks until
    /// dropped (a writer that stays open).
    struct Trickle {
        parts: std::vec::IntoIter<&'static [u8]>,
        hold: Receiver<()>,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.parts.next() {
                Some(part) => {
                    buf[..part.len()].copy_from_slice(part);
                    Ok(part.len())
                }
                None => {
                    let _ = self.hold.recv();
                    Ok(0)
                }
            }
        }
    }

    #[test]
    fn a_quiet_stream_reports_idle_and_keeps_every_line() {
        let (release, hold) = mpsc::channel();
        let parts: Vec<&'static [u8]> = vec![b"1,U1,C1\n2,U2", b",C2\n3,U3,C3\n"];
        let stream = StreamReader::spawn(
            "test-stream",
            move || {
                Ok(Box::new(Trickle {
                    parts: parts.into_iter(),
                    hold,
                }))
            },
            Duration::from_millis(20),
        )
        .unwrap();
        let mut lines = LineReader::new(stream, 1024);
        let mut seen = Vec::new();
        let mut idles = 0;
        while seen.len() < 3 || idles < 2 {
            match lines.next_line().unwrap().unwrap() {
                Line::Complete(line) => seen.push(String::from_utf8_lossy(line).into_owned()),
                Line::Idle => idles += 1,
                Line::TooLong { .. } | Line::Record(_) => unreachable!(),
            }
        }
        assert_eq!(seen, ["1,U1,C1", "2,U2,C2", "3,U3,C3"]);
        release.send(()).unwrap();
        loop {
            match lines.next_line().unwrap() {
                None => break,
                Some(Line::Idle) => {}
                Some(other) => panic!("nothing more was written: {other:?}"),
            }
        }
    }

    #[test]
    fn an_open_that_fails_is_reported_by_the_first_read() {
        let mut stream = StreamReader::spawn(
            "test-stream",
            || Err(io::Error::new(io::ErrorKind::NotFound, "no such fifo")),
            Duration::from_millis(20),
        )
        .unwrap();
        let mut buf = [0u8; 8];
        let error = loop {
            match stream.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => break e,
                Ok(n) => panic!("read {n} bytes"),
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert_eq!(stream.read(&mut buf).unwrap(), 0);
    }
}
