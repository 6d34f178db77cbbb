//! Reading and writing seals (see `z3_core::seal` and ADR 3): the S3 side of the end-to-end digest.

use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use z3_codec::DigestHandle;
use z3_core::{Digest, KeyLayout, RemoteSnapshot, Seal, SealCheck, judge};
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
    /// Where seals go; the key is known once the upload's token is.
    pub(crate) layout: KeyLayout,
    pub(crate) snapshot: String,
    pub(crate) guid: Option<u64>,
    pub(crate) parent_guid: Option<u64>,
    pub(crate) compressor: Option<String>,
    pub(crate) encryption: Option<String>,
    /// The raw `zfs send` stream, hashed as it is read.
    pub(crate) stream: DigestHandle,
    /// The bytes uploaded, hashed as the uploader reads them.
    pub(crate) object: DigestHandle,
    /// `OBJECT_LOCK`: the seal is locked as long as its object.
    pub(crate) retention: Option<z3_s3::Retention>,
}

impl PendingSeal {
    /// Writes the seal of the upload whose token is `token`, under a key of its own; called
    /// after the last part and before the completion, so a failure here aborts the upload.
    pub(crate) async fn write(
        self,
        store: &dyn ObjectStore,
        retry_config: &RetryConfig,
        uploaded: u64,
        token: &str,
    ) -> z3_s3::Result<()> {
        let key = self.layout.seal_key(&self.snapshot, Some(token));
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
        tracing::debug!(%key, stream = %seal.stream, "writing seal");
        // A fresh key (the token is random): never an overwrite of another upload's seal.
        let options = PutOptions {
            if_none_match: true,
            storage_class: Some(crate::config::SMALL_OBJECTS_STORAGE_CLASS.to_owned()),
            object_lock: self.retention,
            ..PutOptions::default()
        };
        match retry(retry_config, "put_seal", || {
            store.put(&key, body.clone(), &options)
        })
        .await
        {
            Ok(_) => Ok(()),
            // Already there: ours if it has exactly our bytes (a resumed upload whose first run
            // wrote it before it was interrupted, or a retried write whose answer was lost).
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {
                let limit = body.len() as u64 + 1;
                match z3_s3::read_small(store, &key, limit, retry_config).await {
                    Ok(Some(existing)) if existing == body => Ok(()),
                    _ => Err(err.context(format_args!("writing the seal {key}"))),
                }
            }
            Err(err) => Err(err.context(format_args!("writing the seal {key}"))),
        }
    }
}

/// After a successful upload of `snapshot` (`ds@snap`) with token `token`: removes the seals of
/// its earlier uploads (the one without a token, and those with another token). They describe
/// objects that no longer exist, or none at all (an upload that never completed). Best effort:
/// a failure is logged, and a later backup of the snapshot tries again; a stale seal is never
/// read, since each object names its own.
pub(crate) async fn remove_stale(
    store: &dyn ObjectStore,
    layout: &KeyLayout,
    snapshot: &str,
    token: &str,
    retry_config: &RetryConfig,
) {
    let prefix = layout.seal_key(snapshot, None);
    let listed = match retry(retry_config, "list_seals", || store.list(&prefix)).await {
        Ok(listed) => listed,
        Err(err) => {
            tracing::warn!(%prefix, error = %err, "cannot list the seals of earlier uploads");
            return;
        }
    };
    for entry in listed {
        let stale = matches!(
            layout.name_of_seal(&entry.key),
            Some((name, upload)) if name == snapshot && upload != Some(token)
        );
        if !stale {
            continue;
        }
        match retry(retry_config, "delete_seal", || store.delete(&entry.key)).await {
            Ok(()) => tracing::debug!(key = %entry.key, "removed the seal of an earlier upload"),
            Err(err) => {
                tracing::warn!(key = %entry.key, error = %err, "cannot remove the seal of an earlier upload");
            }
        }
    }
}
