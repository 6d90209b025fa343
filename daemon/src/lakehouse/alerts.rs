//! `alerts`: every alert publication, one row each (an incident's opening,
//! its updates, its closing). Alerts are few, so they are buffered and
//! written as one batch per commit ([`Buffered`]).

use std::io;
use std::sync::Arc;

use arrow_array::builder::{
    Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use iceberg::arrow::UTC_TIME_ZONE;

use super::buffered::Buffered;
use super::curated::{list_builder, unix_micros_now};
use super::sinks::{Role, TableSink};
use super::writer::WriterStats;
use super::{LakehouseError, Warehouse, tables};
use authpulse_engine::alerts::Alert;
use authpulse_engine::sinks::{AlertSink, Commit, Progress};

/// An [`AlertSink`] writing the `alerts` table.
pub struct AlertTableSink {
    table: Buffered<(Alert, i64)>,
}

impl AlertTableSink {
    pub fn start(warehouse: &Warehouse) -> Result<AlertTableSink, LakehouseError> {
        Ok(AlertTableSink {
            table: Buffered::start(warehouse, tables::ALERTS, batch)?,
        })
    }

    pub fn stats(&self) -> &WriterStats {
        self.table.stats()
    }
}

/// The rows of alert publications, each with when it was raised.
fn batch(
    schema: &SchemaRef,
    pending: &[(Alert, i64)],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let schema = Arc::clone(schema);
    let mut strings: [StringBuilder; 3] = Default::default(); // alert_id, user_id, risk_level
    let mut tail: [StringBuilder; 2] = Default::default(); // policy_version, summary
    let mut entity: [StringBuilder; 3] = Default::default(); // status, entity_type, entity_id
    let mut ints: [Int32Builder; 3] = Default::default(); // risk_score, sequence, max_event_score
    let mut event_count = Int64Builder::new();
    // first, last, raised, opened
    let mut times: [TimestampMicrosecondBuilder; 4] = Default::default();
    let mut lists = [
        "risk_flags",
        "event_ids",
        "computers",
        "mitre_techniques",
        "reasons",
        "users",
    ]
    .map(|name| list_builder(&schema, name));
    for (alert, raised_us) in pending {
        strings[0].append_value(&alert.alert_id);
        strings[1].append_value(alert.user_id().unwrap_or(""));
        strings[2].append_value(alert.risk_level.as_str());
        ints[0].append_value(i32::from(alert.risk_score));
        ints[1].append_value(alert.sequence as i32);
        ints[2].append_value(i32::from(alert.max_event_score));
        entity[0].append_value(alert.status.as_str());
        entity[1].append_value(alert.entity_type.as_str());
        entity[2].append_value(&alert.entity_id);
        event_count.append_value(i64::try_from(alert.event_count).unwrap_or(i64::MAX));
        for (i, text) in [
            (0, &alert.first_event_time),
            (1, &alert.last_event_time),
            (3, &alert.opened_event_time),
        ] {
            let micros = chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| arrow_schema::ArrowError::ParseError(format!("{text}: {e}")))?
                .timestamp_micros();
            times[i].append_value(micros);
        }
        times[2].append_value(*raised_us);
        let mut mitre: Vec<&str> = alert
            .rules
            .iter()
            .flat_map(|r| r.mitre.iter().map(String::as_str))
            .collect();
        mitre.sort_unstable();
        mitre.dedup();
        let reasons = alert.rules.iter().map(|r| r.reason.as_str());
        let values: [Vec<&str>; 6] = [
            alert.risk_flags.iter().map(String::as_str).collect(),
            alert.events.iter().map(|e| e.event_id.as_str()).collect(),
            alert.computers.iter().map(String::as_str).collect(),
            mitre,
            reasons.collect(),
            alert.users.iter().map(String::as_str).collect(),
        ];
        for (builder, items) in lists.iter_mut().zip(values) {
            for item in items {
                builder.values().append_value(item);
            }
            builder.append(true);
        }
        tail[0].append_value(&alert.policy_version);
        tail[1].append_value(&alert.summary);
    }
    let tz = || Some(Arc::<str>::from(UTC_TIME_ZONE));
    let [alert_id, user_id, risk_level] = &mut strings;
    let [risk_flags, event_ids, computers, mitre, reasons, users] = &mut lists;
    let [first, last, raised, opened] = &mut times;
    let [policy_version, summary] = &mut tail;
    let [status, entity_type, entity_id] = &mut entity;
    let [risk_score, sequence, max_event_score] = &mut ints;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(alert_id.finish()),
        Arc::new(user_id.finish()),
        Arc::new(risk_score.finish()),
        Arc::new(risk_level.finish()),
        Arc::new(risk_flags.finish()),
        Arc::new(first.finish().with_timezone_opt(tz())),
        Arc::new(last.finish().with_timezone_opt(tz())),
        Arc::new(event_count.finish()),
        Arc::new(event_ids.finish()),
        Arc::new(computers.finish()),
        Arc::new(mitre.finish()),
        Arc::new(reasons.finish()),
        Arc::new(policy_version.finish()),
        Arc::new(summary.finish()),
        Arc::new(raised.finish().with_timezone_opt(tz())),
        Arc::new(status.finish()),
        Arc::new(sequence.finish()),
        Arc::new(entity_type.finish()),
        Arc::new(entity_id.finish()),
        Arc::new(max_event_score.finish()),
        Arc::new(opened.finish().with_timezone_opt(tz())),
        Arc::new(users.finish()),
    ];
    RecordBatch::try_new(schema, columns)
}

impl Commit for AlertTableSink {
    fn checkpoint(&mut self, progress: &Progress) -> io::Result<()> {
        self.table.checkpoint(progress)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.table.flush()
    }
}

impl AlertSink for AlertTableSink {
    fn send(&mut self, alert: &Alert) -> io::Result<()> {
        self.table.push((alert.clone(), unix_micros_now()));
        Ok(())
    }
}

impl TableSink for AlertTableSink {
    fn role(&mut self) -> Role<'_> {
        Role::Alerts(self)
    }

    fn stats(&self) -> Vec<&WriterStats> {
        vec![AlertTableSink::stats(self)]
    }
}
