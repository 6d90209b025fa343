//! `authpulse leases`: the fleet's lease table, a row per shard: who holds
//! it, its counter, how far it is processed, its parents and hash range.

use anyhow::Context;
use authpulse::aws::AwsSettings;
use authpulse::fleet::{Lease, LeaseTable};
use clap::Args;

#[derive(Args, Debug)]
pub struct LeasesArgs {
    /// The DynamoDB lease table the fleet's workers share (`run
    /// --lease-table`); laid out as the Kinesis Client Library's.
    #[arg(long, value_name = "TABLE", env = "AUTHPULSE_LEASE_TABLE")]
    pub lease_table: String,
    /// Print JSON lines (one lease each) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// AWS region. Default: AWS_REGION, then the profile.
    #[arg(long)]
    pub aws_region: Option<String>,
    /// Endpoint of DynamoDB (a VPC endpoint or a local server). Default:
    /// AWS_ENDPOINT_URL_DYNAMODB, then AWS_ENDPOINT_URL, then AWS's.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
}

pub fn execute(args: LeasesArgs) -> anyhow::Result<()> {
    let aws = AwsSettings {
        region: args.aws_region.clone(),
        endpoint: args.endpoint.clone(),
    };
    let runtime = authpulse::net::runtime("leases")?;
    let leases = runtime
        .block_on(async {
            let client = aws_sdk_dynamodb::Client::new(&aws.load().await);
            LeaseTable::new(client, &args.lease_table).list().await
        })
        .context("cannot read the leases")?;
    if args.json {
        for lease in &leases {
            outln!("{}", json(lease))?;
        }
        return Ok(());
    }
    if leases.is_empty() {
        outln!("no leases in `{}`", args.lease_table)?;
        return Ok(());
    }
    outln!(
        "{:<24} {:<20} {:>8} {:<28} {:>6}  parents",
        "shard",
        "owner",
        "counter",
        "checkpoint",
        "keys"
    )?;
    for lease in &leases {
        let checkpoint = match lease.checkpoint.sub_sequence() {
            0 => lease.checkpoint.sequence_text().to_string(),
            sub => format!("{}+{sub}", lease.checkpoint.sequence_text()),
        };
        let share = lease.range.map_or("-".to_string(), |r| {
            format!(
                "{:.1}%",
                (r.end - r.start) as f64 / u128::MAX as f64 * 100.0
            )
        });
        outln!(
            "{:<24} {:<20} {:>8} {:<28} {:>6}  {}",
            lease.key,
            lease.owner.as_deref().unwrap_or("-"),
            lease.counter,
            abbreviate(&checkpoint, 28),
            share,
            if lease.parents.is_empty() {
                "-".to_string()
            } else {
                lease.parents.join(",")
            }
        )?;
    }
    let owners: std::collections::BTreeSet<&str> =
        leases.iter().filter_map(|l| l.owner.as_deref()).collect();
    let finished = leases.iter().filter(|l| l.is_finished()).count();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    outln!(
        "{} ({finished} finished), {}",
        plural(leases.len(), "lease"),
        plural(owners.len(), "worker")
    )?;
    Ok(())
}

fn json(lease: &Lease) -> serde_json::Value {
    serde_json::json!({
        "leaseKey": lease.key,
        "leaseOwner": lease.owner,
        "leaseCounter": lease.counter,
        "checkpoint": lease.checkpoint.sequence_text(),
        "checkpointSubSequenceNumber": lease.checkpoint.sub_sequence(),
        "ownerSwitchesSinceCheckpoint": lease.owner_switches,
        "parentShardId": lease.parents,
        "childShardIds": lease.children,
        "startingHashKey": lease.range.map(|r| r.start.to_string()),
        "endingHashKey": lease.range.map(|r| r.end.to_string()),
    })
}

/// Long sequence numbers keep their tail, which is what differs.
fn abbreviate(text: &str, width: usize) -> String {
    if text.len() <= width {
        return text.to_string();
    }
    format!("…{}", &text[text.len() - (width - 1)..])
}
