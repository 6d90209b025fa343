//! Several daemons on one Kinesis stream: each worker holds leases on some
//! of the stream's shards, in a DynamoDB table laid out as the Kinesis
//! Client Library's lease table, so that operators and AWS tooling read it
//! as they know it.
//!
//! - [`lease`]: one shard's lease, as a table item (the KCL's names).
//! - [`table`]: the table's reads and fenced, conditional writes.
//! - [`balance`]: which leases a worker takes (expired first, then one
//!   stolen from the busiest), as a pure function of a table read.
//! - [`sync`]: a lease for every shard, children named on their parents.
//! - [`worker`]: the loop that renews, takes and checkpoints.
//! - [`policy_mirror`]: one policy on S3 for every worker, mirrored to each.
//! - [`host_shares`]: each shard's computer popularity, traded at checkpoints.

pub mod balance;
pub mod host_shares;
pub mod lease;
pub mod policy_mirror;
pub mod sync;
pub mod table;
pub mod worker;

pub use lease::{Lease, LeaseCheckpoint};
pub use table::{LeaseError, LeaseTable};
pub use worker::{
    Checkpointer, DEFAULT_FAILOVER, FleetConfig, FleetError, Held, LeaseWorker, LiveShard,
    LiveShards,
};
