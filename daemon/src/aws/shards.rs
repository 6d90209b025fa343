//! Which shard of a Kinesis stream a partition key goes to: the MD5 of the
//! key as a 128-bit number, inside a shard's hash-key range.

use md5::{Digest, Md5};

use super::kinesis::{is_closed, list_shards};
use super::{AwsSettings, error_text};

/// The 128-bit hash key Kinesis routes a partition key by.
pub fn partition_hash(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// A shard's hash-key range (both ends included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashRange {
    pub start: u128,
    pub end: u128,
}

impl HashRange {
    pub fn contains(&self, hash: u128) -> bool {
        (self.start..=self.end).contains(&hash)
    }
}

impl std::str::FromStr for HashRange {
    type Err = String;

    /// `START-END`, decimal, as ListShards gives them.
    fn from_str(s: &str) -> Result<HashRange, String> {
        let (start, end) = s
            .split_once('-')
            .ok_or_else(|| format!("`{s}` is not START-END"))?;
        let parse = |n: &str| {
            n.trim()
                .parse::<u128>()
                .map_err(|e| format!("hash key `{n}`: {e}"))
        };
        let range = HashRange {
            start: parse(start)?,
            end: parse(end)?,
        };
        if range.start > range.end {
            return Err(format!("`{s}` ends before it starts"));
        }
        Ok(range)
    }
}

/// A listed shard.
#[derive(Clone, Debug)]
pub struct ShardInfo {
    pub id: String,
    pub range: HashRange,
    /// Closed by a reshard: its keys are now its children's.
    pub closed: bool,
}

/// Every shard of `stream` with its hash-key range.
pub async fn list_ranges(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<ShardInfo>, String> {
    let shards = list_shards(client, stream)
        .await
        .map_err(|e| format!("list the shards of `{stream}`: {e}"))?;
    let mut listed = Vec::with_capacity(shards.len());
    for shard in shards {
        let Some(range) = &shard.hash_key_range else {
            continue;
        };
        let range = format!("{}-{}", range.starting_hash_key, range.ending_hash_key)
            .parse::<HashRange>()?;
        listed.push(ShardInfo {
            closed: is_closed(&shard),
            id: shard.shard_id,
            range,
        });
    }
    Ok(listed)
}

/// [`list_ranges`] with its own client and runtime, for a command.
pub fn list_ranges_blocking(aws: &AwsSettings, stream: &str) -> Result<Vec<ShardInfo>, String> {
    let runtime = crate::net::runtime("kinesis-shards").map_err(|e| error_text(&e))?;
    runtime.block_on(async {
        let client = aws_sdk_kinesis::Client::new(&aws.load().await);
        list_ranges(&client, stream).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_hash_like_kinesis() {
        // MD5("U1") = f89412c1..., the 128-bit hash key Kinesis uses.
        let hash = partition_hash("U1");
        assert_eq!(hash >> 96, 0xf894_12c1);
        assert_ne!(partition_hash("U1"), partition_hash("U2"));
    }

    #[test]
    fn ranges_parse_as_listed() {
        let range: HashRange = "0-170141183460469231731687303715884105727".parse().unwrap();
        assert!(range.contains(0) && range.contains(u128::MAX / 2));
        assert!(!range.contains(u128::MAX / 2 + 1));
        assert!(
            "5-1"
                .parse::<HashRange>()
                .unwrap_err()
                .contains("ends before")
        );
        assert!(
            "x-1"
                .parse::<HashRange>()
                .unwrap_err()
                .contains("hash key `x`")
        );
    }
}
