//! The configuration file of `authpulse run --config FILE` (YAML): what a
//! deployment sets once, in one place. Every key is optional; a key left
//! out keeps the command line's default. Command-line flags and
//! `AUTHPULSE_*` variables override the file. These structs' doc comments
//! are the reference; docs/config.md lists the same keys (a test checks
//! that the two agree).
//!
//! Unknown keys and bad values are refused with the file, the key and the
//! reason (`config.yaml: output.commit_interval: invalid duration ...`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where events come from: a file, stdin or a Kinesis stream.
    pub source: Option<SourceConfig>,
    /// The policy file. Default: ./policies.yaml if present, else the
    /// built-in policy. Or `s3://BUCKET/PATH/POLICY.yaml`: one policy for a
    /// fleet, copied with its modules to OUTPUT/policy/.
    pub policy: Option<PathBuf>,
    /// Reload the policy when it or its modules change, and on SIGHUP.
    /// Default: true.
    pub policy_reload: Option<bool>,
    /// How often a policy on S3 is looked at for a change. Default: 30s.
    #[serde(default, with = "duration")]
    pub policy_poll_interval: Option<Duration>,
    /// Date that LANL time 0 maps to (YYYY-MM-DD or RFC 3339). Default:
    /// 2024-01-01.
    pub base_date: Option<String>,
    /// Start from this state snapshot (`state build`) instead of empty.
    pub warm_start: Option<PathBuf>,
    /// Where results go.
    pub output: Option<OutputConfig>,
    /// Which catalog holds the tables.
    pub catalog: Option<CatalogConfig>,
    /// SNS alerts, CloudWatch metrics and AWS endpoints.
    pub aws: Option<AwsConfig>,
    /// The operations server.
    pub http: Option<HttpConfig>,
    /// Bounds on the engine state.
    pub limits: Option<LimitsConfig>,
    /// How long a stop (SIGTERM) may take to commit and snapshot. Default:
    /// 30s.
    #[serde(default, with = "duration")]
    pub shutdown_timeout: Option<Duration>,
    /// Once scoring, how long a failing run keeps resuming from its last
    /// commit before it gives up. Default: 5m.
    #[serde(default, with = "duration")]
    pub recover_for: Option<Duration>,
}

/// `source`: one of `file`, `kinesis` and `parquet`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A file of events (LANL CSV or JSON lines), or `-` for stdin.
    pub file: Option<PathBuf>,
    /// Keep reading a file as it grows.
    pub follow: Option<bool>,
    /// `auto`, `csv` or `json`. Default: auto.
    pub format: Option<String>,
    /// Read every shard of a Kinesis stream.
    pub kinesis: Option<KinesisConfig>,
    /// Backfill from OCSF Authentication events in Parquet (AWS Security
    /// Lake's table): `s3://BUCKET/PREFIX` or a local directory or file,
    /// or an Iceberg table's current snapshot, `glue:DATABASE.TABLE` or
    /// `iceberg:METADATA` (the table's metadata file).
    pub parquet: Option<String>,
}

/// `source.kinesis`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisConfig {
    /// The stream's name.
    pub stream: String,
    /// Where a new deployment starts: `trim-horizon`, `latest` or an RFC
    /// 3339 time. Later starts go on from the tables' progress.
    pub from: Option<String>,
    /// Wait between reads of a shard with nothing new. Default: 1s.
    #[serde(default, with = "duration")]
    pub poll_interval: Option<Duration>,
}

/// `output`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Directory of the embedded catalog and warehouse, alerts, dead letters
    /// and state snapshots. Default: authpulse-out.
    pub dir: Option<PathBuf>,
    /// Commit the tables (with the source position and a state snapshot)
    /// this often. Default: at the end for a file, 5s for a followed file
    /// or a stream.
    #[serde(default, with = "duration")]
    pub commit_interval: Option<Duration>,
    /// Write the Iceberg tables. Default: true.
    pub tables: Option<bool>,
    /// Keep state snapshots (what resumes need). Default: true.
    pub state: Option<bool>,
    /// The alerts file. Default: DIR/alerts.jsonl.
    pub alerts: Option<PathBuf>,
    /// The form of the alerts file and SNS messages: `json` (AuthPulse's
    /// own) or `ocsf` (OCSF Detection Findings). Default: json.
    pub alert_format: Option<String>,
    /// The dead-letter file. Default: DIR/dead-letter.jsonl.
    pub dead_letter: Option<PathBuf>,
}

/// `catalog`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// `embedded` (SQLite under output.dir) or `glue`. Default: embedded.
    pub kind: Option<String>,
    /// With glue: the S3 location new tables are created under
    /// (`s3://bucket/prefix`).
    pub warehouse: Option<String>,
    /// Glue endpoint (a VPC endpoint or a Glue-compatible server).
    pub glue_endpoint: Option<String>,
    /// S3 endpoint (a VPC endpoint or an S3-compatible server).
    pub s3_endpoint: Option<String>,
    /// Address S3 by path rather than by virtual host.
    pub s3_path_style: Option<bool>,
    /// The Glue catalog id when it is not the credentials' account's.
    pub glue_catalog_id: Option<String>,
}

/// `aws`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// AWS region. Default: AWS_REGION, then the profile.
    pub region: Option<String>,
    /// Endpoint for Kinesis, SNS and CloudWatch (a local server).
    pub endpoint: Option<String>,
    /// Publish every alert to this SNS topic.
    pub sns_topic: Option<String>,
    /// Publish metrics to CloudWatch. Default: false.
    pub cloudwatch: Option<bool>,
    /// CloudWatch namespace. Default: AuthPulse.
    pub cloudwatch_namespace: Option<String>,
    /// The `Pipeline` dimension of every CloudWatch metric. Default:
    /// authpulse.
    pub pipeline_name: Option<String>,
    /// How often CloudWatch metrics are published. Default: 60s.
    #[serde(default, with = "duration")]
    pub metrics_interval: Option<Duration>,
    /// Alert on SNS when p95 processing lag exceeds this (0 turns it off).
    /// Default: 5m.
    #[serde(default, with = "duration")]
    pub freshness_sla: Option<Duration>,
}

/// `http`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve health, metrics, the API and the dashboard here
    /// (`127.0.0.1:9464`). Off when absent.
    pub listen: Option<String>,
    /// File holding the admin routes' bearer token. Without one (and
    /// without AUTHPULSE_ADMIN_TOKEN) the admin routes are off.
    pub admin_token_file: Option<PathBuf>,
}

/// `limits`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most users kept; events of new users past it are dead-lettered.
    pub max_users: Option<usize>,
    /// Most computers kept; events on new computers past it are
    /// dead-lettered.
    pub max_computers: Option<usize>,
    /// Most events in one user's 24-hour window.
    pub max_window_events: Option<usize>,
    /// Most events the watermark holds.
    pub max_held_events: Option<usize>,
    /// How far ahead of the event clock (or, live, of the wall clock) an
    /// event may be dated before it is dead-lettered as `future`.
    #[serde(default, with = "duration")]
    pub max_future_skew: Option<Duration>,
}

/// Largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A configuration that cannot be used: the file, the key and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {key}: {reason}")]
    Invalid {
        path: String,
        key: String,
        reason: String,
    },
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            authpulse_engine::files::read_regular_text(path, MAX_CONFIG_BYTES, "configuration")
                .map_err(|error| ConfigError::Read {
                    path: path.display().to_string(),
                    error,
                })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses `text`, naming it `origin` in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let invalid = |key: String, reason: String| ConfigError::Invalid {
            path: origin.to_string(),
            key,
            reason,
        };
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." {
                "(top level)".into()
            } else {
                key
            };
            // The YAML error starts with the path of the map it was in,
            // which the key already says.
            let reason = e.into_inner().to_string();
            let reason = match reason.split_once(": ") {
                Some((head, rest)) if key.starts_with(head) => rest.to_string(),
                _ => reason,
            };
            invalid(key, reason)
        })?;
        if let Some(source) = &config.source {
            let given = [
                source.file.is_some(),
                source.kinesis.is_some(),
                source.parquet.is_some(),
            ];
            if given.iter().filter(|&&g| g).count() > 1 {
                return Err(invalid(
                    "source".into(),
                    "give one of `file`, `kinesis` and `parquet`".into(),
                ));
            }
            if source.follow.is_some() && source.file.is_none() {
                return Err(invalid("source".into(), "`follow` needs a `file`".into()));
            }
            if source.format.is_some() && source.kinesis.is_some() {
                return Err(invalid(
                    "source".into(),
                    "`format` is for a `file` or `parquet` (a Kinesis record's form is told per record)"
                        .into(),
                ));
            }
        }
        if let Some(listen) = config.http.as_ref().and_then(|h| h.listen.as_deref()) {
            listen.parse::<std::net::SocketAddr>().map_err(|e| {
                invalid(
                    "http.listen".into(),
                    format!("`{listen}`: {e} (expected ADDR:PORT, such as 127.0.0.1:9464)"),
                )
            })?;
        }
        Ok(config)
    }
}

/// Durations as humantime text (`500ms`, `30s`, `5m`).
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| {
            humantime::parse_duration(&t).map_err(|e| {
                serde::de::Error::custom(format!("`{t}`: {e} (expected 500ms, 30s, 5m ...)"))
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_the_key_and_the_reason() {
        let error = |text: &str| Config::parse(text, "c.yaml").unwrap_err().to_string();
        let unknown = error("output:\n  dir: out\n  comit_interval: 5s\n");
        assert!(
            unknown.starts_with("c.yaml: output.comit_interval: unknown field `comit_interval`"),
            "{unknown}"
        );
        let bad = error("output:\n  commit_interval: soon\n");
        assert!(
            bad.starts_with("c.yaml: output.commit_interval: `soon`:"),
            "{bad}"
        );
        let typed = error("limits:\n  max_users: many\n");
        assert!(
            typed.starts_with("c.yaml: limits.max_users: invalid type"),
            "{typed}"
        );
        let both = error("source:\n  file: a.csv\n  kinesis:\n    stream: s\n");
        assert_eq!(
            both,
            "c.yaml: source: give one of `file`, `kinesis` and `parquet`"
        );
        let listen = error("http:\n  listen: 9464\n");
        assert!(
            listen.starts_with("c.yaml: http.listen: `9464`"),
            "{listen}"
        );
        let top = error("sorce:\n  file: a.csv\n");
        assert!(
            top.starts_with("c.yaml: sorce: unknown field `sorce`"),
            "{top}"
        );
    }

    /// Every key of a file that sets everything, as dotted paths.
    fn key_paths() -> Vec<String> {
        let all = Config {
            source: Some(SourceConfig {
                file: Some("f".into()),
                follow: Some(true),
                format: Some("csv".into()),
                kinesis: Some(KinesisConfig {
                    stream: "s".into(),
                    from: Some("latest".into()),
                    poll_interval: Some(Duration::from_secs(1)),
                }),
                parquet: Some("s3://lake/auth".into()),
            }),
            policy: Some("p".into()),
            policy_reload: Some(true),
            policy_poll_interval: Some(Duration::from_secs(30)),
            base_date: Some("2024-01-01".into()),
            warm_start: Some("w".into()),
            output: Some(OutputConfig {
                dir: Some("d".into()),
                commit_interval: Some(Duration::from_secs(1)),
                tables: Some(true),
                state: Some(true),
                alerts: Some("a".into()),
                alert_format: Some("ocsf".into()),
                dead_letter: Some("l".into()),
            }),
            catalog: Some(CatalogConfig {
                kind: Some("glue".into()),
                warehouse: Some("s3://b".into()),
                glue_endpoint: Some("e".into()),
                s3_endpoint: Some("e".into()),
                s3_path_style: Some(true),
                glue_catalog_id: Some("1".into()),
            }),
            aws: Some(AwsConfig {
                region: Some("r".into()),
                endpoint: Some("e".into()),
                sns_topic: Some("t".into()),
                cloudwatch: Some(true),
                cloudwatch_namespace: Some("n".into()),
                pipeline_name: Some("p".into()),
                metrics_interval: Some(Duration::from_secs(1)),
                freshness_sla: Some(Duration::from_secs(1)),
            }),
            http: Some(HttpConfig {
                listen: Some("127.0.0.1:1".into()),
                admin_token_file: Some("t".into()),
            }),
            limits: Some(LimitsConfig {
                max_users: Some(1),
                max_computers: Some(1),
                max_window_events: Some(1),
                max_held_events: Some(1),
                max_future_skew: Some(Duration::from_secs(1)),
            }),
            shutdown_timeout: Some(Duration::from_secs(1)),
            recover_for: Some(Duration::from_secs(1)),
        };
        fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (key, value) in map {
                        let path = if prefix.is_empty() {
                            key.clone()
                        } else {
                            format!("{prefix}.{key}")
                        };
                        walk(&path, value, out);
                    }
                }
                _ => out.push(prefix.to_string()),
            }
        }
        let mut paths = Vec::new();
        walk("", &serde_json::to_value(&all).unwrap(), &mut paths);
        paths
    }

    #[test]
    fn docs_config_md_lists_exactly_the_keys() {
        let doc = include_str!("../../docs/config.md");
        let documented: std::collections::BTreeSet<String> = doc
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .map(str::to_string)
            .collect();
        let keys: std::collections::BTreeSet<String> = key_paths().into_iter().collect();
        assert_eq!(documented, keys, "docs/config.md and daemon/src/config.rs");
    }

    #[test]
    fn the_example_configurations_load() {
        for (name, text) in [
            (
                "embedded.yaml",
                include_str!("../../deploy/config/embedded.yaml"),
            ),
            (
                "production.yaml",
                include_str!("../../deploy/config/production.yaml"),
            ),
        ] {
            let config = Config::parse(text, name).unwrap();
            assert!(config.output.is_some() && config.http.is_some(), "{name}");
        }
    }

    #[test]
    fn an_empty_file_sets_nothing() {
        assert_eq!(Config::parse("", "c.yaml").unwrap(), Config::default());
        assert_eq!(Config::parse("{}", "c.yaml").unwrap(), Config::default());
    }
}
