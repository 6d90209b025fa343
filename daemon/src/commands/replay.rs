//! `authpulse replay`: write LANL CSV (or JSON events) to a Kinesis stream
//! as the JSON events the daemon reads.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use authpulse::aws::AwsSettings;
use authpulse::aws::producer::{
    DEFAULT_AGGREGATE_BYTES, Pace, Producer, ProducerConfig, ProducerReport,
};
use authpulse_engine::event::{EventId, TimeBase, format_time};
use authpulse_engine::input::{self, Format, Line, LineReader, MAX_LINE_DEFAULT};
use clap::Args;
use serde::Serialize;

use super::{progress, shell};

/// Replay authentication events into a Kinesis stream.
///
/// Reads LANL CSV (`time,user,computer`) or JSON events and writes each as a
/// JSON event (`event_id` = first 32 hex characters of sha256 of
/// `time|user|computer`, `event_time` from --base-date, `user_id`,
/// `computer_id`, `ingestion_time` = when it is sent) with the user as the
/// partition key. Up to 500 records go in one PutRecords call; only records
/// that fail (throttling, partial failures) are sent again, with backoff.
/// Records still failing after --max-attempts are written to --failed, so
/// none is lost. Progress goes to stderr; a JSON summary (sent, retried,
/// failed) to stdout.
///
/// AWS settings come from the standard chain (AWS_REGION, AWS_PROFILE,
/// credentials, AWS_ENDPOINT_URL for a local server).
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Input file, or `-` for stdin.
    #[arg(long, short, default_value = "-")]
    pub input: PathBuf,
    /// The Kinesis stream to write to (name).
    #[arg(long)]
    pub stream: String,
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Date that LANL time 0 maps to (YYYY-MM-DD or RFC 3339).
    #[arg(long, default_value = "2024-01-01", value_parser = TimeBase::parse)]
    pub base_date: TimeBase,
    /// Send at most this many events per second.
    #[arg(long, conflicts_with = "speedup", value_parser = positive)]
    pub rate: Option<f64>,
    /// Send in event time, this many times faster than real time (60: an
    /// hour of events in a minute).
    #[arg(long, value_parser = positive)]
    pub speedup: Option<f64>,
    /// Pack events into KPL-format aggregated records (fewer, larger
    /// records: cheaper, and 1,000 records/s per shard goes further). The
    /// daemon reads both forms.
    #[arg(long)]
    pub aggregate: bool,
    /// Largest aggregated record, in bytes.
    #[arg(long, default_value_t = DEFAULT_AGGREGATE_BYTES, requires = "aggregate")]
    pub aggregate_bytes: usize,
    /// Sends of one record before it is given up and written to --failed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Where events that could not be sent go (JSON lines, as they were
    /// sent); also where malformed input lines are reported.
    #[arg(long, default_value = "replay-failed.jsonl")]
    pub failed: PathBuf,
    /// AWS region. Default: AWS_REGION, then the profile.
    #[arg(long)]
    pub aws_region: Option<String>,
    /// Endpoint of Kinesis (a VPC endpoint or a local server). Default:
    /// AWS_ENDPOINT_URL_KINESIS, then AWS_ENDPOINT_URL, then AWS's.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

/// The JSON event the daemon reads.
#[derive(Serialize)]
struct Event<'a> {
    event_id: &'a str,
    event_time: &'a str,
    user_id: &'a str,
    computer_id: &'a str,
    ingestion_time: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_computer_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logon_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_package: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct Summary {
    stream: String,
    lines: u64,
    invalid: u64,
    #[serde(flatten)]
    report: ProducerReport,
    elapsed_s: f64,
    events_per_s: f64,
}

pub fn execute(args: ReplayArgs) -> anyhow::Result<()> {
    let stop = shell::stop_on_signals()?;
    let mut config = ProducerConfig::new(&args.stream);
    config.aws = AwsSettings {
        region: args.aws_region.clone(),
        endpoint: args.endpoint.clone(),
    };
    config.aggregate_bytes = args.aggregate.then_some(args.aggregate_bytes);
    config.max_attempts = args.max_attempts;
    let mut producer = Producer::connect(config).map_err(anyhow::Error::msg)?;

    let (reader, size) = authpulse::sources::file::open_input(&args.input)?;
    let mut lines = LineReader::new(reader, MAX_LINE_DEFAULT);
    let pace = match (args.rate, args.speedup) {
        (Some(rate), _) => Pace::Rate(rate),
        (None, Some(speedup)) => Pace::Speedup(speedup),
        (None, None) => Pace::Unlimited,
    };
    let mut failed = FailedFile::new(args.failed.clone());
    let bar = progress::bar(size, "bytes");
    let started = Instant::now();
    let format = (args.format != Format::Auto).then_some(args.format);
    let (mut events, mut invalid, mut line_count) = (0u64, 0u64, 0u64);
    let mut first_time: Option<i64> = None;
    let mut json = Vec::with_capacity(256);
    let mut scratch = Vec::new();
    while let Some(line) = lines.next_line()? {
        let Line::Complete(bytes) = line else {
            if let Line::TooLong { len, .. } = line {
                invalid += 1;
                failed.reject(lines.line_no(), &format!("line is {len} bytes long"))?;
            }
            continue;
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        line_count += 1;
        if line_count == 1
            && format.unwrap_or(Format::Csv) == Format::Csv
            && input::is_header(bytes)
        {
            continue;
        }
        let (_, record) = input::parse_line(format, bytes, args.base_date, &mut scratch);
        let record = match record {
            Ok(record) => record,
            Err(reject) => {
                invalid += 1;
                failed.reject(lines.line_no(), &reject.to_string())?;
                continue;
            }
        };
        // Names were validated as UTF-8 by the parser.
        let user = std::str::from_utf8(record.user).unwrap_or_default();
        let computer = std::str::from_utf8(record.computer).unwrap_or_default();
        let detail = &record.detail;
        let event_id = record.event_id.unwrap_or_else(|| {
            EventId::derive_detailed(
                args.base_date.to_lanl(record.event_time),
                user,
                computer,
                |feed| detail.feed_id(feed),
            )
        });
        let [logon_type, auth_package, outcome, failure_reason] =
            detail.coded_fields().map(|(_, value)| value);

        let first = *first_time.get_or_insert(record.event_time);
        let due = pace.due(events, record.event_time, first);
        let now = started.elapsed();
        if due > now + Duration::from_millis(50) {
            // Send what is due before waiting, so a slow replay is not
            // held back by a half-full call.
            producer.flush();
            std::thread::sleep(due - started.elapsed().min(due));
        }

        let mut hex = [0u8; 32];
        json.clear();
        serde_json::to_writer(
            &mut json,
            &Event {
                event_id: event_id.write_hex(&mut hex),
                event_time: &format_time(record.event_time),
                user_id: user,
                computer_id: computer,
                ingestion_time: &chrono::DateTime::<chrono::Utc>::from(SystemTime::now())
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                // Names were validated as UTF-8 by the parser.
                src_computer_id: detail
                    .source_computer
                    .and_then(|n| std::str::from_utf8(n).ok()),
                src_user_id: detail.source_user.and_then(|n| std::str::from_utf8(n).ok()),
                logon_type,
                auth_package,
                outcome,
                failure_reason,
            },
        )?;
        producer.send(user, &json, record.event_time);
        events += 1;
        if events % 4096 == 0 {
            failed.keep(producer.take_given_up())?;
            bar.set_position(lines.bytes_consumed());
            let report = producer.report();
            bar.set_message(format!(
                "{} sent, {} retried, {} failed",
                report.events_sent, report.retried, report.events_failed
            ));
            if stop.load(Ordering::Relaxed) {
                tracing::warn!("stopping early on signal; sending what was read");
                break;
            }
        }
    }
    producer.flush();
    failed.keep(producer.take_given_up())?;
    bar.finish_and_clear();
    let report = producer.report();
    let elapsed = started.elapsed().as_secs_f64();
    if report.events_failed + invalid > 0 {
        tracing::warn!(failed = report.events_failed, invalid, path = %args.failed.display(), "some events were not sent; they are in the failed file");
    }
    let summary = Summary {
        stream: args.stream,
        lines: line_count,
        invalid,
        report,
        elapsed_s: elapsed,
        events_per_s: if elapsed > 0.0 {
            report.events_sent as f64 / elapsed
        } else {
            0.0
        },
    };
    outln!("{}", serde_json::to_string(&summary)?)?;
    if report.events_failed > 0 {
        anyhow::bail!(
            "{} events could not be sent to `{}` (kept in {})",
            report.events_failed,
            summary.stream,
            args.failed.display()
        );
    }
    Ok(())
}

/// The file of events not sent and lines not understood; created on first use.
struct FailedFile {
    path: PathBuf,
    file: Option<io::BufWriter<File>>,
}

impl FailedFile {
    fn new(path: PathBuf) -> Self {
        FailedFile { path, file: None }
    }

    fn writer(&mut self) -> io::Result<&mut io::BufWriter<File>> {
        if self.file.is_none() {
            let file = File::create(&self.path)?;
            self.file = Some(io::BufWriter::new(file));
        }
        Ok(self.file.as_mut().expect("opened"))
    }

    fn reject(&mut self, line: u64, reason: &str) -> io::Result<()> {
        let record = serde_json::json!({"kind": "invalid", "line": line, "reason": reason});
        writeln!(self.writer()?, "{record}")?;
        Ok(())
    }

    /// Keeps events Kinesis would not take (an aggregate is kept whole, as
    /// hex, as it would have been sent).
    fn keep(&mut self, entries: Vec<authpulse::aws::producer::Entry>) -> io::Result<()> {
        for entry in entries {
            let record = match std::str::from_utf8(&entry.data) {
                Ok(event) => {
                    serde_json::json!({"kind": "unsent", "partition_key": entry.partition_key, "event": event})
                }
                Err(_) => serde_json::json!({
                    "kind": "unsent",
                    "partition_key": entry.partition_key,
                    "events": entry.events,
                    "aggregate_hex": entry.data.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                }),
            };
            writeln!(self.writer()?, "{record}")?;
        }
        if let Some(file) = &mut self.file {
            file.flush()?;
        }
        Ok(())
    }
}
