//! `z3 verify`: downloads backups and checks them against their seals and chains, without ZFS.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, anyhow};
use z3_codec::{Decoding, DigestReader, apply_all, is_encrypted};
use z3_core::humanize::humanize;
use z3_core::verify::{chain_of, continuity, sample};
use z3_core::{Digest, RemoteSnapshot, SealCheck};

use super::Engine;
use crate::config::VerifyOptions;
use crate::receive::Receive;
use crate::report::{Event, Events, Kind, ObjectVerification, VerifyReport};

/// The verdict on one object, with what was found.
enum Verdict {
    /// Chain and bytes check out; what was checked.
    Ok(String),
    /// Chain checks out; the bytes were not downloaded (not in the sample).
    ChainOnly,
    /// Something is wrong: every reason found.
    Failed(Vec<String>),
    /// Chain checks out; S3 refused to read the bytes: the object sits in an archive tier.
    Archived,
}

/// Whether `err` is S3's refusal to read an object in an archive tier (`InvalidObjectState`).
/// The download reaches here through `std::io::Read`, so the S3 error may sit inside an
/// `io::Error` (whose `source()` skips it).
fn is_archived(err: &anyhow::Error) -> bool {
    let archived = |e: &(dyn std::error::Error + 'static)| {
        e.downcast_ref::<z3_s3::Error>()
            .is_some_and(|e| e.kind() == z3_s3::ErrorKind::Archived)
    };
    err.chain().any(|cause| {
        archived(cause)
            || cause
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .is_some_and(|inner| archived(inner))
    })
}

/// The note when `total - readable` of the objects are in an archive class.
fn archived_note(readable: usize, total: usize) -> Option<String> {
    (readable < total).then(|| {
        format!(
            "{} of {total} objects are in an archive storage class (GLACIER, DEEP_ARCHIVE): \
             their chains and seals are checked, their bytes are not downloaded",
            total - readable
        )
    })
}

impl Verdict {
    /// The report's verdict and detail; `class` is the object's archive class, if it has one.
    fn reported(self, class: Option<&String>) -> (crate::report::Verdict, String) {
        use crate::report::Verdict as V;
        match self {
            Self::Ok(what) => (V::Ok, what),
            Self::ChainOnly => (
                V::Chain,
                match class {
                    Some(class) => format!(
                        "chain ok; in {class}: not downloaded (restore it from the archive \
                         class to read it)"
                    ),
                    None => "chain ok; bytes not in this sample".to_owned(),
                },
            ),
            Self::Failed(problems) => (V::Failed, problems.join("; ")),
            Self::Archived => (
                V::Chain,
                "chain ok; in an archive tier (S3 said InvalidObjectState): not downloaded \
                 (restore it from the archive to read it)"
                    .to_owned(),
            ),
        }
    }
}

impl Engine {
    /// The dataset's backups, and the storage class of those in an archive class: they cannot
    /// be read until restored from it, so their chain and seal are checked, their bytes are not
    /// downloaded (a refused GET there is no sign of corruption), and the sample is drawn from
    /// the others.
    async fn remote_and_archived(
        &self,
        dataset: &z3_core::DatasetName,
    ) -> Result<(z3_core::RemoteIndex, BTreeMap<String, String>)> {
        let objects = self.remote_objects(dataset, None).await?;
        let archived = (objects.iter())
            .filter_map(|(object, info)| {
                let class = info.storage_class.as_deref()?;
                z3_s3::is_archive_class(class).then(|| (object.name.clone(), class.to_owned()))
            })
            .collect();
        let remote = z3_core::RemoteIndex::new(objects.into_iter().map(|(o, _)| o).collect());
        Ok((remote, archived))
    }

    /// [`Engine::verify`], with the internal error.
    pub(super) async fn verify_inner(
        &self,
        args: &VerifyOptions,
        events: &mut dyn Events,
    ) -> Result<VerifyReport> {
        let dataset = self.dataset()?;
        let (remote, archived) = self.remote_and_archived(dataset).await?;
        let where_ = format!(
            "s3://{}/{}",
            self.settings.bucket,
            self.settings.layout.prefix()
        );
        let selected: Vec<&RemoteSnapshot> = match &args.snapshot {
            Some(snapshot) => {
                let name = format!("{dataset}@{snapshot}");
                chain_of(&remote, &name)
                    .ok_or_else(|| anyhow!("there is no backup of {name} under {where_}"))?
            }
            None => remote.iter().collect(),
        };
        if selected.is_empty() {
            events.event(Event::Note {
                text: format!("no backups of {dataset} under {where_}; nothing to verify"),
            })?;
            return Ok(VerifyReport {
                dataset: dataset.to_string(),
                objects: Vec::new(),
                sample: args.sample,
            });
        }
        let names: Vec<&str> = (selected.iter())
            .map(|o| o.name.as_str())
            .filter(|name| !archived.contains_key(*name))
            .collect();
        if let Some(text) = archived_note(names.len(), selected.len()) {
            events.event(Event::Note { text })?;
        }
        let sampled: BTreeSet<&str> = match args.sample {
            Some(percent) => sample(&names, percent, random_seed()),
            None => names.iter().copied().collect(),
        };
        let seal_keys = selected
            .iter()
            .map(|o| (self.settings.layout.seal_key_of(o), (*o).clone()))
            .collect();
        let checks = crate::seal::check_all(
            &self.store,
            seal_keys,
            &self.settings.bucket,
            &self.settings.transfer.retry,
        )
        .await?;
        let any_encrypted = selected
            .iter()
            .any(|o| is_encrypted(o.meta.encryption.as_deref()).unwrap_or(false));
        let decoding = Decoding {
            compressors: self.settings.compressors.clone(),
            identities: if any_encrypted {
                self.settings
                    .keys
                    .identities()
                    .map_err(crate::error::KeyError)?
            } else {
                None
            },
        };

        let mut report = VerifyReport {
            dataset: dataset.to_string(),
            objects: Vec::with_capacity(selected.len()),
            sample: args.sample,
        };
        for (object, check) in selected.iter().zip(checks) {
            self.check_interrupt(&format!("verifying {}", object.name))?;
            let verdict = self
                .verify_one(
                    &remote,
                    object,
                    &check,
                    &decoding,
                    sampled.contains(object.name.as_str()),
                )
                .await;
            let (verdict, detail) = verdict.reported(archived.get(&object.name));
            let entry = ObjectVerification {
                name: object.name.clone(),
                kind: if object.meta.is_full {
                    Kind::Full
                } else {
                    Kind::Incremental
                },
                verdict,
                detail,
            };
            events.event(Event::Verified(entry.clone()))?;
            report.objects.push(entry);
        }
        Ok(report)
    }

    async fn verify_one(
        &self,
        remote: &z3_core::RemoteIndex,
        object: &RemoteSnapshot,
        check: &SealCheck,
        decoding: &Decoding,
        download: bool,
    ) -> Verdict {
        let mut problems = Vec::new();
        if let Err(why) = continuity(remote, object) {
            problems.push(why);
        }
        if !check.is_trusted() {
            problems.push(format!("{}: {check}", check.label()));
        }
        if !download {
            return if problems.is_empty() {
                Verdict::ChainOnly
            } else {
                Verdict::Failed(problems)
            };
        }
        let checked = match self.read_digests(object, decoding).await {
            Ok(digests) => compare(check, &digests, &mut problems),
            // The listing did not say (an Intelligent-Tiering archive tier, or a class
            // changed by a lifecycle rule since): not readable now, which is no corruption.
            Err(err) if problems.is_empty() && is_archived(&err) => {
                return Verdict::Archived;
            }
            Err(err) => {
                problems.push(format!("cannot read it back: {err:#}"));
                String::new()
            }
        };
        if problems.is_empty() {
            Verdict::Ok(checked)
        } else {
            Verdict::Failed(problems)
        }
    }

    /// Downloads `object`, hashing its bytes and, when it can be decoded here, the stream.
    async fn read_digests(&self, object: &RemoteSnapshot, decoding: &Decoding) -> Result<Digests> {
        let downloader = self.downloader();
        let (stored, stored_digest) = DigestReader::new(downloader.reader(
            &object.key,
            object.object_size,
            object.etag.as_deref(),
        ));
        let encrypted = is_encrypted(object.meta.encryption.as_deref())?;
        let read_back = Receive::read_back(&self.interrupt);
        let stream = if encrypted && decoding.identities.is_none() {
            read_back.run(Box::new(stored), None).await?;
            None
        } else {
            let stages = decoding
                .stages_for(
                    object.meta.compressor.as_deref(),
                    object.meta.encryption.as_deref(),
                )
                .context("cannot decode it")?;
            let decoded = apply_all(&stages, Box::new(stored))?;
            Some(read_back.run(decoded, None).await?)
        };
        let stored = stored_digest
            .finish()
            .map(|(blake3, len)| Digest { len, blake3 })
            .ok_or_else(|| anyhow!("the stream did not end"))?;
        Ok(Digests { stored, stream })
    }
}

struct Digests {
    stored: Digest,
    /// `None` when the object is encrypted and no identity was given.
    stream: Option<Digest>,
}

/// Compares what was read with the seal; returns what was checked, pushes what failed.
fn compare(check: &SealCheck, digests: &Digests, problems: &mut Vec<String>) -> String {
    let stream_note = |d: &Digest| format!("stream {}, blake3 {}", humanize(d.len), d.short());
    match check {
        SealCheck::Sealed(seal) => {
            if digests.stored != seal.object {
                problems.push(format!(
                    "the stored object does not match its seal: expected {}, got {}",
                    seal.object, digests.stored
                ));
            }
            match &digests.stream {
                Some(stream) if *stream != seal.stream => {
                    problems.push(format!(
                        "the zfs stream does not match its seal: expected {}, got {stream}",
                        seal.stream
                    ));
                    String::new()
                }
                Some(stream) => stream_note(stream),
                None => format!(
                    "stored bytes match the seal ({}); stream not decrypted (no age identity)",
                    humanize(digests.stored.len)
                ),
            }
        }
        // Nothing to compare with: that it downloads and decodes is all that can be said.
        _ => match &digests.stream {
            Some(stream) => format!("decodes to {}; no digest to compare", humanize(stream.len)),
            None => "downloads; encrypted, no digest to compare".to_owned(),
        },
    }
}

/// A seed for `--sample`: different on every run, so repeated spot checks cover everything.
fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
}
