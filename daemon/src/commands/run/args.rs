//! `run`'s command line: every flag with its help (the reference for
//! `authpulse run --help`), and how the flags become the run's
//! [`RunSpec`]: its source, outputs, limits, fleet and AWS settings.

use std::path::{Path, PathBuf};

use authpulse::aws::AwsSettings;
use authpulse::aws::sns::SnsConfig;
use authpulse::aws::ticker::TickerConfig;
use authpulse::lakehouse::findings::FindingsOrigin;
use authpulse::run::RunSpec;
use authpulse::run::fleet::FleetSpec;
use authpulse::run::outputs::OutputsSpec;
use authpulse::sources::{FileSpec, KinesisSpec, ParquetSpec, S3Access, SourceSpec};
use authpulse_engine::clock::ClockOptions;
use authpulse_engine::event::TimeBase;
use authpulse_engine::findings::AlertFormat;
use authpulse_engine::input::{Format, MAX_LINE_DEFAULT};
use authpulse_engine::limits::StateLimits;
use authpulse_engine::pipeline::{DEFAULT_BATCH_SIZE, PipelineOptions};
use authpulse_engine::rules::Engine;
use clap::Args;

use crate::commands::aws_args::{AwsArgs, SourceUrl};
use crate::commands::catalog_args::CatalogArgs;

/// Score authentication events and raise alerts.
///
/// Reads LANL CSV (`time,user,computer`) or JSON events (one per line) from a
/// file, stdin, a pipe or a fifo, to the end (or, with --follow, as a file
/// grows until Ctrl-C; a second Ctrl-C exits at once), or every shard of a
/// Kinesis stream (--source kinesis://STREAM; until Ctrl-C, or
/// --until-caught-up), or OCSF Parquet files such as AWS Security Lake's
/// (--source s3://BUCKET/PREFIX, parquet:PATH, or an Iceberg table's
/// glue:DATABASE.TABLE or iceberg:METADATA; in event-time order). An event dated more than --max-future-skew ahead of
/// the time the rest of the stream has reached is dead-lettered as `future`
/// and moves nothing.
/// Malformed and late records go to the dead-letter file with their line
/// number and reason. Alerts (one per user or computer incident, published as
/// it opens, grows and closes) go to the alerts file. Every commit records
/// how far the input was read, with a state snapshot: the same command after
/// a crash (or Ctrl-C) resumes from the last commit, over a complete input
/// does nothing, and with another input adds it, skipping the events the
/// tables already store. At exit one JSON summary line is printed on stdout;
/// progress goes to stderr.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Input file, or `-` for stdin.
    #[arg(default_value = "-")]
    pub input: PathBuf,
    /// The input file, as `replay`, `eval` and `rules test` take it (the
    /// same as the positional FILE).
    #[arg(
        long = "input",
        short = 'i',
        value_name = "FILE",
        conflicts_with = "input"
    )]
    pub input_flag: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Keep reading a growing file (stop with Ctrl-C / SIGTERM).
    #[arg(long)]
    pub follow: bool,
    /// Directory for results.
    #[arg(long, default_value = "authpulse-out")]
    pub output: PathBuf,
    /// Policy file. Default: ./policies.yaml if present, else the built-in
    /// policy. A policy file and the modules it names are watched: a change
    /// (or SIGHUP) is validated, compiled and swapped in between batches
    /// without a restart; a bad change is refused and the running policy stays.
    /// Or `s3://BUCKET/PATH/POLICY.yaml`, one policy for a fleet of workers:
    /// copied with its modules (paths below its prefix) to OUTPUT/policy/
    /// and looked at again every --policy-poll-interval.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// How often a policy on S3 is looked at for a change (ETags only).
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub policy_poll_interval: std::time::Duration,
    /// Do not watch the policy file for changes.
    #[arg(long)]
    pub no_policy_reload: bool,
    /// Dead-letter file (JSON lines). Default: OUTPUT/dead-letter.jsonl.
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// Alerts file (JSON lines). Default: OUTPUT/alerts.jsonl.
    #[arg(long)]
    pub alerts: Option<PathBuf>,
    /// The form of each alert publication in the alerts file and on SNS:
    /// AuthPulse's own JSON, or an OCSF 1.1 Detection Finding (class 2004)
    /// as Security Lake and SIEMs read it (docs/formats.md).
    #[arg(long, value_enum, default_value_t = AlertFormat::Json)]
    pub alert_format: AlertFormat,
    /// The AWS region the `ocsf_findings` table's findings name (`cloud`)
    /// and are partitioned by, as Security Lake partitions a custom
    /// source. Default: --aws-region, AWS_REGION, else `unknown`.
    #[arg(long, value_name = "REGION")]
    pub findings_region: Option<String>,
    /// The AWS account id the `ocsf_findings` table's findings name and are
    /// partitioned by (`accountId`). Default: `unknown`.
    #[arg(long, value_name = "ACCOUNT_ID", env = "AUTHPULSE_FINDINGS_ACCOUNT_ID")]
    pub findings_account_id: Option<String>,
    /// Also write every scored event as JSON lines here (large; for inspection).
    #[arg(long)]
    pub scored: Option<PathBuf>,
    /// Date that LANL time 0 maps to (YYYY-MM-DD or RFC 3339).
    #[arg(long, default_value = "2024-01-01", value_parser = TimeBase::parse)]
    pub base_date: TimeBase,
    /// Events per call into the rules (results do not depend on it).
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,
    /// Run the rules as sandboxed WASM (default) or natively (built-in rules only).
    #[arg(long, value_enum, default_value_t = Engine::Wasm)]
    pub engine: Engine,
    /// Threads that parse lines ahead of the scoring thread; 0: it parses
    /// them itself. Default: 1 for JSON input (OCSF, ECS, AuthPulse JSON),
    /// whose parsing is most of an event's cost, on a machine with two cores
    /// or more; 0 for LANL lines, whose parsing costs less than handing them
    /// to another thread. Results do not depend on it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=64))]
    pub parse_threads: Option<u16>,
    /// Lines longer than this are dead-lettered without being parsed.
    #[arg(long, default_value_t = MAX_LINE_DEFAULT)]
    pub max_line_bytes: usize,
    /// Commit the tables (and flush alerts) this often while reading.
    /// Default: 5s with --follow, otherwise once at the end of input. Shorter
    /// means fresher tables and more, smaller files (see docs/tables.md).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub commit_interval: Option<std::time::Duration>,
    /// Do not write the Iceberg tables.
    #[arg(long)]
    pub no_lakehouse: bool,
    /// Do not keep a state snapshot at each commit (OUTPUT/state/, or beside
    /// the tables when they are on S3; named in the commit's progress
    /// record; see docs/state.md). Such a run cannot be resumed.
    #[arg(long)]
    pub no_state: bool,
    /// After Ctrl-C / SIGTERM, how long the run may take to commit what it
    /// scored and its state before it gives up and exits with an error (the
    /// next start then resumes from the commit before). A second signal
    /// exits at once.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub shutdown_timeout: std::time::Duration,
    /// Once a run with tables and state has started scoring, how long it
    /// keeps recovering from failures (storage unreachable, a data file or a
    /// commit that failed): each time it waits (1 s, doubling up to 30 s) and
    /// resumes in-process from the last commit, as a restart would. The
    /// clock starts again after an attempt that ran five minutes. 0: fail at
    /// once.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub recover_for: std::time::Duration,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Start from the state `authpulse state build` wrote from historical
    /// events (windows, device history, host popularity, baselines, entity
    /// risk) instead of empty, so that the rules' burn-in is already behind.
    /// Use the same --base-date as the build.
    #[arg(long, value_name = "SNAPSHOT")]
    pub warm_start: Option<PathBuf>,
    /// Where the Iceberg tables go: by default OUTPUT/catalog.db and
    /// OUTPUT/warehouse/.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Share the Kinesis stream with other workers: the DynamoDB lease table
    /// (laid out as the Kinesis Client Library's; created if missing) that
    /// says which worker reads which shard. Every worker writes to the same
    /// tables (--catalog glue) and keeps its state beside them; docs/fleet.md.
    #[arg(long, value_name = "TABLE")]
    pub lease_table: Option<String>,
    /// This worker's name in the lease table, unique in the fleet.
    /// Default: the host name and process id.
    #[arg(long, value_name = "NAME", requires = "lease_table")]
    pub worker_id: Option<String>,
    /// With --lease-table: a worker that has not renewed its leases for this
    /// long is taken over (its shards are read by the others from its last
    /// commit). The KCL's default.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub failover: std::time::Duration,
    /// With --lease-table: how far ahead in event time a worker may score
    /// of the slowest worker that still has events to read (it waits
    /// otherwise). Computers' user counts from other workers' shards are at
    /// most this old; a backfill goes at this much event time per trade
    /// (--fleet-trade-interval). `0s`: no bound (docs/fleet.md).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub fleet_max_drift: std::time::Duration,
    /// With --lease-table: how often a worker trades its shards' share of
    /// each computer's users with the other workers (and learns how far
    /// they have got). Each trade is an S3 PUT per shard held and a GET per
    /// other shard: longer is cheaper, and the other shards' counts a
    /// computer's features add are staler. A backfill also trades after
    /// every five minutes of event time it scores, ten times a second at
    /// most.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub fleet_trade_interval: std::time::Duration,
    /// Serve health checks, Prometheus metrics, the JSON API and the live
    /// dashboard on this address while running (`127.0.0.1:9464`; port 0
    /// picks a free one, logged). Off unless given.
    #[arg(long, value_name = "ADDR:PORT", env = "AUTHPULSE_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// File holding the bearer token of the admin routes (reload, rule
    /// modes); `AUTHPULSE_ADMIN_TOKEN` gives it directly. Without a token
    /// the admin routes are off.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Configuration file (YAML; docs/config.md): source, outputs, catalog,
    /// AWS, HTTP and limits in one place. Flags and AUTHPULSE_* variables
    /// given as well override it.
    #[arg(long, value_name = "FILE", env = "AUTHPULSE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// This machine's name, as the kernel has it.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

impl RunArgs {
    pub fn with_input(input: PathBuf, output: PathBuf) -> RunArgs {
        RunArgs {
            input,
            input_flag: None,
            format: Format::Auto,
            follow: false,
            output,
            policy: None,
            no_policy_reload: false,
            policy_poll_interval: authpulse::fleet::policy_mirror::DEFAULT_POLL,
            dead_letter: None,
            alerts: None,
            alert_format: AlertFormat::Json,
            findings_region: None,
            findings_account_id: None,
            scored: None,
            base_date: TimeBase::DEFAULT,
            batch_size: DEFAULT_BATCH_SIZE as u32,
            engine: Engine::Wasm,
            parse_threads: None,
            max_line_bytes: MAX_LINE_DEFAULT,
            commit_interval: None,
            no_lakehouse: false,
            warm_start: None,
            no_state: false,
            shutdown_timeout: std::time::Duration::from_secs(30),
            recover_for: std::time::Duration::from_secs(300),
            lease_table: None,
            worker_id: None,
            failover: authpulse::fleet::DEFAULT_FAILOVER,
            fleet_max_drift: authpulse::run::fleet::DEFAULT_MAX_DRIFT,
            fleet_trade_interval: authpulse::run::fleet::DEFAULT_TRADE_INTERVAL,
            limits: LimitArgs::default(),
            catalog: CatalogArgs::default(),
            aws: AwsArgs::default(),
            listen: None,
            admin_token_file: None,
            config: None,
        }
    }

    /// The input file, however it was given.
    pub fn input(&self) -> &Path {
        self.input_flag.as_deref().unwrap_or(&self.input)
    }

    pub fn alerts_path(&self) -> PathBuf {
        self.alerts
            .clone()
            .unwrap_or_else(|| self.output.join("alerts.jsonl"))
    }

    /// The run these arguments describe, checked.
    pub fn spec(&self) -> anyhow::Result<RunSpec> {
        self.aws
            .validate(self.input().as_os_str() != "-", self.follow)?;
        let live = self.follow || matches!(self.aws.source, Some(SourceUrl::Kinesis(_)));
        let tables = if self.no_lakehouse {
            None
        } else {
            Some(self.catalog.config(&self.output)?)
        };
        Ok(RunSpec {
            source: self.source_spec(),
            output: self.output.clone(),
            outputs: self.outputs_spec(),
            tables,
            keep_state: !self.no_state,
            policy: self.policy.clone(),
            policy_reload: !self.no_policy_reload,
            pipeline: PipelineOptions {
                format: self.format,
                time_base: self.base_date,
                batch_size: self.batch_size as usize,
                engine: self.engine,
                commit_interval: self
                    .commit_interval
                    .or(live.then_some(std::time::Duration::from_secs(5))),
                limits: self.limits.limits(),
                clock: self.limits.clock(live),
                parse_threads: self.parse_threads.map(usize::from),
                ..PipelineOptions::default()
            },
            warm_start: self.warm_start.clone(),
            metrics: self.aws.wants_metrics().then(|| TickerConfig {
                interval: self.aws.metrics_interval,
                cloudwatch: self.aws.cloudwatch,
                emf: self.aws.metrics_emf.clone(),
                namespace: self.aws.cloudwatch_namespace.clone(),
                pipeline_name: self.aws.pipeline_name.clone(),
                freshness_sla: Some(self.aws.freshness_sla),
                aws: aws_settings(self),
            }),
            shutdown_timeout: self.shutdown_timeout,
            recover_for: self.recover_for,
            fleet: self.fleet_spec()?,
        })
    }

    /// With --lease-table, how the run joins its fleet.
    fn fleet_spec(&self) -> anyhow::Result<Option<FleetSpec>> {
        let Some(table) = &self.lease_table else {
            return Ok(None);
        };
        if !matches!(self.aws.source, Some(SourceUrl::Kinesis(_))) {
            anyhow::bail!("--lease-table shares a Kinesis stream: give --source kinesis://STREAM");
        }
        if self.no_lakehouse || self.no_state {
            anyhow::bail!(
                "--lease-table: a fleet keeps its progress and state with the tables; leave --no-lakehouse and --no-state out"
            );
        }
        if matches!(
            self.catalog.config(&self.output)?,
            authpulse::lakehouse::WarehouseConfig::Embedded { .. }
        ) {
            anyhow::bail!(
                "--lease-table: the workers of a fleet share one set of tables and their state snapshots; \
                 give --catalog glue --warehouse s3://BUCKET/PREFIX (the embedded catalog is one machine's)"
            );
        }
        if self.fleet_trade_interval < std::time::Duration::from_millis(100) {
            anyhow::bail!(
                "--fleet-trade-interval {:?}: at least 100ms (each trade is a request per shard)",
                self.fleet_trade_interval
            );
        }
        if self.failover < std::time::Duration::from_millis(300) {
            anyhow::bail!(
                "--failover {:?} is too short to renew a lease in",
                self.failover
            );
        }
        let worker = match &self.worker_id {
            Some(worker) => worker.clone(),
            None => format!(
                "{}-{}",
                hostname().unwrap_or_else(|| "worker".into()),
                std::process::id()
            ),
        };
        Ok(Some(FleetSpec {
            lease_table: table.clone(),
            worker,
            failover: self.failover,
            max_drift: Some(self.fleet_max_drift).filter(|d| !d.is_zero()),
            trade_interval: self.fleet_trade_interval,
        }))
    }

    /// The source it reads: --source, else the input file.
    /// How the run reaches S3 outside the catalog (a Parquet source, a
    /// policy on S3).
    pub fn s3_access(&self) -> S3Access {
        S3Access {
            region: self.catalog.aws_region.clone(),
            endpoint: self.catalog.s3_endpoint.clone(),
            path_style: self.catalog.s3_path_style,
            glue_endpoint: self.catalog.glue_endpoint.clone(),
            glue_catalog_id: self.catalog.glue_catalog_id.clone(),
        }
    }

    pub fn source_spec(&self) -> SourceSpec {
        match &self.aws.source {
            Some(SourceUrl::Kinesis(stream)) => SourceSpec::Kinesis(KinesisSpec {
                stream: stream.clone(),
                from: self.aws.from.clone(),
                positions_file: self.aws.kinesis_checkpoint_path(&self.output),
                output: self.output.clone(),
                until_caught_up: self.aws.until_caught_up,
                poll_interval: self.aws.poll_interval,
                aws: aws_settings(self),
            }),
            Some(SourceUrl::Parquet(location)) => SourceSpec::Parquet(ParquetSpec {
                location: location.clone(),
                s3: self.s3_access(),
                max_line_bytes: self.max_line_bytes,
            }),
            None => SourceSpec::File(FileSpec {
                path: self.input().to_path_buf(),
                follow: self.follow,
                max_line_bytes: self.max_line_bytes,
            }),
        }
    }

    /// Where its files go, and whether alerts go to SNS.
    pub fn outputs_spec(&self) -> OutputsSpec {
        let unknown = FindingsOrigin::default();
        OutputsSpec {
            findings_origin: FindingsOrigin {
                region: self
                    .findings_region
                    .clone()
                    .or_else(|| self.catalog.aws_region.clone())
                    .or_else(|| std::env::var("AWS_REGION").ok())
                    .unwrap_or(unknown.region),
                account_id: self
                    .findings_account_id
                    .clone()
                    .unwrap_or(unknown.account_id),
            },
            dead_letters: self.dead_letter_path(),
            alerts: self.alerts_path(),
            alert_format: self.alert_format,
            scored: self.scored.clone(),
            sns: self.aws.sns_topic.as_ref().map(|topic| SnsConfig {
                topic_arn: topic.clone(),
                aws: aws_settings(self),
                outbox: self.output.join("sns-outbox.jsonl"),
                sent_log: self.output.join("sns-sent.jsonl"),
                drain_timeout: self.aws.sns_drain_timeout,
            }),
        }
    }

    pub fn dead_letter_path(&self) -> PathBuf {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| self.output.join("dead-letter.jsonl"))
    }
}

/// Bounds on the engine's state (docs/state.md#limits). Hitting one is
/// counted (`state_caps` in the summary) and logged.
#[derive(clap::Args, Clone, Debug)]
pub struct LimitArgs {
    /// Users kept; an event of a new user past it is dead-lettered
    /// (`state_cap_users`).
    #[arg(long, default_value_t = StateLimits::default().max_users)]
    pub max_users: usize,
    /// Computers kept; an event on a new computer past it is dead-lettered
    /// (`state_cap_computers`).
    #[arg(long, default_value_t = StateLimits::default().max_computers)]
    pub max_computers: usize,
    /// Events kept in one user's 24 h window; past it the oldest leave early.
    #[arg(long, default_value_t = StateLimits::default().max_window_events)]
    pub max_window_events: usize,
    /// Events the watermark holds for ordering; past it the earliest are
    /// released early (and later ones of that second are late).
    #[arg(long, default_value_t = StateLimits::default().max_held_events)]
    pub max_held_events: usize,
    /// How far ahead an event may be dated: past the time most of the
    /// stream around it has reached, or, reading a followed file or Kinesis,
    /// past the wall clock. Further ahead, it is dead-lettered as `future`
    /// (counted, logged) and moves nothing: one record dated a year ahead
    /// cannot make the rest late. Keep it at or below the policy's
    /// allowed lateness.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub max_future_skew: std::time::Duration,
}

impl Default for LimitArgs {
    fn default() -> Self {
        let limits = StateLimits::default();
        LimitArgs {
            max_users: limits.max_users,
            max_computers: limits.max_computers,
            max_window_events: limits.max_window_events,
            max_held_events: limits.max_held_events,
            max_future_skew: std::time::Duration::from_secs(
                ClockOptions::DEFAULT_MAX_AHEAD_S as u64,
            ),
        }
    }
}

impl LimitArgs {
    /// The event clock's bounds, for a source that is `live` (a followed
    /// file, Kinesis) or not.
    pub fn clock(&self, live: bool) -> ClockOptions {
        ClockOptions {
            max_ahead_s: self.max_future_skew.as_secs().min(i64::MAX as u64) as i64,
            wall_clock: live,
            ..ClockOptions::default()
        }
    }

    pub fn limits(&self) -> StateLimits {
        StateLimits {
            max_users: self.max_users,
            max_computers: self.max_computers,
            max_window_events: self.max_window_events,
            max_held_events: self.max_held_events,
        }
    }
}

fn aws_settings(args: &RunArgs) -> AwsSettings {
    AwsSettings {
        region: args.catalog.aws_region.clone(),
        endpoint: args.aws.aws_endpoint.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `run`'s flags as the command line has them.
    #[derive(Parser)]
    struct Run {
        #[command(flatten)]
        args: RunArgs,
    }

    /// A default is written twice, in the flag's text and in the program's
    /// constants (for runs built without a command line): both must agree.
    #[test]
    fn the_flags_defaults_are_the_programs() {
        let parsed = Run::try_parse_from(["run", "--output", "out", "events.csv"])
            .unwrap()
            .args;
        let built = RunArgs::with_input("events.csv".into(), "out".into());
        let durations = |a: &RunArgs| {
            [
                a.policy_poll_interval,
                a.shutdown_timeout,
                a.recover_for,
                a.failover,
                a.fleet_max_drift,
                a.fleet_trade_interval,
                a.limits.max_future_skew,
            ]
        };
        assert_eq!(durations(&parsed), durations(&built));
        assert_eq!(parsed.batch_size, built.batch_size);
        assert_eq!(parsed.max_line_bytes, built.max_line_bytes);
        assert_eq!(parsed.input(), built.input());
        assert_eq!(parsed.output, built.output);
    }
}
