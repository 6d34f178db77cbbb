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

#[tokio::test]
async fn holds() {
    let (zfs, root) = setup();
    conformance::holds(&zfs, &zfs, &root).await;
    // The fake can list holds itself: none are left behind.
    assert!(zfs.holds("pool/z3zfs-test/holds@sp ace").is_empty());
}

#[tokio::test]
async fn creation_times() {
    let (zfs, root) = setup();
    let now = 1_796_425_946;
    zfs.set_clock(now);
    conformance::creation_times(&zfs, &zfs, &root, now).await;
}

#[tokio::test]
async fn creation_times_far_from_now_fail_the_check() {
    // The check can fail: a fake whose clock is a day behind is caught.
    let (zfs, root) = setup();
    let now = 1_796_425_946;
    zfs.set_clock(now - 86_400);
    let check = tokio::spawn(async move {
        conformance::creation_times(&zfs, &zfs, &root, now).await;
    });
    assert!(check.await.unwrap_err().is_panic());
}

#[tokio::test]
async fn bookmarks_in_the_openzfs_dialect() {
    let (zfs, root) = setup();
    assert!(conformance::bookmarks(&zfs, &zfs, &root).await);
}

#[tokio::test]
async fn bookmarks_in_the_zfs_fuse_dialect() {
    let (zfs, root) = setup();
    zfs.disable_bookmarks();
    assert!(!conformance::bookmarks(&zfs, &zfs, &root).await);
}
