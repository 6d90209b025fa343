//! Snapshot names, files and the format's round trips.

use super::*;

#[test]
fn snapshot_names_carry_their_run() {
    let run = SnapshotStore::new_run_id();
    assert_eq!(run.len(), 8);
    let name = SnapshotStore::name_of(&run, 42);
    assert_eq!(name, format!("checkpoint-0000000042-{run}.apstate"));
    assert_eq!(SnapshotStore::run_of(&name), Some(run.as_str()));
    // Names without a run (earlier releases) stay readable.
    assert_eq!(
        SnapshotStore::name_of("", 7),
        "checkpoint-0000000007.apstate"
    );
    assert_eq!(
        SnapshotStore::run_of("checkpoint-0000000007.apstate"),
        Some("")
    );
    assert_eq!(SnapshotStore::run_of("history.apstate"), None);
}

/// A snapshot's bytes: a pipeline's after `input`.
fn snapshot_of(input: &[u8]) -> Vec<u8> {
    crate::pipeline::with_native_pipeline(|pipeline| {
        let mut lines = crate::input::LineReader::new(input, 1024);
        let stop = std::sync::atomic::AtomicBool::new(false);
        crate::pipeline::consume(pipeline, &mut lines, &stop, |_, _| {}).unwrap();
        let mut bytes = Vec::new();
        pipeline.write_snapshot(&mut bytes).unwrap();
        bytes
    })
}

#[test]
fn a_payload_altered_and_compressed_again_is_refused() {
    let bytes = snapshot_of(b"1,U1,C1\n2,U2,C2\n");
    assert_eq!(read_meta(&mut &bytes[..]).unwrap().events_read, 2);
    let mut payload = Vec::new();
    zstd::stream::copy_decode(&bytes[16..], &mut payload).unwrap();
    // The names, as an attacker would change them: U1 becomes U9.
    let at = payload.windows(2).position(|w| w == b"U1").unwrap();
    payload[at + 1] = b'9';
    let mut forged = bytes[..16].to_vec();
    forged.extend(zstd::stream::encode_all(&payload[..], 1).unwrap());
    let error = read(&mut &forged[..]).err().unwrap();
    assert!(matches!(error, SnapshotError::Checksum { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("corrupt state snapshot: its payload's checksum")
    );
    // Cut short: refused too.
    let error = read(&mut &bytes[..bytes.len() - 9]).err().unwrap();
    assert!(matches!(error, SnapshotError::Decode(_)), "{error}");
}

#[test]
fn a_version_7_snapshot_reads_back_the_same_windows() {
    let mut input = String::new();
    for t in 0..600u32 {
        let (user, computer) = (t % 5, if t % 9 == 0 { t } else { t % 5 });
        input.push_str(&format!("{},U{user},C{computer}\n", t * 40));
    }
    let current = snapshot_of(input.as_bytes());
    let mut old = in_window_layout(WindowLayout::Columns, || snapshot_of(input.as_bytes()));
    old[8..12].copy_from_slice(&VERSION_7.to_le_bytes());
    let (current, old) = (
        read(&mut &current[..]).unwrap(),
        read(&mut &old[..]).unwrap(),
    );
    assert_eq!(current.meta.events_read, 600);
    let state = |body: &Body| postcard::to_allocvec(&body.state).unwrap();
    assert_eq!(state(&current), state(&old));
}

#[test]
fn the_latest_kept_snapshot_of_a_run_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let files = LocalFiles::new(dir.path()).unwrap();
    let good = snapshot_of(b"1,U1,C1\n");
    for (run, checkpoint) in [("aaaaaaaa", 3), ("aaaaaaaa", 4), ("bbbbbbbb", 5)] {
        std::fs::write(
            dir.path().join(SnapshotStore::name_of(run, checkpoint)),
            &good,
        )
        .unwrap();
    }
    // Run a's checkpoint 5 is missing: its latest kept is 4, not run b's 5.
    assert_eq!(
        SnapshotStore::latest_kept(&files, "aaaaaaaa", 5, 3).unwrap(),
        Some(4)
    );
    assert_eq!(
        SnapshotStore::latest_kept(&files, "bbbbbbbb", 5, 3).unwrap(),
        Some(5)
    );
    assert_eq!(
        SnapshotStore::latest_kept(&files, "cccccccc", 5, 3).unwrap(),
        None
    );
    // Run b's newest is damaged: its one before is taken (none here),
    // and run a's 4, damaged, gives way to its 3.
    for (run, checkpoint) in [("aaaaaaaa", 4), ("bbbbbbbb", 5)] {
        let path = dir.path().join(SnapshotStore::name_of(run, checkpoint));
        std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    }
    assert_eq!(
        SnapshotStore::latest_kept(&files, "aaaaaaaa", 5, 3).unwrap(),
        Some(3)
    );
    assert_eq!(
        SnapshotStore::latest_kept(&files, "bbbbbbbb", 5, 3).unwrap(),
        None
    );
}
