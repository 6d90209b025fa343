//! Hot reload of the policy while the daemon runs.
//!
//! A [`PolicyWatcher`] thread watches `policies.yaml` and every rule module it
//! names (with `notify`), and takes SIGHUP as a request to reload. On a change
//! it waits for the writes to settle, then parses, validates and compiles the
//! new policy off the hot path. A good one is handed to the pipeline, which
//! swaps it in between two batches (so every event is scored entirely by one
//! version); a bad one is refused with the loader's precise message and the
//! running policy stays. Rule sets the pipeline retires are sent back here to
//! be dropped, so freeing their sandboxes does not stall scoring either.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::policy::{ModuleSource, Policy, RuleMode};
use crate::rules::{Engine, RuleSet};

/// How long writes must have stopped before a change is loaded: editors and
/// deploy tools write in several steps (truncate, write, rename).
const SETTLE: Duration = Duration::from_millis(150);
/// How often the watcher thread looks at the SIGHUP flag.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// A policy version parsed, validated and compiled, ready to swap in.
pub struct Candidate {
    pub policy: Policy,
    pub rules: RuleSet,
    /// When the change that produced it was noticed (reload-to-effect time).
    pub noticed: Instant,
}

/// What the watcher reports to the pipeline.
pub enum ReloadEvent {
    Ready(Box<Candidate>),
    /// The change was refused; the running policy stays.
    Refused(String),
}

enum Trigger {
    Changed(Instant),
    Retire(Box<RuleSet>),
    /// Reload now (as SIGHUP does) and say how it went.
    Requested(Sender<ReloadReply>),
    /// Run a rule in another mode from now on, over whatever the file says,
    /// until the process ends; and say how it went.
    SetMode(String, ModeOverride, Sender<ReloadReply>),
}

/// What the watcher logs of a load, once the pipeline has it.
enum Said {
    Built {
        origin: String,
        version: String,
        build_ms: u64,
    },
    Refused(String),
}

/// A reload asked for through a [`ReloadHandle`]: the new policy version
/// (swapped in at the next batch), or why it was refused.
pub type ReloadReply = Result<String, String>;

/// A mode set for one rule while running ([`ReloadHandle::set_mode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeOverride {
    Enforce,
    Shadow,
    /// Not run at all.
    Disabled,
}

/// Asks a [`PolicyWatcher`] for reloads from another thread (the
/// operations API). Cheap to clone.
#[derive(Clone)]
pub struct ReloadHandle {
    triggers: Sender<Trigger>,
}

impl ReloadHandle {
    /// Reloads the policy file now, even unchanged; the reply comes once it
    /// is built or refused.
    pub fn reload(&self) -> Receiver<ReloadReply> {
        let (reply, answer) = mpsc::channel();
        let _ = self.triggers.send(Trigger::Requested(reply));
        answer
    }

    /// Runs rule `id` in `mode` from the next batch on, and after every
    /// later reload of the file, until the process ends.
    pub fn set_mode(&self, id: &str, mode: ModeOverride) -> Receiver<ReloadReply> {
        let (reply, answer) = mpsc::channel();
        let _ = self
            .triggers
            .send(Trigger::SetMode(id.to_string(), mode, reply));
        answer
    }
}

/// Watches a policy file and its modules; see the module doc.
pub struct PolicyWatcher {
    events: Receiver<ReloadEvent>,
    triggers: Sender<Trigger>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {error}")]
    Notify { path: String, error: notify::Error },
    #[error("cannot handle SIGHUP: {0}")]
    Signal(std::io::Error),
    #[error("cannot start the policy watcher: {0}")]
    Thread(std::io::Error),
}

/// The files a policy depends on: itself and its module files.
fn watched_files(path: &Path, policy: &Policy) -> HashSet<PathBuf> {
    let mut files = HashSet::from([absolute(path)]);
    for index in 0..policy.file.rules.len() {
        if let ModuleSource::File(module) = policy.module_source(index) {
            files.insert(absolute(&module));
        }
    }
    files
}

fn absolute(path: &Path) -> PathBuf {
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => (
            if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            },
            name,
        ),
        _ => return path.to_path_buf(),
    };
    std::fs::canonicalize(dir).map_or_else(|_| path.to_path_buf(), |dir| dir.join(name))
}

impl PolicyWatcher {
    /// Starts watching `path`, from which `running` (the policy in use) was
    /// loaded. New rule sets are built for `engine` and batches of up to
    /// `capacity` events, like the running one.
    pub fn start(
        path: &Path,
        running: &Policy,
        running_version: &str,
        engine: Engine,
        capacity: usize,
    ) -> Result<PolicyWatcher, WatchError> {
        let (triggers, trigger_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let files = Arc::new(Mutex::new(watched_files(path, running)));
        let notify_files = Arc::clone(&files);
        let notify_triggers = triggers.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if matches!(event.kind, EventKind::Access(_)) {
                    return;
                }
                let files = notify_files.lock().expect("watch list");
                if event.paths.iter().any(|p| files.contains(p)) {
                    let _ = notify_triggers.send(Trigger::Changed(Instant::now()));
                }
            })
            .map_err(|error| WatchError::Notify {
                path: path.display().to_string(),
                error,
            })?;
        let mut dirs = HashSet::new();
        watch_dirs(&mut watcher, &mut dirs, &files.lock().expect("watch list"))?;

        let hangup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hangup))
            .map_err(WatchError::Signal)?;
        let stop = Arc::new(AtomicBool::new(false));
        let state = WatchState {
            path: path.to_path_buf(),
            engine,
            capacity,
            version: running_version.to_string(),
            lateness: running.file.watermark.allowed_lateness,
            files,
            dirs,
            watcher,
            hangup,
            stop: Arc::clone(&stop),
            overrides: std::collections::BTreeMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("policy-watcher".into())
            .spawn(move || state.run(&trigger_rx, &event_tx))
            .map_err(WatchError::Thread)?;
        Ok(PolicyWatcher {
            events,
            triggers,
            stop,
            thread: Some(thread),
        })
    }

    /// The next reload outcome, if one is waiting (never blocks).
    pub fn try_next(&self) -> Option<ReloadEvent> {
        self.events.try_recv().ok()
    }

    /// A handle to ask for reloads from another thread.
    pub fn handle(&self) -> ReloadHandle {
        ReloadHandle {
            triggers: self.triggers.clone(),
        }
    }

    /// Hands a replaced rule set to the watcher thread to be dropped there.
    pub fn retire(&self, rules: RuleSet) {
        let _ = self.triggers.send(Trigger::Retire(Box::new(rules)));
    }
}

impl Drop for PolicyWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch_dirs(
    watcher: &mut RecommendedWatcher,
    dirs: &mut HashSet<PathBuf>,
    files: &HashSet<PathBuf>,
) -> Result<(), WatchError> {
    // Directories, not files: a file replaced by rename (how editors and
    // deploy tools write) would otherwise drop its watch.
    for dir in files.iter().filter_map(|f| f.parent()) {
        if dirs.insert(dir.to_path_buf()) {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|error| WatchError::Notify {
                    path: dir.display().to_string(),
                    error,
                })?;
        }
    }
    Ok(())
}

struct WatchState {
    path: PathBuf,
    engine: Engine,
    capacity: usize,
    /// Version of the newest policy handed over (or running).
    version: String,
    /// The running event-time lateness, which a reload cannot change.
    lateness: Duration,
    files: Arc<Mutex<HashSet<PathBuf>>>,
    dirs: HashSet<PathBuf>,
    watcher: RecommendedWatcher,
    hangup: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Rule modes set while running, by rule id.
    overrides: std::collections::BTreeMap<String, ModeOverride>,
}

impl WatchState {
    fn run(mut self, triggers: &Receiver<Trigger>, events: &Sender<ReloadEvent>) {
        while !self.stop.load(Ordering::Relaxed) {
            // SIGHUP reloads even an unchanged policy: it re-enables rules that
            // `disable_after` switched off.
            let mut reply = None;
            let mut deferred = Vec::new();
            let (noticed, force) = match triggers.recv_timeout(SIGNAL_POLL) {
                Ok(Trigger::Changed(at)) => (at, false),
                Ok(Trigger::Retire(old)) => {
                    drop(old);
                    continue;
                }
                Ok(Trigger::Requested(to)) => {
                    tracing::info!(policy = %self.path.display(), "reload requested");
                    reply = Some(to);
                    (Instant::now(), true)
                }
                Ok(Trigger::SetMode(id, mode, to)) => {
                    if !self.set_mode(id, mode, &to, events) {
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if !self.hangup.swap(false, Ordering::Relaxed) {
                        continue;
                    }
                    tracing::info!(policy = %self.path.display(), "SIGHUP: reloading the policy");
                    (Instant::now(), true)
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // Let the writes settle: absorb further changes until quiet.
            while reply.is_none() {
                match triggers.recv_timeout(SETTLE) {
                    Ok(Trigger::Changed(_)) => {}
                    Ok(Trigger::Retire(old)) => drop(old),
                    // Answered by the reload about to happen.
                    Ok(Trigger::Requested(to)) => reply = Some(to),
                    // After the reload about to happen.
                    Ok(Trigger::SetMode(id, mode, to)) => deferred.push((id, mode, to)),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            let loaded = self.load(force);
            if let Some(reply) = reply {
                let _ = reply.send(match &loaded {
                    Ok(Some((_, rules))) => Ok(rules.version.clone()),
                    Ok(None) => Ok(self.version.clone()),
                    Err(message) => Err(message.clone()),
                });
            }
            // Handed to the pipeline before it is logged: whoever reads the
            // log line can count on the pipeline having it.
            let (event, said) = match loaded {
                Ok(None) => (None, None),
                Ok(Some((policy, rules))) => {
                    let said = Said::Built {
                        origin: policy.origin.clone(),
                        version: rules.version.clone(),
                        build_ms: noticed.elapsed().as_millis() as u64,
                    };
                    let candidate = Candidate {
                        policy,
                        rules,
                        noticed,
                    };
                    (Some(ReloadEvent::Ready(Box::new(candidate))), Some(said))
                }
                Err(message) => (
                    Some(ReloadEvent::Refused(message.clone())),
                    Some(Said::Refused(message)),
                ),
            };
            let gone = event.is_some_and(|event| events.send(event).is_err());
            match said {
                Some(Said::Built {
                    origin,
                    version,
                    build_ms,
                }) => tracing::info!(
                    policy = %origin,
                    policy_version = %version,
                    build_ms,
                    "new policy built; swapping it in at the next batch"
                ),
                Some(Said::Refused(message)) => {
                    tracing::error!("policy change refused, the running policy stays: {message}")
                }
                None => {}
            }
            if gone {
                return;
            }
            for (id, mode, to) in deferred {
                if !self.set_mode(id, mode, &to, events) {
                    return;
                }
            }
        }
    }

    /// Loads the policy file as it is now. `Ok(None)`: nothing changed (and
    /// not `force`d).
    fn load(&mut self, force: bool) -> Result<Option<(Policy, RuleSet)>, String> {
        let mut policy = Policy::load(&self.path).map_err(|e| e.to_string())?;
        self.apply_overrides(&mut policy);
        // Follow module files the new policy names, even if it is refused
        // below, so fixing a module is noticed too.
        let files = watched_files(&self.path, &policy);
        *self.files.lock().expect("watch list") = files.clone();
        watch_dirs(&mut self.watcher, &mut self.dirs, &files).map_err(|e| e.to_string())?;
        if policy.file.watermark.allowed_lateness != self.lateness {
            return Err(format!(
                "{}: watermark.allowed_lateness: changing it needs a restart (running: {}, new: {})",
                policy.origin,
                humantime::format_duration(self.lateness),
                humantime::format_duration(policy.file.watermark.allowed_lateness)
            ));
        }
        let rules =
            RuleSet::load(&policy, self.engine, self.capacity).map_err(|e| e.to_string())?;
        if rules.version == self.version && !force {
            tracing::debug!(policy_version = %rules.version, "policy unchanged");
            return Ok(None);
        }
        self.version = rules.version.clone();
        Ok(Some((policy, rules)))
    }

    /// Sets rule `id`'s mode, builds the policy with it and hands it over;
    /// replies with the new version or why not (the mode is then not
    /// kept). `false`: the pipeline is gone.
    fn set_mode(
        &mut self,
        id: String,
        mode: ModeOverride,
        to: &Sender<ReloadReply>,
        events: &Sender<ReloadEvent>,
    ) -> bool {
        let previous = self.overrides.insert(id.clone(), mode);
        let loaded = self.load(true).and_then(|loaded| {
            let (policy, _) = loaded.as_ref().expect("a forced load builds");
            if policy.file.rules.iter().any(|rule| rule.id == id) {
                Ok(loaded)
            } else {
                let ids: Vec<&str> = policy.file.rules.iter().map(|r| r.id.as_str()).collect();
                Err(format!(
                    "no rule `{id}` in {} (its rules: {})",
                    policy.origin,
                    ids.join(", ")
                ))
            }
        });
        match loaded {
            Ok(Some((policy, rules))) => {
                tracing::info!(rule = %id, ?mode, policy_version = %rules.version, "rule mode set");
                let _ = to.send(Ok(rules.version.clone()));
                let candidate = Candidate {
                    policy,
                    rules,
                    noticed: Instant::now(),
                };
                events.send(ReloadEvent::Ready(Box::new(candidate))).is_ok()
            }
            Ok(None) => unreachable!("a forced load builds"),
            Err(message) => {
                match previous {
                    Some(mode) => self.overrides.insert(id, mode),
                    None => self.overrides.remove(&id),
                };
                let _ = to.send(Err(message));
                true
            }
        }
    }

    /// Puts the modes set while running over the file's; a rule the file
    /// no longer has keeps its mode for when it comes back. The policy's
    /// text, from which its version is hashed, gains a comment line per mode
    /// set, so that the version (recorded with every scored event) tells
    /// the two apart.
    fn apply_overrides(&self, policy: &mut Policy) {
        for (id, mode) in &self.overrides {
            let Some(rule) = policy.file.rules.iter_mut().find(|rule| &rule.id == id) else {
                continue;
            };
            match mode {
                ModeOverride::Enforce => (rule.enabled, rule.mode) = (true, RuleMode::Enforce),
                ModeOverride::Shadow => (rule.enabled, rule.mode) = (true, RuleMode::Shadow),
                ModeOverride::Disabled => rule.enabled = false,
            }
            let mode = serde_json::to_string(mode).unwrap_or_default();
            policy
                .source
                .push_str(&format!("\n# set while running: rule {id} mode {mode}"));
        }
    }
}
