//! The fleet's lease table against a local DynamoDB and Kinesis (moto):
//! fencing by the lease counter, several workers sharing a stream's shards,
//! takeover from a dead worker, a graceful hand-over, and parents read
//! before their children after a reshard.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use authpulse::aws::AwsSettings;
use authpulse::fleet::{FleetConfig, Lease, LeaseCheckpoint, LeaseError, LeaseTable, LeaseWorker};
use common::moto::Moto;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn clients(aws: &AwsSettings) -> (aws_sdk_dynamodb::Client, aws_sdk_kinesis::Client) {
    let sdk = aws.load().await;
    (
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_kinesis::Client::new(&sdk),
    )
}

async fn create_stream(kinesis: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    kinesis
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
}

fn config(moto: &Moto, table: &str, stream: &str, worker: &str) -> FleetConfig {
    FleetConfig {
        table: table.into(),
        stream: stream.into(),
        worker: worker.into(),
        failover: Duration::from_millis(1500),
        initial: LeaseCheckpoint::TrimHorizon,
        aws: moto.aws(),
    }
}

/// Waits until `done` holds, polling; fails after `limit`.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

fn held(worker: &LeaseWorker) -> BTreeSet<String> {
    worker.held().leases.keys().cloned().collect()
}

#[test]
fn a_write_names_the_counter_it_read_and_a_stale_holder_is_fenced_off() {
    let moto = Moto::start();
    runtime().block_on(async {
        let (dynamodb, _) = clients(&moto.aws()).await;
        let table = LeaseTable::new(dynamodb, "fencing");
        table.ensure_exists().await.unwrap();
        table.ensure_exists().await.unwrap(); // twice is fine
        let lease = Lease::new("shardId-000000000000", LeaseCheckpoint::TrimHorizon);
        assert!(table.create(&lease).await.unwrap());
        assert!(!table.create(&lease).await.unwrap(), "created once only");

        let a = table.take(&lease, "a").await.unwrap();
        assert_eq!((a.owner.as_deref(), a.counter), (Some("a"), 1));
        let a = table.renew(&a, "a").await.unwrap();
        assert_eq!(a.counter, 2);
        // b read the lease before a's renewal: its take fails.
        assert!(matches!(
            table.take(&lease, "b").await,
            Err(LeaseError::Lost { .. })
        ));
        // a stalls; b sees the counter stand still and takes it.
        let read = table.list().await.unwrap().remove(0);
        let b = table.take(&read, "b").await.unwrap();
        assert_eq!(
            (b.owner.as_deref(), b.counter, b.owner_switches),
            (Some("b"), 3, 1)
        );

        // a wakes up: it can neither checkpoint nor renew.
        let position = LeaseCheckpoint::Sequence {
            sequence: "12345".into(),
            skip: 0,
        };
        let stale = table.checkpoint(&a, "a", &position).await;
        assert!(matches!(stale, Err(LeaseError::Lost { .. })), "{stale:?}");
        assert!(matches!(
            table.renew(&a, "a").await,
            Err(LeaseError::Lost { .. })
        ));
        // Even with the current counter, only the holder writes.
        assert!(matches!(
            table.checkpoint(&b, "a", &position).await,
            Err(LeaseError::Lost { .. })
        ));
        let b = table.checkpoint(&b, "b", &position).await.unwrap();
        assert_eq!(b.checkpoint, position);
        assert_eq!(b.owner_switches, 0, "a checkpoint resets the switches");
        let stored = table.list().await.unwrap().remove(0);
        assert_eq!(stored, b);
        // A graceful release leaves it unowned, for anyone to take at once.
        let released = table.evict(&b, "b").await.unwrap();
        assert_eq!(released.owner, None);
    });
}

#[test]
fn workers_share_the_shards_take_over_from_a_dead_one_and_hand_over_on_release() {
    let moto = Moto::start();
    let stream = "fleet-four";
    runtime().block_on(async {
        let (_, kinesis) = clients(&moto.aws()).await;
        create_stream(&kinesis, stream, 4).await;
    });
    let all: BTreeSet<String> = (0..4).map(|i| format!("shardId-{i:012}")).collect();
    let a = LeaseWorker::start(config(&moto, "leases", stream, "worker-a")).unwrap();
    // The first worker takes every lease at once.
    assert_eq!(held(&a), all);
    let b = LeaseWorker::start(config(&moto, "leases", stream, "worker-b")).unwrap();
    let c = LeaseWorker::start(config(&moto, "leases", stream, "worker-c")).unwrap();
    let workers = [&a, &b, &c];
    // Converges to 2 + 1 + 1, each shard held by exactly one worker.
    wait_for(Duration::from_secs(40), "balanced 2/1/1", || {
        let sets: Vec<_> = workers.iter().map(|w| held(w)).collect();
        let mut counts: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
        counts.sort();
        let union: BTreeSet<String> = sets.iter().flatten().cloned().collect();
        counts == [1, 1, 2] && union == all
    });
    let table_owners = || {
        runtime().block_on(async {
            let (dynamodb, _) = clients(&moto.aws()).await;
            LeaseTable::new(dynamodb, "leases").list().await.unwrap()
        })
    };
    for lease in table_owners() {
        let holders: Vec<_> = workers
            .iter()
            .filter(|w| held(w).contains(&lease.key))
            .collect();
        assert_eq!(holders.len(), 1, "{} held by {}", lease.key, holders.len());
        assert_eq!(lease.owner.as_deref(), Some(holders[0].name()));
    }

    // c dies without a word (its renewals stop): a and b take its share
    // within the failover time and a taking round or two.
    let orphaned = held(&c);
    drop(c);
    let took = wait_for(Duration::from_secs(30), "c's leases taken over", || {
        let survivors: BTreeSet<String> = held(&a).union(&held(&b)).cloned().collect();
        orphaned.is_subset(&survivors)
    });
    eprintln!("takeover after {took:?} (failover 1.5 s, taking every 3 s)");
    // b leaves gracefully: a has everything at its next taking round,
    // without waiting for b's leases to expire.
    b.release();
    wait_for(Duration::from_secs(10), "a holds all four", || {
        held(&a) == all
    });
    let leases = table_owners();
    assert!(
        leases
            .iter()
            .all(|l| l.owner.as_deref() == Some("worker-a"))
    );
    assert!(
        leases.iter().all(|l| l.range.is_some()),
        "hash ranges recorded"
    );
}

#[test]
fn after_a_split_the_children_are_read_only_once_their_parent_is_finished() {
    let moto = Moto::start();
    let stream = "fleet-split";
    let parent = "shardId-000000000000".to_string();
    runtime().block_on(async {
        let (_, kinesis) = clients(&moto.aws()).await;
        create_stream(&kinesis, stream, 1).await;
    });
    let a = LeaseWorker::start(config(&moto, "split-leases", stream, "worker-a")).unwrap();
    assert_eq!(a.held().readable, BTreeSet::from([parent.clone()]));
    a.checkpoint(
        &parent,
        LeaseCheckpoint::Sequence {
            sequence: "1".into(),
            skip: 0,
        },
    )
    .unwrap();
    runtime().block_on(async {
        let (_, kinesis) = clients(&moto.aws()).await;
        kinesis
            .split_shard()
            .stream_name(stream)
            .shard_to_split(&parent)
            .new_starting_hash_key((u128::MAX / 2).to_string())
            .send()
            .await
            .unwrap();
    });
    // The next taking round creates the children's leases and takes them,
    // but they wait for their parent.
    wait_for(Duration::from_secs(15), "children leased", || {
        held(&a).len() == 3
    });
    let held_now = a.held();
    let children: Vec<&Lease> = held_now
        .leases
        .values()
        .filter(|l| l.key != parent)
        .collect();
    assert!(children.iter().all(|l| l.parents == [parent.clone()]));
    assert_eq!(held_now.readable, BTreeSet::from([parent.clone()]));
    // The parent read to its end: the children may be read.
    a.checkpoint(&parent, LeaseCheckpoint::ShardEnd).unwrap();
    let readable = a.held().readable;
    assert_eq!(readable.len(), 2);
    assert!(!readable.contains(&parent));
    let leases = runtime().block_on(async {
        let (dynamodb, _) = clients(&moto.aws()).await;
        LeaseTable::new(dynamodb, "split-leases")
            .list()
            .await
            .unwrap()
    });
    let parent_lease = leases.iter().find(|l| l.key == parent).unwrap();
    assert!(parent_lease.is_finished());
    assert_eq!(parent_lease.children.len(), 2);
    // A finished lease is not renewed or held any more; a checkpoint for
    // it is refused.
    assert!(a.checkpoint(&parent, LeaseCheckpoint::ShardEnd).is_err());
}

#[test]
fn leases_lists_the_table_as_a_table_and_as_json() {
    let moto = Moto::start();
    let stream = "fleet-listed";
    runtime().block_on(async {
        let (_, kinesis) = clients(&moto.aws()).await;
        create_stream(&kinesis, stream, 2).await;
    });
    let a = LeaseWorker::start(config(&moto, "listed-leases", stream, "worker-a")).unwrap();
    a.checkpoint(
        "shardId-000000000001",
        LeaseCheckpoint::Sequence {
            sequence: "49590338271490256608559692538361571095921575989136588898".into(),
            skip: 2,
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let list = |args: &[&str]| {
        common::authpulse(dir.path())
            .args(["leases", "--lease-table", "listed-leases"])
            .args(args)
            .envs(moto.env())
            .output()
            .unwrap()
    };
    let out = list(&[]);
    common::assert_succeeded(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(rows[0].starts_with("shard"), "{text}");
    assert!(rows[1].starts_with("shardId-000000000000") && rows[1].contains("worker-a"));
    assert!(
        rows[1].contains("TRIM_HORIZON") && rows[1].contains("50.0%"),
        "{text}"
    );
    // A long sequence number keeps its tail, with the events already read.
    assert!(
        rows[2].contains("…") && rows[2].contains("588898+2"),
        "{text}"
    );
    assert_eq!(rows[3], "2 leases (0 finished), 1 worker");

    let out = list(&["--json"]);
    common::assert_succeeded(&out);
    let leases: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(leases.len(), 2);
    assert_eq!(leases[1]["leaseKey"], "shardId-000000000001");
    assert_eq!(leases[1]["leaseOwner"], "worker-a");
    assert_eq!(leases[1]["checkpointSubSequenceNumber"], 2);
    assert!(leases[1]["leaseCounter"].as_u64().unwrap() >= 2);

    // A table that does not exist is named in the error.
    let out = common::authpulse(dir.path())
        .args(["leases", "--lease-table", "no-such-table"])
        .envs(moto.env())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("lease table `no-such-table`: no such table"),
        "{error}"
    );
}

#[test]
fn a_worker_reads_only_its_shards_and_its_positions_name_it() {
    use authpulse::aws::kinesis::{KinesisSource, KinesisSourceConfig};
    use authpulse::aws::shards::{self, partition_hash};
    use authpulse_engine::input::{Line, Source};

    let moto = Moto::start();
    let users: Vec<String> = (0..40).map(|i| format!("U{i}")).collect();
    runtime().block_on(async {
        let (_, kinesis) = clients(&moto.aws()).await;
        create_stream(&kinesis, "split-reading", 4).await;
        for (i, user) in users.iter().enumerate() {
            kinesis
                .put_record()
                .stream_name("split-reading")
                .partition_key(user)
                .data(aws_sdk_kinesis::primitives::Blob::new(format!(
                    "{},{user},C1",
                    i + 1
                )))
                .send()
                .await
                .unwrap();
        }
    });
    let listed = shards::list_ranges_blocking(&moto.aws(), "split-reading").unwrap();
    let mine: BTreeSet<String> = [&listed[1].id, &listed[3].id]
        .into_iter()
        .cloned()
        .collect();
    let expected: BTreeSet<String> = users
        .iter()
        .filter(|u| {
            let hash = partition_hash(u);
            mine.iter()
                .any(|id| listed.iter().any(|s| &s.id == id && s.range.contains(hash)))
        })
        .cloned()
        .collect();
    assert!(!expected.is_empty() && expected.len() < users.len());

    let mut config = KinesisSourceConfig::new("split-reading", None);
    config.only = Some(mine.clone());
    config.writer = Some("worker-a/1".into());
    config.until_caught_up = true;
    config.poll_interval = Duration::from_millis(100);
    config.aws = moto.aws();
    let mut source = KinesisSource::start(config).unwrap();
    let mut read = BTreeSet::new();
    while let Some(line) = source.next_line().unwrap() {
        if let Line::Complete(data) = line {
            let text = String::from_utf8(data.to_vec()).unwrap();
            read.insert(text.split(',').nth(1).unwrap().to_string());
        }
    }
    assert_eq!(read, expected, "exactly the events of the worker's shards");
    let position = source.position();
    assert_eq!(position["writer"], "worker-a/1");
    let positioned: BTreeSet<String> = position["shards"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(positioned, mine, "{position}");
}

#[test]
fn a_fleet_worker_needs_shared_tables_and_sane_intervals() {
    let dir = tempfile::tempdir().unwrap();
    // `run` with `args` fails; what it says.
    let refused = |args: &[&str]| {
        let out = common::authpulse(dir.path())
            .arg("run")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stream = ["--source", "kinesis://auth", "--lease-table", "leases"];
    let glue = [
        "--catalog",
        "glue",
        "--warehouse",
        "s3://b/t",
        "--aws-region",
        "us-east-1",
    ];
    let error = refused(&stream);
    assert!(error.contains("give --catalog glue"), "{error}");
    let error = refused(&[&["--lease-table", "leases"][..], &glue].concat());
    assert!(error.contains("give --source kinesis://STREAM"), "{error}");
    // Each trade is a request per shard: not more often than ten a second.
    let error = refused(&[&stream[..], &glue, &["--fleet-trade-interval", "10ms"]].concat());
    assert!(
        error.contains("--fleet-trade-interval 10ms: at least 100ms"),
        "{error}"
    );
}
