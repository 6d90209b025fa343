//! The AWS side of the daemon: the Kinesis source and replay producer, SNS
//! alerts, CloudWatch metrics and the ticker that publishes them (and
//! watches the freshness SLA), all through the official AWS SDK.
//!
//! Every client is built from the standard configuration chain
//! (`AWS_REGION`, `AWS_PROFILE`, credentials from the environment, profile,
//! SSO or instance role, and `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`),
//! with two optional overrides ([`AwsSettings`]) so that the same code talks to
//! AWS in production and to a local AWS-compatible server in the tests.
//!
//! The SDK is async; the pipeline is one synchronous thread. Each AWS
//! component runs its requests on a small runtime of its own ([`runtime`]) and
//! talks to the pipeline through bounded channels, so a slow or failing AWS
//! call never blocks scoring.

pub mod aggregation;
pub mod checkpoint;
pub mod cloudwatch;
pub mod kinesis;
pub mod merge;
pub mod producer;
pub mod shards;
pub mod sns;
pub mod ticker;

use std::time::Duration;

/// Overrides of the standard AWS configuration chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// Region; `None`: `AWS_REGION`, the profile, then IMDS.
    pub region: Option<String>,
    /// Endpoint for every service; `None`: `AWS_ENDPOINT_URL_<SERVICE>`,
    /// `AWS_ENDPOINT_URL`, then AWS's own.
    pub endpoint: Option<String>,
}

impl AwsSettings {
    /// Loads the shared SDK configuration (credentials, region, endpoint).
    pub async fn load(&self) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        loader.load().await
    }
}

/// Exponential backoff with full jitter: how long to wait before retry
/// `attempt` (0-based), between `base` and `cap`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const DEFAULT: Backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(10),
    };

    /// The delay before retry number `attempt`: a random share of
    /// `base * 2^attempt`, at most `cap` (jitter spreads the retries of many
    /// clients that failed together).
    pub fn delay(&self, attempt: u32, random: impl FnOnce() -> f64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.cap);
        ceiling.mul_f64(random().clamp(0.0, 1.0)).max(self.base / 2)
    }

    /// [`Backoff::delay`] with a random share from a per-thread generator.
    pub fn jittered(&self, attempt: u32) -> Duration {
        use rand::Rng;
        thread_local! {
            static JITTER: std::cell::RefCell<rand_pcg::Pcg32> = std::cell::RefCell::new({
                use rand::SeedableRng;
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                rand_pcg::Pcg32::seed_from_u64(nanos ^ std::process::id() as u64)
            });
        }
        self.delay(attempt, || {
            JITTER.with(|rng| rng.borrow_mut().random::<f64>())
        })
    }
}

/// The message of an SDK error with its cause chain (the SDK's own `Display`
/// says only "service error").
pub fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        assert_eq!(b.delay(0, || 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, || 1.0), Duration::from_millis(800));
        assert_eq!(b.delay(30, || 1.0), Duration::from_secs(2));
        // Never shorter than half the base, so a retry loop cannot spin.
        assert_eq!(b.delay(5, || 0.0), Duration::from_millis(50));
    }
}
