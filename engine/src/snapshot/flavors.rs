//! The postcard flavors a snapshot is encoded through: into a buffer that
//! survives each part ([`Buffer`]), or hashed and passed on to a writer a
//! chunk at a time ([`Streamed`]), and a writer that counts the file's
//! bytes ([`Counted`]).

use std::cell::Cell;
use std::io::{self, Write};

use postcard::ser_flavors::Flavor;

/// A postcard flavor that appends to a buffer and stays one after each
/// part (postcard's own gives up its buffer at the end of a value).
pub(super) struct Buffer(pub(super) Vec<u8>);

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
pub(super) struct Streamed<'w> {
    pub(super) crc: crc32fast::Hasher,
    chunk: Vec<u8>,
    out: &'w mut dyn Write,
    error: &'w Cell<Option<io::Error>>,
}

impl<'w> Streamed<'w> {
    const CHUNK: usize = 64 << 10;

    pub(super) fn new(out: &'w mut dyn Write, error: &'w Cell<Option<io::Error>>) -> Self {
        Streamed {
            crc: crc32fast::Hasher::new(),
            chunk: Vec::with_capacity(Self::CHUNK),
            out,
            error,
        }
    }

    pub(super) fn drain(&mut self) -> postcard::Result<()> {
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
pub(super) struct Counted<'a> {
    pub(super) out: &'a mut dyn Write,
    pub(super) bytes: u64,
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
