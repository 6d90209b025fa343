//! The run's metrics, published every interval (CloudWatch, EMF lines),
//! and its freshness SLA watched: a breach is logged and handed back once
//! (until it is met again), for the run's outputs to announce.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use authpulse_engine::input::Source;
use authpulse_engine::metrics::{LagHistogram, MetricsSnapshot};
use authpulse_engine::pipeline::Pipeline;

use super::AwsSettings;
use super::cloudwatch::{self, CloudWatchConfig, CloudWatchPublisher, EmfWriter};
use super::sns;

/// What [`MetricsTicker::start`] publishes, where, and how often.
#[derive(Clone, Debug)]
pub struct TickerConfig {
    pub interval: Duration,
    /// Put metrics to CloudWatch.
    pub cloudwatch: bool,
    /// Write them as CloudWatch embedded-metric-format lines here.
    pub emf: Option<PathBuf>,
    pub namespace: String,
    /// The `Pipeline` dimension.
    pub pipeline_name: String,
    /// The p95 lag beyond which the run is not fresh (`None`: unwatched).
    pub freshness_sla: Option<Duration>,
    pub aws: AwsSettings,
}

/// Why the ticker did not start.
#[derive(Debug, thiserror::Error)]
pub enum TickerError {
    #[error("start the CloudWatch publisher")]
    CloudWatch(#[source] std::io::Error),
    #[error("open {path}")]
    Emf {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Publishes metrics every interval and watches the freshness SLA.
pub struct MetricsTicker {
    interval: Duration,
    last: Instant,
    previous: MetricsSnapshot,
    /// The cumulative lag histogram at the previous tick.
    previous_lag: LagHistogram,
    cloudwatch: Option<CloudWatchPublisher>,
    emf: Option<EmfWriter>,
    namespace: String,
    dimensions: Vec<(String, String)>,
    sla: Option<Duration>,
    sla_breached: bool,
}

/// The p95 lag went past the freshness SLA.
pub struct FreshnessBreach {
    /// The `Pipeline` dimension.
    pub pipeline: String,
    /// The interval's lag.
    pub lag: LagHistogram,
    pub sla: Duration,
}

impl FreshnessBreach {
    /// The breach as an SNS message.
    pub fn message(&self) -> sns::Message {
        sns::Message::freshness(&self.pipeline, &self.lag, self.sla)
    }
}

impl MetricsTicker {
    pub fn start(config: TickerConfig) -> Result<MetricsTicker, TickerError> {
        let dimensions = vec![("Pipeline".to_string(), config.pipeline_name)];
        let cloudwatch = if config.cloudwatch {
            Some(
                CloudWatchPublisher::start(CloudWatchConfig {
                    namespace: config.namespace.clone(),
                    dimensions: dimensions.clone(),
                    aws: config.aws,
                })
                .map_err(TickerError::CloudWatch)?,
            )
        } else {
            None
        };
        let emf = match config.emf {
            Some(path) => {
                Some(EmfWriter::create(&path).map_err(|source| TickerError::Emf { path, source })?)
            }
            None => None,
        };
        Ok(MetricsTicker {
            interval: config.interval,
            last: Instant::now(),
            previous: MetricsSnapshot::default(),
            previous_lag: LagHistogram::default(),
            cloudwatch,
            emf,
            namespace: config.namespace,
            dimensions,
            sla: config.freshness_sla.filter(|d| !d.is_zero()),
            sla_breached: false,
        })
    }

    /// Publishes if an interval has passed since the last time (or
    /// `last_round`); a new breach of the freshness SLA is handed back.
    pub fn tick(
        &mut self,
        pipeline: &mut Pipeline<'_>,
        source: &dyn Source,
        last_round: bool,
    ) -> Option<FreshnessBreach> {
        if !last_round && self.last.elapsed() < self.interval {
            return None;
        }
        self.last = Instant::now();
        let cumulative = pipeline.metrics();
        // The interval's lag, the rest cumulative.
        let current = MetricsSnapshot {
            lag: cumulative.lag.since(&self.previous_lag),
            ..cumulative.clone()
        };
        let cumulative_lag = cumulative.lag;
        let ages = source.iterator_ages_ms();
        let readings = cloudwatch::readings(&self.previous, &current, &ages);
        let now = SystemTime::now();
        if let Some(emf) = &mut self.emf
            && let Err(e) = emf.write(&cloudwatch::emf_line(
                &self.namespace,
                &self.dimensions,
                &readings,
                now,
            ))
        {
            tracing::warn!(error = %e, "cannot write EMF metrics");
        }
        if let Some(publisher) = &self.cloudwatch {
            publisher.put(readings, now);
        }
        let breach = self.check_freshness(&current);
        self.previous_lag = cumulative_lag;
        self.previous = current;
        breach
    }

    /// What was sent to CloudWatch, once the last puts are done.
    pub fn flush(&self) -> Option<cloudwatch::PublishReport> {
        self.cloudwatch.as_ref().map(CloudWatchPublisher::flush)
    }

    fn check_freshness(&mut self, current: &MetricsSnapshot) -> Option<FreshnessBreach> {
        let (Some(sla), Some(p95)) = (self.sla, current.lag.quantile(0.95)) else {
            return None;
        };
        let breached = p95 > sla.as_secs();
        let was_breached = std::mem::replace(&mut self.sla_breached, breached);
        if breached && !was_breached {
            tracing::warn!(
                p95_lag_s = p95,
                sla_s = sla.as_secs(),
                "freshness SLA breached"
            );
            let pipeline = self.dimensions.first().map_or("", |(_, v)| v.as_str());
            return Some(FreshnessBreach {
                pipeline: pipeline.to_string(),
                lag: current.lag.clone(),
                sla,
            });
        }
        if !breached && was_breached {
            tracing::info!(
                p95_lag_s = p95,
                sla_s = sla.as_secs(),
                "freshness SLA met again"
            );
        }
        None
    }
}
