//! The conformance suite against `MemoryStore` (always) and `AwsStore` on a real S3 server
//! (when `Z3_TEST_S3_ENDPOINT`, `Z3_TEST_S3_KEY_ID`, `Z3_TEST_S3_SECRET`, `Z3_TEST_S3_BUCKET` are set).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use z3_s3::conformance;
use z3_s3::{
    AwsStore, ErrorKind, MemoryStore, MultipartUploader, ObjectStore, PutOptions, RetryConfig,
    S3Config, StaticCredentials, UploadConfig,
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

#[tokio::test]
async fn aws_store_conforms() {
    let Some(config) = real_s3() else { return };
    let store: Arc<dyn ObjectStore> = Arc::new(real_store(config).await);
    conformance::run_all(store, &unique_prefix()).await;
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
    // The spec's 6 MiB sample in 5 MiB parts has the multipart ETag pput computed; a server
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
            retry: RetryConfig::default(),
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
    };
    let report = uploader.upload(&key, &options, &data[..]).await.unwrap();
    assert_eq!(report.etag, "\"d229c1fc0e509475afe56426c89d2724-2\"");
    let info = store.head(&key).await.unwrap();
    assert_eq!(info.etag.as_deref(), Some(report.etag.as_str()));
    assert_eq!(info.metadata, options.metadata);
    eprintln!(
        "storage class reported by the server: {:?}",
        info.storage_class
    );
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn aws_store_parts_carry_verified_crc32() {
    // Parts go up with SDK-computed CRC32 checksums that the server checks; a wrong checksum
    // is refused, and the completed object carries the composite checksum.
    let Some(config) = real_s3() else { return };
    let bucket = config.bucket.clone();
    let store = real_store(config).await;
    let key = format!("{}crc", unique_prefix());
    let id = store
        .create_multipart(&key, &PutOptions::default())
        .await
        .unwrap();
    let part = z3_s3::PartNumber::FIRST;
    let body = Bytes::from_static(b"checksummed part");
    let done = store.put_part(&key, &id, part, body.clone()).await.unwrap();
    assert!(
        done.checksum_crc32.is_some(),
        "server echoed the part checksum: {done:?}"
    );

    let wrong = store
        .client()
        .upload_part()
        .bucket(&bucket)
        .key(&key)
        .upload_id(id.as_str())
        .part_number(2)
        .checksum_crc32("AAAAAA==")
        .body(body.into())
        .send()
        .await;
    let wrong = wrong.expect_err("a wrong CRC32 must be rejected");
    eprintln!(
        "wrong checksum refused with {:?}",
        aws_sdk_s3::error::ProvideErrorMetadata::code(&wrong)
    );

    store
        .complete_multipart(&key, &id, vec![done])
        .await
        .unwrap();
    let head = store
        .client()
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    eprintln!("object checksum: {:?}", head.checksum_crc32());
    store.delete(&key).await.unwrap();
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
        )
        .await
        .unwrap();
    let etag = store
        .complete_multipart(&key, &id, vec![done.clone()])
        .await
        .unwrap();
    match store.complete_multipart(&key, &id, vec![done]).await {
        Ok(again) => {
            eprintln!("second complete: ok");
            assert_eq!(again, etag);
        }
        Err(err) => {
            eprintln!("second complete: {err}");
            assert_eq!(err.kind(), ErrorKind::NoSuchUpload, "{err}");
        }
    }
    store.delete(&key).await.unwrap();
}
