//! `alerts`: every alert raised, one row per user incident. Alerts are few, so
//! they are buffered and written as one batch, committed at the end of input.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use arrow_array::builder::{
    Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use iceberg::arrow::UTC_TIME_ZONE;

use super::curated::{list_builder, unix_micros_now};
use super::writer::{TableWriter, WriterStats};
use super::{LakehouseError, Warehouse, tables};
use crate::alerts::Alert;
use crate::sinks::AlertSink;

/// An [`AlertSink`] writing the `alerts` table.
pub struct AlertTableSink {
    writer: TableWriter,
    pending: Vec<(Alert, i64)>,
}

impl AlertTableSink {
    pub fn start(warehouse: &Warehouse) -> Result<AlertTableSink, LakehouseError> {
        Ok(AlertTableSink {
            writer: TableWriter::start(warehouse, tables::ALERTS)?,
            pending: Vec::new(),
        })
    }

    pub fn stats(&self) -> &WriterStats {
        self.writer.stats()
    }

    fn batch(&self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let schema = Arc::clone(self.writer.arrow_schema());
        let mut strings: [StringBuilder; 3] = Default::default(); // alert_id, user_id, risk_level
        let mut tail: [StringBuilder; 2] = Default::default(); // policy_version, summary
        let mut risk_score = Int32Builder::new();
        let mut event_count = Int64Builder::new();
        let mut times: [TimestampMicrosecondBuilder; 3] = Default::default(); // first, last, raised
        let mut lists = [
            "risk_flags",
            "event_ids",
            "computers",
            "mitre_techniques",
            "reasons",
        ]
        .map(|name| list_builder(&schema, name));
        for (alert, raised_us) in &self.pending {
            strings[0].append_value(&alert.alert_id);
            strings[1].append_value(&alert.user_id);
            strings[2].append_value(alert.risk_level.as_str());
            risk_score.append_value(i32::from(alert.risk_score));
            event_count.append_value(i64::try_from(alert.event_count).unwrap_or(i64::MAX));
            for (builder, text) in times[..2]
                .iter_mut()
                .zip([&alert.first_event_time, &alert.last_event_time])
            {
                let micros = chrono::DateTime::parse_from_rfc3339(text)
                    .map_err(|e| arrow_schema::ArrowError::ParseError(format!("{text}: {e}")))?
                    .timestamp_micros();
                builder.append_value(micros);
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
            let values: [Vec<&str>; 5] = [
                alert.risk_flags.iter().map(String::as_str).collect(),
                alert.event_ids.iter().map(String::as_str).collect(),
                alert.computers.iter().map(String::as_str).collect(),
                mitre,
                reasons.collect(),
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
        let [risk_flags, event_ids, computers, mitre, reasons] = &mut lists;
        let [first, last, raised] = &mut times;
        let [policy_version, summary] = &mut tail;
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
        ];
        RecordBatch::try_new(schema, columns)
    }
}

impl AlertSink for AlertTableSink {
    fn send(&mut self, alert: &Alert) -> io::Result<()> {
        self.pending.push((alert.clone(), unix_micros_now()));
        Ok(())
    }

    /// End of input: write and commit the alerts raised.
    fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = self.batch().map_err(io::Error::other)?;
        self.writer.write(batch)?;
        self.writer.commit(HashMap::new())?;
        self.pending.clear();
        Ok(())
    }
}
