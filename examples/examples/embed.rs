//! Embedding z3: another Rust tool drives `z3_engine` directly, with an object store and a
//! progress reporter of its own, on `FakeZfs` (offline).
//!
//! The store here keeps each object as a file in a directory (metadata beside it; multipart
//! parts in memory until completion): about 200 lines are all an `ObjectStore` takes. The
//! engine needs a Tokio runtime and nothing else from its host.
//!
//! `cargo run -p z3-examples --example embed`

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use bytes::Bytes;
use z3_codec::{Compressor, Encoding};
use z3_core::{DatasetName, SnapshotName};
use z3_engine::{
    BackupOptions, Engine, EngineConfig, Event, Events, NoEvents, Progress, RestoreOptions,
    StatusOptions, Transfer,
};
use z3_s3::{
    BucketLockConfig, CompletedPart, CompletedUpload, Crc32c, ErrorKind, ListEntry,
    MultipartUploadInfo, ObjectInfo, ObjectStore, PartNumber, Precondition, PutOptions, Retention,
    UploadId, VersionEntry, Versioning, composite_crc32c,
};
use z3_zfs::fake::FakeZfs;

#[tokio::main]
async fn main() -> Result<()> {
    let zfs = FakeZfs::new();
    zfs.create_dataset("tank/data")?;
    for (day, content) in [("daily-1", "monday"), ("daily-2", "tuesday")] {
        zfs.write("tank/data", content)?;
        zfs.snapshot(&format!("tank/data@{day}"))?;
    }
    let dir = tempfile::tempdir()?;
    let store = Arc::new(DirStore::open(dir.path(), "backups")?);

    // The engine: one dataset, z3's defaults, snapshots named daily-*.
    let mut config = EngineConfig::new("backups", "z3-backup/", DatasetName::new("tank/data")?);
    config.snapshot_prefix = "daily-".into();
    let engine =
        Engine::new(Arc::new(zfs.clone()), store.clone(), config).with_progress(Arc::new(Percent));

    let encoding = Encoding {
        compressor: Compressor::parse("zstd", "")?,
        encryption: None,
    };
    let report = engine
        .backup(&BackupOptions::new(encoding), &mut Log)
        .await?;
    for s in &report.snapshots {
        println!(
            "backed up {} ({}): {} bytes of stream stored in {} bytes, blake3 {}",
            s.snapshot,
            s.kind.as_str(),
            s.bytes_read,
            s.bytes_stored,
            s.stream_digest.as_deref().unwrap_or("-"),
        );
    }
    let status = engine.status(&StatusOptions::default()).await?;
    println!("healthy: {}, rows: {}", status.healthy, status.rows.len());
    assert!(status.healthy);

    zfs.destroy_dataset("tank/data")?;
    let restored = engine
        .restore(
            &RestoreOptions::new(SnapshotName::new("daily-2")?),
            &mut NoEvents,
        )
        .await?;
    assert_eq!(restored.snapshots.len(), 2);
    assert_eq!(zfs.content("tank/data").as_deref(), Some(&b"tuesday"[..]));
    println!(
        "restored {} from {} objects in {}",
        restored.snapshots[1].snapshot,
        store.list("").await?.len(),
        dir.path().display()
    );
    Ok(())
}

/// Prints each stream's progress at its end (an embedder's own reporter).
#[derive(Debug)]
struct Percent;

struct Count {
    label: String,
    total: Option<u64>,
    bytes: u64,
}

impl Progress for Percent {
    fn start(&self, label: &str, total: Option<u64>) -> Box<dyn Transfer> {
        Box::new(Count {
            label: label.to_owned(),
            total,
            bytes: 0,
        })
    }
}

impl Transfer for Count {
    fn advance(&mut self, bytes: u64) {
        self.bytes += bytes;
    }
    fn finish(&mut self) {
        let of = self.total.map(|t| format!(" of ~{t}")).unwrap_or_default();
        println!("  {}: {} bytes{of}", self.label, self.bytes);
    }
    fn fail(&mut self) {
        println!("  {}: failed after {} bytes", self.label, self.bytes);
    }
}

/// Logs the engine's notes; results are taken from the reports instead.
struct Log;

impl Events for Log {
    fn event(&mut self, event: Event) -> std::io::Result<()> {
        if let Event::Note { text } = event {
            println!("note: {text}");
        }
        Ok(())
    }
}

/// Objects as files in a directory (name: the key in hex), metadata in a `.meta` file beside
/// each; open multipart uploads in memory.
#[derive(Debug)]
struct DirStore {
    root: PathBuf,
    bucket: String,
    uploads: Mutex<BTreeMap<String, Upload>>,
    next_upload: Mutex<u64>,
}

#[derive(Debug)]
struct Upload {
    key: String,
    options: PutOptions,
    parts: BTreeMap<u16, (Bytes, Crc32c)>,
}

type Failed = z3_s3::Error;

impl DirStore {
    fn open(root: &Path, bucket: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(Self {
            root: root.to_owned(),
            bucket: bucket.to_owned(),
            uploads: Mutex::default(),
            next_upload: Mutex::default(),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        let mut hex = String::with_capacity(key.len() * 2);
        for b in key.bytes() {
            let _ = write!(hex, "{b:02x}");
        }
        self.root.join(hex)
    }

    fn io(&self, key: &str, err: &std::io::Error) -> Failed {
        let kind = if err.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::InvalidRequest
        };
        Failed::new(kind, format!("{}/{key}: {err}", self.root.display()))
    }

    fn store(
        &self,
        key: &str,
        data: &[u8],
        meta: &BTreeMap<String, String>,
    ) -> Result<String, Failed> {
        let path = self.path(key);
        let mut lines = String::new();
        for (k, v) in meta {
            let _ = writeln!(lines, "{k}\t{v}");
        }
        std::fs::write(path.with_extension("meta"), lines).map_err(|e| self.io(key, &e))?;
        std::fs::write(&path, data).map_err(|e| self.io(key, &e))?;
        Ok(meta.get("etag").cloned().unwrap_or_default())
    }

    fn meta(&self, key: &str) -> Result<BTreeMap<String, String>, Failed> {
        let text = std::fs::read_to_string(self.path(key).with_extension("meta"))
            .map_err(|e| self.io(key, &e))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    fn etag_of(&self, key: &str) -> Option<String> {
        self.meta(key).ok().and_then(|m| m.get("etag").cloned())
    }

    /// Checks a write condition as S3 does.
    fn check(&self, key: &str, precondition: &Precondition) -> Result<(), Failed> {
        let current = self.etag_of(key);
        let failed = |kind, why: &str| Err(Failed::new(kind, format!("{key}: {why}")));
        match (precondition, current) {
            (Precondition::KeyFree, Some(_)) => failed(ErrorKind::AlreadyExists, "exists"),
            (Precondition::Unchanged(_), None) => failed(ErrorKind::NotFound, "no object"),
            (Precondition::Unchanged(want), Some(etag)) if *want != etag => {
                failed(ErrorKind::AlreadyExists, "another object")
            }
            _ => Ok(()),
        }
    }
}

/// The stored metadata: the user's, plus our `etag` (and `crc32c` for multipart objects).
fn metadata(options: &PutOptions, etag: &str, crc: Option<&str>) -> BTreeMap<String, String> {
    let mut meta: BTreeMap<String, String> = options
        .metadata
        .iter()
        .map(|(k, v)| (format!("x-{k}"), v.clone()))
        .collect();
    meta.insert("etag".into(), etag.to_owned());
    if let Some(crc) = crc {
        meta.insert("crc32c".into(), crc.to_owned());
    }
    meta
}

fn etag(data: &[u8], parts: Option<usize>) -> String {
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(data);
    match parts {
        Some(n) => format!("\"{hash:016x}-{n}\""),
        None => format!("\"{hash:016x}\""),
    }
}

#[async_trait::async_trait]
impl ObjectStore for DirStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn check_bucket(&self) -> Result<(), Failed> {
        std::fs::metadata(&self.root)
            .map(drop)
            .map_err(|e| self.io("", &e))
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, Failed> {
        let size = std::fs::metadata(self.path(key))
            .map_err(|e| self.io(key, &e))?
            .len();
        let meta = self.meta(key)?;
        Ok(ObjectInfo {
            key: key.to_owned(),
            size,
            etag: meta.get("etag").cloned(),
            metadata: meta
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("x-")?.to_owned(), v.clone())))
                .collect(),
            storage_class: None,
            checksum_crc32c: None,
            last_modified: None,
            retain_until: None,
            legal_hold: false,
            retention_mode: None,
            version_id: Some(NULL_VERSION.to_owned()),
        })
    }

    async fn head_checksum(&self, key: &str) -> Result<ObjectInfo, Failed> {
        let mut info = self.head(key).await?;
        info.checksum_crc32c = self.meta(key)?.get("crc32c").cloned();
        Ok(info)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, Failed> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(|e| self.io(prefix, &e))? {
            let path = entry.map_err(|e| self.io(prefix, &e))?.path();
            if path.extension().is_some() {
                continue; // a .meta file
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let bytes: Option<Vec<u8>> = (0..name.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(name.get(i..i + 2)?, 16).ok())
                .collect();
            let Some(key) = bytes.and_then(|b| String::from_utf8(b).ok()) else {
                continue;
            };
            if key.starts_with(prefix) {
                let size = std::fs::metadata(&path)
                    .map_err(|e| self.io(&key, &e))?
                    .len();
                entries.push(ListEntry {
                    key,
                    size,
                    last_modified: None,
                    etag: None,
                });
            }
        }
        entries.sort();
        Ok(entries)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, Failed> {
        let data = std::fs::read(self.path(key)).map_err(|e| self.io(key, &e))?;
        let end = usize::try_from(range.end)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let start = usize::try_from(range.start).unwrap_or(usize::MAX).min(end);
        Ok(Bytes::copy_from_slice(&data[start..end]))
    }

    async fn put(&self, key: &str, body: Bytes, options: &PutOptions) -> Result<String, Failed> {
        no_object_lock(key, options)?;
        self.check(key, &options.precondition()?)?;
        let tag = etag(&body, None);
        self.store(key, &body, &metadata(options, &tag, None))
    }

    async fn delete(&self, key: &str) -> Result<(), Failed> {
        let _ = std::fs::remove_file(self.path(key).with_extension("meta"));
        match std::fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.io(key, &e)),
            _ => Ok(()),
        }
    }

    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), Failed> {
        self.check(key, &Precondition::Unchanged(etag.to_owned()))?;
        self.delete(key).await
    }

    async fn create_multipart(&self, key: &str, options: &PutOptions) -> Result<UploadId, Failed> {
        no_object_lock(key, options)?;
        let mut next = self.next_upload.lock().unwrap();
        *next += 1;
        let id = format!("upload-{next}");
        self.uploads.lock().unwrap().insert(
            id.clone(),
            Upload {
                key: key.to_owned(),
                options: options.clone(),
                parts: BTreeMap::new(),
            },
        );
        Ok(UploadId::new(id))
    }

    async fn put_part(
        &self,
        key: &str,
        upload_id: &UploadId,
        part: PartNumber,
        body: Bytes,
        checksum: Crc32c,
    ) -> Result<CompletedPart, Failed> {
        if Crc32c::of(&body) != checksum {
            return Err(Failed::new(
                ErrorKind::Transient,
                format!("{key}: BadDigest"),
            ));
        }
        let mut uploads = self.uploads.lock().unwrap();
        let upload = uploads
            .get_mut(upload_id.as_str())
            .ok_or_else(|| Failed::new(ErrorKind::NoSuchUpload, format!("{key}: no upload")))?;
        let tag = etag(&body, None);
        upload.parts.insert(part.get(), (body, checksum));
        Ok(CompletedPart {
            part_number: part,
            etag: tag,
            checksum_crc32c: Some(checksum.to_base64()),
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
        precondition: &Precondition,
    ) -> Result<CompletedUpload, Failed> {
        self.check(key, precondition)?;
        let upload = self
            .uploads
            .lock()
            .unwrap()
            .remove(upload_id.as_str())
            .ok_or_else(|| Failed::new(ErrorKind::NoSuchUpload, format!("{key}: no upload")))?;
        let mut data = Vec::new();
        let mut crcs = Vec::new();
        for part in &parts {
            let (body, crc) = upload.parts.get(&part.part_number.get()).ok_or_else(|| {
                Failed::new(ErrorKind::InvalidRequest, format!("{key}: InvalidPart"))
            })?;
            data.extend_from_slice(body);
            crcs.push(*crc);
        }
        let tag = etag(&data, Some(parts.len()));
        let crc = composite_crc32c(&crcs);
        self.store(key, &data, &metadata(&upload.options, &tag, Some(&crc)))?;
        Ok(CompletedUpload {
            etag: tag,
            checksum_crc32c: Some(crc),
        })
    }

    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> Result<(), Failed> {
        match self.uploads.lock().unwrap().remove(upload_id.as_str()) {
            Some(_) => Ok(()),
            None => Err(Failed::new(
                ErrorKind::NoSuchUpload,
                format!("{key}: no upload"),
            )),
        }
    }

    async fn list_parts(
        &self,
        key: &str,
        upload_id: &UploadId,
    ) -> Result<Vec<z3_s3::ListedPart>, Failed> {
        let uploads = self.uploads.lock().unwrap();
        let upload = uploads
            .get(upload_id.as_str())
            .ok_or_else(|| Failed::new(ErrorKind::NoSuchUpload, format!("{key}: no upload")))?;
        Ok(upload
            .parts
            .iter()
            .filter_map(|(&n, (body, _))| {
                Some(z3_s3::ListedPart {
                    part_number: PartNumber::new(n)?,
                    size: body.len() as u64,
                    etag: etag(body, None),
                })
            })
            .collect())
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<MultipartUploadInfo>, Failed> {
        Ok(self
            .uploads
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, u)| u.key.starts_with(prefix))
            .map(|(id, u)| MultipartUploadInfo {
                key: u.key.clone(),
                upload_id: UploadId::new(id.clone()),
                initiated: None,
            })
            .collect())
    }
    // A directory keeps no versions: like an S3 bucket that never had versioning, every key
    // has one version, "null", and Object Lock is not available.

    async fn object_lock_config(&self) -> Result<BucketLockConfig, Failed> {
        Ok(BucketLockConfig {
            versioning: Versioning::Unversioned,
            object_lock: false,
            default_retention: None,
        })
    }

    async fn list_versions(&self, prefix: &str) -> Result<Vec<VersionEntry>, Failed> {
        let mut versions = Vec::new();
        for entry in self.list(prefix).await? {
            versions.push(VersionEntry {
                etag: self.meta(&entry.key)?.get("etag").cloned(),
                key: entry.key,
                version_id: NULL_VERSION.to_owned(),
                is_latest: true,
                is_delete_marker: false,
                size: entry.size,
                last_modified: entry.last_modified,
            });
        }
        Ok(versions)
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo, Failed> {
        if version_id != NULL_VERSION {
            return Err(Failed::new(
                ErrorKind::NotFound,
                format!("{key} version {version_id}: no such version"),
            ));
        }
        self.head(key).await
    }

    async fn read_range_version(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
        out: &mut Vec<Bytes>,
    ) -> Result<u64, Failed> {
        self.head_version(key, version_id).await?;
        let bytes = self.get_range(key, range).await?;
        let len = bytes.len() as u64;
        if len > 0 {
            out.push(bytes);
        }
        Ok(len)
    }

    async fn delete_version(&self, key: &str, version_id: &str) -> Result<(), Failed> {
        if version_id == NULL_VERSION {
            self.delete(key).await?;
        }
        Ok(())
    }

    async fn put_retention(
        &self,
        key: &str,
        _version_id: &str,
        retention: Retention,
    ) -> Result<(), Failed> {
        no_object_lock(
            key,
            &PutOptions {
                object_lock: Some(retention),
                ..PutOptions::default()
            },
        )
    }
}

/// The version id of the only version a store without versioning keeps.
const NULL_VERSION: &str = "null";

/// A directory has no Object Lock: a retention is refused, as S3 refuses it on a bucket
/// created without Object Lock.
fn no_object_lock(key: &str, options: &PutOptions) -> Result<(), Failed> {
    match options.object_lock {
        Some(_) => Err(Failed::new(
            ErrorKind::InvalidRequest,
            format!("{key}: this store has no Object Lock"),
        )),
        None => Ok(()),
    }
}
