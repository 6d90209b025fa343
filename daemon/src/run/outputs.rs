//! Everything a run writes, built in one place: the dead-letter file, the
//! alert destinations (the alerts file, the operations server, SNS, the
//! alerts table), the scored-event destinations (a JSON lines file, the
//! curated and aggregate tables), the raw table, and the way a freshness
//! breach is announced. A new alert destination is a sink and a line in
//! [`RunOutputs::wire`]; a new table is a line in
//! [`crate::lakehouse::start_sinks`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use authpulse_engine::findings::{AlertFormat, AlertsFile};
use authpulse_engine::pipeline::Outputs;
use authpulse_engine::sinks::{
    AlertSink, Discard, JsonLinesFile, ReceivedSink, ScoredJsonLines, ScoredSink, Tee,
};

use crate::aws::sns::{SnsAlerts, SnsConfig, SnsPublisher, SnsReport, SnsWorker};
use crate::aws::ticker::FreshnessBreach;
use crate::lakehouse::SinkStartError;
use crate::lakehouse::sinks::{Role, TableSink};
use crate::lakehouse::writer::WriterStats;
use crate::ops::{Live, LiveAlerts};

/// Where a run's files go, and whether alerts go to SNS.
#[derive(Clone, Debug)]
pub struct OutputsSpec {
    /// Refused records, one JSON line each.
    pub dead_letters: PathBuf,
    /// Alert publications, one JSON line each.
    pub alerts: PathBuf,
    /// The form of the alerts file and the SNS messages.
    pub alert_format: AlertFormat,
    /// Every scored event as a JSON line (`--scored`), if wanted.
    pub scored: Option<PathBuf>,
    pub sns: Option<SnsConfig>,
    /// The region and account of the `ocsf_findings` table's findings.
    pub findings_origin: crate::lakehouse::findings::FindingsOrigin,
}

/// How many lines a resumed run's files keep: what its checkpoint had
/// written (a crash may have left more).
#[derive(Clone, Copy, Debug)]
pub struct Written {
    pub dead_letters: u64,
    pub alert_publications: u64,
}

/// What a run does with the alerts and dead-letter files it finds.
#[derive(Clone, Copy, Debug)]
pub enum FilesStart {
    /// A run from the start: new files.
    New,
    /// A resumed run: its checkpoint's lines are kept, what came after
    /// them is cut off (it is written again).
    Resume(Written),
    /// A fleet worker's attempt: everything its earlier attempts (and
    /// runs) wrote is kept. A worker's files are what it published; the
    /// fleet's record, each publication once, is the alerts table.
    Append,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputsError {
    #[error("open {path}")]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Tables(#[from] SinkStartError),
    #[error("start the SNS publisher")]
    Sns(#[source] io::Error),
}

/// A run's outputs, open.
pub struct RunOutputs {
    dead_letters: JsonLinesFile,
    alerts: AlertsFile,
    scored: Option<ScoredJsonLines>,
    tables: Vec<Box<dyn TableSink>>,
    live: Option<LiveAlerts>,
    sns: Option<SnsAlerts>,
    /// Sends what the publisher queues; stopped (and drained) on drop.
    _sns_worker: Option<SnsWorker>,
}

impl RunOutputs {
    /// Opens the files (a resumed run's keep what its checkpoint wrote),
    /// starts SNS, and takes the table sinks and the operations server's
    /// alert list, if any.
    pub fn open(
        spec: &OutputsSpec,
        tables: Vec<Box<dyn TableSink>>,
        start: FilesStart,
        live: Option<&Arc<Live>>,
    ) -> Result<RunOutputs, OutputsError> {
        let keep = |lines: fn(Written) -> u64| match start {
            FilesStart::New => Keep::Nothing,
            FilesStart::Resume(written) => Keep::Lines(lines(written)),
            FilesStart::Append => Keep::All,
        };
        let dead_letters = open_file(&spec.dead_letters, keep(|w| w.dead_letters))?;
        let alerts = AlertsFile {
            file: open_file(&spec.alerts, keep(|w| w.alert_publications))?,
            format: spec.alert_format,
        };
        let scored = spec
            .scored
            .as_deref()
            .map(|path| open_file(path, Keep::Nothing).map(ScoredJsonLines))
            .transpose()?;
        let (sns, sns_worker) = match &spec.sns {
            Some(config) => {
                let (publisher, worker) =
                    SnsPublisher::start(config.clone()).map_err(OutputsError::Sns)?;
                tracing::info!(topic = %config.topic_arn, "publishing alerts to SNS");
                let alerts = SnsAlerts {
                    publisher,
                    format: spec.alert_format,
                    report: SnsReport::default(),
                };
                (Some(alerts), Some(worker))
            }
            None => (None, None),
        };
        Ok(RunOutputs {
            dead_letters,
            alerts,
            scored,
            tables,
            live: live.map(|live| LiveAlerts(Arc::clone(live))),
            sns,
            _sns_worker: sns_worker,
        })
    }

    /// Where a breach of the freshness SLA is announced: SNS, when alerts
    /// go there.
    pub fn announcer(&self) -> Announcer {
        Announcer {
            sns: self.sns.as_ref().map(|sns| sns.publisher.clone()),
        }
    }

    /// The pipeline's outputs: every destination of each kind, in order.
    pub fn wire(&mut self) -> Wiring<'_> {
        let mut alerts: Vec<&mut dyn AlertSink> = vec![&mut self.alerts];
        if let Some(live) = self.live.as_mut() {
            alerts.push(live);
        }
        if let Some(sns) = self.sns.as_mut() {
            alerts.push(sns);
        }
        let mut scored: Vec<&mut dyn ScoredSink> = Vec::new();
        if let Some(rows) = self.scored.as_mut() {
            scored.push(rows);
        }
        let mut received = None;
        for table in &mut self.tables {
            match table.role() {
                Role::Received(sink) => received = Some(sink),
                Role::Scored(sink) => scored.push(sink),
                Role::Alerts(sink) => alerts.push(sink),
            }
        }
        Wiring {
            dead_letters: &mut self.dead_letters,
            alerts: Tee(alerts),
            scored: Tee(scored),
            received,
            discard: Discard,
        }
    }

    /// Each table's writer totals, in the order the tables are listed.
    pub fn table_stats(&self) -> Vec<WriterStats> {
        self.tables
            .iter()
            .flat_map(|table| table.stats())
            .cloned()
            .collect()
    }

    /// What went to SNS, as of the last flush.
    pub fn sns_report(&self) -> Option<SnsReport> {
        self.sns.as_ref().map(|sns| sns.report)
    }
}

/// What of a file an opening keeps.
enum Keep {
    Nothing,
    Lines(u64),
    All,
}

fn open_file(path: &Path, keep: Keep) -> Result<JsonLinesFile, OutputsError> {
    match keep {
        Keep::Nothing => JsonLinesFile::create(path),
        Keep::Lines(lines) => JsonLinesFile::resume(path, lines),
        Keep::All => JsonLinesFile::append(path),
    }
    .map_err(|source| OutputsError::File {
        path: path.to_path_buf(),
        source,
    })
}

/// The destinations of a run, borrowed for its pipeline.
pub struct Wiring<'a> {
    dead_letters: &'a mut JsonLinesFile,
    alerts: Tee<'a, dyn AlertSink + 'a>,
    scored: Tee<'a, dyn ScoredSink + 'a>,
    received: Option<&'a mut dyn ReceivedSink>,
    discard: Discard,
}

impl<'a> Wiring<'a> {
    /// As the pipeline takes them.
    pub fn outputs(&mut self) -> Outputs<'_> {
        // Nothing takes scored events: they are not built at all.
        let scored: &mut dyn ScoredSink = if self.scored.0.is_empty() {
            &mut self.discard
        } else {
            &mut self.scored
        };
        Outputs {
            dead_letters: self.dead_letters,
            alerts: &mut self.alerts,
            scored,
            received: self
                .received
                .as_deref_mut()
                .map(|r| r as &mut dyn ReceivedSink),
        }
    }
}

/// Announces what is not an alert of the detection but an operator must
/// hear of (a freshness breach).
#[derive(Clone)]
pub struct Announcer {
    sns: Option<SnsPublisher>,
}

impl Announcer {
    pub fn freshness_breached(&self, breach: &FreshnessBreach) {
        if let Some(sns) = &self.sns
            && let Err(e) = sns.publish(breach.message())
        {
            tracing::error!(error = %e, "cannot queue the freshness alert");
        }
    }
}
