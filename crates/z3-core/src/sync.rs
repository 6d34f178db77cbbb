//! What `z3_ssh_sync` sends between two hosts (docs/compatibility.md, "`z3_ssh_sync`").
//!
//! Snapshots are compared by short name only (the datasets may be named differently on the two
//! sides). The destination's newest snapshot must exist on the source; everything after it is
//! sent as one `zfs send -I base target` stream, or the latest source snapshot is sent whole
//! when the destination has none.

use crate::names::SnapshotName;

/// One sync: `zfs send [-I base] target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPlan {
    /// The destination's latest snapshot, also present on the source; `None` sends `target`
    /// as a full stream.
    pub base: Option<SnapshotName>,
    /// The source's latest snapshot.
    pub target: SnapshotName,
}

/// Why no sync can be planned. Messages are the original's `AssertionError` texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The source has no (matching) snapshot at all.
    #[error("No snapshots exist locally!")]
    NoLocalSnapshots,
    /// The destination's latest snapshot is unknown to the source, so no incremental base
    /// exists; sending anyway would need a rollback or a full resend, which is the user's call.
    #[error("Latest snapshot on destination doesn't exist on source!")]
    DestinationDiverged,
}

/// Plans a sync from `source` to `destination`, both short names oldest first.
///
/// `Ok(None)` means the destination already has the source's latest snapshot.
///
/// # Errors
/// [`SyncError::NoLocalSnapshots`] when `source` is empty;
/// [`SyncError::DestinationDiverged`] when the destination's latest snapshot is not on the source.
pub fn plan_sync(
    source: &[SnapshotName],
    destination: &[SnapshotName],
) -> Result<Option<SyncPlan>, SyncError> {
    let target = source.last().ok_or(SyncError::NoLocalSnapshots)?;
    let Some(base) = destination.last() else {
        return Ok(Some(SyncPlan {
            base: None,
            target: target.clone(),
        }));
    };
    if !source.contains(base) {
        return Err(SyncError::DestinationDiverged);
    }
    if base == target {
        return Ok(None);
    }
    Ok(Some(SyncPlan {
        base: Some(base.clone()),
        target: target.clone(),
    }))
}
