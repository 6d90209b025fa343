//! KPL-style record aggregation: many events in one Kinesis record.
//!
//! Kinesis bills and throttles per record (1,000 records/s per shard) as well
//! as per byte, so a producer of small events packs them. The format is the
//! Kinesis Producer Library's, which the KCL and Lambda also read:
//!
//! ```text
//! F3 89 9A C2                       magic
//! AggregatedRecord (protobuf):
//!   1: repeated string partition_key_table
//!   2: repeated string explicit_hash_key_table
//!   3: repeated Record records
//!        1: uint64 partition_key_index
//!        2: uint64 explicit_hash_key_index   (optional)
//!        3: bytes  data
//!        4: repeated Tag tags                (ignored)
//! MD5 of the protobuf bytes (16 bytes)
//! ```
//!
//! A record without the magic prefix is a plain record, so a consumer reads
//! both. The three messages are small enough that their wire format is written
//! out here rather than generated.

use md5::{Digest, Md5};

pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// Largest Kinesis record (1 MiB); an aggregate stays below it.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AggregationError {
    #[error("aggregated record is truncated")]
    Truncated,
    #[error("aggregated record fails its MD5 check")]
    BadDigest,
    #[error("aggregated record is malformed: {0}")]
    Malformed(&'static str),
}

/// The user records inside `data`: `None` if `data` is a plain record.
pub fn deaggregate(data: &[u8]) -> Result<Option<Vec<&[u8]>>, AggregationError> {
    let Some(body) = data.strip_prefix(&MAGIC) else {
        return Ok(None);
    };
    if body.len() < DIGEST_LEN {
        return Err(AggregationError::Truncated);
    }
    let (message, digest) = body.split_at(body.len() - DIGEST_LEN);
    if Md5::digest(message).as_slice() != digest {
        return Err(AggregationError::BadDigest);
    }
    let mut records = Vec::new();
    let mut reader = Reader(message);
    while let Some((field, wire)) = reader.key()? {
        match (field, wire) {
            (3, WIRE_LEN) => {
                let record = reader.bytes()?;
                records.push(record_data(record)?);
            }
            (1 | 2, WIRE_LEN) => {
                reader.bytes()?;
            }
            (_, wire) => reader.skip(wire)?,
        }
    }
    Ok(Some(records))
}

fn record_data(record: &[u8]) -> Result<&[u8], AggregationError> {
    let mut reader = Reader(record);
    let mut data = None;
    while let Some((field, wire)) = reader.key()? {
        match (field, wire) {
            (3, WIRE_LEN) => data = Some(reader.bytes()?),
            (_, wire) => reader.skip(wire)?,
        }
    }
    data.ok_or(AggregationError::Malformed("a record has no data"))
}

const WIRE_VARINT: u8 = 0;
const WIRE_LEN: u8 = 2;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, AggregationError> {
        let mut value = 0u64;
        for (i, &byte) in self.0.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok(value);
            }
        }
        Err(AggregationError::Truncated)
    }

    fn key(&mut self) -> Result<Option<(u64, u8)>, AggregationError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        Ok(Some((key >> 3, (key & 7) as u8)))
    }

    fn bytes(&mut self) -> Result<&'a [u8], AggregationError> {
        let len = usize::try_from(self.varint()?).map_err(|_| AggregationError::Truncated)?;
        if len > self.0.len() {
            return Err(AggregationError::Truncated);
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(bytes)
    }

    fn skip(&mut self, wire: u8) -> Result<(), AggregationError> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_LEN => self.bytes().map(drop),
            1 => self.fixed(8),
            5 => self.fixed(4),
            _ => Err(AggregationError::Malformed("unknown wire type")),
        }
    }

    fn fixed(&mut self, len: usize) -> Result<(), AggregationError> {
        self.0 = self.0.get(len..).ok_or(AggregationError::Truncated)?;
        Ok(())
    }
}

/// Packs user records into one aggregated record. Keys are kept in a table,
/// so repeated partition keys cost one index each.
#[derive(Default)]
pub struct Aggregate {
    keys: Vec<String>,
    records: Vec<u8>,
    count: usize,
}

impl Aggregate {
    /// Number of user records packed so far.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The partition key of the aggregate: its first record's.
    pub fn partition_key(&self) -> Option<&str> {
        self.keys.first().map(String::as_str)
    }

    /// Size of the finished record if `data` with `key` were added.
    pub fn size_with(&self, key: &str, data: &[u8]) -> usize {
        let (index, key_cost) = match self.keys.iter().position(|k| k == key) {
            Some(i) => (i, 0),
            None => (
                self.keys.len(),
                1 + varint_len(key.len() as u64) + key.len(),
            ),
        };
        let record = 2 + varint_len(index as u64) + varint_len(data.len() as u64) + data.len();
        self.encoded_len() + key_cost + 1 + varint_len(record as u64) + record
    }

    pub fn push(&mut self, key: &str, data: &[u8]) {
        let index = match self.keys.iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                self.keys.push(key.to_string());
                self.keys.len() - 1
            }
        };
        let mut record = Vec::with_capacity(data.len() + 8);
        record.push(1 << 3 | WIRE_VARINT);
        put_varint(&mut record, index as u64);
        record.push(3 << 3 | WIRE_LEN);
        put_varint(&mut record, data.len() as u64);
        record.extend_from_slice(data);
        self.records.push(3 << 3 | WIRE_LEN);
        put_varint(&mut self.records, record.len() as u64);
        self.records.extend_from_slice(&record);
        self.count += 1;
    }

    fn encoded_len(&self) -> usize {
        let keys: usize = self
            .keys
            .iter()
            .map(|k| 1 + varint_len(k.len() as u64) + k.len())
            .sum();
        MAGIC.len() + keys + self.records.len() + DIGEST_LEN
    }

    /// The aggregated record's bytes; the aggregate is empty afterwards.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut message = Vec::with_capacity(self.encoded_len());
        for key in &self.keys {
            message.push(1 << 3 | WIRE_LEN);
            put_varint(&mut message, key.len() as u64);
            message.extend_from_slice(key.as_bytes());
        }
        message.extend_from_slice(&self.records);
        let digest = Md5::digest(&message);
        let mut out = Vec::with_capacity(MAGIC.len() + message.len() + DIGEST_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&message);
        out.extend_from_slice(&digest);
        self.keys.clear();
        self.records.clear();
        self.count = 0;
        out
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    (64 - value.max(1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_round_trip_and_sizes_are_exact() {
        let mut aggregate = Aggregate::default();
        let events: Vec<(String, Vec<u8>)> = (0..300)
            .map(|i| (format!("U{}", i % 7), format!("{{\"n\":{i}}}").into_bytes()))
            .collect();
        for (key, data) in &events {
            let predicted = aggregate.size_with(key, data);
            aggregate.push(key, data);
            assert_eq!(predicted, aggregate.encoded_len());
        }
        assert_eq!(aggregate.partition_key(), Some("U0"));
        let bytes = aggregate.finish();
        assert!(aggregate.is_empty());
        let records = deaggregate(&bytes).unwrap().unwrap();
        assert_eq!(records.len(), events.len());
        for (got, (_, want)) in records.iter().zip(&events) {
            assert_eq!(got, &want.as_slice());
        }
    }

    #[test]
    fn plain_records_pass_and_damage_is_caught() {
        assert_eq!(deaggregate(b"{\"user_id\":\"U1\"}").unwrap(), None);
        let mut aggregate = Aggregate::default();
        aggregate.push("U1", b"hello");
        let mut bytes = aggregate.finish();
        let last = bytes.len() - 20;
        bytes[last] ^= 1;
        assert_eq!(
            deaggregate(&bytes).unwrap_err(),
            AggregationError::BadDigest
        );
        assert_eq!(
            deaggregate(&MAGIC).unwrap_err(),
            AggregationError::Truncated
        );
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            assert_eq!(Reader(&out).varint().unwrap(), v);
        }
    }
}
