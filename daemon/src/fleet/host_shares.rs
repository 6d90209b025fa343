//! The host shares a fleet's workers trade (the engine's
//! `state::HostShare`: what one shard's users make of each computer). One
//! object per shard beside the state snapshots, `hosts-<shard>.json`, is
//! written whole by the worker holding the shard at each of its
//! checkpoints and read by every other worker at each of theirs. A PUT
//! replaces the object at once, and a share holds absolute numbers, so a
//! share written again (a retry, a zombie before its next refused commit,
//! the taker of the shard) is never counted twice: the last one counts.
//! A finished shard's users are its children's, so only unfinished shards'
//! shares are read.
//!
//! With the counts go the shard's users' contributions to computers' risk,
//! for the worker that opens each computer's incidents
//! (`engine::pipeline::shared_risk`).
//!
//! The requests run on a thread of the worker's own: a trade while reading
//! hands the shares over and goes on scoring with what the round before
//! brought (the first trade and the last, at the end of input, wait for
//! theirs).
//!
//! A share also says how far in event time its worker has scored, and
//! whether it has anything left to read: the slowest worker that has is the
//! one the others keep pace with (`engine::pipeline::FleetPace`). Only a
//! share whose shard's lease a live worker holds (the lease table says so,
//! not the share's age) holds anybody back: a worker slow to rewrite its
//! share (a saturated machine, a long commit) is still waited for, and a
//! dead worker's stops counting once its lease has expired. A shard nobody
//! has published yet holds the others back from the start.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Condvar, Mutex};

use serde::{Deserialize, Serialize};

use super::LiveShards;
use crate::aws::shards::{HashRange, partition_hash};
use authpulse_engine::pipeline::{ComputerRisk, FleetProgress, HostExchange, Traded};
use authpulse_engine::snapshot::SnapshotFiles;
use authpulse_engine::state::HostShare;

/// One shard's object.
#[derive(Serialize, Deserialize)]
struct ShareFile {
    shard: String,
    /// The writer (`worker/run`) that wrote it.
    writer: String,
    /// Event time its worker had scored through (Unix seconds).
    scored_through: i64,
    /// Its worker had nothing more to read.
    caught_up: bool,
    /// When it was written (Unix milliseconds, the writer's clock), for
    /// whoever looks at the object.
    written_ms: i64,
    shares: Vec<HostShare>,
    /// The shard's users' contributions to computers' risk, for the
    /// workers that open those computers' incidents.
    #[serde(default)]
    risk: Vec<ComputerRisk>,
}

/// Where a fleet worker publishes its shards' shares and reads the others'.
/// The requests run on a thread of their own ([`Round`]), so that scoring
/// does not wait for S3 once a second: a trade while reading hands its
/// shares over and takes what the round before brought.
pub struct ShareFiles {
    /// The shards held, with their users' hash-key ranges.
    held: Vec<(String, HashRange)>,
    trader: Arc<Trader>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Rounds asked for so far.
    asked: u64,
}

/// What the scoring thread and the trading thread share.
#[derive(Default)]
struct Trader {
    slots: Mutex<Slots>,
    changed: Condvar,
}

#[derive(Default)]
struct Slots {
    /// The newest shares not yet published, with their round's number (an
    /// older one not yet taken is replaced: shares are absolute).
    outgoing: Option<(u64, Outgoing)>,
    /// The number of the last round that finished, and what it brought
    /// (taken by the next trade).
    done: u64,
    brought: Option<io::Result<Traded>>,
    stop: bool,
}

struct Outgoing {
    shares: Vec<Vec<HostShare>>,
    risk: Vec<Vec<ComputerRisk>>,
    progress: FleetProgress,
}

impl ShareFiles {
    pub fn new(
        files: Arc<dyn SnapshotFiles>,
        writer: &str,
        held: Vec<(String, HashRange)>,
        live: LiveShards,
    ) -> io::Result<ShareFiles> {
        let trader = Arc::new(Trader::default());
        let round = Round {
            files,
            writer: writer.to_string(),
            held: held.clone(),
            live,
            others: BTreeMap::new(),
            inherited: None,
        };
        let thread = {
            let trader = Arc::clone(&trader);
            std::thread::Builder::new()
                .name("host-shares".into())
                .spawn(move || round.run(&trader))?
        };
        Ok(ShareFiles {
            held,
            trader,
            thread: Some(thread),
            asked: 0,
        })
    }
}

impl Drop for ShareFiles {
    fn drop(&mut self) {
        lock(&self.trader.slots).stop = true;
        self.trader.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(slots: &Mutex<Slots>) -> std::sync::MutexGuard<'_, Slots> {
    slots.lock().unwrap_or_else(|e| e.into_inner())
}

impl HostExchange for ShareFiles {
    fn shards(&self) -> usize {
        self.held.len()
    }

    fn shard_of(&self, user: &str) -> Option<usize> {
        let hash = partition_hash(user);
        self.held.iter().position(|(_, range)| range.contains(hash))
    }

    /// The worker holding the shard whose range holds the computer's name,
    /// as if it were a partition key: the live shards' ranges split the
    /// hash-key space, so exactly one worker says yes.
    fn opens_computer(&self, computer: &str) -> bool {
        let hash = partition_hash(computer);
        self.held.iter().any(|(_, range)| range.contains(hash))
    }

    fn exchange(
        &mut self,
        shares: Vec<Vec<HostShare>>,
        risk: Vec<Vec<ComputerRisk>>,
        progress: FleetProgress,
        wait: bool,
    ) -> io::Result<Option<Traded>> {
        self.asked += 1;
        let mut slots = lock(&self.trader.slots);
        let outgoing = Outgoing {
            shares,
            risk,
            progress,
        };
        slots.outgoing = Some((self.asked, outgoing));
        self.trader.changed.notify_all();
        if wait {
            while slots.done < self.asked {
                slots = self
                    .trader
                    .changed
                    .wait(slots)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        slots.brought.take().transpose()
    }
}

/// The trading thread's side: the requests, and the other shards' shares
/// as last read.
struct Round {
    files: Arc<dyn SnapshotFiles>,
    writer: String,
    held: Vec<(String, HashRange)>,
    live: LiveShards,
    others: BTreeMap<String, ShareFile>,
    /// What the held shards' last holders published of their users'
    /// contributions and first visits to computers they did not decide
    /// (read before this worker's first publication replaces it): a
    /// shard's new holder may decide those computers, and the restored
    /// state does not carry its first visits.
    inherited: Option<Vec<ComputerRisk>>,
}

impl Round {
    /// Trades each newest set of shares handed over, until told to stop.
    fn run(mut self, trader: &Trader) {
        loop {
            let (number, outgoing) = {
                let mut slots = lock(&trader.slots);
                loop {
                    // Shares handed over and not yet sent when the attempt
                    // ends stay unsent: the shards may be another worker's
                    // by now, and its share must not be overwritten.
                    if slots.stop {
                        return;
                    }
                    if let Some(next) = slots.outgoing.take() {
                        break next;
                    }
                    slots = trader
                        .changed
                        .wait(slots)
                        .unwrap_or_else(|e| e.into_inner());
                }
            };
            let brought = self.trade(outgoing);
            let mut slots = lock(&trader.slots);
            slots.done = number;
            slots.brought = Some(brought);
            trader.changed.notify_all();
        }
    }

    fn name(shard: &str) -> String {
        format!("hosts-{shard}.json")
    }

    fn read(&self, shard: &str) -> io::Result<Option<ShareFile>> {
        let name = Self::name(shard);
        if !self.files.exists(&name)? {
            return Ok(None);
        }
        let file: ShareFile = serde_json::from_reader(self.files.open(&name)?)
            .map_err(|e| io::Error::other(format!("{}: {e}", self.files.location(&name))))?;
        Ok(Some(file))
    }

    fn trade(&mut self, outgoing: Outgoing) -> io::Result<Traded> {
        let Outgoing {
            shares,
            risk,
            progress,
        } = outgoing;
        if self.inherited.is_none() {
            let mut inherited = Vec::new();
            for (shard, _) in &self.held {
                if let Some(file) = self.read(shard)?
                    && file.writer != self.writer
                {
                    inherited.extend(file.risk);
                }
            }
            self.inherited = Some(inherited);
        }
        let now_ms = unix_ms();
        for (((shard, _), shares), risk) in self.held.iter().zip(shares).zip(risk) {
            let file = ShareFile {
                shard: shard.clone(),
                writer: self.writer.clone(),
                scored_through: progress.scored_through,
                caught_up: progress.caught_up,
                written_ms: now_ms,
                shares,
                risk,
            };
            let bytes = serde_json::to_vec(&file).map_err(io::Error::from)?;
            self.files.put(&Self::name(shard), &|out| {
                out.write_all(&bytes)?;
                Ok(bytes.len() as u64)
            })?;
        }
        let live = self.live.get();
        let others: Vec<&String> = live
            .keys()
            .filter(|shard| !self.held.iter().any(|(held, _)| held == *shard))
            .collect();
        self.others.retain(|shard, _| others.contains(&shard));
        for shard in others {
            // A shard nobody has published yet adds nothing; one that
            // cannot be read now keeps its last share.
            if let Some(file) = self.read(shard)? {
                self.others.insert(shard.clone(), file);
            }
        }
        let published = self
            .others
            .iter()
            .filter(|(shard, file)| !file.caught_up && live.get(*shard).is_some_and(|l| l.held))
            .map(|(_, file)| file.scored_through);
        // A shard nobody has published yet (its worker is still starting,
        // or the first taking round has not given it out) has had nothing
        // scored: it holds the others back from the start, or one worker
        // would score a whole backfill with no other shard's users in its
        // computers. Not a child whose parents are still read: its events
        // come after theirs.
        let starting = live
            .iter()
            .filter(|(shard, l)| {
                !self.others.contains_key(*shard)
                    && !self.held.iter().any(|(held, _)| held == *shard)
                    && l.parents.iter().all(|parent| !live.contains_key(parent))
            })
            .map(|_| i64::MIN);
        let slowest = published.chain(starting).min();
        let latest = self
            .others
            .values()
            .filter(|file| file.caught_up)
            .map(|file| file.scored_through)
            .max();
        Ok(Traded {
            shares: self
                .others
                .values()
                .flat_map(|file| file.shares.iter().cloned())
                .collect(),
            risk: self
                .others
                .values()
                .flat_map(|file| file.risk.iter().cloned())
                .chain(self.inherited.iter().flatten().cloned())
                .collect(),
            slowest,
            latest,
        })
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_engine::snapshot::{LocalFiles, SnapshotError};
    use authpulse_engine::state::HostCounts;

    /// Local files whose writes wait while the gate is shut: S3 slow to
    /// answer.
    struct Gated {
        files: LocalFiles,
        open: Mutex<bool>,
        opened: Condvar,
    }

    impl Gated {
        fn set(&self, open: bool) {
            *self.open.lock().unwrap() = open;
            self.opened.notify_all();
        }
    }

    impl SnapshotFiles for Gated {
        fn put(
            &self,
            name: &str,
            write: &dyn Fn(&mut dyn std::io::Write) -> Result<u64, SnapshotError>,
        ) -> io::Result<u64> {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
            drop(open);
            self.files.put(name, write)
        }
        fn exists(&self, name: &str) -> io::Result<bool> {
            self.files.exists(name)
        }
        fn delete(&self, name: &str) -> io::Result<()> {
            self.files.delete(name)
        }
        fn open(&self, name: &str) -> io::Result<Box<dyn io::Read>> {
            self.files.open(name)
        }
        fn location(&self, name: &str) -> String {
            self.files.location(name)
        }
    }

    fn share(computer: &str, users_ever: u32) -> Vec<Vec<HostShare>> {
        vec![vec![HostShare {
            computer: computer.into(),
            counts: HostCounts {
                users_ever,
                ..HostCounts::default()
            },
        }]]
    }

    /// Shards `a` and `b`, both held by live workers.
    fn both_alive() -> LiveShards {
        LiveShards::fixed([("a", true), ("b", true)])
    }

    /// Workers of shards `a` and `b`, each half of the users.
    fn halves(files: &Arc<dyn SnapshotFiles>, live: &LiveShards) -> (ShareFiles, ShareFiles) {
        let half = u128::MAX / 2;
        let worker = |shard: &str, start, end| {
            let range = HashRange { start, end };
            ShareFiles::new(
                Arc::clone(files),
                shard,
                vec![(shard.into(), range)],
                live.clone(),
            )
            .unwrap()
        };
        (worker("a", 0, half), worker("b", half + 1, u128::MAX))
    }

    /// A trade of `users` on C1, scored through `through`.
    fn trade(worker: &mut ShareFiles, users: u32, through: i64, wait: bool) -> Option<Traded> {
        worker
            .exchange(share("C1", users), vec![vec![]], progress(through), wait)
            .unwrap()
    }

    fn progress(scored_through: i64) -> FleetProgress {
        FleetProgress {
            scored_through,
            caught_up: false,
        }
    }

    /// Two workers of one shard each: a trade while reading hands its
    /// shares over without waiting for S3, and brings what an earlier round
    /// read; the first and the last trade wait for theirs.
    #[test]
    fn a_trade_while_reading_does_not_wait_for_the_network() {
        let dir = tempfile::tempdir().unwrap();
        let gated = Arc::new(Gated {
            files: LocalFiles::new(dir.path()).unwrap(),
            open: Mutex::new(true),
            opened: Condvar::new(),
        });
        let live = both_alive();
        let (mut a, mut b) = halves(&(gated.clone() as Arc<dyn SnapshotFiles>), &live);
        let first = trade(&mut a, 3, 10, true).unwrap();
        assert!(first.shares.is_empty(), "nobody else has published");
        let traded = trade(&mut b, 5, 20, true).unwrap();
        assert_eq!(traded.shares[0].counts.users_ever, 3);
        assert_eq!(traded.slowest, Some(10));

        // S3 stops answering: a trade while reading returns at once.
        gated.set(false);
        assert!(
            trade(&mut a, 4, 30, false).is_none(),
            "its round has not finished"
        );
        assert!(trade(&mut a, 6, 40, false).is_none());
        gated.set(true);
        // The last trade waits for its round: the newest shares are what b reads.
        let last = trade(&mut a, 7, 50, true).unwrap();
        assert_eq!(last.shares[0].counts.users_ever, 5, "b's share");
        let read = trade(&mut b, 5, 60, true).unwrap();
        assert_eq!(read.shares[0].counts.users_ever, 7);
        assert_eq!(read.slowest, Some(50));
        drop((a, b));
    }

    /// A shard nobody has published yet holds the others back from the
    /// start, held or not (its worker is starting, or nobody has taken it
    /// yet); once published, it holds them back as any share does.
    #[test]
    fn a_shard_not_yet_published_holds_the_fleet_back() {
        let dir = tempfile::tempdir().unwrap();
        let files: Arc<dyn SnapshotFiles> = Arc::new(LocalFiles::new(dir.path()).unwrap());
        let live = LiveShards::fixed([("a", true), ("b", false)]);
        let (mut a, mut b) = halves(&files, &live);
        let untaken = trade(&mut a, 3, 90, true).unwrap();
        assert_eq!(untaken.slowest, Some(i64::MIN), "b has scored nothing yet");
        assert!(untaken.shares.is_empty());

        live.set_fixed([("a", true), ("b", true)]);
        let starting = trade(&mut a, 3, 90, true).unwrap();
        assert_eq!(
            starting.slowest,
            Some(i64::MIN),
            "b is taken, not published"
        );
        trade(&mut b, 5, 20, true);
        let published = trade(&mut a, 3, 90, true).unwrap();
        assert_eq!(published.slowest, Some(20));
        live.set_fixed([("a", true), ("b", false)]);
        let expired = trade(&mut a, 3, 90, true).unwrap();
        assert_eq!(expired.slowest, None, "b's worker died after publishing");
    }

    /// A child shard nobody has published yet holds nobody back while a
    /// parent of it is still read (its events come after the parent's);
    /// once its parents are finished, it does, as any unpublished shard.
    #[test]
    fn an_unpublished_child_holds_the_fleet_back_only_once_its_parents_are_done() {
        let dir = tempfile::tempdir().unwrap();
        let files: Arc<dyn SnapshotFiles> = Arc::new(LocalFiles::new(dir.path()).unwrap());
        let live = LiveShards::fixed([("a", true), ("b", true), ("c", false)]);
        live.set_parents("c", &["b"]);
        let (mut a, mut b) = halves(&files, &live);
        trade(&mut b, 5, 20, true);
        let parent_read = trade(&mut a, 3, 90, true).unwrap();
        assert_eq!(
            parent_read.slowest,
            Some(20),
            "c waits for b: b is the slowest"
        );

        // b is read to its end: its lease is finished, c is next.
        live.set_fixed([("a", true), ("c", false)]);
        live.set_parents("c", &["b"]);
        let parent_done = trade(&mut a, 3, 90, true).unwrap();
        assert_eq!(
            parent_done.slowest,
            Some(i64::MIN),
            "c has scored nothing yet"
        );
        drop((a, b));
    }

    /// The slowest other shard holds a worker back while the lease table
    /// says a live worker holds it, however old its share; once its lease
    /// has expired (its worker died) it holds nobody back, and its counts
    /// still count.
    #[test]
    fn only_a_shard_whose_lease_is_held_holds_the_fleet_back() {
        let dir = tempfile::tempdir().unwrap();
        let files: Arc<dyn SnapshotFiles> = Arc::new(LocalFiles::new(dir.path()).unwrap());
        let live = both_alive();
        let (mut a, mut b) = halves(&files, &live);
        trade(&mut b, 5, 20, true);
        drop(b);
        let held = trade(&mut a, 3, 90, true).unwrap();
        assert_eq!(held.slowest, Some(20), "b's lease is held: a waits for it");

        live.set_fixed([("a", true), ("b", false)]);
        let expired = trade(&mut a, 3, 90, true).unwrap();
        assert_eq!(expired.slowest, None, "b's lease expired");
        assert_eq!(
            expired.shares[0].counts.users_ever, 5,
            "b's counts still count"
        );
    }

    /// A shard's new holder takes in what its last holder published of its
    /// users' part in computers it did not decide (their first visits
    /// among it), at every trade of its attempt: the state it restored does
    /// not carry them. What it published itself, it does not.
    #[test]
    fn a_shards_taker_inherits_what_its_last_holder_published() {
        let dir = tempfile::tempdir().unwrap();
        let files: Arc<dyn SnapshotFiles> = Arc::new(LocalFiles::new(dir.path()).unwrap());
        let live = LiveShards::fixed([("a", true)]);
        let range = HashRange {
            start: 0,
            end: u128::MAX,
        };
        let worker = |writer: &str| {
            ShareFiles::new(
                Arc::clone(&files),
                writer,
                vec![("a".into(), range)],
                live.clone(),
            )
            .unwrap()
        };
        let risk = ComputerRisk {
            computer: "C9".into(),
            contributions: Vec::new(),
            first_visits: vec![authpulse_engine::pipeline::SharedVisit {
                event_id: "x".into(),
                user: "U1".into(),
                features: vec![0; 64],
            }],
        };
        let mut last = worker("w1/r1");
        last.exchange(share("C1", 3), vec![vec![risk.clone()]], progress(50), true)
            .unwrap();
        drop(last);
        let mut taker = worker("w2/r2");
        for through in [60, 70] {
            let traded = trade(&mut taker, 3, through, true).unwrap();
            assert_eq!(
                traded.risk,
                std::slice::from_ref(&risk),
                "trade through {through}"
            );
        }
        drop(taker);
        // The same writer again (the taker's next attempt would be another
        // run): nothing inherited from itself.
        let mut again = worker("w2/r2");
        assert!(trade(&mut again, 3, 80, true).unwrap().risk.is_empty());
    }
}
