//! The conformance checks against `FakeZfs`, one test per check so failures are precise.

use z3_core::DatasetName;
use z3_zfs::conformance;
use z3_zfs::fake::FakeZfs;
use z3_zfs::{EstimateMethod, Zfs};

fn setup() -> (FakeZfs, DatasetName) {
    let zfs = FakeZfs::new();
    zfs.create_dataset("pool/z3zfs-test").unwrap();
    (zfs, DatasetName::new("pool/z3zfs-test").unwrap())
}

#[tokio::test]
async fn list_snapshots() {
    let (zfs, root) = setup();
    conformance::list_snapshots(&zfs, &zfs, &root).await;
}

#[tokio::test]
async fn dataset_exists() {
    let (zfs, root) = setup();
    conformance::dataset_exists(&zfs, &zfs, &root).await;
}

#[tokio::test]
async fn estimate_send_size() {
    let (zfs, root) = setup();
    let method = conformance::estimate_send_size(&zfs, &zfs, &root).await;
    assert_eq!(method, EstimateMethod::Fake);
}

#[tokio::test]
async fn send_receive_full() {
    let (zfs, root) = setup();
    conformance::send_receive_full(&zfs, &zfs, &root).await;
    // The fake can also show that the bytes arrived intact.
    assert_eq!(
        zfs.content("pool/z3zfs-test/full-dst"),
        zfs.snapshot_content("pool/z3zfs-test/full-src@a")
    );
}

#[tokio::test]
async fn send_receive_incremental() {
    let (zfs, root) = setup();
    conformance::send_receive_incremental(&zfs, &zfs, &root).await;
    assert_eq!(
        zfs.content("pool/z3zfs-test/inc-dst"),
        zfs.snapshot_content("pool/z3zfs-test/inc-src@b")
    );
}

#[tokio::test]
async fn send_missing_snapshot_fails() {
    let (zfs, root) = setup();
    conformance::send_missing_snapshot_fails(&zfs, &zfs, &root).await;
}

#[tokio::test]
async fn receive_garbage_fails() {
    let (zfs, root) = setup();
    conformance::receive_garbage_fails(&zfs, &zfs, &root).await;
}

#[tokio::test]
async fn dropped_receive_commits_nothing() {
    let (zfs, root) = setup();
    conformance::dropped_receive_commits_nothing(&zfs, &zfs, &root).await;
}

#[tokio::test]
async fn run_all_through_a_trait_object() {
    let (zfs, root) = setup();
    let shared: std::sync::Arc<dyn Zfs> = std::sync::Arc::new(zfs.clone());
    let method = conformance::run_all(&shared, &zfs, &root).await;
    assert_eq!(method, EstimateMethod::Fake);
    // Clones share state: the calls made through the Arc are visible here.
    assert!(zfs.calls().iter().any(|c| c.starts_with("receive ")));
}
