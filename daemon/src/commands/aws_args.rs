//! `run`'s AWS options: the Kinesis source, SNS alerts and CloudWatch
//! metrics. Credentials, region and endpoints come from the standard AWS
//! chain (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, ...). The options
//! a deployment sets once can also come from the environment
//! (`AUTHPULSE_SOURCE`, `AUTHPULSE_SNS_TOPIC`, `AUTHPULSE_CLOUDWATCH`,
//! `AUTHPULSE_PIPELINE_NAME`), as the catalog's do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use authpulse::sources::{ParquetLocation, StreamFrom};
use clap::Args;

/// Where events come from, as a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceUrl {
    /// `kinesis://STREAM`
    Kinesis(String),
    /// OCSF Parquet files: `s3://BUCKET/PREFIX`, `parquet:PATH`, or an
    /// Iceberg table's (`iceberg:METADATA`, `glue:DATABASE.TABLE`).
    Parquet(ParquetLocation),
}

impl std::str::FromStr for SourceUrl {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        if ParquetLocation::is_written_as(value) {
            return value.parse().map(SourceUrl::Parquet);
        }
        match value.strip_prefix("kinesis://") {
            Some(stream) if !stream.is_empty() && !stream.contains('/') => {
                Ok(SourceUrl::Kinesis(stream.to_string()))
            }
            Some(_) => Err(format!("`{value}`: expected kinesis://STREAM_NAME")),
            None => Err(format!(
                "`{value}` is not a source URL: expected kinesis://STREAM_NAME, s3://BUCKET/PREFIX, parquet:PATH, iceberg:METADATA or glue:DATABASE.TABLE (give a file of lines as the INPUT argument)"
            )),
        }
    }
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "AWS")]
pub struct AwsArgs {
    /// Read a Kinesis stream instead of a file: `kinesis://STREAM`. Every
    /// shard is read; a parent shard is finished before its children. Or,
    /// for a backfill, OCSF Authentication events in Parquet (AWS Security
    /// Lake's table): `s3://BUCKET/PREFIX` or `parquet:PATH` (a local
    /// directory or file), every `.parquet` file below it, in event-time
    /// order; or the current snapshot of an Iceberg table of them,
    /// `glue:DATABASE.TABLE` (the Glue catalog) or `iceberg:METADATA` (the
    /// table's metadata file, a path or s3:// URL).
    #[arg(long, value_name = "URL", env = "AUTHPULSE_SOURCE")]
    pub source: Option<SourceUrl>,
    /// Where a Kinesis source starts: `checkpoint` (the saved positions),
    /// `trim-horizon` (the oldest retained record), `latest` (new records
    /// only) or an RFC 3339 time. Default: the checkpoint if there is one,
    /// else trim-horizon.
    #[arg(long, value_name = "POSITION")]
    pub from: Option<StreamFrom>,
    /// Stop (score, commit, print the summary) once every open shard has
    /// been read to its tip: for backfills and tests. With --lease-table a
    /// worker that gets there first waits (five minutes at most) for the
    /// others to get to theirs, so that the computers it decides take
    /// their last events too.
    #[arg(long)]
    pub until_caught_up: bool,
    /// Kinesis read positions of a run without tables or state. Default:
    /// OUTPUT/kinesis-checkpoint.json. With tables and state the positions
    /// are kept in the tables' commits and this file is not written.
    #[arg(long, value_name = "FILE")]
    pub kinesis_checkpoint: Option<PathBuf>,
    /// Wait between reads of a shard with nothing new.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Publish every alert to this SNS topic (JSON, at least once; a FIFO
    /// topic deduplicates by alert_id). Unsent alerts wait in
    /// OUTPUT/sns-outbox.jsonl and go out when SNS answers again.
    #[arg(long, value_name = "ARN", env = "AUTHPULSE_SNS_TOPIC")]
    pub sns_topic: Option<String>,
    /// At the end, how long to keep retrying SNS before leaving the unsent
    /// alerts in the outbox for the next start.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub sns_drain_timeout: Duration,
    /// Publish metrics to CloudWatch (PutMetricData).
    #[arg(long, env = "AUTHPULSE_CLOUDWATCH")]
    pub cloudwatch: bool,
    /// CloudWatch namespace of the metrics.
    #[arg(long, default_value = "AuthPulse", value_name = "NAMESPACE")]
    pub cloudwatch_namespace: String,
    /// Value of the `Pipeline` dimension on every metric.
    #[arg(
        long,
        default_value = "authpulse",
        value_name = "NAME",
        env = "AUTHPULSE_PIPELINE_NAME"
    )]
    pub pipeline_name: String,
    /// How often metrics are published.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub metrics_interval: Duration,
    /// Also append the metrics as CloudWatch Embedded Metric Format lines to
    /// this file (the CloudWatch agent turns them into metrics).
    #[arg(long, value_name = "FILE")]
    pub metrics_emf: Option<PathBuf>,
    /// Freshness SLA: when the 95th percentile of processing lag (event time
    /// to the pipeline reading the event) over a metrics interval exceeds this, an alert goes to the
    /// SNS topic (once, until the lag recovers). `0` turns it off.
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub freshness_sla: Duration,
    /// AWS endpoint for Kinesis, SNS and CloudWatch (a local server).
    /// Default: AWS_ENDPOINT_URL_<SERVICE>, then AWS_ENDPOINT_URL, then AWS's.
    #[arg(long, value_name = "URL")]
    pub aws_endpoint: Option<String>,
}

impl Default for AwsArgs {
    fn default() -> Self {
        AwsArgs {
            source: None,
            from: None,
            until_caught_up: false,
            kinesis_checkpoint: None,
            poll_interval: Duration::from_secs(1),
            sns_topic: None,
            sns_drain_timeout: Duration::from_secs(30),
            cloudwatch: false,
            cloudwatch_namespace: "AuthPulse".into(),
            pipeline_name: "authpulse".into(),
            metrics_interval: Duration::from_secs(60),
            metrics_emf: None,
            freshness_sla: Duration::from_secs(300),
            aws_endpoint: None,
        }
    }
}

impl AwsArgs {
    pub fn kinesis_checkpoint_path(&self, output: &Path) -> PathBuf {
        self.kinesis_checkpoint
            .clone()
            .unwrap_or_else(|| output.join("kinesis-checkpoint.json"))
    }

    /// Refuses combinations that cannot work, before anything starts.
    pub fn validate(&self, input_given: bool, follow: bool) -> anyhow::Result<()> {
        if self.source.is_some() {
            if input_given {
                bail!("give either an INPUT file or --source, not both");
            }
            if follow {
                bail!(
                    "--follow is for files; a Kinesis source is always followed (use --until-caught-up to stop at the tip), Parquet files are read to their end"
                );
            }
        }
        if !matches!(self.source, Some(SourceUrl::Kinesis(_))) {
            for (flag, set) in [
                ("--from", self.from.is_some()),
                ("--until-caught-up", self.until_caught_up),
                ("--kinesis-checkpoint", self.kinesis_checkpoint.is_some()),
            ] {
                if set {
                    bail!("{flag} is for --source kinesis://STREAM");
                }
            }
        }
        if self.metrics_interval < Duration::from_secs(1) {
            bail!("--metrics-interval must be at least 1s");
        }
        Ok(())
    }

    /// Whether metrics are computed at all.
    pub fn wants_metrics(&self) -> bool {
        self.cloudwatch || self.metrics_emf.is_some() || self.sns_topic.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse::aws::kinesis::StartAt;

    #[test]
    fn source_urls() {
        assert_eq!(
            "kinesis://auth-events".parse::<SourceUrl>(),
            Ok(SourceUrl::Kinesis("auth-events".into()))
        );
        assert_eq!(
            "s3://lake/ext/auth/".parse::<SourceUrl>(),
            Ok(SourceUrl::Parquet(ParquetLocation::S3(
                "s3://lake/ext/auth/".into()
            )))
        );
        assert_eq!(
            "parquet:lake/auth".parse::<SourceUrl>(),
            Ok(SourceUrl::Parquet(ParquetLocation::Local(
                "lake/auth".into()
            )))
        );
        assert_eq!(
            "glue:amazon_security_lake_glue_db_eu_west_1.auth".parse::<SourceUrl>(),
            Ok(SourceUrl::Parquet(ParquetLocation::GlueTable {
                database: "amazon_security_lake_glue_db_eu_west_1".into(),
                table: "auth".into(),
            }))
        );
        assert_eq!(
            "iceberg:s3://lake/t/metadata/00003-a.metadata.json".parse::<SourceUrl>(),
            Ok(SourceUrl::Parquet(ParquetLocation::IcebergTable(
                "s3://lake/t/metadata/00003-a.metadata.json".into()
            )))
        );
        for bad in [
            "s3://",
            "parquet:",
            "iceberg:",
            "glue:auth",
            "glue:.t",
            "glue:a.b.c",
        ] {
            assert!(bad.parse::<SourceUrl>().is_err(), "{bad}");
        }
        for bad in ["kinesis://", "auth-events", "kinesis://a/b"] {
            let error = bad.parse::<SourceUrl>().unwrap_err();
            assert!(error.contains("kinesis://STREAM_NAME"), "{bad}: {error}");
        }
        assert_eq!(
            "checkpoint".parse::<StreamFrom>(),
            Ok(StreamFrom::Checkpoint)
        );
        assert_eq!(
            "latest".parse::<StreamFrom>(),
            Ok(StreamFrom::Start(StartAt::Latest))
        );
    }

    #[test]
    fn kinesis_flags_need_a_kinesis_source() {
        let args = AwsArgs {
            until_caught_up: true,
            ..AwsArgs::default()
        };
        let error = args.validate(false, false).unwrap_err();
        assert!(error.to_string().contains("--source"), "{error}");
        let args = AwsArgs {
            source: Some(SourceUrl::Parquet(ParquetLocation::S3("s3://b".into()))),
            until_caught_up: true,
            ..AwsArgs::default()
        };
        assert!(args.validate(false, false).is_err());
        let args = AwsArgs {
            source: Some(SourceUrl::Kinesis("s".into())),
            ..AwsArgs::default()
        };
        assert!(args.validate(true, false).is_err());
        assert!(args.validate(false, true).is_err());
        assert!(args.validate(false, false).is_ok());
    }
}
