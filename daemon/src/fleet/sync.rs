//! Shard sync: every shard of the stream gets a lease, and every closed
//! shard's lease names its children, as the KCL's shard syncer keeps them.
//! Any worker may run it at any time: a lease is created only if absent
//! (conditional put), so workers syncing together create each one once.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_kinesis::types::Shard;

use super::lease::{Lease, LeaseCheckpoint};
use super::table::{LeaseError, LeaseTable};
use crate::aws::shards::HashRange;

/// The leases the listing calls for that the table lacks, and the children
/// each listed parent should name. A shard whose parent is listed starts at
/// `TRIM_HORIZON` (its records all follow the parent's); a root shard at
/// `initial`.
pub fn missing_leases(
    shards: &[Shard],
    existing: &[Lease],
    initial: &LeaseCheckpoint,
) -> (Vec<Lease>, BTreeMap<String, Vec<String>>) {
    let listed: BTreeSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    let known: BTreeSet<&str> = existing.iter().map(|l| l.key.as_str()).collect();
    let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut missing = Vec::new();
    for shard in shards {
        let parents: Vec<String> = [&shard.parent_shard_id, &shard.adjacent_parent_shard_id]
            .into_iter()
            .flatten()
            .filter(|p| listed.contains(p.as_str()) || known.contains(p.as_str()))
            .cloned()
            .collect();
        for parent in &parents {
            children
                .entry(parent.clone())
                .or_default()
                .push(shard.shard_id.clone());
        }
        if known.contains(shard.shard_id.as_str()) {
            continue;
        }
        let start = if parents.is_empty() {
            initial.clone()
        } else {
            LeaseCheckpoint::TrimHorizon
        };
        let mut lease = Lease::new(shard.shard_id.clone(), start);
        lease.parents = parents;
        lease.parents.sort();
        lease.range = shard.hash_key_range.as_ref().and_then(|r| {
            format!("{}-{}", r.starting_hash_key, r.ending_hash_key)
                .parse::<HashRange>()
                .ok()
        });
        missing.push(lease);
    }
    for list in children.values_mut() {
        list.sort();
    }
    (missing, children)
}

/// Creates the missing leases and records children on their parents.
/// Returns how many leases it created.
pub async fn sync(
    table: &LeaseTable,
    shards: &[Shard],
    existing: &[Lease],
    initial: &LeaseCheckpoint,
) -> Result<usize, LeaseError> {
    let (missing, children) = missing_leases(shards, existing, initial);
    let mut created = 0;
    for lease in &missing {
        if table.create(lease).await? {
            created += 1;
            tracing::info!(table = table.name(), shard = %lease.key, parents = ?lease.parents, "created a lease");
        }
    }
    for (parent, children) in &children {
        let recorded = existing.iter().find(|l| &l.key == parent);
        if recorded.is_none_or(|l| &l.children != children) {
            table.set_children(parent, children).await?;
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::types::{HashKeyRange, SequenceNumberRange};

    fn shard(id: &str, parent: Option<&str>, range: (u128, u128)) -> Shard {
        Shard::builder()
            .shard_id(id)
            .set_parent_shard_id(parent.map(str::to_string))
            .hash_key_range(
                HashKeyRange::builder()
                    .starting_hash_key(range.0.to_string())
                    .ending_hash_key(range.1.to_string())
                    .build()
                    .unwrap(),
            )
            .sequence_number_range(
                SequenceNumberRange::builder()
                    .starting_sequence_number("1")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn roots_start_where_asked_and_children_at_the_trim_horizon() {
        let shards = [
            shard("s0", None, (0, 99)),
            shard("s1", Some("s0"), (0, 49)),
            shard("s2", Some("s0"), (50, 99)),
        ];
        let (missing, children) = missing_leases(&shards, &[], &LeaseCheckpoint::Latest);
        assert_eq!(missing.len(), 3);
        assert_eq!(missing[0].checkpoint, LeaseCheckpoint::Latest);
        assert_eq!(missing[1].checkpoint, LeaseCheckpoint::TrimHorizon);
        assert_eq!(missing[1].parents, ["s0"]);
        assert_eq!(missing[2].range, Some(HashRange { start: 50, end: 99 }));
        assert_eq!(children["s0"], ["s1", "s2"]);
        // Existing leases are left alone; a parent past the retention (not
        // listed, no lease) is not named.
        let existing = vec![Lease::new("s0", LeaseCheckpoint::ShardEnd)];
        let (missing, _) = missing_leases(&shards[1..], &existing, &LeaseCheckpoint::Latest);
        assert_eq!(missing[0].parents, ["s0"]);
        let (missing, _) = missing_leases(&shards[1..], &[], &LeaseCheckpoint::Latest);
        assert!(missing[0].parents.is_empty());
        assert_eq!(missing[0].checkpoint, LeaseCheckpoint::Latest);
    }
}
