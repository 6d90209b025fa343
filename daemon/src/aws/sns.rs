//! Alerts to an Amazon SNS topic, once.
//!
//! Each alert publication (an incident's opening, its updates, its closing)
//! is one JSON message (the alert's fields) with a one-line subject, and
//! `risk_level`/`kind`/`status` message attributes that subscriptions can
//! filter on (a pager may want only `open`). For a FIFO topic (`….fifo`) the
//! message group is the entity (user or computer) and the deduplication id
//! is `alert_id-sequence`, stable across reruns, so a resend after a crash is
//! dropped by SNS itself.
//!
//! Publishing runs on its own task: the pipeline only queues a message. A
//! failed publish is retried with backoff, in order, for as long as it takes.
//! Unsent messages are written to an outbox file at every checkpoint and at
//! the end, and the next start sends them first: an SNS outage delays alerts
//! but loses none (they are in the `alerts` table and file as well).
//!
//! A run that resumes from its last commit emits the publications after it
//! again. The ids of the messages published lately are kept in a sent log
//! ([`SentLog`]), and the next start does not send one of them again, so a
//! standard topic gets each publication once too; only a kill between SNS
//! answering and the id being written can repeat one message (which a FIFO
//! topic then drops by its deduplication id).

use std::collections::VecDeque;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::{AwsSettings, Backoff, error_text};
use authpulse_engine::alerts::Alert;
use authpulse_engine::findings::{AlertFormat, detection_finding};
use authpulse_engine::metrics::LagHistogram;
use authpulse_engine::sinks::{AlertSink, Commit, Progress};

/// SNS's limit on a subject.
const MAX_SUBJECT: usize = 100;

/// One message for the topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Stable id: the FIFO deduplication id.
    pub id: String,
    /// `alert` or `freshness_sla`.
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub risk_level: String,
    /// FIFO message group (the entity, for alerts).
    pub group: String,
    /// An alert's `open`, `update` or `closed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl Message {
    pub fn alert(alert: &Alert, format: AlertFormat) -> io::Result<Message> {
        let body = match format {
            AlertFormat::Json => serde_json::to_string(alert)?,
            AlertFormat::Ocsf => detection_finding(alert).to_string(),
        };
        Ok(Message {
            id: format!("{}-{}", alert.alert_id, alert.sequence),
            kind: "alert".into(),
            subject: subject(&format!("[{}] {}", alert.status.as_str(), alert.summary)),
            body,
            risk_level: alert.risk_level.as_str().to_string(),
            group: format!("{}:{}", alert.entity_type.as_str(), alert.entity_id),
            status: Some(alert.status.as_str().to_string()),
        })
    }

    /// The freshness SLA was missed: `lag` (the interval's processing lag)
    /// has its 95th percentile above `sla`.
    pub fn freshness(pipeline: &str, lag: &LagHistogram, sla: Duration) -> Message {
        let p95 = lag.quantile(0.95).unwrap_or(0);
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let body = serde_json::json!({
            "kind": "freshness_sla",
            "pipeline": pipeline,
            "p95_lag_s": p95,
            "p50_lag_s": lag.quantile(0.5).unwrap_or(0),
            "sla_s": sla.as_secs(),
            "events": lag.count(),
            "at": at,
        });
        Message {
            id: format!("freshness-{pipeline}-{at}"),
            kind: "freshness_sla".into(),
            subject: subject(&format!(
                "AuthPulse freshness SLA breached: p95 processing lag {p95} s > {} s",
                sla.as_secs()
            )),
            body: body.to_string(),
            risk_level: "high".into(),
            group: "freshness".into(),
            status: None,
        }
    }
}

/// A subject SNS accepts: one line of printable ASCII, at most 100 chars.
pub fn subject(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if out.len() > MAX_SUBJECT {
        out.truncate(MAX_SUBJECT - 3);
        out.push_str("...");
    }
    if out.trim().is_empty() {
        out = "AuthPulse alert".into();
    }
    out
}

#[derive(Clone, Debug)]
pub struct SnsConfig {
    pub topic_arn: String,
    pub aws: AwsSettings,
    /// Where unsent messages are kept between checkpoints and runs.
    pub outbox: PathBuf,
    /// Where the ids of the messages published lately are kept.
    pub sent_log: PathBuf,
    /// At the end, how long to keep retrying before leaving the rest in the
    /// outbox.
    pub drain_timeout: Duration,
}

/// What the publishing task reports when asked to make its state durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnsReport {
    pub published: u64,
    /// Not sent again: published before a restart.
    pub already_sent: u64,
    pub retries: u64,
    /// Left in the outbox.
    pub pending: u64,
}

enum Command {
    Publish(Message),
    /// Write the outbox now.
    Checkpoint(oneshot::Sender<io::Result<SnsReport>>),
    /// Send what is queued (up to the drain timeout), then write the outbox.
    Drain(oneshot::Sender<io::Result<SnsReport>>),
}

/// A handle to the publishing task; clones share it (the alert sink and the
/// freshness check both publish).
#[derive(Clone)]
pub struct SnsPublisher {
    commands: mpsc::UnboundedSender<Command>,
    topic_arn: String,
}

/// Owns the publishing task's runtime; dropping it stops the task.
pub struct SnsWorker {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for SnsWorker {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl SnsPublisher {
    /// Starts publishing to the topic; messages left in the outbox by an
    /// earlier run are queued first.
    pub fn start(config: SnsConfig) -> io::Result<(SnsPublisher, SnsWorker)> {
        let runtime = crate::net::runtime("sns")?;
        let sdk = runtime.block_on(config.aws.load());
        let client = Client::new(&sdk);
        let backlog = read_outbox(&config.outbox)?;
        if !backlog.is_empty() {
            tracing::info!(messages = backlog.len(), outbox = %config.outbox.display(), "sending alerts left unsent by an earlier run");
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let topic_arn = config.topic_arn.clone();
        runtime.spawn(publish_loop(client, config, backlog, rx));
        Ok((
            SnsPublisher {
                commands: tx,
                topic_arn,
            },
            SnsWorker {
                runtime: Some(runtime),
            },
        ))
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    pub fn publish(&self, message: Message) -> io::Result<()> {
        self.commands
            .send(Command::Publish(message))
            .map_err(|_| stopped())
    }

    fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<io::Result<SnsReport>>) -> Command,
    ) -> io::Result<SnsReport> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(command(tx)).map_err(|_| stopped())?;
        rx.blocking_recv().map_err(|_| stopped())?
    }

    /// Writes the unsent messages to the outbox.
    pub fn checkpoint(&self) -> io::Result<SnsReport> {
        self.ask(Command::Checkpoint)
    }

    /// Sends what is queued (giving up after the drain timeout), then writes
    /// what is left to the outbox.
    pub fn drain(&self) -> io::Result<SnsReport> {
        self.ask(Command::Drain)
    }
}

fn stopped() -> io::Error {
    io::Error::other("the SNS publisher has stopped")
}

/// The alert sink: queues each alert for the topic.
pub struct SnsAlerts {
    pub publisher: SnsPublisher,
    /// The form of each message's body.
    pub format: AlertFormat,
    /// Set by the last flush.
    pub report: SnsReport,
}

impl Commit for SnsAlerts {
    fn checkpoint(&mut self, _: &Progress) -> io::Result<()> {
        self.publisher.checkpoint().map(drop)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.report = self.publisher.drain()?;
        if self.report.pending > 0 {
            tracing::warn!(
                pending = self.report.pending,
                topic = %self.publisher.topic_arn(),
                "SNS did not take every alert; the rest are in the outbox and go out on the next start"
            );
        }
        Ok(())
    }
}

impl AlertSink for SnsAlerts {
    fn send(&mut self, alert: &Alert) -> io::Result<()> {
        self.publisher.publish(Message::alert(alert, self.format)?)
    }
}

/// The file of unsent messages: exactly the queue as of the last write, and
/// no file when nothing is unsent.
struct Outbox {
    path: PathBuf,
}

impl Outbox {
    fn write(&self, queue: &VecDeque<Message>) -> io::Result<()> {
        if queue.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = self.path.with_file_name(tmp_name);
        let mut file = io::BufWriter::new(std::fs::File::create(&tmp)?);
        for message in queue {
            serde_json::to_writer(&mut file, message)?;
            file.write_all(b"\n")?;
        }
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

fn read_outbox(path: &Path) -> io::Result<VecDeque<Message>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(VecDeque::new()),
        Err(e) => return Err(e),
    };
    let mut queue = VecDeque::new();
    for (i, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let message = serde_json::from_str(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} line {}: not an outbox message: {e}",
                    path.display(),
                    i + 1
                ),
            )
        })?;
        queue.push_back(message);
    }
    Ok(queue)
}

async fn publish_loop(
    client: Client,
    config: SnsConfig,
    mut queue: VecDeque<Message>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let fifo = config.topic_arn.ends_with(".fifo");
    let outbox = Outbox {
        path: config.outbox.clone(),
    };
    let mut sent = match SentLog::open(&config.sent_log) {
        Ok(sent) => sent,
        Err(e) => {
            tracing::error!(error = %e, path = %config.sent_log.display(), "cannot open the SNS sent log: publications emitted again after a restart will be sent again");
            SentLog::disabled()
        }
    };
    let mut report = SnsReport::default();
    // The outbox was written at the last checkpoint: what went out after it
    // is in the sent log.
    let before = queue.len();
    queue.retain(|message| !sent.contains(&message.id));
    report.already_sent += (before - queue.len()) as u64;
    for _ in queue.len()..before {
        crate::ops::prometheus::count_sns("already_sent");
    }
    let mut failures = 0u32;
    // When to try the head of the queue again after a failure.
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut draining: Option<(Instant, oneshot::Sender<io::Result<SnsReport>>)> = None;
    loop {
        let ready = !queue.is_empty() && retry_at.is_none_or(|t| t <= tokio::time::Instant::now());
        if ready {
            let message = queue.front().expect("not empty");
            match publish(&client, &config.topic_arn, fifo, message).await {
                Ok(()) => {
                    let message = queue.pop_front().expect("not empty");
                    sent.record(message.id);
                    report.published += 1;
                    crate::ops::prometheus::count_sns("sent");
                    failures = 0;
                    retry_at = None;
                }
                Err(error) => {
                    let delay = Backoff::DEFAULT.jittered(failures);
                    failures += 1;
                    report.retries += 1;
                    crate::ops::prometheus::count_sns("retried");
                    tracing::warn!(topic = %config.topic_arn, alert_id = %message.id, error = %error, retry_in_ms = delay.as_millis() as u64, "SNS publish failed; will retry");
                    retry_at = Some(tokio::time::Instant::now() + delay);
                }
            }
        }
        // A drain ends when the queue is empty or its time is up.
        if let Some((started, _)) = &draining
            && (queue.is_empty() || started.elapsed() >= config.drain_timeout)
        {
            let (_, reply) = draining.take().expect("draining");
            report.pending = queue.len() as u64;
            let _ = reply.send(outbox.write(&queue).map(|()| report));
        }
        let command = if !queue.is_empty() {
            let mut wake = retry_at.unwrap_or_else(tokio::time::Instant::now);
            if let Some((started, _)) = &draining {
                wake = wake.min(tokio::time::Instant::from_std(
                    *started + config.drain_timeout,
                ));
            }
            tokio::select! {
                command = commands.recv() => command,
                () = tokio::time::sleep_until(wake) => continue,
            }
        } else if draining.is_some() {
            continue;
        } else {
            commands.recv().await
        };
        match command {
            Some(Command::Publish(message)) => {
                if sent.contains(&message.id) {
                    tracing::debug!(id = %message.id, "published before a restart: not sent again");
                    report.already_sent += 1;
                    crate::ops::prometheus::count_sns("already_sent");
                } else {
                    queue.push_back(message);
                }
            }
            Some(Command::Checkpoint(reply)) => {
                report.pending = queue.len() as u64;
                let _ = reply.send(outbox.write(&queue).map(|()| report));
            }
            Some(Command::Drain(reply)) => draining = Some((Instant::now(), reply)),
            None => {
                // Every handle is gone: keep what is unsent.
                if let Err(e) = outbox.write(&queue) {
                    tracing::error!(error = %e, "cannot write the SNS outbox");
                }
                return;
            }
        }
    }
}

/// The ids of the messages published lately, in a file appended to as they
/// go out (a line each) and rewritten with the latest [`SentLog::KEEP`]
/// when it holds twice as many. A resumed run re-emits at most a commit
/// interval of publications, far fewer than it keeps.
struct SentLog {
    file: Option<std::fs::File>,
    path: PathBuf,
    ids: std::collections::HashSet<String>,
    order: VecDeque<String>,
}

impl SentLog {
    const KEEP: usize = 10_000;

    fn open(path: &Path) -> io::Result<SentLog> {
        let mut log = SentLog::disabled();
        log.path = path.to_path_buf();
        match std::fs::File::open(path) {
            Ok(file) => {
                for line in io::BufReader::new(file).lines() {
                    let id = line?;
                    if !id.is_empty() && log.ids.insert(id.clone()) {
                        log.order.push_back(id);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        log.compact()?;
        Ok(log)
    }

    fn disabled() -> SentLog {
        SentLog {
            file: None,
            path: PathBuf::new(),
            ids: Default::default(),
            order: VecDeque::new(),
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn record(&mut self, id: String) {
        if let Some(file) = self.file.as_mut()
            && let Err(e) = writeln!(file, "{id}")
        {
            tracing::warn!(error = %e, "cannot write the SNS sent log");
        }
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
        }
        if self.file.is_some()
            && self.order.len() >= 2 * Self::KEEP
            && let Err(e) = self.compact()
        {
            tracing::warn!(error = %e, "cannot rewrite the SNS sent log");
        }
    }

    /// Keeps the latest [`SentLog::KEEP`] ids, in a file rewritten
    /// atomically, and reopens it for appending.
    fn compact(&mut self) -> io::Result<()> {
        while self.order.len() > Self::KEEP {
            let old = self.order.pop_front().expect("not empty");
            self.ids.remove(&old);
        }
        let mut text = String::new();
        for id in &self.order {
            text.push_str(id);
            text.push('\n');
        }
        let temporary = self.path.with_extension("jsonl.tmp");
        std::fs::write(&temporary, text)?;
        std::fs::rename(&temporary, &self.path)?;
        self.file = Some(std::fs::OpenOptions::new().append(true).open(&self.path)?);
        Ok(())
    }
}

async fn publish(
    client: &Client,
    topic: &str,
    fifo: bool,
    message: &Message,
) -> Result<(), String> {
    let attribute = |value: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .expect("data type is set")
    };
    let mut request = client
        .publish()
        .topic_arn(topic)
        .subject(&message.subject)
        .message(&message.body)
        .message_attributes("kind", attribute(&message.kind))
        .message_attributes("risk_level", attribute(&message.risk_level));
    if let Some(status) = &message.status {
        request = request.message_attributes("status", attribute(status));
    }
    if fifo {
        request = request
            .message_group_id(&message.group)
            .message_deduplication_id(&message.id);
    }
    request.send().await.map(drop).map_err(|e| error_text(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_fit_sns() {
        assert_eq!(subject("U12: lateral movement"), "U12: lateral movement");
        assert_eq!(subject("a\nb\u{e9}"), "a?b?");
        let long = subject(&"x".repeat(300));
        assert_eq!(long.len(), 100);
        assert!(long.ends_with("..."));
        assert_eq!(subject(" "), "AuthPulse alert");
    }

    #[test]
    fn outbox_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sns-outbox.jsonl");
        let outbox = Outbox { path: path.clone() };
        let message = |id: &str| Message {
            id: id.into(),
            kind: "alert".into(),
            subject: "s".into(),
            body: "{}".into(),
            risk_level: "high".into(),
            group: "user:U1".into(),
            status: Some("open".into()),
        };
        let queue: VecDeque<Message> = [message("a"), message("b")].into();
        outbox.write(&queue).unwrap();
        assert_eq!(read_outbox(&path).unwrap(), queue);
        outbox.write(&VecDeque::new()).unwrap();
        assert!(!path.exists(), "an empty outbox is removed");
        assert!(read_outbox(&path).unwrap().is_empty());
        std::fs::write(&path, "{nope\n").unwrap();
        let error = read_outbox(&path).unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");
    }
}
