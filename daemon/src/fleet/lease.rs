//! One shard's lease as the Kinesis Client Library keeps it: an item of the
//! lease table, with the KCL's attribute names and sentinels, so that AWS
//! tooling and people who know the KCL read our table as they expect.
//!
//! | attribute | meaning |
//! |---|---|
//! | `leaseKey` (hash key) | the shard id |
//! | `leaseOwner` | the worker holding it; absent: nobody |
//! | `leaseCounter` | raised by every write; a write names the value it read (fencing) |
//! | `checkpoint` | the last processed sequence number, or `TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`, `SHARD_END` |
//! | `checkpointSubSequenceNumber` | events of the record after `checkpoint` already processed |
//! | `ownerSwitchesSinceCheckpoint` | how often the lease changed hands since the last checkpoint |
//! | `parentShardId` (string set) | the shards it was split or merged from |
//! | `childShardIds` (string set) | the shards a reshard made of it |
//! | `startingHashKey`, `endingHashKey` | its hash-key range, decimal |

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::checkpoint::ShardCheckpoint;
use crate::aws::shards::HashRange;

pub const LEASE_KEY: &str = "leaseKey";
pub const LEASE_OWNER: &str = "leaseOwner";
pub const LEASE_COUNTER: &str = "leaseCounter";
pub const CHECKPOINT: &str = "checkpoint";
pub const CHECKPOINT_SUB: &str = "checkpointSubSequenceNumber";
pub const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
pub const PARENTS: &str = "parentShardId";
pub const CHILDREN: &str = "childShardIds";
pub const STARTING_HASH_KEY: &str = "startingHashKey";
pub const ENDING_HASH_KEY: &str = "endingHashKey";

/// Where a shard's processing stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseCheckpoint {
    /// Nothing processed yet; start at the oldest retained record.
    TrimHorizon,
    /// Nothing processed yet; start with records written from now on.
    Latest,
    /// Nothing processed yet; start at a time (the KCL keeps the time in its
    /// own configuration, not in the lease).
    AtTimestamp,
    /// Processed up to and including `skip` events of the record after
    /// `sequence` (a record can hold several).
    Sequence { sequence: String, skip: u32 },
    /// The shard is closed and every record of it was processed.
    ShardEnd,
}

impl LeaseCheckpoint {
    /// The `checkpoint` attribute's value.
    pub fn sequence_text(&self) -> &str {
        match self {
            LeaseCheckpoint::TrimHorizon => "TRIM_HORIZON",
            LeaseCheckpoint::Latest => "LATEST",
            LeaseCheckpoint::AtTimestamp => "AT_TIMESTAMP",
            LeaseCheckpoint::ShardEnd => "SHARD_END",
            LeaseCheckpoint::Sequence { sequence, .. } => sequence,
        }
    }

    pub fn sub_sequence(&self) -> u32 {
        match self {
            LeaseCheckpoint::Sequence { skip, .. } => *skip,
            _ => 0,
        }
    }

    fn parse(sequence: &str, sub: u32) -> LeaseCheckpoint {
        match sequence {
            "TRIM_HORIZON" => LeaseCheckpoint::TrimHorizon,
            "LATEST" => LeaseCheckpoint::Latest,
            "AT_TIMESTAMP" => LeaseCheckpoint::AtTimestamp,
            "SHARD_END" => LeaseCheckpoint::ShardEnd,
            sequence => LeaseCheckpoint::Sequence {
                sequence: sequence.to_string(),
                skip: sub,
            },
        }
    }

    /// The reader's position for the shard; `None` for the three starting
    /// sentinels (the reader's configured start applies).
    pub fn to_shard_checkpoint(&self) -> Option<ShardCheckpoint> {
        match self {
            LeaseCheckpoint::Sequence { sequence, skip } => Some(ShardCheckpoint {
                sequence: Some(sequence.clone()),
                skip: *skip,
                ended: false,
            }),
            LeaseCheckpoint::ShardEnd => Some(ShardCheckpoint {
                sequence: None,
                skip: 0,
                ended: true,
            }),
            _ => None,
        }
    }

    /// A reader's position as a lease checkpoint; `None`: nothing of the
    /// shard processed yet (the lease keeps its starting sentinel).
    pub fn from_shard_checkpoint(position: &ShardCheckpoint) -> Option<LeaseCheckpoint> {
        if position.ended {
            return Some(LeaseCheckpoint::ShardEnd);
        }
        position
            .sequence
            .as_ref()
            .map(|sequence| LeaseCheckpoint::Sequence {
                sequence: sequence.clone(),
                skip: position.skip,
            })
    }
}

/// One item of the lease table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The shard id.
    pub key: String,
    pub owner: Option<String>,
    pub counter: u64,
    pub checkpoint: LeaseCheckpoint,
    pub owner_switches: u64,
    pub parents: Vec<String>,
    pub children: Vec<String>,
    pub range: Option<HashRange>,
}

/// An item that is not a lease of ours to use.
#[derive(Debug, thiserror::Error)]
#[error("lease table item `{key}`: {reason}")]
pub struct BadItem {
    pub key: String,
    pub reason: String,
}

impl Lease {
    /// A new, unowned lease for a shard.
    pub fn new(key: impl Into<String>, checkpoint: LeaseCheckpoint) -> Lease {
        Lease {
            key: key.into(),
            owner: None,
            counter: 0,
            checkpoint,
            owner_switches: 0,
            parents: Vec::new(),
            children: Vec::new(),
            range: None,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.checkpoint == LeaseCheckpoint::ShardEnd
    }

    pub fn is_owned_by(&self, worker: &str) -> bool {
        self.owner.as_deref() == Some(worker)
    }

    /// The item as the KCL writes it.
    pub fn to_item(&self) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::new();
        item.insert(LEASE_KEY.into(), AttributeValue::S(self.key.clone()));
        if let Some(owner) = &self.owner {
            item.insert(LEASE_OWNER.into(), AttributeValue::S(owner.clone()));
        }
        item.insert(LEASE_COUNTER.into(), number(self.counter));
        item.insert(
            CHECKPOINT.into(),
            AttributeValue::S(self.checkpoint.sequence_text().to_string()),
        );
        item.insert(
            CHECKPOINT_SUB.into(),
            number(self.checkpoint.sub_sequence()),
        );
        item.insert(OWNER_SWITCHES.into(), number(self.owner_switches));
        // DynamoDB refuses an empty set: an absent attribute is the empty one.
        if !self.parents.is_empty() {
            item.insert(PARENTS.into(), AttributeValue::Ss(self.parents.clone()));
        }
        if !self.children.is_empty() {
            item.insert(CHILDREN.into(), AttributeValue::Ss(self.children.clone()));
        }
        if let Some(range) = self.range {
            item.insert(
                STARTING_HASH_KEY.into(),
                AttributeValue::S(range.start.to_string()),
            );
            item.insert(
                ENDING_HASH_KEY.into(),
                AttributeValue::S(range.end.to_string()),
            );
        }
        item
    }

    /// Reads an item the KCL or we wrote.
    pub fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Lease, BadItem> {
        let key = match item.get(LEASE_KEY) {
            Some(AttributeValue::S(key)) => key.clone(),
            _ => {
                return Err(BadItem {
                    key: "?".into(),
                    reason: format!("no string `{LEASE_KEY}`"),
                });
            }
        };
        let bad = |reason: String| BadItem {
            key: key.clone(),
            reason,
        };
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(text)) => Ok(Some(text.clone())),
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(_) => Err(bad(format!("`{name}` is not a string"))),
        };
        let count = |name: &str| -> Result<u64, BadItem> {
            match item.get(name) {
                Some(AttributeValue::N(n)) => n
                    .parse()
                    .map_err(|_| bad(format!("`{name}` = {n} is not a count"))),
                None | Some(AttributeValue::Null(_)) => Ok(0),
                Some(_) => Err(bad(format!("`{name}` is not a number"))),
            }
        };
        let set = |name: &str| match item.get(name) {
            Some(AttributeValue::Ss(values)) => {
                let mut values = values.clone();
                values.sort();
                Ok(values)
            }
            None | Some(AttributeValue::Null(_)) => Ok(Vec::new()),
            Some(_) => Err(bad(format!("`{name}` is not a string set"))),
        };
        let sub = u32::try_from(count(CHECKPOINT_SUB)?)
            .map_err(|_| bad(format!("`{CHECKPOINT_SUB}` is out of range")))?;
        let checkpoint = match text(CHECKPOINT)? {
            Some(sequence) => LeaseCheckpoint::parse(&sequence, sub),
            None => LeaseCheckpoint::TrimHorizon,
        };
        let range = match (text(STARTING_HASH_KEY)?, text(ENDING_HASH_KEY)?) {
            (Some(start), Some(end)) => Some(
                format!("{start}-{end}")
                    .parse::<HashRange>()
                    .map_err(|e| bad(format!("hash-key range: {e}")))?,
            ),
            _ => None,
        };
        Ok(Lease {
            owner: text(LEASE_OWNER)?,
            counter: count(LEASE_COUNTER)?,
            checkpoint,
            owner_switches: count(OWNER_SWITCHES)?,
            parents: set(PARENTS)?,
            children: set(CHILDREN)?,
            range,
            key,
        })
    }
}

pub(super) fn number(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_with_the_kcl_names() {
        let mut lease = Lease::new(
            "shardId-000000000002",
            LeaseCheckpoint::Sequence {
                sequence: "4959".into(),
                skip: 3,
            },
        );
        lease.owner = Some("worker-a".into());
        lease.counter = 17;
        lease.parents = vec!["shardId-000000000000".into()];
        lease.range = Some(HashRange { start: 5, end: 99 });
        let item = lease.to_item();
        assert_eq!(item[CHECKPOINT], AttributeValue::S("4959".into()));
        assert_eq!(item[CHECKPOINT_SUB], AttributeValue::N("3".into()));
        assert_eq!(item[STARTING_HASH_KEY], AttributeValue::S("5".into()));
        assert!(!item.contains_key(CHILDREN), "an empty set is left out");
        assert_eq!(Lease::from_item(&item).unwrap(), lease);
    }

    #[test]
    fn sentinels_and_bad_items() {
        let mut item = Lease::new("s", LeaseCheckpoint::ShardEnd).to_item();
        assert_eq!(item[CHECKPOINT], AttributeValue::S("SHARD_END".into()));
        assert!(Lease::from_item(&item).unwrap().is_finished());
        item.insert(LEASE_COUNTER.into(), AttributeValue::S("x".into()));
        let error = Lease::from_item(&item).unwrap_err().to_string();
        assert_eq!(
            error,
            "lease table item `s`: `leaseCounter` is not a number"
        );
    }

    #[test]
    fn reader_positions_map_both_ways() {
        let position = ShardCheckpoint {
            sequence: Some("42".into()),
            skip: 2,
            ended: false,
        };
        let checkpoint = LeaseCheckpoint::from_shard_checkpoint(&position).unwrap();
        assert_eq!(checkpoint.to_shard_checkpoint(), Some(position));
        assert_eq!(
            LeaseCheckpoint::from_shard_checkpoint(&ShardCheckpoint::default()),
            None
        );
        assert_eq!(LeaseCheckpoint::TrimHorizon.to_shard_checkpoint(), None);
    }
}
