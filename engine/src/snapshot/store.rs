//! Where snapshots are kept: files written whole or not at all
//! ([`write_atomically`]), in a local directory ([`LocalFiles`]) or an
//! object store ([`SnapshotFiles`]), and the [`SnapshotStore`] that names
//! them by checkpoint, writes them on a thread of its own and keeps the
//! last few.

use std::io::{self, Read, Write};

use super::{EncodedSnapshot, SnapshotError, read_meta};

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
