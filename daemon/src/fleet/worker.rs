//! A worker of the fleet: holds its leases, renews them, takes expired,
//! unowned and (for balance) stolen ones, keeps the table in step with the
//! stream's shards, and checkpoints for the reader. It runs on a small
//! runtime of its own; the pipeline sees [`Held`] (which shards are its
//! own, and which of them may be read now) and asks for fenced checkpoints.
//!
//! Timing follows the KCL: leases are renewed every third of the failover
//! time, the table is read and leases taken every two failover times. A
//! lease this worker could not renew within the failover time is given up
//! at once (another worker may have taken it by then), so a worker that
//! stalled stops reading the shard before it could write for it again; any
//! write it still attempts fails on the lease counter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::balance::{Observations, parents_finished, plan};
use super::lease::{Lease, LeaseCheckpoint};
use super::sync::sync;
use super::table::{LeaseError, LeaseTable};
use crate::aws::kinesis::list_shards;
use crate::aws::{AwsSettings, error_text};

/// The KCL's default failover time.
pub const DEFAULT_FAILOVER: Duration = Duration::from_secs(10);

/// How a worker joins a fleet.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// The DynamoDB lease table (one per stream and application).
    pub table: String,
    pub stream: String,
    /// This worker's name in `leaseOwner`: unique in the fleet.
    pub worker: String,
    /// A lease whose counter stood still this long is taken over.
    pub failover: Duration,
    /// Where a shard without a parent starts when its lease is created.
    pub initial: LeaseCheckpoint,
    pub aws: AwsSettings,
}

impl FleetConfig {
    pub fn renew_interval(&self) -> Duration {
        self.failover / 3
    }

    pub fn take_interval(&self) -> Duration {
        self.failover * 2
    }
}

/// The leases a worker holds now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// By shard id, as last written.
    pub leases: BTreeMap<String, Lease>,
    /// Held shards whose parents are finished: these may be read.
    pub readable: BTreeSet<String>,
}

#[derive(Debug)]
enum Request {
    Checkpoint {
        shard: String,
        checkpoint: LeaseCheckpoint,
        /// `None`: nobody waits; a failure is logged.
        reply: Option<oneshot::Sender<Result<(), LeaseError>>>,
    },
    /// Give every lease up (a graceful stop) and end.
    Release { reply: oneshot::Sender<()> },
}

/// A running worker. Dropping it stops renewing (its leases then expire
/// and are taken over); [`LeaseWorker::release`] hands them over at once.
pub struct LeaseWorker {
    runtime: Option<tokio::runtime::Runtime>,
    requests: mpsc::Sender<Request>,
    held: watch::Receiver<Held>,
    live: LiveShards,
    name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("stream `{stream}`: {message}")]
    Stream { stream: String, message: String },
    #[error("the lease worker's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("the lease worker has stopped")]
    Stopped,
}

impl LeaseWorker {
    /// Joins the fleet: creates the table if needed, syncs the shards and
    /// takes a first share of leases before returning.
    pub fn start(config: FleetConfig) -> Result<LeaseWorker, FleetError> {
        let runtime = crate::net::runtime("fleet")?;
        let state = runtime.block_on(async {
            let sdk = config.aws.load().await;
            let table = LeaseTable::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table);
            table.ensure_exists().await?;
            let mut state = State {
                live: LiveShards::default(),
                kinesis: aws_sdk_kinesis::Client::new(&sdk),
                table,
                held: BTreeMap::new(),
                readable: BTreeSet::new(),
                seen: Observations::default(),
                config: config.clone(),
            };
            state.take_round().await?;
            Ok::<_, FleetError>(state)
        })?;
        let live = state.live.clone();
        let (held_tx, held) = watch::channel(state.snapshot());
        let (requests, rx) = mpsc::channel(16);
        runtime.spawn(async move { state.run(rx, held_tx).await });
        Ok(LeaseWorker {
            runtime: Some(runtime),
            requests,
            held,
            live,
            name: config.worker,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The leases held now.
    pub fn held(&self) -> Held {
        self.held.borrow().clone()
    }

    /// A receiver that sees every change of the held leases.
    pub fn changes(&self) -> watch::Receiver<Held> {
        self.held.clone()
    }

    /// Records a shard's position, if this worker still holds its lease;
    /// [`LeaseError::Lost`] if it does not (nothing is written then).
    pub fn checkpoint(&self, shard: &str, checkpoint: LeaseCheckpoint) -> Result<(), FleetError> {
        self.checkpointer().checkpoint(shard, checkpoint)
    }

    /// The stream's unfinished shards, whoever holds them, and whether a
    /// live worker holds each, as of the last taking round.
    pub fn live_shards(&self) -> LiveShards {
        self.live.clone()
    }

    /// A handle for [`LeaseWorker::checkpoint`] that another thread keeps.
    pub fn checkpointer(&self) -> Checkpointer {
        Checkpointer {
            requests: self.requests.clone(),
        }
    }

    /// Gives every lease up so that other workers take them at once.
    pub fn release(mut self) {
        let (reply, done) = oneshot::channel();
        if self
            .requests
            .blocking_send(Request::Release { reply })
            .is_ok()
        {
            let _ = done.blocking_recv();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// The shards of the lease table not read to their end, and those read to
/// their end with their children, as the worker's latest taking round
/// found them; shared with other threads.
#[derive(Clone, Debug, Default)]
pub struct LiveShards(Arc<std::sync::Mutex<TableView>>);

#[derive(Clone, Debug, Default)]
struct TableView {
    live: BTreeMap<String, LiveShard>,
    /// Finished shards, each with the children its lease names.
    finished: BTreeMap<String, Vec<String>>,
}

/// An unfinished shard's lease, as the latest taking round saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveShard {
    /// A live worker holds it: an owner whose counter moved within the
    /// failover time, as this worker observed it
    /// ([`Observations::is_expired`]).
    pub held: bool,
    /// The shards it was split or merged from.
    pub parents: Vec<String>,
}

impl LiveShards {
    /// Each unfinished shard, by id.
    pub fn get(&self) -> BTreeMap<String, LiveShard> {
        self.view().live.clone()
    }

    /// Each finished shard (`SHARD_END`) the table still holds, with the
    /// children its lease names.
    pub fn finished(&self) -> BTreeMap<String, Vec<String>> {
        self.view().finished.clone()
    }

    fn view(&self) -> std::sync::MutexGuard<'_, TableView> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shards whose leases no lease worker watches (a benchmark's, a
    /// test's), each held by a live worker or not, none with parents.
    pub fn fixed<'a>(shards: impl IntoIterator<Item = (&'a str, bool)>) -> LiveShards {
        let live = LiveShards::default();
        live.set_fixed(shards);
        live
    }

    /// Replaces the shards with `shards`, as [`LiveShards::fixed`] makes them.
    pub fn set_fixed<'a>(&self, shards: impl IntoIterator<Item = (&'a str, bool)>) {
        self.view().live = shards
            .into_iter()
            .map(|(shard, held)| {
                let parents = Vec::new();
                (shard.to_string(), LiveShard { held, parents })
            })
            .collect();
    }

    /// Makes `shard` a child of `parents` (a split's, a merge's), as a
    /// lease that names them would.
    #[cfg(test)]
    pub fn set_parents(&self, shard: &str, parents: &[&str]) {
        if let Some(live) = self.view().live.get_mut(shard) {
            live.parents = parents.iter().map(|p| p.to_string()).collect();
        }
    }

    /// Takes in a read of the whole table: what `expired` says of each
    /// lease, as this worker observed it.
    fn set(&self, leases: &[Lease], expired: impl Fn(&Lease) -> bool) {
        let mut view = self.view();
        view.live.clear();
        view.finished.clear();
        for lease in leases {
            if lease.checkpoint == LeaseCheckpoint::ShardEnd {
                view.finished
                    .insert(lease.key.clone(), lease.children.clone());
            } else {
                let (held, parents) = (!expired(lease), lease.parents.clone());
                view.live
                    .insert(lease.key.clone(), LiveShard { held, parents });
            }
        }
    }
}

/// Records held shards' positions in the lease table, from any thread.
#[derive(Clone, Debug)]
pub struct Checkpointer {
    requests: mpsc::Sender<Request>,
}

impl Checkpointer {
    /// See [`LeaseWorker::checkpoint`].
    pub fn checkpoint(&self, shard: &str, checkpoint: LeaseCheckpoint) -> Result<(), FleetError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .blocking_send(Request::Checkpoint {
                shard: shard.to_string(),
                checkpoint,
                reply: Some(reply),
            })
            .map_err(|_| FleetError::Stopped)?;
        Ok(answer.blocking_recv().map_err(|_| FleetError::Stopped)??)
    }

    /// [`Checkpointer::checkpoint`] without waiting for DynamoDB: the lease
    /// worker writes it in turn (before any later request, a release
    /// included) and logs a failure. For the scoring thread, which would
    /// otherwise wait for a write per shard at every commit.
    pub fn checkpoint_in_background(
        &self,
        shard: &str,
        checkpoint: LeaseCheckpoint,
    ) -> Result<(), FleetError> {
        self.requests
            .blocking_send(Request::Checkpoint {
                shard: shard.to_string(),
                checkpoint,
                reply: None,
            })
            .map_err(|_| FleetError::Stopped)
    }
}

impl Drop for LeaseWorker {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A held lease and when this worker last wrote it.
struct Holding {
    lease: Lease,
    written: Instant,
}

struct State {
    /// See [`LeaseWorker::live_shards`].
    live: LiveShards,
    kinesis: aws_sdk_kinesis::Client,
    table: LeaseTable,
    held: BTreeMap<String, Holding>,
    readable: BTreeSet<String>,
    seen: Observations,
    config: FleetConfig,
}

impl State {
    fn snapshot(&self) -> Held {
        Held {
            leases: self
                .held
                .iter()
                .map(|(k, h)| (k.clone(), h.lease.clone()))
                .collect(),
            readable: self.readable.clone(),
        }
    }

    async fn run(mut self, mut requests: mpsc::Receiver<Request>, held: watch::Sender<Held>) {
        let mut renew = tokio::time::interval(self.config.renew_interval());
        let mut take = tokio::time::interval(self.config.take_interval());
        take.tick().await; // start() took the first round
        loop {
            tokio::select! {
                _ = renew.tick() => self.renew_all().await,
                _ = take.tick() => {
                    if let Err(e) = self.take_round().await {
                        tracing::warn!(table = self.table.name(), error = %e, "lease taking failed; trying again at the next round");
                    }
                }
                request = requests.recv() => match request {
                    Some(Request::Checkpoint { shard, checkpoint, reply }) => {
                        let done = self.checkpoint(&shard, checkpoint).await;
                        // Seen in `held` by the time the caller hears back.
                        self.publish(&held);
                        match (reply, done) {
                            (Some(reply), done) => {
                                let _ = reply.send(done);
                            }
                            (None, Err(error)) => tracing::warn!(
                                shard,
                                error = crate::describe_error(&error),
                                "the lease's checkpoint was not written"
                            ),
                            (None, Ok(())) => {}
                        }
                    }
                    Some(Request::Release { reply }) => {
                        self.release_all().await;
                        held.send_replace(self.snapshot());
                        let _ = reply.send(());
                        return;
                    }
                    None => return,
                },
            }
            self.publish(&held);
        }
    }

    /// Shows the held leases to the pipeline, if they changed.
    fn publish(&self, held: &watch::Sender<Held>) {
        held.send_if_modified(|current| {
            let now = self.snapshot();
            let changed = *current != now;
            *current = now;
            changed
        });
    }

    async fn renew_all(&mut self) {
        let now = Instant::now();
        let keys: Vec<String> = self.held.keys().cloned().collect();
        for key in keys {
            let holding = &self.held[&key];
            match self.table.renew(&holding.lease, &self.config.worker).await {
                Ok(lease) => {
                    self.held.insert(
                        key,
                        Holding {
                            lease,
                            written: now,
                        },
                    );
                }
                Err(LeaseError::Lost { .. }) => {
                    tracing::warn!(shard = %key, worker = %self.config.worker, "lost the lease: another worker took it");
                    self.drop_lease(&key);
                }
                Err(e) if holding.written.elapsed() > self.config.failover => {
                    tracing::warn!(shard = %key, error = %e, "could not renew the lease within the failover time; giving it up");
                    self.drop_lease(&key);
                }
                Err(e) => {
                    tracing::warn!(shard = %key, error = %e, "renewing the lease failed; retrying")
                }
            }
        }
    }

    fn drop_lease(&mut self, key: &str) {
        self.held.remove(key);
        self.readable.remove(key);
    }

    /// Syncs the shards, reads the table, takes what the plan says.
    async fn take_round(&mut self) -> Result<(), FleetError> {
        let stream = &self.config.stream;
        let shards = list_shards(&self.kinesis, stream)
            .await
            .map_err(|message| FleetError::Stream {
                stream: stream.clone(),
                message,
            })?;
        let mut leases = self.table.list().await?;
        if sync(&self.table, &shards, &leases, &self.config.initial).await? > 0 {
            leases = self.table.list().await?;
        }
        let now = Instant::now();
        self.seen.observe(&leases, now);
        let failover = self.config.failover;
        self.live
            .set(&leases, |lease| self.seen.is_expired(lease, now, failover));
        // A lease of ours the table no longer shows as ours was taken.
        let lost: Vec<String> = self
            .held
            .keys()
            .filter(|k| {
                leases
                    .iter()
                    .find(|l| &l.key == *k)
                    .is_none_or(|l| !l.is_owned_by(&self.config.worker))
            })
            .cloned()
            .collect();
        for key in lost {
            tracing::warn!(shard = %key, worker = %self.config.worker, "lost the lease: another worker took it");
            self.drop_lease(&key);
        }
        let plan = plan(&self.config.worker, &leases, |l| {
            self.seen.is_expired(l, now, failover)
        });
        let wanted = plan.take.iter().chain(plan.steal.iter());
        for key in wanted {
            let Some(lease) = leases.iter().find(|l| &l.key == key) else {
                continue;
            };
            match self.table.take(lease, &self.config.worker).await {
                Ok(taken) => {
                    let stolen = plan.steal.as_ref() == Some(key);
                    tracing::info!(shard = %key, worker = %self.config.worker, from = ?lease.owner, stolen, "took the lease");
                    self.held.insert(
                        key.clone(),
                        Holding {
                            lease: taken,
                            written: Instant::now(),
                        },
                    );
                }
                // Someone else was quicker.
                Err(LeaseError::Lost { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.readable = self
            .held
            .iter()
            .filter(|(_, h)| !h.lease.is_finished() && parents_finished(&h.lease, &leases))
            .map(|(k, _)| k.clone())
            .collect();
        Ok(())
    }

    async fn checkpoint(
        &mut self,
        shard: &str,
        checkpoint: LeaseCheckpoint,
    ) -> Result<(), LeaseError> {
        let Some(holding) = self.held.get(shard) else {
            return Err(LeaseError::Lost {
                key: shard.to_string(),
            });
        };
        if holding.written.elapsed() > self.config.failover {
            // Unrenewed this long, it may be someone else's by now; the
            // write below would fail on the counter anyway.
            self.drop_lease(shard);
            return Err(LeaseError::Lost {
                key: shard.to_string(),
            });
        }
        let finished = checkpoint == LeaseCheckpoint::ShardEnd;
        match self
            .table
            .checkpoint(&holding.lease, &self.config.worker, &checkpoint)
            .await
        {
            Ok(lease) => {
                if finished {
                    // Nothing more to read or renew; the table keeps it,
                    // finished, for its children's sake.
                    self.drop_lease(shard);
                    self.refresh_readable().await;
                } else {
                    self.held.insert(
                        shard.to_string(),
                        Holding {
                            lease,
                            written: Instant::now(),
                        },
                    );
                }
                Ok(())
            }
            Err(e) => {
                if matches!(e, LeaseError::Lost { .. }) {
                    self.drop_lease(shard);
                }
                Err(e)
            }
        }
    }

    /// After a parent of ours finished, its children we hold may be read.
    async fn refresh_readable(&mut self) {
        match self.table.list().await {
            Ok(leases) => {
                self.readable = self
                    .held
                    .iter()
                    .filter(|(_, h)| parents_finished(&h.lease, &leases))
                    .map(|(k, _)| k.clone())
                    .collect();
            }
            Err(e) => tracing::warn!(error = %error_text(&e), "reading the lease table failed"),
        }
    }

    async fn release_all(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.readable.clear();
        for (key, holding) in held {
            match self.table.evict(&holding.lease, &self.config.worker).await {
                Ok(_) => {
                    tracing::info!(shard = %key, worker = %self.config.worker, "released the lease")
                }
                Err(e) => {
                    tracing::warn!(shard = %key, error = %e, "could not release the lease; it expires instead")
                }
            }
        }
    }
}
