//! Resumable uploads (ADR 4): a failed upload is left open with a journal of its stored parts;
//! the next run skips exactly the parts the journal proves, and never completes a mixture.

use std::io;
use std::sync::Arc;

use z3_s3::{
    BeforeComplete, ErrorKind, FaultyStore, MemoryJournal, MemoryStore, MultipartUploader,
    ObjectStore, Op, OpenUpload, PartGrowth, PutOptions, Resumable, ResumeOutcome, UploadConfig,
    UploadId, UploadReport,
};

use crate::support::{TestReader, pattern};

const KEY: &str = "z3/pool/fs@snap";
const PART: u64 = 10;

fn store() -> Arc<FaultyStore<MemoryStore>> {
    Arc::new(FaultyStore::new(MemoryStore::with_min_part_size(
        "bucket", PART,
    )))
}

fn uploader(store: &Arc<FaultyStore<MemoryStore>>) -> MultipartUploader<FaultyStore<MemoryStore>> {
    MultipartUploader::new(
        Arc::clone(store),
        UploadConfig {
            part_size: PART,
            concurrency: 2,
            growth: PartGrowth::Fixed,
            ..UploadConfig::default()
        },
    )
}

fn no_hook() -> BeforeComplete<'static> {
    Box::new(|_| Box::pin(async { Ok(()) }))
}

async fn run(
    store: &Arc<FaultyStore<MemoryStore>>,
    reader: TestReader,
    journal: &MemoryJournal,
    previous: Option<OpenUpload>,
) -> z3_s3::Result<UploadReport> {
    uploader(store)
        .upload_resumable(
            KEY,
            &PutOptions::default(),
            reader,
            no_hook(),
            Resumable { journal, previous },
        )
        .await
}

/// A run that fails after `good` bytes of `data`: the upload is left open and journaled.
async fn interrupted(
    store: &Arc<FaultyStore<MemoryStore>>,
    data: &[u8],
    good: usize,
) -> OpenUpload {
    let journal = MemoryJournal::default();
    let reader = TestReader::new(data[..good].to_vec(), 3)
        .then_fail(io::Error::other("zfs send was killed"));
    let err = run(store, reader, &journal, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source, "{err}");
    assert!(err.to_string().contains("left open"), "{err}");
    assert_eq!(store.calls(Op::AbortMultipart), 0, "left open");
    assert_eq!(store.inner().open_uploads(), 1);
    assert!(store.inner().object(KEY).is_none());
    journal.last().expect("journaled")
}

#[tokio::test]
async fn a_failed_resumable_upload_is_left_open_with_its_stored_parts_journaled() {
    let store = store();
    let data = pattern(95);
    let open = interrupted(&store, &data, 47).await;
    // 47 bytes read: parts 1-4 are whole and stored; the fifth was never complete.
    let numbers: Vec<u16> = open.parts.iter().map(|p| p.number.get()).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert!(open.parts.iter().all(|p| p.size == PART));
    let listed = store.list_parts(KEY, &open.upload_id).await.unwrap();
    assert_eq!(listed.len(), 4);
    for (journaled, listed) in open.parts.iter().zip(&listed) {
        assert_eq!(journaled.etag, listed.etag);
        assert_eq!(
            journaled.crc32c,
            z3_s3::Crc32c::of(&data[usize::from(journaled.number.get() - 1) * 10..][..10])
                .to_base64()
        );
    }
}

#[tokio::test]
async fn a_rerun_sends_only_the_parts_the_journal_does_not_prove() {
    let store = store();
    let data = pattern(95);
    let open = interrupted(&store, &data, 47).await;
    let puts_before = store.calls(Op::PutPart);
    let journal = MemoryJournal::default();
    let report = run(
        &store,
        TestReader::new(data.clone(), 7),
        &journal,
        Some(open.clone()),
    )
    .await
    .unwrap();
    assert_eq!(report.resume, ResumeOutcome::Resumed { parts_skipped: 4 });
    assert_eq!(report.parts, 10);
    assert_eq!(store.calls(Op::PutPart) - puts_before, 6, "parts 5-10 only");
    assert_eq!(store.calls(Op::CreateMultipart), 1, "the same upload");
    assert_eq!(
        report.token, open.token,
        "the object carries the first run's token"
    );
    assert!(store.inner().object(KEY).unwrap().0 == data);
    assert_eq!(store.inner().open_uploads(), 0);
}

#[tokio::test]
async fn another_stream_is_refused_and_the_old_upload_aborted_never_mixed() {
    let store = store();
    let data = pattern(95);
    let open = interrupted(&store, &data, 47).await;
    let mut other = data.clone();
    other[25] ^= 1; // part 3 differs
    let err = run(
        &store,
        TestReader::new(other, 7),
        &MemoryJournal::default(),
        Some(open),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResumeMismatch, "{err}");
    assert!(err.to_string().contains("part 3"), "{err}");
    assert_eq!(store.calls(Op::CompleteMultipart), 0);
    assert_eq!(store.inner().open_uploads(), 0, "the old upload is aborted");
    assert!(store.inner().object(KEY).is_none());
}

#[tokio::test]
async fn a_vanished_upload_is_replaced_by_a_new_one() {
    let store = store();
    let data = pattern(95);
    let open = interrupted(&store, &data, 47).await;
    store.abort_multipart(KEY, &open.upload_id).await.unwrap();
    let report = run(
        &store,
        TestReader::new(data.clone(), 7),
        &MemoryJournal::default(),
        Some(open.clone()),
    )
    .await
    .unwrap();
    assert_eq!(report.resume, ResumeOutcome::Vanished);
    assert_ne!(report.token, open.token);
    assert!(store.inner().object(KEY).unwrap().0 == data);
}

#[tokio::test]
async fn a_journal_the_server_disagrees_with_discards_the_old_upload() {
    let store = store();
    let data = pattern(95);
    let mut open = interrupted(&store, &data, 47).await;
    let old = open.upload_id.clone();
    open.parts[1].etag = "\"not-this-one\"".to_owned();
    let report = run(
        &store,
        TestReader::new(data.clone(), 7),
        &MemoryJournal::default(),
        Some(open),
    )
    .await
    .unwrap();
    assert_eq!(report.resume, ResumeOutcome::Discarded);
    let err = store.list_parts(KEY, &old).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::NoSuchUpload,
        "the old upload is aborted"
    );
    assert!(store.inner().object(KEY).unwrap().0 == data);
    assert_eq!(store.inner().open_uploads(), 0);
}

#[tokio::test]
async fn a_new_upload_is_journaled_before_its_first_part_and_a_failing_first_record_aborts() {
    struct Refusing;
    #[async_trait::async_trait]
    impl z3_s3::UploadJournal for Refusing {
        async fn record(&self, _: &OpenUpload) -> z3_s3::Result<()> {
            Err(z3_s3::Error::new(
                ErrorKind::AccessDenied,
                "journal refused",
            ))
        }
    }
    let store = store();
    let journal = MemoryJournal::default();
    run(&store, TestReader::new(pattern(35), 7), &journal, None)
        .await
        .unwrap();
    assert!(journal.records() >= 1, "recorded at least at the start");

    let err = uploader(&store)
        .upload_resumable(
            "z3/other",
            &PutOptions::default(),
            TestReader::new(pattern(35), 7),
            no_hook(),
            Resumable {
                journal: &Refusing,
                previous: None,
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("journal"), "{err}");
    assert_eq!(store.inner().open_uploads(), 0, "nothing names it: aborted");
    assert_eq!(store.calls(Op::PutPart), 4, "only the first upload's parts");
}

#[tokio::test]
async fn a_previous_upload_of_another_key_is_not_found_and_replaced() {
    let store = store();
    let data = pattern(35);
    let open = OpenUpload {
        upload_id: UploadId::new("no-such-upload"),
        token: "t".into(),
        parts: Vec::new(),
    };
    let report = run(
        &store,
        TestReader::new(data.clone(), 7),
        &MemoryJournal::default(),
        Some(open),
    )
    .await
    .unwrap();
    assert_eq!(report.resume, ResumeOutcome::Vanished);
    assert!(store.inner().object(KEY).unwrap().0 == data);
}

#[tokio::test]
async fn a_resumed_run_that_fails_earlier_forgets_no_stored_part() {
    let store = store();
    let data = pattern(95);
    let open = interrupted(&store, &data, 47).await;
    assert_eq!(open.parts.len(), 4);
    // The second run fails after 25 bytes: parts 1-2 reached (skipped), 3-4 not yet.
    let journal = MemoryJournal::default();
    let reader =
        TestReader::new(data[..25].to_vec(), 3).then_fail(io::Error::other("killed again"));
    let err = run(&store, reader, &journal, Some(open.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source, "{err}");
    let again = journal.last().expect("recorded on failure");
    assert_eq!(again.parts, open.parts, "parts 3 and 4 are still named");
    assert_eq!(
        journal.records(),
        1,
        "no record with fewer parts at the start"
    );
    let report = run(
        &store,
        TestReader::new(data.clone(), 7),
        &MemoryJournal::default(),
        Some(again),
    )
    .await
    .unwrap();
    assert_eq!(report.resume, ResumeOutcome::Resumed { parts_skipped: 4 });
    assert!(store.inner().object(KEY).unwrap().0 == data);
}
