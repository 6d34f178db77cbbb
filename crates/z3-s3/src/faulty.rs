//! [`FaultyStore`]: a decorator that makes chosen calls fail, for testing retry and abort paths.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;

use crate::checksum::Crc32c;
use crate::error::{Error, ErrorKind, Result};
use crate::store::{
    BucketLockConfig, CompletedPart, CompletedUpload, ListEntry, ListedPart, MultipartUploadInfo,
    ObjectInfo, ObjectStore, Op, PartNumber, Precondition, PutOptions, Retention, UploadId,
    VersionEntry, object_url,
};

#[derive(Debug, Default)]
struct Faults {
    /// Planned failures per operation, in order, injected before the call reaches the store.
    ops: BTreeMap<Op, VecDeque<ErrorKind>>,
    /// Planned failures per operation, injected *after* the store handled the call (lost responses).
    ops_after: BTreeMap<Op, VecDeque<ErrorKind>>,
    /// Planned failures of calls (of one operation, or any) on a key starting with the prefix.
    keys: Vec<(String, Option<Op>, VecDeque<ErrorKind>)>,
    /// Planned failures of `put_part` per part number.
    parts: BTreeMap<PartNumber, VecDeque<ErrorKind>>,
    /// Delays before `put_part` of a given part reaches the store.
    part_delays: BTreeMap<PartNumber, Duration>,
    /// How many more uploads of a part get their body corrupted after the checksum was computed.
    corrupt_parts: BTreeMap<PartNumber, u32>,
    /// How `complete_multipart` and `head_checksum` report the object's checksum.
    checksum_replies: BTreeMap<Op, ChecksumReply>,
    /// Cut the next successful `get_range` result down to this many bytes.
    truncate_next_get: Option<u64>,
    calls: BTreeMap<Op, u64>,
    part_calls: BTreeMap<PartNumber, u64>,
    get_ranges: Vec<(String, Range<u64>)>,
    /// Calls still let through before the store "crashes" (see [`FaultyStore::crash_after`]).
    crash_after: Option<u64>,
    /// Writes of another client to land between our calls.
    interpose: Vec<Interposed>,
}

/// A write of another client that [`FaultyStore::write_before`] lands between our calls.
#[derive(Debug)]
struct Interposed {
    op: Op,
    nth: u64,
    /// Land after the call returned instead of before it reached the store.
    after: bool,
    key: String,
    body: Option<Bytes>,
}

/// What [`FaultyStore`] does to the object checksum that `complete_multipart` or
/// `head_checksum` report (see [`FaultyStore::checksum_reply`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChecksumReply {
    /// Pass on what the inner store reports.
    #[default]
    Pass,
    /// Report no checksum, like a server without checksum support.
    Missing,
    /// Report a wrong checksum (the real one with one bit flipped, keeping the `-N` suffix),
    /// like a server that assembled other bytes than we sent.
    Wrong,
    /// Report the CRC32C of the whole object, without a part count, instead of the composite
    /// one, as moto 5's server does.
    WholeObject,
}

/// Wraps any [`ObjectStore`] and fails chosen calls before they reach it, like `object_store`'s
/// `ThrottledStore` but for errors. It can also corrupt part bodies in flight and falsify the
/// checksums the store reports.
///
/// Failures are queued per operation: `fail(Op::PutPart, 2, ErrorKind::Transient)` fails the
/// next two `put_part` calls and lets the third through; a second `fail` for the same operation
/// queues more failures behind the first. Clones share the fault plan and the counters.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use z3_s3::{ErrorKind, FaultyStore, MemoryStore, ObjectStore, Op};
///
/// let store = FaultyStore::new(MemoryStore::new("bucket"));
/// store.fail(Op::Head, 1, ErrorKind::Throttled);
/// assert_eq!(store.head("k").await.unwrap_err().kind(), ErrorKind::Throttled);
/// assert_eq!(store.head("k").await.unwrap_err().kind(), ErrorKind::NotFound);
/// assert_eq!(store.calls(Op::Head), 2);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct FaultyStore<S> {
    inner: S,
    faults: Arc<Mutex<Faults>>,
}

impl<S: ObjectStore> FaultyStore<S> {
    /// Wraps `inner` with no faults planned.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            faults: Arc::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Makes the next `times` calls of `op` fail with `kind` before reaching the inner store
    /// (queued behind failures planned earlier for `op`).
    pub fn fail(&self, op: Op, times: u32, kind: ErrorKind) {
        queue(self.lock().ops.entry(op).or_default(), times, kind);
    }

    /// Lets the next `times` calls of `op` reach the inner store and *then* fail with `kind`,
    /// as when the request succeeded but its response was lost.
    pub fn fail_after(&self, op: Op, times: u32, kind: ErrorKind) {
        queue(self.lock().ops_after.entry(op).or_default(), times, kind);
    }

    /// Makes the next `times` calls of `op` (or of any operation, for `None`) on a key starting
    /// with `key_prefix` fail with `kind`, before reaching the inner store.
    pub fn fail_key(&self, key_prefix: &str, op: Option<Op>, times: u32, kind: ErrorKind) {
        let mut faults = self.lock();
        let found = faults
            .keys
            .iter()
            .position(|(p, o, _)| p == key_prefix && *o == op);
        let index = if let Some(index) = found {
            index
        } else {
            faults
                .keys
                .push((key_prefix.to_owned(), op, VecDeque::new()));
            faults.keys.len() - 1
        };
        queue(&mut faults.keys[index].2, times, kind);
    }

    /// Makes the next `times` uploads of `part` fail with [`ErrorKind::Transient`].
    pub fn fail_part(&self, part: PartNumber, times: u32) {
        self.fail_part_with(part, times, ErrorKind::Transient);
    }

    /// Makes the next `times` uploads of `part` fail with `kind`.
    pub fn fail_part_with(&self, part: PartNumber, times: u32, kind: ErrorKind) {
        queue(self.lock().parts.entry(part).or_default(), times, kind);
    }

    /// Delays every upload of `part` by `delay` (`tokio::time::sleep`), so that parts finish
    /// out of order.
    pub fn delay_part(&self, part: PartNumber, delay: Duration) {
        self.lock().part_delays.insert(part, delay);
    }

    /// Corrupts the body of the next `times` uploads of `part` *after* the caller computed its
    /// checksum (one bit flipped in the middle), as a transfer that damaged the bytes on the
    /// way. A checking store refuses such a part with `BadDigest` ([`ErrorKind::Transient`]).
    pub fn corrupt_part(&self, part: PartNumber, times: u32) {
        *self.lock().corrupt_parts.entry(part).or_default() += times;
    }

    /// From now on, `op` ([`Op::CompleteMultipart`] or [`Op::HeadChecksum`]; others are not
    /// affected) reports the object checksum as `reply` says.
    pub fn checksum_reply(&self, op: Op, reply: ChecksumReply) {
        self.lock().checksum_replies.insert(op, reply);
    }

    /// Lets the next `calls` calls (of any operation) through, then fails every later one with
    /// [`ErrorKind::Unreachable`], as if the client had crashed right after its `calls`-th
    /// request reached the server: nothing it would do afterwards (retries, aborts, clean-up)
    /// reaches the inner store. Tests walk `calls` over every step of a command.
    pub fn crash_after(&self, calls: u64) {
        self.lock().crash_after = Some(calls);
    }

    /// Every `get_range` request made so far, in order, as `(key, range)`.
    #[must_use]
    pub fn get_ranges(&self) -> Vec<(String, Range<u64>)> {
        self.lock().get_ranges.clone()
    }

    /// Cuts the next successful `get_range` result to its first `keep` bytes, as when a
    /// connection drops in the middle of a body.
    pub fn truncate_next_get(&self, keep: u64) {
        self.lock().truncate_next_get = Some(keep);
    }

    /// Just before the `nth` call of `op` on this wrapper (counting every call since it was
    /// made, 1-based) reaches the store, another client stores `body` under `key`, or deletes
    /// `key` for `None`: a write racing ours, landing in between. Supported for
    /// [`Op::Head`], [`Op::GetRange`], [`Op::Put`] and [`Op::Delete`].
    pub fn write_before(&self, op: Op, nth: u64, key: &str, body: Option<Bytes>) {
        self.lock().interpose.push(Interposed {
            op,
            nth,
            after: false,
            key: key.to_owned(),
            body,
        });
    }

    /// Like [`write_before`](Self::write_before), but the write lands just after the `nth`
    /// call of `op` returned (supported for [`Op::GetRange`]): another client acting on what
    /// it read at the same time as us.
    pub fn write_after(&self, op: Op, nth: u64, key: &str, body: Option<Bytes>) {
        self.lock().interpose.push(Interposed {
            op,
            nth,
            after: true,
            key: key.to_owned(),
            body,
        });
    }

    /// Lands the writes planned with [`write_before`](Self::write_before) for this call.
    async fn interpose(&self, op: Op) {
        self.land(op, false).await;
    }

    /// Lands the writes planned with [`write_before`](Self::write_before) or
    /// [`write_after`](Self::write_after).
    async fn land(&self, op: Op, after: bool) {
        let due: Vec<Interposed> = {
            let mut faults = self.lock();
            let count = faults.calls.get(&op).copied().unwrap_or(0);
            let (due, rest) = std::mem::take(&mut faults.interpose)
                .into_iter()
                .partition(|w| w.op == op && w.nth == count && w.after == after);
            faults.interpose = rest;
            due
        };
        for write in due {
            let result = match write.body {
                Some(body) => self
                    .inner
                    .put(&write.key, body, &PutOptions::default())
                    .await
                    .map(drop),
                None => self.inner.delete(&write.key).await,
            };
            if let Err(err) = result {
                tracing::warn!(error = %err, "FaultyStore: the interposed write failed");
            }
        }
    }

    /// How many times `op` was called on this wrapper, failed or not.
    #[must_use]
    pub fn calls(&self, op: Op) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// How many calls of any operation were made, failed or not.
    #[must_use]
    pub fn total_calls(&self) -> u64 {
        self.lock().calls.values().sum()
    }

    /// How many times `put_part` was called for `part`, failed or not.
    #[must_use]
    pub fn part_calls(&self, part: PartNumber) -> u64 {
        self.lock().part_calls.get(&part).copied().unwrap_or(0)
    }

    fn reply(&self, op: Op) -> ChecksumReply {
        self.lock()
            .checksum_replies
            .get(&op)
            .copied()
            .unwrap_or_default()
    }

    /// The CRC32C of the whole object at `key`, read from the inner store.
    async fn whole_object_crc(&self, key: &str, size: u64) -> Result<String> {
        let bytes = self.inner.get_range(key, 0..size).await?;
        Ok(Crc32c::of(&bytes).to_base64())
    }

    fn lock(&self) -> MutexGuard<'_, Faults> {
        // Poisoning only happens if a test panicked; the counters are still meaningful.
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the call and returns the planned failure, if any.
    fn enter(&self, op: Op, key: &str, part: Option<PartNumber>) -> Result<()> {
        let mut faults = self.lock();
        *faults.calls.entry(op).or_default() += 1;
        let url = object_url(self.inner.bucket(), key);
        match &mut faults.crash_after {
            Some(0) => {
                return Err(injected(
                    ErrorKind::Unreachable,
                    &format!("{op} {url} after the crash"),
                ));
            }
            Some(left) => *left -= 1,
            None => {}
        }
        if let Some(part) = part {
            *faults.part_calls.entry(part).or_default() += 1;
            if let Some(kind) = faults.parts.get_mut(&part).and_then(VecDeque::pop_front) {
                return Err(injected(kind, &format!("{op} {url} part {part}")));
            }
        }
        let by_key = faults
            .keys
            .iter_mut()
            .filter(|(prefix, only, _)| {
                key.starts_with(prefix.as_str()) && only.is_none_or(|o| o == op)
            })
            .find_map(|(_, _, queue)| queue.pop_front());
        if let Some(kind) = by_key.or_else(|| faults.ops.get_mut(&op).and_then(VecDeque::pop_front))
        {
            return Err(injected(kind, &format!("{op} {url}")));
        }
        Ok(())
    }

    /// Applies a planned lost-response failure to a call the inner store already handled.
    fn leave<T>(&self, op: Op, key: &str, result: Result<T>) -> Result<T> {
        let planned = self
            .lock()
            .ops_after
            .get_mut(&op)
            .and_then(VecDeque::pop_front);
        match planned {
            Some(kind) if result.is_ok() => Err(injected(
                kind,
                &format!(
                    "{op} {} (after the store handled it)",
                    object_url(self.inner.bucket(), key)
                ),
            )),
            _ => result,
        }
    }
}

/// Applies the planned [`ChecksumReply`] of `op` to a reported checksum.
fn falsify(reply: ChecksumReply, checksum: Option<String>) -> Option<String> {
    match reply {
        // Computed by the caller, which can read the object.
        ChecksumReply::Pass | ChecksumReply::WholeObject => checksum,
        ChecksumReply::Missing => None,
        ChecksumReply::Wrong => {
            let real = checksum.unwrap_or_else(|| "AAAAAA==".to_owned());
            let (value, suffix) = real
                .split_once('-')
                .map_or((real.as_str(), None), |(v, n)| (v, Some(n)));
            let flipped =
                Crc32c::from_value(Crc32c::from_base64(value).map_or(0, Crc32c::value) ^ 1);
            Some(match suffix {
                Some(n) => format!("{flipped}-{n}"),
                None => flipped.to_string(),
            })
        }
    }
}

fn queue(plan: &mut VecDeque<ErrorKind>, times: u32, kind: ErrorKind) {
    plan.extend(std::iter::repeat_n(kind, times as usize));
}

fn injected(kind: ErrorKind, what: &str) -> Error {
    Error::new(kind, format!("{what}: injected {kind}"))
}

#[async_trait::async_trait]
impl<S: ObjectStore> ObjectStore for FaultyStore<S> {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }

    async fn check_bucket(&self) -> Result<()> {
        self.enter(Op::CheckBucket, "", None)?;
        let result = self.inner.check_bucket().await;
        self.leave(Op::CheckBucket, "", result)
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo> {
        self.enter(Op::Head, key, None)?;
        self.interpose(Op::Head).await;
        let result = self.inner.head(key).await;
        self.leave(Op::Head, key, result)
    }

    async fn head_checksum(&self, key: &str) -> Result<ObjectInfo> {
        self.enter(Op::HeadChecksum, key, None)?;
        let result = self.inner.head_checksum(key).await;
        let mut info = self.leave(Op::HeadChecksum, key, result)?;
        let reply = self.reply(Op::HeadChecksum);
        info.checksum_crc32c = match reply {
            ChecksumReply::WholeObject => Some(self.whole_object_crc(key, info.size).await?),
            reply => falsify(reply, info.checksum_crc32c),
        };
        Ok(info)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        self.enter(Op::List, prefix, None)?;
        let result = self.inner.list(prefix).await;
        self.leave(Op::List, prefix, result)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.enter(Op::GetRange, key, None)?;
        self.interpose(Op::GetRange).await;
        self.lock().get_ranges.push((key.to_owned(), range.clone()));
        let result = self.inner.get_range(key, range).await;
        let mut bytes = self.leave(Op::GetRange, key, result)?;
        if let Some(keep) = self.lock().truncate_next_get.take() {
            bytes.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        }
        Ok(bytes)
    }

    async fn read_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        out: &mut Vec<Bytes>,
    ) -> Result<u64> {
        self.enter(Op::GetRange, key, None)?;
        self.interpose(Op::GetRange).await;
        self.lock().get_ranges.push((key.to_owned(), range.clone()));
        let mut pieces = Vec::new();
        let result = self
            .inner
            .read_range(key, range, if_match, &mut pieces)
            .await;
        self.land(Op::GetRange, true).await;
        self.leave(Op::GetRange, key, result)?;
        let mut bytes: Bytes = if pieces.len() == 1 {
            pieces.swap_remove(0)
        } else {
            pieces.concat().into()
        };
        if let Some(keep) = self.lock().truncate_next_get.take() {
            bytes.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        }
        let len = bytes.len() as u64;
        if len > 0 {
            out.push(bytes);
        }
        Ok(len)
    }

    async fn put(&self, key: &str, body: Bytes, options: &PutOptions) -> Result<String> {
        self.enter(Op::Put, key, None)?;
        self.interpose(Op::Put).await;
        let result = self.inner.put(key, body, options).await;
        self.leave(Op::Put, key, result)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.enter(Op::Delete, key, None)?;
        self.interpose(Op::Delete).await;
        let result = self.inner.delete(key).await;
        self.leave(Op::Delete, key, result)
    }

    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<()> {
        self.enter(Op::Delete, key, None)?;
        self.interpose(Op::Delete).await;
        let result = self.inner.delete_if_match(key, etag).await;
        self.leave(Op::Delete, key, result)
    }

    async fn create_multipart(&self, key: &str, options: &PutOptions) -> Result<UploadId> {
        self.enter(Op::CreateMultipart, key, None)?;
        let result = self.inner.create_multipart(key, options).await;
        self.leave(Op::CreateMultipart, key, result)
    }

    async fn put_part(
        &self,
        key: &str,
        upload_id: &UploadId,
        part: PartNumber,
        body: Bytes,
        checksum: Crc32c,
    ) -> Result<CompletedPart> {
        self.enter(Op::PutPart, key, Some(part))?;
        let delay = self.lock().part_delays.get(&part).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let corrupt = match self.lock().corrupt_parts.get_mut(&part) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        };
        let body = if corrupt && !body.is_empty() {
            let mut damaged = body.to_vec();
            let middle = damaged.len() / 2;
            damaged[middle] ^= 0x10;
            Bytes::from(damaged)
        } else {
            body
        };
        let result = self
            .inner
            .put_part(key, upload_id, part, body, checksum)
            .await;
        self.leave(Op::PutPart, key, result)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
        precondition: &Precondition,
    ) -> Result<CompletedUpload> {
        self.enter(Op::CompleteMultipart, key, None)?;
        let result = self
            .inner
            .complete_multipart(key, upload_id, parts, precondition)
            .await;
        let mut done = self.leave(Op::CompleteMultipart, key, result)?;
        let reply = self.reply(Op::CompleteMultipart);
        done.checksum_crc32c = match reply {
            ChecksumReply::WholeObject => {
                let size = self.inner.head(key).await?.size;
                Some(self.whole_object_crc(key, size).await?)
            }
            reply => falsify(reply, done.checksum_crc32c),
        };
        Ok(done)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> Result<()> {
        self.enter(Op::AbortMultipart, key, None)?;
        let result = self.inner.abort_multipart(key, upload_id).await;
        self.leave(Op::AbortMultipart, key, result)
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        self.enter(Op::ListMultipartUploads, prefix, None)?;
        let result = self.inner.list_multipart_uploads(prefix).await;
        self.leave(Op::ListMultipartUploads, prefix, result)
    }

    async fn list_parts(&self, key: &str, upload_id: &UploadId) -> Result<Vec<ListedPart>> {
        self.enter(Op::ListParts, key, None)?;
        let result = self.inner.list_parts(key, upload_id).await;
        self.leave(Op::ListParts, key, result)
    }

    async fn object_lock_config(&self) -> Result<BucketLockConfig> {
        self.enter(Op::ObjectLockConfig, "", None)?;
        let result = self.inner.object_lock_config().await;
        self.leave(Op::ObjectLockConfig, "", result)
    }

    async fn list_versions(&self, prefix: &str) -> Result<Vec<VersionEntry>> {
        self.enter(Op::ListVersions, prefix, None)?;
        let result = self.inner.list_versions(prefix).await;
        self.leave(Op::ListVersions, prefix, result)
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo> {
        self.enter(Op::HeadVersion, key, None)?;
        let result = self.inner.head_version(key, version_id).await;
        self.leave(Op::HeadVersion, key, result)
    }

    /// Recorded in [`get_ranges`](FaultyStore::get_ranges) and cut by
    /// [`truncate_next_get`](FaultyStore::truncate_next_get) like a read of the current object.
    async fn read_range_version(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
        out: &mut Vec<Bytes>,
    ) -> Result<u64> {
        self.enter(Op::GetRangeVersion, key, None)?;
        self.lock().get_ranges.push((key.to_owned(), range.clone()));
        let mut pieces = Vec::new();
        let result = self
            .inner
            .read_range_version(key, version_id, range, &mut pieces)
            .await;
        self.leave(Op::GetRangeVersion, key, result)?;
        let mut bytes: Bytes = if pieces.len() == 1 {
            pieces.swap_remove(0)
        } else {
            pieces.concat().into()
        };
        if let Some(keep) = self.lock().truncate_next_get.take() {
            bytes.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        }
        let len = bytes.len() as u64;
        if len > 0 {
            out.push(bytes);
        }
        Ok(len)
    }

    async fn delete_version(&self, key: &str, version_id: &str) -> Result<()> {
        self.enter(Op::DeleteVersion, key, None)?;
        let result = self.inner.delete_version(key, version_id).await;
        self.leave(Op::DeleteVersion, key, result)
    }

    async fn put_retention(&self, key: &str, version_id: &str, retention: Retention) -> Result<()> {
        self.enter(Op::PutRetention, key, None)?;
        let result = self.inner.put_retention(key, version_id, retention).await;
        self.leave(Op::PutRetention, key, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[tokio::test]
    async fn counts_down_per_op_and_per_part() {
        let store = FaultyStore::new(MemoryStore::with_min_part_size("b", 1));
        let p1 = PartNumber::FIRST;
        let p2 = p1.next().unwrap();
        let id = store
            .create_multipart("k", &PutOptions::default())
            .await
            .unwrap();
        store.fail_part(p2, 2);
        let put = |part, body: &'static [u8]| {
            store.put_part("k", &id, part, Bytes::from_static(body), Crc32c::of(body))
        };
        assert!(put(p1, b"a").await.is_ok());
        for _ in 0..2 {
            let err = put(p2, b"b").await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Transient);
            assert!(err.to_string().contains("part 2"), "{err}");
        }
        assert!(put(p2, b"b").await.is_ok());
        assert_eq!(store.part_calls(p1), 1);
        assert_eq!(store.part_calls(p2), 3);
        assert_eq!(store.calls(Op::PutPart), 4);
        assert_eq!(store.inner().calls(Op::PutPart), 2);
    }

    #[tokio::test]
    async fn truncates_once() {
        let store = FaultyStore::new(MemoryStore::new("b"));
        store
            .inner()
            .insert("k", &b"0123456789"[..], &PutOptions::default());
        store.truncate_next_get(3);
        assert_eq!(store.get_range("k", 2..8).await.unwrap(), &b"234"[..]);
        assert_eq!(store.get_range("k", 2..8).await.unwrap(), &b"234567"[..]);
        assert_eq!(
            store.get_ranges(),
            [("k".to_owned(), 2..8), ("k".to_owned(), 2..8)]
        );
    }

    #[tokio::test]
    async fn queued_and_after_failures() {
        let store = FaultyStore::new(MemoryStore::new("b"));
        store.fail(Op::Put, 1, ErrorKind::Transient);
        store.fail(Op::Put, 1, ErrorKind::AccessDenied);
        let options = PutOptions::default();
        let put = || store.put("k", Bytes::from_static(b"v"), &options);
        assert_eq!(put().await.unwrap_err().kind(), ErrorKind::Transient);
        assert_eq!(put().await.unwrap_err().kind(), ErrorKind::AccessDenied);
        assert!(store.inner().object("k").is_none());
        store.fail_after(Op::Put, 1, ErrorKind::Transient);
        assert_eq!(put().await.unwrap_err().kind(), ErrorKind::Transient);
        assert!(
            store.inner().object("k").is_some(),
            "the lost-response put landed"
        );
        assert!(put().await.is_ok());
    }

    #[tokio::test]
    async fn corrupts_parts_and_falsifies_checksums() {
        let store = FaultyStore::new(MemoryStore::with_min_part_size("b", 1));
        let id = store
            .create_multipart("k", &PutOptions::default())
            .await
            .unwrap();
        let body = Bytes::from_static(b"some part bytes");
        let checksum = Crc32c::of(&body);
        store.corrupt_part(PartNumber::FIRST, 1);
        let err = store
            .put_part("k", &id, PartNumber::FIRST, body.clone(), checksum)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert!(err.to_string().contains("BadDigest"), "{err}");
        let part = store
            .put_part("k", &id, PartNumber::FIRST, body.clone(), checksum)
            .await
            .unwrap();

        let real = crate::checksum::composite_crc32c(&[checksum]);
        store.checksum_reply(Op::CompleteMultipart, ChecksumReply::Wrong);
        let done = store
            .complete_multipart("k", &id, vec![part], &crate::Precondition::None)
            .await
            .unwrap();
        let wrong = done.checksum_crc32c.unwrap();
        assert_ne!(wrong, real);
        assert!(wrong.ends_with("-1"), "{wrong}");
        assert_eq!(
            store.inner().object("k").unwrap().0,
            body,
            "the store kept the right bytes"
        );

        assert_eq!(
            store.head_checksum("k").await.unwrap().checksum_crc32c,
            Some(real)
        );
        store.checksum_reply(Op::HeadChecksum, ChecksumReply::Missing);
        assert_eq!(
            store.head_checksum("k").await.unwrap().checksum_crc32c,
            None
        );
        assert_eq!(store.calls(Op::HeadChecksum), 2);
    }
}
