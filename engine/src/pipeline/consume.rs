//! Reading a source to its end into the pipeline: checkpoints on the
//! commit interval, the stop flag, and the caller's tick.

use crate::input::{Line, Source};
use std::io;

use super::parse_stage::Staging;
use super::{Pipeline, Summary};

/// Lines between two looks at the clock (commit interval), the stop flag and
/// the caller's tick: often enough for a 50 ms commit interval and a prompt
/// stop at a million lines a second, rarely enough to cost nothing.
const TICK_LINES: u32 = 1 << 12;

/// How often a fleet worker waiting for the others looks again.
const FLEET_WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(50);

/// Reads `source` to the end (or until `stop` is set) into `pipeline`.
/// Checkpoints when the commit interval has passed, and then tells the
/// source (which saves its positions). Calls `tick(pipeline, source)` every
/// [`TICK_LINES`] events, after each read of the source's input, and
/// whenever the source is idle, for progress and metrics.
pub fn consume<S: Source + ?Sized>(
    pipeline: &mut Pipeline<'_>,
    source: &mut S,
    stop: &std::sync::atomic::AtomicBool,
    mut tick: impl FnMut(&mut Pipeline<'_>, &S),
) -> io::Result<()> {
    let mut until_tick = 0u32;
    let mut reads = source.reads();
    let mut stage = Staging::default();
    loop {
        let line_no = source.line_no() + 1;
        let Some(line) = source.next_line()? else {
            break;
        };
        let idle = matches!(line, Line::Idle);
        match line {
            Line::Complete(bytes) => match stage.for_line(pipeline, bytes)? {
                Some(stage) => stage.push(pipeline, line_no, bytes)?,
                None => pipeline.push_line(line_no, line)?,
            },
            line => {
                stage.drain(pipeline)?;
                pipeline.push_line(line_no, line)?;
            }
        }
        until_tick += 1;
        let read = source.reads() != reads;
        let tick_now = idle || read || until_tick == TICK_LINES;
        // The pipeline holds every line read before it checkpoints (the
        // source's position must say where it stands), waits for a fleet, or
        // looks for a batch past its delay.
        if tick_now && (idle || read || pipeline.checkpoint_due() || pipeline.fleet.is_some()) {
            stage.drain(pipeline)?;
        }
        // A trickling stream reads a few lines at a time: after each read,
        // a batch past its delay is scored.
        if read {
            reads = source.reads();
            pipeline.score_batch_past_delay()?;
        }
        if tick_now {
            until_tick = 0;
            // Lines still in the parse stage (the interval passed since it
            // was looked at) wait for the next tick: the position must not
            // run ahead of what the pipeline holds.
            if stage.is_drained() && pipeline.maybe_checkpoint(source.position())? {
                source.checkpointed(pipeline.frontier())?;
            }
            tick(pipeline, source);
            // A fleet worker too far ahead of the others waits for them,
            // committing and trading meanwhile (the source holds back).
            while pipeline.keep_pace(idle) && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(FLEET_WAIT_STEP);
                if stage.is_drained() && pipeline.maybe_checkpoint(source.position())? {
                    source.checkpointed(pipeline.frontier())?;
                }
                tick(pipeline, source);
            }
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                tracing::info!("asked to stop: stopping");
                break;
            }
        }
    }
    stage.drain(pipeline)?;
    tick(pipeline, source);
    Ok(())
}

impl Pipeline<'_> {
    /// Scores in-memory input to the end and returns the summary (tests,
    /// benchmarks, embedding).
    pub fn score_bytes(mut self, data: &[u8]) -> io::Result<Summary> {
        let mut lines = crate::input::LineReader::new(data, crate::input::MAX_LINE_DEFAULT);
        consume(
            &mut self,
            &mut lines,
            &std::sync::atomic::AtomicBool::new(false),
            |_, _| {},
        )?;
        self.finish()
    }
}
