//! The conformance suite against `MemoryStore` (always) and `AwsStore` on a real S3 server
//! (when `Z3_TEST_S3_ENDPOINT`, `Z3_TEST_S3_KEY_ID`, `Z3_TEST_S3_SECRET`, `Z3_TEST_S3_BUCKET` are set).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use z3_s3::conformance;
use z3_s3::{
    AwsStore, ChecksumReply, Crc32c, ErrorKind, FaultyStore, MemoryStore, MultipartUploader,
    ObjectStore, Op, PartNumber, PutOptions, S3Config, StaticCredentials, UploadConfig,
    composite_crc32c,
};

#[tokio::test]
async fn memory_store_conforms() {
    let store = Arc::new(MemoryStore::new("bucket"));
    conformance::run_all(store.clone(), "z3-conformance/").await;
    assert_eq!(store.open_uploads(), 0);
    assert!(
        store.objects().is_empty(),
        "checks clean up after themselves"
    );
}

#[tokio::test]
async fn memory_store_object_lock_conforms() {
    let lock = MemoryStore::with_object_lock("lock-bucket", None);
    let plain = MemoryStore::new("bucket");
    conformance::run_object_lock(&lock, &plain, "z3-conformance/").await;
    assert_eq!(lock.versions(), 0, "checks clean up after themselves");
    assert!(plain.objects().is_empty());
}

#[tokio::test]
async fn memory_store_missing_bucket() {
    conformance::missing_bucket(&MemoryStore::without_bucket("no-such-bucket")).await;
}

#[tokio::test]
async fn memory_store_access_denied() {
    let store = MemoryStore::new("bucket");
    store.deny_access(true);
    conformance::access_denied(&store).await;
}

/// Connection settings for the real server, or `None` (and a note) when not configured.
fn real_s3() -> Option<S3Config> {
    let Ok(endpoint) = std::env::var("Z3_TEST_S3_ENDPOINT") else {
        eprintln!("skipping: Z3_TEST_S3_ENDPOINT is not set");
        return None;
    };
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("{name} must be set with Z3_TEST_S3_ENDPOINT"))
    };
    Some(S3Config {
        endpoint: Some(endpoint),
        force_path_style: true,
        region: Some("us-east-1".to_owned()),
        credentials: Some(StaticCredentials {
            access_key_id: var("Z3_TEST_S3_KEY_ID"),
            secret_access_key: var("Z3_TEST_S3_SECRET"),
        }),
        ..S3Config::new(var("Z3_TEST_S3_BUCKET"))
    })
}

/// A key prefix no other run uses.
fn unique_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("z3-test-{nanos}/")
}

/// Connects and creates the bucket if it is missing (a fresh server has none).
async fn real_store(config: S3Config) -> AwsStore {
    let store = AwsStore::connect(config.clone()).await.unwrap();
    let mut attempts = 0;
    loop {
        match store.check_bucket().await {
            Ok(()) => return store,
            Err(err) if err.kind() == ErrorKind::NoSuchBucket || err.is_retryable() => {
                // The server may still be settling after start-up; creating twice is harmless.
                let _ = store
                    .client()
                    .create_bucket()
                    .bucket(&config.bucket)
                    .send()
                    .await;
                attempts += 1;
                assert!(
                    attempts < 20,
                    "bucket {} never became usable: {err}",
                    config.bucket
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(err) => panic!("test bucket unusable: {err}"),
        }
    }
}

/// The same contract with `BWLIMIT` set: part bodies go out as paced streams (SigV4
/// `UNSIGNED-PAYLOAD`, known length, our CRC32C), downloads are read paced, small objects wait
/// for their slot; the strict server must accept all of it and every byte must read back.
#[tokio::test]
async fn aws_store_conforms_under_a_bandwidth_limit() {
    let Some(config) = real_s3() else { return };
    let config = S3Config {
        bandwidth_limit: Some(64 << 20),
        ..config
    };
    let store: Arc<dyn ObjectStore> = Arc::new(real_store(config).await);
    conformance::run_all(store, &unique_prefix()).await;
}

#[tokio::test]
async fn aws_store_conforms() {
    let Some(config) = real_s3() else { return };
    let store: Arc<dyn ObjectStore> = Arc::new(real_store(config).await);
    conformance::run_all(store, &unique_prefix()).await;
}

/// Connects to `<bucket>-lock`, created with Object Lock enabled (which enables versioning)
/// if it is missing. Objects in it are written with retentions of a few seconds only, so it
/// never holds anything for long.
async fn real_lock_store(config: &S3Config) -> AwsStore {
    let bucket = format!("{}-lock", config.bucket);
    let store = AwsStore::connect(S3Config {
        bucket: bucket.clone(),
        ..config.clone()
    })
    .await
    .unwrap();
    let mut attempts = 0;
    loop {
        match store.check_bucket().await {
            Ok(()) => return store,
            Err(err) if err.kind() == ErrorKind::NoSuchBucket || err.is_retryable() => {
                let _ = store
                    .client()
                    .create_bucket()
                    .bucket(&bucket)
                    .object_lock_enabled_for_bucket(true)
                    .send()
                    .await;
                attempts += 1;
                assert!(attempts < 20, "bucket {bucket} never became usable: {err}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(err) => panic!("lock test bucket unusable: {err}"),
        }
    }
}

#[tokio::test]
async fn aws_store_object_lock_conforms() {
    let Some(config) = real_s3() else { return };
    let plain = real_store(config.clone()).await;
    let lock = real_lock_store(&config).await;
    conformance::run_object_lock(&lock, &plain, &unique_prefix()).await;
}

#[tokio::test]
async fn aws_store_missing_bucket() {
    let Some(config) = real_s3() else { return };
    let store = AwsStore::connect(S3Config {
        bucket: format!(
            "z3-missing-{}",
            unique_prefix()
                .trim_end_matches('/')
                .trim_start_matches("z3-test-")
        ),
        ..config
    })
    .await
    .unwrap();
    conformance::missing_bucket(&store).await;
    eprintln!("{}", store.check_bucket().await.unwrap_err());
}

#[tokio::test]
async fn aws_store_wrong_secret() {
    let Some(config) = real_s3() else { return };
    real_store(config.clone()).await;
    let mut credentials = config.credentials.clone().unwrap();
    credentials.secret_access_key = "definitely-wrong-secret-z3".to_owned();
    let store = AwsStore::connect(S3Config {
        credentials: Some(credentials),
        ..config
    })
    .await
    .unwrap();
    conformance::access_denied(&store).await;
    let err = store.check_bucket().await.unwrap_err();
    assert!(
        !format!("{err:?}").contains("definitely-wrong-secret"),
        "{err:?}"
    );
    eprintln!("{err}");
    eprintln!("{}", store.list("").await.unwrap_err());
}

#[tokio::test]
async fn aws_store_etag_matches_the_original_pput() {
    // The original's 6 MiB sample in 5 MiB parts has the multipart ETag pput computed; a server
    // that computes S3-style ETags (SeaweedFS does) returns the same one.
    let Some(config) = real_s3() else { return };
    let store = Arc::new(real_store(config).await);
    let key = format!("{}sample", unique_prefix());
    let data = conformance::sample_data(6 * 1024 * 1024);
    let uploader = MultipartUploader::new(
        Arc::clone(&store),
        UploadConfig {
            part_size: 5 * 1024 * 1024,
            concurrency: 2,
            ..UploadConfig::default()
        },
    );
    let options = PutOptions {
        metadata: [
            ("ana".to_owned(), "are+mere".to_owned()),
            ("dana".to_owned(), "are=pere".to_owned()),
        ]
        .into(),
        storage_class: Some("STANDARD_IA".to_owned()),
        acl: Some("bucket-owner-full-control".to_owned()),
        ..PutOptions::default()
    };
    let report = uploader.upload(&key, &options, &data[..]).await.unwrap();
    assert_eq!(report.etag, "\"d229c1fc0e509475afe56426c89d2724-2\"");
    assert!(report.checksum_verified, "{report:?}");
    let info = store.head(&key).await.unwrap();
    assert_eq!(info.etag.as_deref(), Some(report.etag.as_str()));
    let mut expected = options.metadata.clone();
    expected.insert(z3_s3::UPLOAD_TOKEN_META.to_owned(), report.token.clone());
    assert_eq!(info.metadata, expected);
    eprintln!(
        "storage class reported by the server: {:?}",
        info.storage_class
    );
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn aws_store_parts_and_object_carry_verified_crc32c() {
    // Parts go up with our CRC32C, which the server checks (a wrong one is refused as
    // BadDigest, retryable); the completed object's composite CRC32C equals ours.
    let Some(config) = real_s3() else { return };
    let store = real_store(config).await;
    let key = format!("{}crc", unique_prefix());
    let id = store
        .create_multipart(&key, &PutOptions::default())
        .await
        .unwrap();
    let first = conformance::sample_data(5 * 1024 * 1024);
    let second = Bytes::from_static(b"checksummed last part");
    let checksums = [Crc32c::of(&first), Crc32c::of(&second)];
    let p1 = store
        .put_part(&key, &id, part(1), first, checksums[0])
        .await
        .unwrap();
    assert_eq!(p1.checksum_crc32c, Some(checksums[0].to_base64()));

    let err = store
        .put_part(
            &key,
            &id,
            part(2),
            second.clone(),
            Crc32c::of(b"other bytes"),
        )
        .await
        .expect_err("a wrong CRC32C must be refused");
    eprintln!("wrong part checksum refused: {err}");
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    // What the server echoes for a part (the store falls back to the checksum it sent).
    let raw = store
        .client()
        .upload_part()
        .bucket(store.bucket())
        .key(&key)
        .upload_id(id.as_str())
        .part_number(2)
        .checksum_crc32_c(checksums[1].to_base64())
        .body(second.clone().into())
        .send()
        .await
        .unwrap();
    eprintln!("UploadPart echoes CRC32C {:?}", raw.checksum_crc32_c());
    let p2 = store
        .put_part(&key, &id, part(2), second, checksums[1])
        .await
        .unwrap();

    let done = store
        .complete_multipart(&key, &id, vec![p1, p2], &z3_s3::Precondition::None)
        .await
        .unwrap();
    let expected = composite_crc32c(&checksums);
    eprintln!(
        "complete reports ETag {} and CRC32C {:?}; local composite {expected}",
        done.etag, done.checksum_crc32c
    );
    let head = store.head_checksum(&key).await.unwrap();
    eprintln!(
        "HEAD in checksum mode reports CRC32C {:?}",
        head.checksum_crc32c
    );
    let plain = store.head(&key).await.unwrap();
    eprintln!("plain HEAD reports CRC32C {:?}", plain.checksum_crc32c);
    let reported = done
        .checksum_crc32c
        .or(head.checksum_crc32c)
        .expect("the server reports the composite checksum");
    assert_eq!(reported, expected);
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn aws_store_upload_composite_checksum_is_verified() {
    // A three-part upload through the uploader: the server's composite CRC32C equals ours.
    let Some(config) = real_s3() else { return };
    let store = Arc::new(real_store(config).await);
    let key = format!("{}verified", unique_prefix());
    let data = conformance::sample_data(12 * 1024 * 1024 + 5);
    let uploader = MultipartUploader::new(Arc::clone(&store), UploadConfig::default());
    let report = uploader
        .upload(&key, &PutOptions::default(), &data[..])
        .await
        .unwrap();
    assert_eq!(report.parts, 3);
    assert!(report.checksum_verified, "{report:?}");
    let parts: Vec<Crc32c> = data.chunks(5 * 1024 * 1024).map(Crc32c::of).collect();
    assert_eq!(report.checksum_crc32c, composite_crc32c(&parts));
    assert_eq!(
        store.head_checksum(&key).await.unwrap().checksum_crc32c,
        Some(report.checksum_crc32c.clone())
    );
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn aws_store_corrupted_part_is_refused_and_retried() {
    // A part whose bytes change after we computed the checksum: the server refuses it, the
    // uploader sends it again, and the object is exactly the input.
    let Some(config) = real_s3() else { return };
    let store = Arc::new(FaultyStore::new(real_store(config).await));
    store.corrupt_part(part(2), 1);
    let key = format!("{}corrupted", unique_prefix());
    let data = conformance::sample_data(6 * 1024 * 1024);
    let uploader = MultipartUploader::new(Arc::clone(&store), UploadConfig::default());
    let report = uploader
        .upload(&key, &PutOptions::default(), &data[..])
        .await
        .unwrap();
    assert_eq!(store.part_calls(part(2)), 2, "refused once, then accepted");
    assert!(report.checksum_verified);
    let got = store.get_range(&key, 0..data.len() as u64).await.unwrap();
    assert!(got == data);
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn aws_store_wrong_composite_deletes_the_object() {
    let Some(config) = real_s3() else { return };
    let store = Arc::new(FaultyStore::new(real_store(config).await));
    store.checksum_reply(Op::CompleteMultipart, ChecksumReply::Wrong);
    let key = format!("{}mismatch", unique_prefix());
    let data = conformance::sample_data(6 * 1024 * 1024);
    let uploader = MultipartUploader::new(Arc::clone(&store), UploadConfig::default());
    let err = uploader
        .upload(&key, &PutOptions::default(), &data[..])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ChecksumMismatch, "{err}");
    eprintln!("{err}");
    let gone = store.head(&key).await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{gone}");
}

fn part(n: u16) -> PartNumber {
    PartNumber::new(n).unwrap()
}

#[tokio::test]
async fn aws_store_second_complete_is_ok_or_no_such_upload() {
    // What a retried CompleteMultipartUpload sees after the first one succeeded (the
    // lost-response case the uploader handles): the same ETag again, or NoSuchUpload.
    let Some(config) = real_s3() else { return };
    let store = real_store(config).await;
    let key = format!("{}twice", unique_prefix());
    let id = store
        .create_multipart(&key, &PutOptions::default())
        .await
        .unwrap();
    let done = store
        .put_part(
            &key,
            &id,
            z3_s3::PartNumber::FIRST,
            Bytes::from_static(b"only part"),
            Crc32c::of(b"only part"),
        )
        .await
        .unwrap();
    let etag = store
        .complete_multipart(&key, &id, vec![done.clone()], &z3_s3::Precondition::None)
        .await
        .unwrap();
    match store
        .complete_multipart(&key, &id, vec![done], &z3_s3::Precondition::None)
        .await
    {
        Ok(again) => {
            eprintln!("second complete: ok");
            assert_eq!(again.etag, etag.etag);
        }
        Err(err) => {
            eprintln!("second complete: {err}");
            assert_eq!(err.kind(), ErrorKind::NoSuchUpload, "{err}");
        }
    }
    store.delete(&key).await.unwrap();
}
