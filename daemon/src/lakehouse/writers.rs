//! Several writers, one set of tables: where a fleet worker's shards start,
//! and its claim on them.
//!
//! A worker that begins reading a set of shards (its own again after a
//! restart, or ones it took over) first plans each shard's start: the
//! newest commit of the shard that every table holds
//! ([`shard_log::complete_point`]). A writer that died between two tables'
//! commits of one checkpoint left that checkpoint in some tables only; its
//! rows there are removed, so that reading again from the complete point
//! stores them once.
//!
//! Then it claims them: one snapshot per table that removes the files of the
//! shards' commits newer than their start and records the worker's own
//! first checkpoint at the start positions, with a state snapshot of the
//! shards' users written for it (so the claim stands on its own when the
//! writer it took over from has since removed its snapshots). From then on the fence
//! ([`shard_log`]) refuses every other writer's commit naming one of the
//! shards: a zombie that still believes it holds one commits nothing.
//!
//! Known gap: a compaction (`maintain`) that rewrites an unfinished
//! checkpoint's files together with others before a taker claims its shards
//! keeps that checkpoint's rows (they can no longer be told apart), and
//! reading again from the complete point stores them a second time.
//! docs/fleet.md says how to run `maintain` beside a fleet.

use std::collections::{BTreeMap, HashMap, HashSet};

use iceberg::spec::{DataFile, Operation};
use iceberg::table::Table;

use super::replace::{self, Change, live_entries};
use super::shard_log::{self, REVERTED, ShardCommit, complete_point, earlier_runs, shard_commits};
use super::{LakehouseError, Warehouse, tables};
use authpulse_engine::sinks::Progress;

/// Where one shard starts.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardStart {
    pub shard: String,
    /// Its newest commit every table holds; `None`: read it from its start.
    pub from: Option<ShardCommit>,
    /// The newest commit of each run that held it before `from`'s.
    pub earlier: Vec<ShardCommit>,
}

/// A writer's claim on its shards.
#[derive(Clone, Debug)]
pub struct Claim<'a> {
    /// The attempt (`worker/attempt-id`), as its commits will name it.
    pub writer: &'a str,
    /// The checkpoint number the claim records; the writer's first commit
    /// is the next one.
    pub checkpoint: u64,
    /// The source's identity, as every progress record holds it.
    pub identity: serde_json::Value,
    pub starts: &'a [ShardStart],
    /// The state snapshot of the shards' users at their starts (cut from
    /// the snapshots their starts name, and joined), written before the
    /// claim; `None`: none of them has history.
    pub state: Option<String>,
}

impl Claim<'_> {
    /// The progress record the claim commits.
    pub fn progress(&self) -> Progress {
        let unread = serde_json::json!({ "sequence": null });
        let shards: serde_json::Map<String, serde_json::Value> = self
            .starts
            .iter()
            .map(|s| {
                let at = s.from.as_ref().map_or(&unread, |from| &from.position);
                (s.shard.clone(), at.clone())
            })
            .collect();
        Progress {
            checkpoint: self.checkpoint,
            complete: false,
            source: serde_json::json!({
                "identity": self.identity,
                "position": {
                    "writer": self.writer,
                    "shards": shards,
                },
            }),
            state: self.state.clone(),
        }
    }
}

/// What a claim did to one table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claimed {
    pub table: &'static str,
    /// Commits of the shards whose files it removed (another writer's
    /// checkpoint that did not reach every table).
    pub reverted: Vec<i64>,
    pub files_removed: usize,
}

impl Warehouse {
    /// Where each of `shards` starts: see the module header.
    pub fn plan_shards(&self, shards: &[String]) -> Result<Vec<ShardStart>, LakehouseError> {
        let logs = tables::ALL
            .iter()
            .map(|definition| {
                let table = self.load(definition.name)?;
                shard_commits(table.metadata(), definition.name)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(shards
            .iter()
            .map(|shard| {
                let per_table: Vec<&[ShardCommit]> = logs
                    .iter()
                    .map(|log| log.get(shard).map_or(&[][..], Vec::as_slice))
                    .collect();
                let from = complete_point(&per_table);
                let earlier = match (&from, per_table.first()) {
                    (Some(from), Some(log)) => earlier_runs(log, from),
                    _ => Vec::new(),
                };
                ShardStart {
                    shard: shard.clone(),
                    from,
                    earlier,
                }
            })
            .collect())
    }

    /// Commits `claim` to every table: see the module header. Fails without
    /// touching a table further if another writer claimed one of the
    /// shards since they were planned (plan again).
    pub fn claim(&self, claim: &Claim) -> Result<Vec<Claimed>, LakehouseError> {
        let progress = claim.progress();
        let recorded = serde_json::to_string(&progress).expect("progress serialises");
        let mut done = Vec::new();
        for definition in tables::ALL.iter() {
            let name = definition.name;
            let mut claimed = Claimed {
                table: name,
                ..Claimed::default()
            };
            replace::commit_with(self, name, "claim", |table| {
                let reverted = newer_than_start(table, name, claim.starts)?;
                let removed = self.files_of(table, &reverted)?;
                claimed.reverted = reverted.iter().copied().collect();
                claimed.files_removed = removed.len();
                let mut properties = HashMap::from([
                    (Progress::PROPERTY.to_string(), recorded.clone()),
                    ("authpulse.operation".to_string(), "claim".to_string()),
                ]);
                if !reverted.is_empty() {
                    properties.insert(REVERTED.to_string(), format!("{:?}", claimed.reverted));
                }
                Ok(Some(Change {
                    operation: if removed.is_empty() {
                        Operation::Append
                    } else {
                        Operation::Delete
                    },
                    removed,
                    added: Vec::new(),
                    properties,
                    label: "claim",
                }))
            })?;
            if !claimed.reverted.is_empty() {
                tracing::info!(
                    table = name,
                    writer = claim.writer,
                    snapshots = ?claimed.reverted,
                    files = claimed.files_removed,
                    "removed the rows of a checkpoint that did not reach every table"
                );
            }
            done.push(claimed);
        }
        Ok(done)
    }

    /// The live data files that the snapshots `ids` added.
    fn files_of(&self, table: &Table, ids: &HashSet<i64>) -> Result<Vec<DataFile>, LakehouseError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let live = self.runtime().block_on(live_entries(table))?;
        Ok(live
            .entries
            .iter()
            .filter(|e| e.snapshot_id().is_some_and(|id| ids.contains(&id)))
            .map(|e| e.data_file().clone())
            .collect())
    }
}

/// The table's commits of the claimed shards that are newer than where
/// they start.
fn newer_than_start(
    table: &Table,
    name: &str,
    starts: &[ShardStart],
) -> Result<HashSet<i64>, LakehouseError> {
    let log: BTreeMap<String, Vec<ShardCommit>> = shard_commits(table.metadata(), name)?;
    let mut newer = HashSet::new();
    for start in starts {
        let commits = log.get(&start.shard).map_or(&[][..], Vec::as_slice);
        let count = match &start.from {
            None => commits.len(),
            Some(from) => commits
                .iter()
                .position(|c| c.same_checkpoint(from))
                .ok_or_else(|| LakehouseError::ShardTaken {
                    table: name.to_string(),
                    shard: start.shard.clone(),
                    start: from.describe(),
                })?,
        };
        newer.extend(commits[..count].iter().map(|c| c.snapshot_id));
    }
    Ok(newer)
}

/// Whether `error` (or a cause of it) says another writer holds a shard
/// now: a fleet writer's commit refused by the fence, or a claim that lost
/// a race.
pub fn is_taken(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        // A boxed error is its own type in a chain, and its `source` skips
        // the error it boxes.
        let lakehouse = e
            .downcast_ref::<LakehouseError>()
            .or_else(|| e.downcast_ref::<Box<LakehouseError>>().map(|b| &**b));
        let taken = e.is::<shard_log::Fenced>()
            || matches!(e.downcast_ref(), Some(shard_log::FenceError::Fenced(_)))
            || matches!(lakehouse, Some(LakehouseError::ShardTaken { .. }));
        // An I/O error's `source` skips the error it wraps.
        let wrapped = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| is_taken(inner));
        if taken || wrapped {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lakehouse::WarehouseConfig;
    use crate::lakehouse::data_files::tests::raw_batch;
    use crate::lakehouse::writer::TableWriter;

    /// A fleet writer's progress of `checkpoint` naming `shards`.
    fn progress(writer: &str, checkpoint: u64, shards: &[(&str, &str)]) -> Progress {
        let positions: serde_json::Map<String, serde_json::Value> = shards
            .iter()
            .map(|(s, seq)| (s.to_string(), serde_json::json!({ "sequence": seq })))
            .collect();
        Progress {
            checkpoint,
            complete: false,
            source: serde_json::json!({
                "identity": {"kinesis": "auth"},
                "position": {"writer": writer, "shards": positions},
            }),
            state: Some(format!("{writer}-state-{checkpoint}")),
        }
    }

    /// Commits `progress` to `table`, with ten raw rows if `rows`.
    fn commit(
        warehouse: &Warehouse,
        table: &'static str,
        progress: &Progress,
        rows: bool,
    ) -> std::io::Result<()> {
        let mut writer = TableWriter::start(warehouse, table).unwrap();
        if rows {
            let batch = raw_batch(writer.arrow_schema());
            writer.write(batch).unwrap();
        }
        writer.commit(progress.properties()).map(|_| ())
    }

    /// A checkpoint in every table, rows in the raw table.
    fn checkpoint(warehouse: &Warehouse, progress: &Progress) {
        for definition in tables::ALL.iter() {
            let rows = definition.name == tables::RAW;
            commit(warehouse, definition.name, progress, rows).unwrap();
        }
    }

    fn raw_rows(warehouse: &Warehouse) -> u64 {
        let table = warehouse.load(tables::RAW).unwrap();
        let live = warehouse.runtime().block_on(live_entries(&table)).unwrap();
        live.entries.iter().map(|e| e.record_count()).sum()
    }

    fn claim_of(warehouse: &Warehouse, writer: &str, checkpoint: u64, shards: &[&str]) {
        let shards: Vec<String> = shards.iter().map(|s| s.to_string()).collect();
        let starts = warehouse.plan_shards(&shards).unwrap();
        warehouse
            .claim(&Claim {
                writer,
                checkpoint,
                identity: serde_json::json!({"kinesis": "auth"}),
                starts: &starts,
                state: Some(format!("{writer}-state-{checkpoint}")),
            })
            .unwrap();
    }

    /// A warehouse where writer a/1 claimed s0 and s1 and committed its
    /// checkpoint 1 to every table.
    fn one_checkpoint_of_a() -> (tempfile::TempDir, Warehouse) {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(&WarehouseConfig::embedded(dir.path())).unwrap();
        claim_of(&warehouse, "a/1", 0, &["s0", "s1"]);
        checkpoint(
            &warehouse,
            &progress("a/1", 1, &[("s0", "10"), ("s1", "20")]),
        );
        (dir, warehouse)
    }

    #[test]
    fn a_zombie_cannot_commit_after_its_shard_is_claimed() {
        let (_dir, warehouse) = one_checkpoint_of_a();
        let rows = raw_rows(&warehouse);
        assert!(rows > 0);

        // b takes s1 over from a's checkpoint 1.
        let starts = warehouse.plan_shards(&["s1".to_string()]).unwrap();
        let from = starts[0].from.as_ref().unwrap();
        assert_eq!((from.writer.as_deref(), from.checkpoint), (Some("a/1"), 1));
        assert_eq!(from.position["sequence"], "20");
        assert_eq!(from.state.as_deref(), Some("a/1-state-1"));
        claim_of(&warehouse, "b/1", 0, &["s1"]);

        // a, not knowing, commits its next checkpoint: refused, nothing stored.
        let zombie = progress("a/1", 2, &[("s0", "11"), ("s1", "21")]);
        let error = commit(&warehouse, tables::RAW, &zombie, true).unwrap_err();
        assert!(is_taken(&error), "{error:?}");
        let text = crate::describe_error(&error);
        assert!(
            text.contains("shard s1's newest commit is checkpoint 0 of b/1"),
            "{text}"
        );
        assert_eq!(raw_rows(&warehouse), rows);

        // b commits on from its claim; a restarted with s0 alone commits too.
        checkpoint(&warehouse, &progress("b/1", 1, &[("s1", "25")]));
        claim_of(&warehouse, "a/2", 0, &["s0"]);
        checkpoint(&warehouse, &progress("a/2", 1, &[("s0", "12")]));
        assert_eq!(raw_rows(&warehouse), 3 * rows);
        // A writer may not skip a checkpoint, nor commit one twice.
        let twice = progress("b/1", 1, &[("s1", "25")]);
        assert!(is_taken(
            &commit(&warehouse, tables::RAW, &twice, false).unwrap_err()
        ));
        let skipped = progress("b/1", 3, &[("s1", "25")]);
        assert!(is_taken(
            &commit(&warehouse, tables::RAW, &skipped, false).unwrap_err()
        ));
    }

    #[test]
    fn a_checkpoint_that_did_not_reach_every_table_is_removed_by_the_taker() {
        let (_dir, warehouse) = one_checkpoint_of_a();
        let complete = raw_rows(&warehouse);
        // a dies after committing checkpoint 2 to the raw table only.
        let partial = progress("a/1", 2, &[("s0", "15"), ("s1", "25")]);
        commit(&warehouse, tables::RAW, &partial, true).unwrap();
        assert_eq!(raw_rows(&warehouse), 2 * complete);

        let starts = warehouse
            .plan_shards(&["s0".to_string(), "s1".to_string()])
            .unwrap();
        for start in &starts {
            assert_eq!(start.from.as_ref().unwrap().checkpoint, 1, "{start:?}");
        }
        let claimed = warehouse
            .claim(&Claim {
                writer: "b/1",
                checkpoint: 0,
                identity: serde_json::json!({"kinesis": "auth"}),
                starts: &starts,
                state: Some("b/1-state-0".into()),
            })
            .unwrap();
        let raw = claimed.iter().find(|c| c.table == tables::RAW).unwrap();
        // The batch spans three hours: a file per ingestion-hour partition.
        assert_eq!((raw.reverted.len(), raw.files_removed), (1, 3));
        assert!(
            claimed
                .iter()
                .filter(|c| c.table != tables::RAW)
                .all(|c| c.reverted.is_empty())
        );
        assert_eq!(
            raw_rows(&warehouse),
            complete,
            "the partial checkpoint's rows are gone"
        );
        // The claim records where b starts: a's checkpoint 1's position,
        // with the state b wrote for it.
        let again = warehouse.plan_shards(&["s1".to_string()]).unwrap();
        let from = again[0].from.as_ref().unwrap();
        assert_eq!((from.writer.as_deref(), from.checkpoint), (Some("b/1"), 0));
        assert_eq!(from.position["sequence"], "20");
        assert_eq!(from.state.as_deref(), Some("b/1-state-0"));
        // a's later commit is refused: its checkpoint 2 was removed.
        let next = progress("a/1", 3, &[("s0", "16")]);
        assert!(is_taken(
            &commit(&warehouse, tables::CURATED, &next, false).unwrap_err()
        ));
    }

    /// A change staged on a table another writer commits to before the
    /// swap is made again on that commit, and counted as a conflict in
    /// `/metrics`.
    #[test]
    fn a_commit_that_loses_the_race_is_made_again_and_counted() {
        let (_dir, warehouse) = one_checkpoint_of_a();
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        let mut attempts = 0;
        let committed = metrics::with_local_recorder(&recorder, || {
            replace::commit_with(&warehouse, tables::RAW, "test", |_| {
                attempts += 1;
                if attempts == 1 {
                    // Another writer's commit lands between this attempt's
                    // load and its swap.
                    let other = progress("a/1", 2, &[("s0", "11"), ("s1", "21")]);
                    commit(&warehouse, tables::RAW, &other, true).unwrap();
                }
                Ok(Some(Change {
                    operation: Operation::Append,
                    removed: Vec::new(),
                    added: Vec::new(),
                    properties: HashMap::from([(
                        "authpulse.operation".to_string(),
                        "test".to_string(),
                    )]),
                    label: "test",
                }))
            })
        })
        .unwrap();
        assert_eq!(attempts, 2);
        let snapshot = committed.metadata().current_snapshot().unwrap();
        assert_eq!(
            snapshot.summary().additional_properties["authpulse.operation"],
            "test"
        );
        let parent = committed
            .metadata()
            .snapshot_by_id(snapshot.parent_snapshot_id().unwrap())
            .unwrap();
        assert!(
            parent.summary().additional_properties[Progress::PROPERTY].contains("\"checkpoint\":2"),
            "made again on the other writer's commit"
        );
        let text = metrics.render();
        assert!(
            text.contains("authpulse_table_commit_conflicts_total{table=\"auth_events_raw\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn writers_of_different_shards_commit_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(&WarehouseConfig::embedded(dir.path())).unwrap();
        claim_of(&warehouse, "a/1", 0, &["s0"]);
        claim_of(&warehouse, "b/1", 0, &["s1"]);
        let threads: Vec<_> = ["a/1", "b/1"]
            .into_iter()
            .zip(["s0", "s1"])
            .map(|(writer, shard)| {
                let dir = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    let warehouse = Warehouse::open(&WarehouseConfig::embedded(&dir)).unwrap();
                    for c in 1..=4 {
                        let p = progress(writer, c, &[(shard, &c.to_string())]);
                        commit(&warehouse, tables::RAW, &p, true).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let table = warehouse.load(tables::RAW).unwrap();
        let log = shard_commits(table.metadata(), tables::RAW).unwrap();
        for (shard, writer) in [("s0", "a/1"), ("s1", "b/1")] {
            let checkpoints: Vec<u64> = log[shard].iter().map(|c| c.checkpoint).collect();
            assert_eq!(checkpoints, [4, 3, 2, 1, 0], "{shard}");
            assert!(
                log[shard]
                    .iter()
                    .all(|c| c.writer.as_deref() == Some(writer))
            );
        }
        let one = raw_batch(
            TableWriter::start(&warehouse, tables::RAW)
                .unwrap()
                .arrow_schema(),
        );
        assert_eq!(raw_rows(&warehouse), 8 * one.num_rows() as u64);
    }
}
