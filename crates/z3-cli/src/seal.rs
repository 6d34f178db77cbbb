//! Reading and writing seals (see `z3_core::seal` and ADR 3): the S3 side of the end-to-end digest.

use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use z3_codec::DigestHandle;
use z3_core::{Digest, RemoteSnapshot, Seal, SealCheck, judge};
use z3_s3::{ErrorKind, ObjectStore, PutOptions, RetryConfig, read_small, retry};

/// Seals read at once.
const SEAL_CONCURRENCY: usize = 16;
/// A seal is a few hundred bytes; anything much larger is not one.
const MAX_SEAL_BYTES: u64 = 64 << 10;

/// Reads the seal at `key` as stored; `Ok(None)` if there is none.
pub(crate) async fn read_seal(
    store: &dyn ObjectStore,
    key: &str,
    retry_config: &RetryConfig,
) -> z3_s3::Result<Option<Bytes>> {
    read_small(store, key, MAX_SEAL_BYTES, retry_config).await
}

/// The verdict on each object's seal, in order (one `HEAD` + `GET` per object, 16 at once).
pub(crate) async fn check_all(
    store: &Arc<dyn ObjectStore>,
    seal_keys: Vec<(String, RemoteSnapshot)>,
    bucket: &str,
    retry_config: &RetryConfig,
) -> Result<Vec<SealCheck>> {
    futures::stream::iter(seal_keys)
        .map(|(key, object)| {
            let store = Arc::clone(store);
            async move {
                let text = read_seal(store.as_ref(), &key, retry_config)
                    .await
                    .with_context(|| format!("cannot read the seal s3://{bucket}/{key}"))?;
                Ok(judge(
                    &object,
                    text.as_deref().map(String::from_utf8_lossy).as_deref(),
                ))
            }
        })
        .buffered(SEAL_CONCURRENCY)
        .collect::<Vec<Result<SealCheck>>>()
        .await
        .into_iter()
        .collect()
}

/// What a backup knows before its upload starts, to seal the object once the stream ended.
#[derive(Debug)]
pub(crate) struct PendingSeal {
    pub(crate) key: String,
    pub(crate) snapshot: String,
    pub(crate) guid: Option<u64>,
    pub(crate) parent_guid: Option<u64>,
    pub(crate) compressor: Option<String>,
    pub(crate) encryption: Option<String>,
    /// The raw `zfs send` stream, hashed as it is read.
    pub(crate) stream: DigestHandle,
    /// The bytes uploaded, hashed as the uploader reads them.
    pub(crate) object: DigestHandle,
}

impl PendingSeal {
    /// Writes the seal; called after the last part and before the completion, so a failure
    /// here aborts the upload.
    pub(crate) async fn write(
        self,
        store: &dyn ObjectStore,
        retry_config: &RetryConfig,
        uploaded: u64,
    ) -> z3_s3::Result<()> {
        let digest = |handle: &DigestHandle, what: &str| {
            handle
                .finish()
                .map(|(blake3, len)| Digest { len, blake3 })
                .ok_or_else(|| {
                    z3_s3::Error::new(
                        ErrorKind::Source,
                        format!(
                            "{what} of {} did not end, refusing to seal it",
                            self.snapshot
                        ),
                    )
                })
        };
        let stream = digest(&self.stream, "the zfs send stream")?;
        let object = digest(&self.object, "the encoded stream")?;
        if object.len != uploaded {
            return Err(z3_s3::Error::new(
                ErrorKind::Source,
                format!(
                    "{} bytes were encoded but {uploaded} uploaded for {}",
                    object.len, self.snapshot
                ),
            ));
        }
        let seal = Seal {
            snapshot: self.snapshot,
            guid: self.guid,
            parent_guid: self.parent_guid,
            stream,
            object,
            compressor: self.compressor,
            encryption: self.encryption,
        };
        let body = Bytes::from(seal.to_text());
        tracing::debug!(key = %self.key, stream = %seal.stream, "writing seal");
        let options = PutOptions::default();
        retry(retry_config, "put_seal", || {
            store.put(&self.key, body.clone(), &options)
        })
        .await
        .map(|_| ())
        .map_err(|err| err.context(format_args!("writing the seal {}", self.key)))
    }
}

/// After a failed upload whose seal was already written: puts the previous seal back, or
/// removes ours when there was none, so that the bucket says what it said before. Best effort:
/// a failure is logged (the seal then describes no object, or another one, and is judged so).
pub(crate) async fn undo(
    store: &dyn ObjectStore,
    key: &str,
    previous: Option<Bytes>,
    retry_config: &RetryConfig,
) {
    let options = PutOptions::default();
    let result = match previous {
        Some(body) => retry(retry_config, "put_seal", || {
            store.put(key, body.clone(), &options)
        })
        .await
        .map(|_| ()),
        None => retry(retry_config, "delete_seal", || store.delete(key)).await,
    };
    match result {
        Ok(()) => tracing::debug!(key, "seal of the failed upload undone"),
        Err(err) => tracing::warn!(key, error = %err, "cannot undo the seal of a failed upload"),
    }
}
