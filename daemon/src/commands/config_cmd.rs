//! `authpulse config check FILE`, and how `run --config FILE` takes the
//! file: each key sets its flag unless the flag was given on the command
//! line or through its `AUTHPULSE_*` variable.

use std::path::{Path, PathBuf};

use authpulse::config::Config;
use authpulse::sources::ParquetLocation;
use authpulse_engine::event::TimeBase;
use authpulse_engine::findings::AlertFormat;
use authpulse_engine::input::Format;
use clap::parser::ValueSource;
use clap::{ArgMatches, Subcommand, ValueEnum};

use super::aws_args::SourceUrl;
use super::catalog_args::CatalogKind;
use super::run::RunArgs;
use authpulse::sources::StreamFrom;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file for `run --config`: unknown keys and bad
    /// values are refused with the key and the reason. Prints the file's
    /// settings as JSON.
    Check {
        /// The configuration file (YAML).
        file: PathBuf,
    },
}

pub fn execute(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Check { file } => {
            let config = Config::load(&file)?;
            // Values the file's types do not say everything about (a
            // format, a date, a start position) are checked as `run` would.
            let mut args = RunArgs::with_input("-".into(), "authpulse-out".into());
            apply(&config, &file, &mut args, None)?;
            outln!("{}", serde_json::to_string_pretty(&config)?)?;
            Ok(())
        }
    }
}

/// Whether flag `id` was left to its default (not on the command line, not
/// from its environment variable).
fn unset(matches: Option<&ArgMatches>, id: &str) -> bool {
    matches.is_none_or(|m| matches!(m.value_source(id), None | Some(ValueSource::DefaultValue)))
}

/// Sets `args` from `config` (read from `path`) where `matches` (the
/// command line; `None`: nothing given) left a flag unset.
pub fn apply(
    config: &Config,
    path: &Path,
    args: &mut RunArgs,
    matches: Option<&ArgMatches>,
) -> anyhow::Result<()> {
    let bad = |key: &str, reason: String| anyhow::anyhow!("{}: {key}: {reason}", path.display());
    macro_rules! set {
        ($id:literal, $target:expr, $value:expr) => {
            if let Some(value) = $value
                && unset(matches, $id)
            {
                $target = value;
            }
        };
    }
    if let Some(source) = &config.source {
        if let Some(file) = &source.file
            && unset(matches, "input")
            && unset(matches, "input_flag")
        {
            args.input = file.clone();
        }
        set!("follow", args.follow, source.follow);
        if let Some(format) = &source.format {
            let parsed = Format::from_str(format, true).map_err(|_| {
                bad(
                    "source.format",
                    format!("`{format}`: expected auto, csv, lanl-auth, json, ocsf or ecs"),
                )
            })?;
            set!("format", args.format, Some(parsed));
        }
        if let Some(location) = &source.parquet {
            let url = if ParquetLocation::is_written_as(location) {
                location.clone()
            } else {
                format!("parquet:{location}")
            };
            let parsed: SourceUrl = url.parse().map_err(|e: String| bad("source.parquet", e))?;
            set!("source", args.aws.source, Some(Some(parsed)));
        }
        if let Some(kinesis) = &source.kinesis {
            let url = format!("kinesis://{}", kinesis.stream);
            let parsed: SourceUrl = url
                .parse()
                .map_err(|e: String| bad("source.kinesis.stream", e))?;
            set!("source", args.aws.source, Some(Some(parsed)));
            if let Some(from) = &kinesis.from {
                let parsed: StreamFrom = from
                    .parse()
                    .map_err(|e: String| bad("source.kinesis.from", e))?;
                set!("from", args.aws.from, Some(Some(parsed)));
            }
            set!(
                "poll_interval",
                args.aws.poll_interval,
                kinesis.poll_interval
            );
        }
    }
    set!("policy", args.policy, config.policy.clone().map(Some));
    set!(
        "policy_poll_interval",
        args.policy_poll_interval,
        config.policy_poll_interval
    );
    set!(
        "no_policy_reload",
        args.no_policy_reload,
        config.policy_reload.map(|reload| !reload)
    );
    if let Some(date) = &config.base_date {
        let parsed = TimeBase::parse(date).map_err(|e| bad("base_date", e))?;
        set!("base_date", args.base_date, Some(parsed));
    }
    set!(
        "warm_start",
        args.warm_start,
        config.warm_start.clone().map(Some)
    );
    set!(
        "shutdown_timeout",
        args.shutdown_timeout,
        config.shutdown_timeout
    );
    set!("recover_for", args.recover_for, config.recover_for);
    if let Some(output) = &config.output {
        set!("output", args.output, output.dir.clone());
        set!(
            "commit_interval",
            args.commit_interval,
            output.commit_interval.map(Some)
        );
        set!("no_lakehouse", args.no_lakehouse, output.tables.map(|t| !t));
        set!("no_state", args.no_state, output.state.map(|s| !s));
        set!("alerts", args.alerts, output.alerts.clone().map(Some));
        if let Some(format) = &output.alert_format {
            let parsed = AlertFormat::from_str(format, true).map_err(|_| {
                bad(
                    "output.alert_format",
                    format!("`{format}`: expected json or ocsf"),
                )
            })?;
            set!("alert_format", args.alert_format, Some(parsed));
        }
        set!(
            "dead_letter",
            args.dead_letter,
            output.dead_letter.clone().map(Some)
        );
    }
    if let Some(catalog) = &config.catalog {
        if let Some(kind) = &catalog.kind {
            let parsed = CatalogKind::from_str(kind, true).map_err(|_| {
                bad(
                    "catalog.kind",
                    format!("`{kind}`: expected embedded or glue"),
                )
            })?;
            set!("catalog", args.catalog.catalog, Some(parsed));
        }
        set!(
            "warehouse",
            args.catalog.warehouse,
            catalog.warehouse.clone().map(Some)
        );
        set!(
            "glue_endpoint",
            args.catalog.glue_endpoint,
            catalog.glue_endpoint.clone().map(Some)
        );
        set!(
            "s3_endpoint",
            args.catalog.s3_endpoint,
            catalog.s3_endpoint.clone().map(Some)
        );
        set!(
            "s3_path_style",
            args.catalog.s3_path_style,
            catalog.s3_path_style
        );
        set!(
            "glue_catalog_id",
            args.catalog.glue_catalog_id,
            catalog.glue_catalog_id.clone().map(Some)
        );
    }
    if let Some(aws) = &config.aws {
        set!(
            "aws_region",
            args.catalog.aws_region,
            aws.region.clone().map(Some)
        );
        set!(
            "aws_endpoint",
            args.aws.aws_endpoint,
            aws.endpoint.clone().map(Some)
        );
        set!(
            "sns_topic",
            args.aws.sns_topic,
            aws.sns_topic.clone().map(Some)
        );
        set!("cloudwatch", args.aws.cloudwatch, aws.cloudwatch);
        set!(
            "cloudwatch_namespace",
            args.aws.cloudwatch_namespace,
            aws.cloudwatch_namespace.clone()
        );
        set!(
            "pipeline_name",
            args.aws.pipeline_name,
            aws.pipeline_name.clone()
        );
        set!(
            "metrics_interval",
            args.aws.metrics_interval,
            aws.metrics_interval
        );
        set!("freshness_sla", args.aws.freshness_sla, aws.freshness_sla);
    }
    if let Some(http) = &config.http {
        if let Some(listen) = &http.listen {
            let parsed = listen
                .parse()
                .map_err(|e| bad("http.listen", format!("`{listen}`: {e}")))?;
            set!("listen", args.listen, Some(Some(parsed)));
        }
        set!(
            "admin_token_file",
            args.admin_token_file,
            http.admin_token_file.clone().map(Some)
        );
    }
    if let Some(limits) = &config.limits {
        set!("max_users", args.limits.max_users, limits.max_users);
        set!(
            "max_computers",
            args.limits.max_computers,
            limits.max_computers
        );
        set!(
            "max_window_events",
            args.limits.max_window_events,
            limits.max_window_events
        );
        set!(
            "max_held_events",
            args.limits.max_held_events,
            limits.max_held_events
        );
        set!(
            "max_future_skew",
            args.limits.max_future_skew,
            limits.max_future_skew
        );
    }
    Ok(())
}

/// `run --config FILE`: the file under the command line.
pub fn apply_file(path: &Path, args: &mut RunArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    apply(&config, path, args, Some(matches))
}
