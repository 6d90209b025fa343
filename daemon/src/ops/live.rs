//! What the operations server shows, kept current by the pipeline thread.
//!
//! The pipeline owns its state and never shares it: once a second, between
//! batches, [`Publisher::tick`] copies what the API and the metrics need
//! (the summary so far, sizes, rules, lag) into [`Live`], and answers the
//! questions that need the state itself (a user's features) that the server
//! queued. A scrape or an API call therefore costs the pipeline nothing but
//! that copy, whatever its rate.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use authpulse_engine::alerts::Alert;
use authpulse_engine::input::Source;
use authpulse_engine::metrics::LagHistogram;
use authpulse_engine::pipeline::{Pipeline, UserView};
use authpulse_engine::reload::ReloadHandle;
use authpulse_engine::sinks::{AlertSink, Commit};

use super::prometheus;
use super::status::{FleetView, Point, Status};

/// Recent alert publications kept for the API and the dashboard.
const RECENT_ALERTS: usize = 500;
/// Points of the throughput and lag history (one a second: 10 minutes).
const HISTORY_POINTS: usize = 600;
/// How often the status is copied.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// A question for the pipeline thread.
pub enum Question {
    User(String, Sender<Option<UserView>>),
}

/// What is not ready, by name (`source`, `catalog`, `rules`, `pipeline`
/// while it recovers from a failure), and why.
pub type NotReady = BTreeMap<&'static str, String>;

/// Shared between the pipeline thread and the server.
pub struct Live {
    status: Mutex<Arc<Status>>,
    alerts: Mutex<VecDeque<Arc<serde_json::Value>>>,
    history: Mutex<VecDeque<Point>>,
    not_ready: Mutex<NotReady>,
    questions: Mutex<Option<Sender<Question>>>,
    reload: Mutex<Option<ReloadHandle>>,
    fleet: Mutex<Option<FleetView>>,
    started: SystemTime,
}

impl Live {
    pub fn new() -> Arc<Live> {
        let not_ready = NotReady::from([
            ("source", "not connected yet".to_string()),
            ("catalog", "not opened yet".to_string()),
            ("rules", "not loaded yet".to_string()),
        ]);
        Arc::new(Live {
            status: Mutex::new(Arc::new(Status {
                phase: "starting",
                started_at: rfc3339(SystemTime::now()),
                ..Status::default()
            })),
            alerts: Mutex::new(VecDeque::new()),
            history: Mutex::new(VecDeque::new()),
            not_ready: Mutex::new(not_ready),
            questions: Mutex::new(None),
            reload: Mutex::new(None),
            fleet: Mutex::new(None),
            started: SystemTime::now(),
        })
    }

    pub fn status(&self) -> Arc<Status> {
        Arc::clone(&self.status.lock().expect("status"))
    }

    /// Sets the phase at once (without waiting for the next publication).
    pub fn set_phase(&self, phase: &'static str) {
        let mut status = self.status.lock().expect("status");
        let mut next = Status::clone(&status);
        next.phase = phase;
        *status = Arc::new(next);
    }

    /// The latest alert publications, newest first.
    pub fn recent_alerts(&self, limit: usize) -> Vec<Arc<serde_json::Value>> {
        let alerts = self.alerts.lock().expect("alerts");
        alerts.iter().rev().take(limit).cloned().collect()
    }

    pub fn history(&self) -> Vec<Point> {
        self.history
            .lock()
            .expect("history")
            .iter()
            .copied()
            .collect()
    }

    /// Marks `part` ready (`None`) or not, with why.
    pub fn set_ready(&self, part: &'static str, why_not: Option<String>) {
        let mut not_ready = self.not_ready.lock().expect("readiness");
        match why_not {
            Some(why) => not_ready.insert(part, why),
            None => not_ready.remove(part),
        };
    }

    pub fn not_ready(&self) -> NotReady {
        self.not_ready.lock().expect("readiness").clone()
    }

    /// Asks the pipeline thread; `None` when no pipeline is running or it
    /// did not answer within `timeout`.
    pub fn ask_user(&self, user: &str, timeout: Duration) -> Option<Option<UserView>> {
        let (reply, answer) = mpsc::channel();
        let sender = self.questions.lock().expect("questions").clone()?;
        sender.send(Question::User(user.to_string(), reply)).ok()?;
        answer.recv_timeout(timeout).ok()
    }

    /// A fleet worker's leases as they are now; shown at once (a worker
    /// holding no shard has no pipeline to publish for it).
    pub fn set_fleet(&self, view: FleetView) {
        prometheus::publish_fleet(&view);
        let mut status = self.status.lock().expect("status");
        if status.fleet.as_ref() != Some(&view) {
            let mut next = Status::clone(&status);
            next.fleet = Some(view.clone());
            *status = Arc::new(next);
        }
        *self.fleet.lock().expect("fleet") = Some(view);
    }

    pub fn reload_handle(&self) -> Option<ReloadHandle> {
        self.reload.lock().expect("reload").clone()
    }

    pub fn set_reload_handle(&self, handle: Option<ReloadHandle>) {
        *self.reload.lock().expect("reload") = handle;
    }

    fn push_alert(&self, alert: &Alert) {
        let Ok(value) = serde_json::to_value(alert) else {
            return;
        };
        let mut alerts = self.alerts.lock().expect("alerts");
        if alerts.len() == RECENT_ALERTS {
            alerts.pop_front();
        }
        alerts.push_back(Arc::new(value));
    }
}

/// The pipeline thread's side: publishes and answers.
pub struct Publisher {
    live: Arc<Live>,
    questions: Receiver<Question>,
    last: Instant,
    last_read: u64,
    previous_lag: LagHistogram,
    reloads: (u64, u64),
    last_reload_at: Option<String>,
    last_reload_refused_at: Option<String>,
    source: String,
}

impl Publisher {
    /// Starts answering for a pipeline reading `source`.
    pub fn new(live: &Arc<Live>, source: &str) -> Publisher {
        let (sender, questions) = mpsc::channel();
        *live.questions.lock().expect("questions") = Some(sender);
        let status = live.status();
        Publisher {
            live: Arc::clone(live),
            questions,
            last: Instant::now() - PUBLISH_EVERY,
            last_read: status.summary.events_read,
            previous_lag: LagHistogram::default(),
            reloads: (
                status.summary.policy_reloads,
                status.summary.policy_reloads_refused,
            ),
            last_reload_at: status.last_reload_at.clone(),
            last_reload_refused_at: status.last_reload_refused_at.clone(),
            source: source.to_string(),
        }
    }

    /// Answers waiting questions, and publishes once a second (or now,
    /// with `force`).
    pub fn tick(&mut self, pipeline: &mut Pipeline<'_>, source: &dyn Source, force: bool) {
        while let Ok(question) = self.questions.try_recv() {
            match question {
                Question::User(name, reply) => {
                    let _ = reply.send(pipeline.user_view(&name));
                }
            }
        }
        let elapsed = self.last.elapsed();
        if elapsed < PUBLISH_EVERY && !force {
            return;
        }
        self.last = Instant::now();
        let summary = pipeline.summary();
        let lag = pipeline.metrics().lag;
        let interval_lag = lag.since(&self.previous_lag);
        self.previous_lag = lag;
        pipeline.drain_batch_durations(prometheus::record_batch);
        let now = SystemTime::now();
        if summary.policy_reloads != self.reloads.0 {
            self.last_reload_at = Some(rfc3339(now));
        }
        if summary.policy_reloads_refused != self.reloads.1 {
            self.last_reload_refused_at = Some(rfc3339(now));
        }
        self.reloads = (summary.policy_reloads, summary.policy_reloads_refused);
        let events_per_s =
            summary.events_read.saturating_sub(self.last_read) as f64 / elapsed.as_secs_f64();
        self.last_read = summary.events_read;
        let iterator_age_ms: BTreeMap<String, i64> =
            source.iterator_ages_ms().into_iter().collect();
        let phase = match self.live.status().phase {
            "stopping" => "stopping",
            _ => "running",
        };
        let status = Status {
            phase,
            source: self.source.clone(),
            started_at: rfc3339(self.live.started),
            updated_at: rfc3339(now),
            uptime_s: now
                .duration_since(self.live.started)
                .unwrap_or_default()
                .as_secs_f64(),
            events_per_s,
            lag_p50_s: interval_lag.quantile(0.5),
            lag_p95_s: interval_lag.quantile(0.95),
            iterator_age_ms,
            events_by_shard: source.events_by_partition().into_iter().collect(),
            last_reload_at: self.last_reload_at.clone(),
            last_reload_refused_at: self.last_reload_refused_at.clone(),
            sizes: pipeline.sizes(),
            rules: pipeline.rules_info(),
            summary,
            fleet: self.live.fleet.lock().expect("fleet").clone(),
        };
        prometheus::publish(&status);
        {
            let mut history = self.live.history.lock().expect("history");
            if history.len() == HISTORY_POINTS {
                history.pop_front();
            }
            history.push_back(Point {
                t: now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs() as i64,
                events_per_s,
                lag_p95_s: status.lag_p95_s,
            });
        }
        *self.live.status.lock().expect("status") = Arc::new(status);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Questions asked from now on get no answer instead of waiting.
        *self.live.questions.lock().expect("questions") = None;
    }
}

/// An alert sink that keeps the latest publications for the API.
pub struct LiveAlerts(pub Arc<Live>);

impl Commit for LiveAlerts {}

impl AlertSink for LiveAlerts {
    fn send(&mut self, alert: &Alert) -> std::io::Result<()> {
        prometheus::count_alert(alert);
        self.0.push_alert(alert);
        Ok(())
    }
}

pub fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
