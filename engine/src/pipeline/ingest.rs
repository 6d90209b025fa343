//! Records in: a line parsed (or a decoded record checked), interned,
//! dated by the event clock, claimed by the orderer (late and duplicate
//! ones counted), or dead-lettered with its reason; the limits on state
//! counted as they are hit.

use crate::clock::{Arrival, Verdict};
use crate::event::{Event, EventId, NameId};
use crate::input::{self, Format, Line, Record, Reject};
use crate::limits::Cap;
use crate::logon::Detail;
use crate::order::Admission;
use crate::sinks::{DeadLetter, Disposition, Received, StoredEvents};
use std::collections::BTreeMap;
use std::io;

use super::{DEAD_LETTER_RAW_MAX, Pipeline, raw_text, unix_now};

/// A line of nothing but whitespace: skipped, not counted.
pub(super) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

impl<'o> Pipeline<'o> {
    /// Feeds one input line.
    pub fn push_line(&mut self, line_no: u64, line: Line<'_>) -> io::Result<()> {
        let bytes = match line {
            Line::TooLong { len, max, prefix } => {
                self.counters.events_read += 1;
                let reject = Reject::LineTooLong { len, max };
                return self.reject(line_no, prefix, reject);
            }
            Line::Complete(bytes) => bytes,
            Line::Record(record) => {
                self.counters.events_read += 1;
                self.latest_format = Format::Json;
                return match input::check(&record) {
                    Ok(()) => self.offer(line_no, None, record),
                    Err(reject) => {
                        let raw = input::render_record(&record);
                        self.reject(line_no, raw.as_bytes(), reject)
                    }
                };
            }
            // A live source is quiet: the clock moves on, and what it
            // releases is scored, so a slow stream is not held back by a
            // half-full batch.
            Line::Idle => {
                self.clock.quiet(unix_now(), &mut self.decided);
                self.admit_decided()?;
                return self.score_batch();
            }
        };
        if is_blank(bytes) || self.is_header(bytes) {
            return Ok(());
        }
        self.counters.events_read += 1;
        // JSON names that needed unescaping live in `scratch`, lent out here.
        let mut scratch = std::mem::take(&mut self.scratch);
        let (format, parsed) =
            input::parse_line(self.format, bytes, self.options.time_base, &mut scratch);
        let outcome = self.take_parsed(line_no, bytes, format, parsed);
        self.scratch = scratch;
        outcome
    }

    /// Whether `line` is the CSV header a file may start with (skipped).
    pub(super) fn is_header(&self, line: &[u8]) -> bool {
        self.counters.events_read == 0
            && self.format.unwrap_or(Format::Csv) == Format::Csv
            && input::is_header(line)
    }

    /// Takes in a counted line as parsed (here or by the parse stage):
    /// offered if it is a record, dead-lettered if not.
    pub(super) fn take_parsed(
        &mut self,
        line_no: u64,
        line: &[u8],
        format: Format,
        parsed: Result<Record<'_>, Reject>,
    ) -> io::Result<()> {
        self.latest_format = format;
        match parsed {
            Ok(record) => self.offer(line_no, Some(line), record),
            Err(reject) => self.reject(line_no, line, reject),
        }
    }

    /// Takes in a valid record; `raw` is its line (`None`: it came decoded,
    /// and a dead letter writes it out as JSON).
    #[inline]
    pub(super) fn offer(
        &mut self,
        line_no: u64,
        raw: Option<&[u8]>,
        record: Record<'_>,
    ) -> io::Result<()> {
        // Lag at arrival: how far behind the source the pipeline reads. The
        // watermark then holds each event its allowed lateness on purpose;
        // that wait is configuration, not lag.
        self.counters
            .lag
            .record(self.ingest_clock - record.event_time);
        let interned = self.intern(&record).and_then(|(user, computer)| {
            let detail = &record.detail;
            if detail.is_empty() {
                return Ok((user, computer, Detail::default()));
            }
            let detail = Detail {
                source_computer: detail
                    .source_computer
                    .map(|name| self.intern_name(Cap::Computers, name))
                    .transpose()?,
                source_user: detail
                    .source_user
                    .map(|name| self.intern_name(Cap::Users, name))
                    .transpose()?,
                logon_type: detail.logon_type,
                auth_package: detail.auth_package,
                outcome: detail.outcome,
                failure_reason: detail.failure_reason,
            };
            Ok((user, computer, detail))
        });
        let (user, computer, detail) = match interned {
            Ok(ids) => ids,
            Err(cap) => {
                let limit = match cap {
                    Cap::Users => self.options.limits.max_users,
                    _ => self.options.limits.max_computers,
                };
                let raw = raw_text(raw, &record);
                return self.refuse_at_cap(line_no, &raw, cap, limit);
            }
        };
        let mut pending = Event {
            event_time: record.event_time,
            user,
            computer,
            ingestion_time: record.ingestion_time.unwrap_or(self.ingest_clock),
            event_id: record.event_id,
            detail,
        };
        if pending.event_id.is_none()
            && (self.stored.is_some()
                || (self.outputs.received.is_some() && source_id(&record).is_some()))
        {
            // Needed here: to ask the tables whether they hold it, or to key
            // the record's own id until it is received. Otherwise the table
            // writers derive it on their own threads (hashing is a tenth of
            // this thread's work on LANL lines).
            pending.event_id =
                Some(pending.event_id(self.options.time_base, &self.users, &self.computers));
        }
        // Behind the watermark already: it can only be later still once
        // the clock has heard its neighbours.
        if let Some(watermark) = self.orderer.watermark()
            && pending.event_time < watermark
        {
            let reject = Reject::Late {
                event_time: pending.event_time,
                watermark,
            };
            self.reject(line_no, &raw_text(raw, &record), reject)?;
            self.receive(line_no, &pending, Disposition::Late, source_id(&record))?;
        } else if !self.orderer.claim(&pending) {
            // Held, or waiting for the clock: a repeat never gets a vote.
            self.counters.duplicates += 1;
            self.receive(
                line_no,
                &pending,
                Disposition::Duplicate,
                source_id(&record),
            )?;
        } else {
            if let (Some(id), Some(_)) = (source_id(&record), &self.outputs.received) {
                let key = (line_no, pending.event_id.expect("derived on arrival"));
                self.source_ids.insert(key, id.into());
            }
            let arrival = Arrival {
                event: pending,
                line: line_no,
            };
            self.clock
                .arrive(arrival, self.ingest_clock, &mut self.decided);
            if !self.decided.is_empty() {
                self.admit_decided()?;
            }
        }
        // A slow stream fills a batch slowly: past the delay, score what
        // there is. The clock is read every 64 offers, not per event.
        self.offers_since_clock += 1;
        if self.offers_since_clock >= 64 {
            self.offers_since_clock = 0;
            self.score_batch_past_delay()?;
        }
        Ok(())
    }

    /// The ids of a record's user and computer; the cap that a new one
    /// would pass, if it would.
    #[inline]
    fn intern(&mut self, record: &Record<'_>) -> Result<(NameId, NameId), Cap> {
        Ok((
            self.intern_name(Cap::Users, record.user)?,
            self.intern_name(Cap::Computers, record.computer)?,
        ))
    }

    /// The id of a user's (`Cap::Users`) or a computer's name, interned if
    /// new and the state may still grow.
    #[inline]
    fn intern_name(&mut self, kind: Cap, name: &[u8]) -> Result<NameId, Cap> {
        let limits = self.options.limits;
        let (names, max) = match kind {
            Cap::Users => (&mut self.users, limits.max_users),
            _ => (&mut self.computers, limits.max_computers),
        };
        if names.len() < max {
            return Ok(names.intern(name).0);
        }
        names.get(name).ok_or(kind)
    }

    /// Admits what the clock decided, then moves the watermark to the
    /// clock's time and processes what that releases.
    pub(super) fn admit_decided(&mut self) -> io::Result<()> {
        let mut decided = std::mem::take(&mut self.decided);
        for (arrival, verdict) in decided.drain(..) {
            self.admit(arrival, verdict)?;
        }
        self.decided = decided;
        if let Some(now) = self.clock.now() {
            self.orderer
                .advance(now, (&self.users, &self.computers), &mut self.ready);
        }
        if !self.ready.is_empty() {
            self.process_ready()?;
        }
        Ok(())
    }

    /// Offers an arrival the clock decided on to the orderer (unless it
    /// is dated too far ahead or already stored), and records it as
    /// received.
    pub(super) fn admit(&mut self, arrival: Arrival, verdict: Verdict) -> io::Result<()> {
        let Arrival { event, line } = arrival;
        let disposition = match verdict {
            Verdict::Future {
                bound,
                max_ahead,
                wall_clock,
            } => {
                let reject = Reject::Future {
                    event_time: event.event_time,
                    bound,
                    max_ahead,
                    wall_clock,
                };
                self.orderer.unclaim(&event);
                self.reject_parsed(line, &event, reject)?;
                Disposition::Future
            }
            Verdict::Admitted => {
                let already_stored = match self.stored.as_mut() {
                    Some(stored) => stored.contains(
                        event.event_time,
                        event.event_id.expect("derived on arrival"),
                    )?,
                    None => false,
                };
                if already_stored {
                    self.orderer.unclaim(&event);
                    self.counters.duplicates += 1;
                    self.counters.already_stored += 1;
                    Disposition::Duplicate
                } else {
                    match self.orderer.offer_claimed(
                        event,
                        (&self.users, &self.computers),
                        &mut self.ready,
                    ) {
                        Admission::Accepted => Disposition::Accepted,
                        Admission::Duplicate => unreachable!("a claimed event is no duplicate"),
                        Admission::Late { watermark } => {
                            let reject = Reject::Late {
                                event_time: event.event_time,
                                watermark,
                            };
                            self.reject_parsed(line, &event, reject)?;
                            Disposition::Late
                        }
                    }
                }
            }
        };
        // A record with its own id had its event_id derived on arrival.
        let source_event_id = match event.event_id {
            Some(id) if !self.source_ids.is_empty() => self.source_ids.remove(&(line, id)),
            _ => None,
        };
        self.receive(line, &event, disposition, source_event_id.as_deref())
    }

    /// Records a valid record as received (`auth_events_raw`), if wanted.
    pub(super) fn receive(
        &mut self,
        line: u64,
        event: &Event,
        disposition: Disposition,
        source_event_id: Option<&str>,
    ) -> io::Result<()> {
        if let Some(received) = self.outputs.received.as_deref_mut() {
            received.receive(&Received {
                line,
                event,
                users: &self.users,
                computers: &self.computers,
                time_base: self.options.time_base,
                disposition,
                source_event_id,
            })?;
        }
        Ok(())
    }

    /// Dead-letters a record that parsed, its raw text written out again
    /// from what was parsed (the line itself is not kept while the clock
    /// waits for its neighbours).
    #[cold]
    pub(super) fn reject_parsed(
        &mut self,
        line: u64,
        event: &Event,
        reject: Reject,
    ) -> io::Result<()> {
        let raw = input::render(
            self.latest_format,
            event,
            self.options.time_base,
            &self.users,
            &self.computers,
        );
        self.reject(line, raw.as_bytes(), reject)
    }

    /// A new user or computer past its limit: dead-lettered and counted.
    #[cold]
    pub(super) fn refuse_at_cap(
        &mut self,
        line_no: u64,
        raw: &[u8],
        cap: Cap,
        limit: usize,
    ) -> io::Result<()> {
        self.cap_hit(cap, 1);
        self.reject(line_no, raw, Reject::StateCap { cap, limit })
    }

    /// Counts `n` hits of `cap`; the first is logged at once, the rest at
    /// each checkpoint ([`Pipeline::log_caps`]).
    pub(super) fn cap_hit(&mut self, cap: Cap, n: u64) {
        if n == 0 {
            return;
        }
        if self.counters.caps.get(cap) == 0 {
            let limits = self.options.limits;
            let limit = match cap {
                Cap::Users => limits.max_users,
                Cap::Computers => limits.max_computers,
                Cap::WindowEvents => limits.max_window_events,
                Cap::HeldEvents => limits.max_held_events,
            };
            tracing::warn!(
                cap = cap.name(),
                limit,
                effect = cap.effect(),
                "a state limit was reached"
            );
            self.counters.caps_logged.add(cap, n);
        }
        self.counters.caps.add(cap, n);
    }

    /// Logs the limits hit, and the events refused as dated too far ahead,
    /// again since the last time.
    pub(super) fn log_caps(&mut self) {
        let future = self.counters.future;
        if future > self.counters.future_logged {
            tracing::warn!(
                since_last = future - self.counters.future_logged,
                total = future,
                "events dated too far ahead are still arriving (dead-lettered as future)"
            );
            self.counters.future_logged = future;
        }
        for cap in Cap::ALL {
            let (total, logged) = (
                self.counters.caps.get(cap),
                self.counters.caps_logged.get(cap),
            );
            if total > logged {
                tracing::warn!(
                    cap = cap.name(),
                    since_last = total - logged,
                    total,
                    "still at a state limit"
                );
                self.counters.caps_logged.add(cap, total - logged);
            }
        }
    }

    pub(super) fn reject(&mut self, line_no: u64, raw: &[u8], reject: Reject) -> io::Result<()> {
        match reject {
            Reject::Late { .. } => self.counters.late += 1,
            Reject::Future { .. } => {
                if self.counters.future == 0 {
                    tracing::warn!(
                        line = line_no,
                        reason = %reject,
                        "an event dated too far ahead was refused (dead-lettered as future); \
                         it does not move the watermark"
                    );
                    self.counters.future_logged = 1;
                }
                self.counters.future += 1;
            }
            _ => {
                self.counters.invalid += 1;
                *self
                    .counters
                    .invalid_by_reason
                    .entry(reject.kind())
                    .or_default() += 1;
            }
        }
        let raw = &raw[..raw.len().min(DEAD_LETTER_RAW_MAX)];
        self.outputs.dead_letters.write(&DeadLetter {
            line: line_no,
            kind: reject.kind().to_string(),
            reason: reject.to_string(),
            raw: String::from_utf8_lossy(raw).into_owned(),
        })
    }
}

/// The ids a warehouse already stores, a day of event time at a time, as
/// the input reaches it; days well behind the input are let go.
pub(super) struct StoredIds<'o> {
    pub(super) source: &'o mut dyn StoredEvents,
    pub(super) days: BTreeMap<i64, rustc_hash::FxHashSet<u128>>,
}

impl StoredIds<'_> {
    /// Days kept behind the latest asked for (events arrive out of order
    /// within the allowed lateness, which is far less than a day).
    const DAYS_BEHIND: i64 = 2;

    pub(super) fn contains(&mut self, event_time: i64, id: EventId) -> io::Result<bool> {
        let day = event_time.div_euclid(crate::state::DAY);
        if !self.days.contains_key(&day) {
            let ids = self.source.ids_of_day(day)?;
            tracing::debug!(day, stored = ids.len(), "event ids already stored");
            self.days.insert(day, ids);
            let latest = *self.days.last_key_value().expect("just inserted").0;
            self.days.retain(|&d, _| d >= latest - Self::DAYS_BEHIND);
        }
        Ok(self
            .days
            .get(&day)
            .is_some_and(|ids| ids.contains(&id.0.get())))
    }
}

/// The source's own id of a record, as text (the parsers checked it).
#[inline]
fn source_id<'a>(record: &Record<'a>) -> Option<&'a str> {
    record
        .source_event_id
        .and_then(|id| std::str::from_utf8(id).ok())
}
