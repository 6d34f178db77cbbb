//! [`AwsStore`]: the [`ObjectStore`] adapter over `aws-sdk-s3`, with SDK retries disabled and
//! SDK errors mapped onto [`ErrorKind`].

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::config::retry::RetryConfig as SdkRetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload,
    CompletedPart as SdkCompletedPart, ObjectCannedAcl, ObjectLockEnabled,
    ObjectLockLegalHoldStatus, ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode,
    ServerSideEncryption, StorageClass,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::DateTime;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use std::sync::Arc;

use crate::checksum::Crc32c;
use crate::error::{Error, ErrorKind, Result};
use crate::store::{
    BucketLockConfig, CompletedPart, CompletedUpload, ListEntry, ListedPart, MultipartUploadInfo,
    ObjectInfo, ObjectStore, Op, PartNumber, Precondition, PutOptions, Retention, RetentionMode,
    RetentionPeriod, UploadId, VersionEntry, Versioning, object_url,
};

/// The region used when neither the config nor the environment names one.
const DEFAULT_REGION: &str = "us-east-1";

/// An access key pair given explicitly (z3's `S3_KEY_ID` / `S3_SECRET`).
///
/// `Debug` shows the key id but never the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// The access key id (`AKIA…`); not secret.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Where and how [`AwsStore`] connects. `Debug` never prints the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket every operation uses.
    pub bucket: String,
    /// The region; `None` asks the default chain (env `AWS_REGION`, profile, IMDS), then `us-east-1`.
    pub region: Option<String>,
    /// A custom endpoint URL such as `http://127.0.0.1:8333` (SeaweedFS, MinIO, Wasabi).
    pub endpoint: Option<String>,
    /// Address buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key`
    /// (needed by most non-AWS servers).
    pub force_path_style: bool,
    /// Explicit keys; `None` uses the default credential chain (env `AWS_*`, profiles, SSO, IMDS).
    pub credentials: Option<StaticCredentials>,
    /// Time allowed to establish a connection. Default 10 s.
    pub connect_timeout: Duration,
    /// Time allowed for one attempt of a small request (head, list, create, complete, abort,
    /// delete). Part uploads and ranged GETs are bounded by stalled-stream protection instead,
    /// since their duration grows with the part size. Default 60 s.
    pub operation_timeout: Option<Duration>,
    /// Server-side encryption asked for on every object this store creates (puts and multipart
    /// uploads: backups, seals, locks); `None` leaves it to the bucket's default.
    pub sse: Option<Sse>,
    /// `BWLIMIT`: at most this many bytes per second to and from S3, over all of this store's
    /// connections together ([`crate::Bandwidth`]); `None` for no limit.
    pub bandwidth_limit: Option<u64>,
}

/// Server-side encryption at rest (`x-amz-server-side-encryption`), for buckets whose policy
/// demands it or operators who want their own KMS key; independent of z3's own age encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// `AES256`: keys managed by S3 (SSE-S3).
    Aes256,
    /// `aws:kms`: SSE-KMS, with this key (`x-amz-server-side-encryption-aws-kms-key-id`) or the
    /// account's default S3 key when `None`.
    Kms {
        /// The KMS key id or ARN.
        key_id: Option<String>,
    },
}

impl Sse {
    /// `SSE` and `SSE_KMS_KEY_ID` as configured: `AES256` or `aws:kms` (any case), a key id
    /// only with `aws:kms`.
    ///
    /// # Errors
    /// A message naming the value at fault.
    pub fn parse(mode: &str, kms_key_id: Option<&str>) -> std::result::Result<Self, String> {
        let key_id = kms_key_id.map(str::trim).filter(|k| !k.is_empty());
        match (mode.trim().to_ascii_lowercase().as_str(), key_id) {
            ("aes256", None) => Ok(Self::Aes256),
            ("aes256", Some(_)) => Err("SSE_KMS_KEY_ID needs SSE=aws:kms".to_owned()),
            ("aws:kms" | "kms", key_id) => Ok(Self::Kms {
                key_id: key_id.map(str::to_owned),
            }),
            _ => Err(format!("SSE '{mode}': expected AES256 or aws:kms")),
        }
    }

    /// `SSE` and `SSE_KMS_KEY_ID` as configured, either possibly unset or empty: `None` when
    /// `SSE` is unset.
    ///
    /// # Errors
    /// The setting at fault (`SSE` or `SSE_KMS_KEY_ID`, the latter set without `SSE`), its
    /// value and why.
    pub fn from_settings(
        mode: Option<&str>,
        kms_key_id: Option<&str>,
    ) -> std::result::Result<Option<Self>, (&'static str, String, String)> {
        fn set(v: Option<&str>) -> Option<&str> {
            v.filter(|v| !v.trim().is_empty())
        }
        match (set(mode), set(kms_key_id)) {
            (Some(mode), key) => Self::parse(mode, key)
                .map(Some)
                .map_err(|reason| ("SSE", mode.to_owned(), reason)),
            (None, Some(key)) => Err((
                "SSE_KMS_KEY_ID",
                key.to_owned(),
                "needs SSE=aws:kms".to_owned(),
            )),
            (None, None) => Ok(None),
        }
    }

    fn header(&self) -> ServerSideEncryption {
        match self {
            Self::Aes256 => ServerSideEncryption::Aes256,
            Self::Kms { .. } => ServerSideEncryption::AwsKms,
        }
    }

    fn key_id(&self) -> Option<String> {
        match self {
            Self::Aes256 => None,
            Self::Kms { key_id } => key_id.clone(),
        }
    }
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            region: None,
            endpoint: None,
            force_path_style: false,
            credentials: None,
            connect_timeout: Duration::from_secs(10),
            operation_timeout: Some(Duration::from_mins(1)),
            sse: None,
            bandwidth_limit: None,
        }
    }
}

/// The longest `S3_TIMEOUT`: one day, in seconds.
pub const MAX_S3_TIMEOUT_SECS: u64 = 86_400;

/// How to reach S3, as the configuration spells it (z3's and the original's keys); see
/// [`S3Config::from_settings`].
#[derive(Debug, Default, Clone, Copy)]
pub struct S3Settings<'a> {
    /// `S3_ENDPOINT`: a URL.
    pub endpoint: Option<&'a str>,
    /// `HOST`: the original's endpoint, a bare host name (`https://` is assumed) or a URL.
    pub host: Option<&'a str>,
    /// `AWS_ENDPOINT_URL`, used when neither of the above is set.
    pub aws_endpoint_url: Option<&'a str>,
    /// `S3_REGION`, `AWS_REGION`, `AWS_DEFAULT_REGION`: the first set wins.
    pub regions: [Option<&'a str>; 3],
    /// `S3_PATH_STYLE`: `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    pub path_style: Option<&'a str>,
    /// `S3_TIMEOUT`: whole seconds for one attempt of a small request.
    pub timeout: Option<&'a str>,
    /// `SSE` and `SSE_KMS_KEY_ID` ([`Sse::from_settings`]).
    pub sse: [Option<&'a str>; 2],
    /// `BWLIMIT`: bytes per second with `K`, `M`, `G` suffixes; `0`/`off` for none
    /// ([`crate::Bandwidth::parse`]).
    pub bwlimit: Option<&'a str>,
}

impl S3Config {
    /// The connection `settings` describe for `bucket`:
    ///
    /// - the endpoint is `S3_ENDPOINT`, else `HOST` (`https://` added to a bare host), else
    ///   `AWS_ENDPOINT_URL` (the first set, even when empty: an empty one means AWS);
    /// - path-style addressing is on by default with a custom endpoint (S3-compatible servers
    ///   reached by IP or custom host name rarely do virtual-host buckets);
    /// - with a custom endpoint and no region the region is `us-east-1`, only a signing scope:
    ///   the instance metadata service (a network call outside the endpoint) is never asked;
    /// - `S3_TIMEOUT` is 1 to [`MAX_S3_TIMEOUT_SECS`] seconds; unset keeps the default.
    ///
    /// # Errors
    /// The setting at fault, its value and why.
    pub fn from_settings(
        bucket: String,
        credentials: Option<StaticCredentials>,
        settings: &S3Settings<'_>,
    ) -> std::result::Result<Self, (&'static str, String, String)> {
        let endpoint = settings
            .endpoint
            .map(str::to_owned)
            .or_else(|| {
                settings.host.map(|host| {
                    if host.contains("://") {
                        host.to_owned()
                    } else {
                        format!("https://{host}")
                    }
                })
            })
            .or_else(|| settings.aws_endpoint_url.map(str::to_owned))
            .filter(|e| !e.is_empty());
        let force_path_style = match settings.path_style {
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    let why = "expected true or false".to_owned();
                    return Err(("S3_PATH_STYLE", value.to_owned(), why));
                }
            },
            None => endpoint.is_some(),
        };
        let region = settings
            .regions
            .into_iter()
            .flatten()
            .find(|r| !r.is_empty())
            .map(str::to_owned)
            .or_else(|| endpoint.is_some().then(|| "us-east-1".to_owned()));
        let operation_timeout = match settings.timeout {
            None => Self::default().operation_timeout,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(secs @ 1..=MAX_S3_TIMEOUT_SECS) => Some(Duration::from_secs(secs)),
                Ok(_) => {
                    let why = format!("must be between 1 and {MAX_S3_TIMEOUT_SECS} (seconds)");
                    return Err(("S3_TIMEOUT", text.to_owned(), why));
                }
                Err(e) => return Err(("S3_TIMEOUT", text.to_owned(), e.to_string())),
            },
        };
        let [sse, kms_key_id] = settings.sse;
        let bandwidth = match settings.bwlimit {
            Some(text) => crate::Bandwidth::parse(text)
                .map_err(|why| ("BWLIMIT", text.to_owned(), why))?
                .map(|b| b.rate()),
            None => None,
        };
        Ok(Self {
            bandwidth_limit: bandwidth,
            bucket,
            region,
            endpoint,
            force_path_style,
            credentials,
            operation_timeout,
            sse: Sse::from_settings(sse, kms_key_id)?,
            ..Self::default()
        })
    }

    /// Defaults for `bucket`: AWS endpoint, default region and credential chains.
    #[must_use]
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            ..Self::default()
        }
    }
}

/// [`ObjectStore`] over `aws-sdk-s3`.
///
/// The SDK's own retries are disabled: z3 retries with its own policy
/// ([`retry()`](crate::retry()), [`MultipartUploader`](crate::MultipartUploader)), so each call here is
/// exactly one HTTP attempt and its failure is mapped to an [`ErrorKind`]:
///
/// | server says | kind |
/// |---|---|
/// | `NoSuchKey`, `NotFound`, 404 | [`ErrorKind::NotFound`] ([`ErrorKind::NoSuchBucket`] for bucket-level calls) |
/// | `NoSuchBucket` | [`ErrorKind::NoSuchBucket`] |
/// | `NoSuchUpload` | [`ErrorKind::NoSuchUpload`] |
/// | `AccessDenied`, `InvalidAccessKeyId`, `SignatureDoesNotMatch`, 403 | [`ErrorKind::AccessDenied`] |
/// | `SlowDown`, 429 | [`ErrorKind::Throttled`] |
/// | other 5xx, 408, `InternalError`/`RequestTimeout` (also inside a 200), `BadDigest`, timeouts, dropped connections | [`ErrorKind::Transient`] |
/// | connection refused, DNS failure | [`ErrorKind::Unreachable`] |
/// | other 4xx | [`ErrorKind::InvalidRequest`] |
///
/// # Checksums and CPU
///
/// Multipart uploads are created with `ChecksumAlgorithm::Crc32C`. Each part carries the CRC32C
/// the caller computed ([`ObjectStore::put_part`]'s `checksum`) as `x-amz-checksum-crc32c`,
/// which the server verifies (`BadDigest` otherwise), and is echoed at completion, where the
/// server answers with the object's composite checksum. Because the header is already set, the
/// SDK's checksum interceptor computes nothing (it skips requests that carry an
/// `x-amz-checksum-*` header, and then also sends the body plainly instead of `aws-chunked`),
/// and part uploads use `UNSIGNED-PAYLOAD`, so SigV4 does not SHA-256 the body either. Each
/// part's bytes are therefore hashed exactly once, by the caller (no MD5, no second CRC, no
/// SHA-256). Measured here against SeaweedFS, a 1 GiB upload cost the client 0.77 CPU-seconds
/// this way and 1.58 with the payload signed.
///
/// CRC32C catches corruption, not forgery: someone on the path could swap a body for another
/// with the same CRC. So the payload goes unsigned only where nobody is on the path: over
/// HTTPS (AWS's default endpoints, any `https://` endpoint) or to a loopback address. A plain
/// `http://` endpoint elsewhere gets signed payloads, as the AWS Java SDK's unsigned-payload
/// signer does.
///
/// SeaweedFS 4.48 checks `x-amz-checksum-crc32c` on `UploadPart` (`BadDigest`), echoes it,
/// and reports the composite `base64-N` in the `CompleteMultipartUpload` response and in a
/// `HEAD` in checksum mode (not in a plain `HEAD`), like AWS.
#[derive(Clone)]
pub struct AwsStore {
    bucket: String,
    endpoint: Option<String>,
    /// For small requests: carries the per-attempt operation timeout.
    client: Client,
    /// For part uploads, puts and ranged GETs: no attempt timeout (stalled-stream protection instead).
    bulk: Client,
    /// Whether part bodies may go `UNSIGNED-PAYLOAD` (see the type's documentation).
    unsigned_payload: bool,
    /// Server-side encryption for every object created.
    sse: Option<Sse>,
    /// `BWLIMIT`, shared by every transfer of this store (and its clones).
    bandwidth: Option<Arc<crate::Bandwidth>>,
}

impl fmt::Debug for AwsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsStore")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl AwsStore {
    /// Builds the SDK clients. No request is sent (credentials are resolved lazily); call
    /// [`ObjectStore::check_bucket`] to find out whether the bucket is reachable.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRequest`] for an empty bucket name or an endpoint that is not an
    /// `http://` or `https://` URL.
    pub async fn connect(config: S3Config) -> Result<Self> {
        if config.bucket.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                "no bucket configured",
            ));
        }
        if let Some(endpoint) = &config.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!("endpoint {endpoint:?} must start with http:// or https://"),
            ));
        }

        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(SdkRetryConfig::disabled());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(creds) = &config.credentials {
            loader = loader.credentials_provider(Credentials::new(
                creds.access_key_id.clone(),
                creds.secret_access_key.clone(),
                None,
                None,
                "z3-static",
            ));
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint.clone());
        }
        let sdk_config = loader.load().await;

        let mut builder = aws_sdk_s3::config::Builder::from(&sdk_config)
            .force_path_style(config.force_path_style)
            .retry_config(SdkRetryConfig::disabled());
        if sdk_config.region().is_none() {
            builder = builder.region(Region::new(DEFAULT_REGION));
        }
        let bulk_timeouts = TimeoutConfig::builder()
            .connect_timeout(config.connect_timeout)
            .build();
        let mut small_timeouts = TimeoutConfig::builder().connect_timeout(config.connect_timeout);
        if let Some(timeout) = config.operation_timeout {
            small_timeouts = small_timeouts.operation_attempt_timeout(timeout);
        }
        let client = Client::from_conf(
            builder
                .clone()
                .timeout_config(small_timeouts.build())
                .build(),
        );
        let bulk = Client::from_conf(builder.timeout_config(bulk_timeouts).build());
        Ok(Self {
            bucket: config.bucket,
            unsigned_payload: transport_protects_payload(config.endpoint.as_deref()),
            endpoint: config.endpoint,
            client,
            bulk,
            sse: config.sse,
            bandwidth: match config.bandwidth_limit {
                Some(rate) => Some(Arc::new(crate::Bandwidth::new(rate).map_err(|why| {
                    Error::new(ErrorKind::InvalidRequest, format!("BWLIMIT {rate}: {why}"))
                })?)),
                None => None,
            },
        })
    }

    /// The underlying SDK client (for operations this crate does not wrap).
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `HeadObject`, in checksum mode for [`Op::HeadChecksum`], of one version for
    /// [`Op::HeadVersion`].
    async fn head_object(&self, op: Op, key: &str, version_id: Option<&str>) -> Result<ObjectInfo> {
        let checksum_mode = (op == Op::HeadChecksum).then_some(ChecksumMode::Enabled);
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .set_checksum_mode(checksum_mode)
            .send()
            .await
            .map_err(|err| map_sdk_error(err, &self.ctx(op, Some(key)).with_version(version_id)))?;
        Ok(ObjectInfo {
            key: key.to_owned(),
            size: to_u64(out.content_length()),
            etag: out.e_tag().map(str::to_owned),
            metadata: out
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            storage_class: out.storage_class().map(|c| c.as_str().to_owned()),
            checksum_crc32c: out.checksum_crc32_c().map(str::to_owned),
            last_modified: out.last_modified().map(aws_smithy_types::DateTime::secs),
            retain_until: out
                .object_lock_retain_until_date()
                .map(aws_smithy_types::DateTime::secs),
            legal_hold: out.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On),
            retention_mode: out
                .object_lock_mode()
                .and_then(|m| RetentionMode::parse(m.as_str())),
            version_id: out.version_id().map(str::to_owned),
        })
    }

    /// A part body under `BWLIMIT`: paced frame by frame where the payload goes unsigned (SigV4
    /// signs a streaming body as `UNSIGNED-PAYLOAD`); where it must be signed, the whole part
    /// waits for its slot and then goes at line speed (the limit holds on average).
    async fn paced(&self, body: Bytes) -> ByteStream {
        match &self.bandwidth {
            Some(limit) if self.unsigned_payload => {
                let limit = Arc::clone(limit);
                ByteStream::new(SdkBody::retryable(move || {
                    SdkBody::from_body_1_x(crate::bandwidth::ThrottledBody::new(
                        body.clone(),
                        Arc::clone(&limit),
                    ))
                }))
            }
            Some(limit) => {
                limit.take(body.len() as u64).await;
                ByteStream::from(body)
            }
            None => ByteStream::from(body),
        }
    }

    /// A ranged `GetObject` of the current object (pinned to `if_match`) or of one version;
    /// see [`ObjectStore::read_range`].
    async fn read_range_of(
        &self,
        key: &str,
        version_id: Option<&str>,
        range: Range<u64>,
        if_match: Option<&str>,
        pieces: &mut Vec<Bytes>,
    ) -> Result<u64> {
        if range.start >= range.end {
            return Ok(0);
        }
        let op = if version_id.is_some() {
            Op::GetRangeVersion
        } else {
            Op::GetRange
        };
        let ctx = self.ctx(op, Some(key)).with_version(version_id);
        let url = object_url(&self.bucket, key);
        let out = self
            .bulk
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .set_if_match(if_match.map(str::to_owned))
            .send()
            .await
            .map_err(|err| map_sdk_error(err, &ctx))?;
        if !range_start_matches(out.content_range(), range.start) {
            return Err(Error::new(
                ErrorKind::Other,
                format!(
                    "{ctx}: server ignored the range {}..{} (Content-Range {:?})",
                    range.start,
                    range.end,
                    out.content_range()
                ),
            ));
        }
        let wanted = range.end - range.start;
        let mut got: u64 = 0;
        let mut body = out.body;
        while got < wanted {
            match body.next().await {
                Some(Ok(mut chunk)) => {
                    let room = usize::try_from(wanted - got).unwrap_or(usize::MAX);
                    chunk.truncate(room);
                    got += chunk.len() as u64;
                    if let Some(limit) = &self.bandwidth {
                        // Not reading on holds the server back (TCP flow control).
                        limit.take(chunk.len() as u64).await;
                    }
                    if !chunk.is_empty() {
                        pieces.push(chunk);
                    }
                }
                Some(Err(err)) if got == 0 => {
                    return Err(Error::new(
                        ErrorKind::Transient,
                        format!("{ctx}: reading the body failed"),
                    )
                    .with_source(err));
                }
                Some(Err(err)) => {
                    // Hand back what arrived; the caller resumes from there.
                    tracing::debug!(%url, got, wanted, error = %err, "body cut short");
                    break;
                }
                None => break,
            }
        }
        Ok(got)
    }

    /// Turns the `403 AccessDenied` S3 answers for a delete or retention change that Object
    /// Lock forbids into [`ErrorKind::Locked`], when the version's own retention explains it:
    /// S3 (AWS and SeaweedFS alike) uses the same code for a missing permission. `refused`
    /// says whether the version's current state forbids the request; an unreadable version
    /// leaves the error as it was.
    async fn explain_denial(
        &self,
        err: Error,
        key: &str,
        version_id: &str,
        refused: impl FnOnce(&ObjectInfo) -> bool,
    ) -> Error {
        if err.kind() != ErrorKind::AccessDenied {
            return err;
        }
        match self
            .head_object(Op::HeadVersion, key, Some(version_id))
            .await
        {
            Ok(info) if refused(&info) => {
                let mut why = Vec::new();
                if let (Some(mode), Some(until)) = (info.retention_mode, info.retain_until) {
                    why.push(format!(
                        "{mode} retention until {}",
                        DateTime::from_secs(until)
                    ));
                }
                if info.legal_hold {
                    why.push("a legal hold".to_owned());
                }
                // Not the credentials, whatever S3's code says: the denial's hint does not apply.
                let request = err.message().split(": access denied").next().unwrap_or("");
                let message = format!(
                    "{request}: AccessDenied: refused by Object Lock ({})",
                    why.join(" and ")
                );
                Error::new(ErrorKind::Locked, message)
            }
            _ => err,
        }
    }

    fn ctx<'a>(&'a self, op: Op, key: Option<&'a str>) -> Ctx<'a> {
        Ctx {
            op,
            bucket: &self.bucket,
            key,
            upload_id: None,
            part: None,
            version_id: None,
            endpoint: self.endpoint.as_deref(),
        }
    }
}

/// What a request was about, for error messages.
struct Ctx<'a> {
    op: Op,
    bucket: &'a str,
    key: Option<&'a str>,
    upload_id: Option<&'a UploadId>,
    part: Option<PartNumber>,
    version_id: Option<&'a str>,
    endpoint: Option<&'a str>,
}

impl<'a> Ctx<'a> {
    fn with_version(self, version_id: Option<&'a str>) -> Self {
        Self { version_id, ..self }
    }

    fn with_upload(self, upload_id: &'a UploadId) -> Self {
        Self {
            upload_id: Some(upload_id),
            ..self
        }
    }

    /// Bucket-level operations report a 404 as a missing bucket.
    fn is_bucket_level(&self) -> bool {
        matches!(
            self.op,
            Op::CheckBucket
                | Op::List
                | Op::ListMultipartUploads
                | Op::ListVersions
                | Op::ObjectLockConfig
        )
    }
}

impl fmt::Display for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key {
            Some(key) => write!(f, "{} {}", self.op, object_url(self.bucket, key))?,
            None => write!(f, "{} bucket {}", self.op, self.bucket)?,
        }
        if let Some(version_id) = self.version_id {
            write!(f, " version {version_id}")?;
        }
        match (self.upload_id, self.part) {
            (Some(id), Some(part)) => write!(f, " (upload id {id}, part {part})"),
            (Some(id), None) => write!(f, " (upload id {id})"),
            (None, Some(part)) => write!(f, " (part {part})"),
            (None, None) => Ok(()),
        }
    }
}

/// Maps an error code and HTTP status to a kind. Codes win over statuses because S3 sends
/// some errors (`InternalError`, `SlowDown`) inside HTTP 200 responses.
pub(crate) fn classify(code: Option<&str>, status: u16, bucket_level: bool) -> ErrorKind {
    let not_found = if bucket_level {
        ErrorKind::NoSuchBucket
    } else {
        ErrorKind::NotFound
    };
    match code {
        Some("NoSuchBucket") => return ErrorKind::NoSuchBucket,
        Some("NoSuchKey") => return ErrorKind::NotFound,
        Some("NotFound") => return not_found,
        Some("NoSuchUpload") => return ErrorKind::NoSuchUpload,
        Some("PreconditionFailed") => return ErrorKind::AlreadyExists,
        Some("InvalidObjectState") => return ErrorKind::Archived,
        Some(
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "Forbidden"
            | "AllAccessDisabled"
            | "AccountProblem"
            | "InvalidToken"
            | "ExpiredToken",
        ) => return ErrorKind::AccessDenied,
        Some(
            "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "TooManyRequests"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "TooManyRequestsException",
        ) => return ErrorKind::Throttled,
        Some(
            "InternalError"
            | "ServiceUnavailable"
            | "RequestTimeout"
            | "RequestTimeTooSkewed"
            | "OperationAborted"
            // A concurrent conditional write is in progress: AWS says to retry.
            | "ConditionalRequestConflict",
        ) => return ErrorKind::Transient,
        // The body changed between the SDK's checksum and the server (the checksum is computed
        // from our buffer), or arrived short: sending the same buffer again can succeed.
        Some("BadDigest" | "XAmzContentSHA256Mismatch" | "IncompleteBody") => {
            return ErrorKind::Transient;
        }
        _ => {}
    }
    match status {
        404 => not_found,
        412 => ErrorKind::AlreadyExists,
        401 | 403 => ErrorKind::AccessDenied,
        429 => ErrorKind::Throttled,
        408 | 500..=599 => ErrorKind::Transient,
        400..=499 => ErrorKind::InvalidRequest,
        _ => ErrorKind::Other,
    }
}

/// Why no connection could be made at all, in a few words, when the error chain shows that.
fn connect_failure(err: &(dyn StdError + 'static)) -> Option<&'static str> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return Some("connection refused"),
                io::ErrorKind::AddrNotAvailable => return Some("address not available"),
                io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                    return Some("host unreachable");
                }
                _ => {}
            }
        }
        // hyper-util and the SDK's DNS resolver do not expose these as types we can name.
        let text = err.to_string();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return Some("DNS lookup failed");
        }
        if text.contains("Connection refused") {
            return Some("connection refused");
        }
        if text.contains("client error (Connect)") {
            current = err.source();
            if current.is_none() {
                return Some("cannot connect");
            }
            continue;
        }
        current = err.source();
    }
    None
}

/// Whether the chain shows that the SDK found no credentials at all (no `S3_KEY_ID`, no
/// `AWS_*` variables, no profile, no instance role): the request was never sent.
fn no_credentials(err: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.to_string().contains("loading credentials") {
            return true;
        }
        current = err.source();
    }
    false
}

/// Converts an SDK error into ours, naming the request from `ctx`.
fn map_sdk_error<E>(err: SdkError<E, HttpResponse>, ctx: &Ctx<'_>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let (kind, detail) = match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code();
            let kind = classify(code, status, ctx.is_bucket_level());
            let mut detail = String::new();
            if let Some(code) = code {
                detail.push_str(code);
            } else {
                detail.push_str(kind.as_str());
            }
            if let Some(message) = service.err().message().filter(|m| !m.is_empty()) {
                detail.push_str(": ");
                detail.push_str(message);
            }
            (kind, format!("{detail}, HTTP {status}"))
        }
        SdkError::TimeoutError(_) => (ErrorKind::Transient, "request timed out".to_owned()),
        SdkError::DispatchFailure(failure) => {
            if let Some(cause) = connect_failure(&err) {
                // The message says all that helps (endpoint, cause, fix); the SDK's chain of
                // five wrappers would only push the fix off the line, so it goes to the debug log.
                tracing::debug!(error = ?err, "{ctx}: cannot connect");
                let endpoint = ctx.endpoint.unwrap_or("(AWS's default)");
                return Error::unreachable(ctx, endpoint, cause);
            } else if no_credentials(&err) {
                tracing::debug!(error = ?err, "{ctx}: no credentials");
                return Error::new(
                    ErrorKind::AccessDenied,
                    format!(
                        "{ctx}: no S3 credentials found: set S3_KEY_ID and S3_SECRET (or \
                         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, an instance role)"
                    ),
                );
            } else if failure.is_timeout() {
                (ErrorKind::Transient, "request timed out".to_owned())
            } else if failure.is_user() {
                (ErrorKind::Other, "request could not be sent".to_owned())
            } else {
                (ErrorKind::Transient, "connection failed".to_owned())
            }
        }
        SdkError::ResponseError(response) => (
            ErrorKind::Transient,
            format!(
                "response could not be read, HTTP {}",
                response.raw().status().as_u16()
            ),
        ),
        SdkError::ConstructionFailure(_) => {
            (ErrorKind::Other, "request could not be built".to_owned())
        }
        _ => (ErrorKind::Other, "unexpected SDK error".to_owned()),
    };
    let message = match kind {
        // S3's code and message are in `detail`; the SDK's wrappers add nothing to them.
        ErrorKind::NoSuchBucket => {
            return Error::no_such_bucket(ctx, ctx.bucket, ctx.endpoint, &detail);
        }
        ErrorKind::AccessDenied => return Error::access_denied(ctx, &detail),
        ErrorKind::Archived => format!(
            "{ctx}: the object is in an archive storage class and must be restored from it first \
             ({detail}); e.g. `aws s3api restore-object --bucket {} --key {} --restore-request \
             Days=7`, then run the command again once the restore has finished (hours; Bulk is \
             cheaper, Expedited faster)",
            ctx.bucket,
            ctx.key.unwrap_or("<key>")
        ),
        _ => format!("{ctx}: {detail}"),
    };
    Error::new(kind, message).with_source(err)
}

fn to_u64(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

fn metadata_of(options: &PutOptions) -> Option<std::collections::HashMap<String, String>> {
    (!options.metadata.is_empty()).then(|| {
        options
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// Checks a `Content-Range: bytes a-b/total` header against the requested start.
fn range_start_matches(content_range: Option<&str>, start: u64) -> bool {
    match content_range {
        Some(value) => {
            value
                .trim()
                .strip_prefix("bytes ")
                .and_then(|rest| rest.split('-').next())
                .and_then(|first| first.trim().parse::<u64>().ok())
                == Some(start)
        }
        // Without the header only a request from byte 0 can be trusted.
        None => start == 0,
    }
}

#[async_trait::async_trait]
impl ObjectStore for AwsStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn check_bucket(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|err| map_sdk_error(err, &self.ctx(Op::CheckBucket, None)))?;
        Ok(())
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo> {
        self.head_object(Op::Head, key, None).await
    }

    /// `HeadObject` with `x-amz-checksum-mode: ENABLED`.
    async fn head_checksum(&self, key: &str) -> Result<ObjectInfo> {
        self.head_object(Op::HeadChecksum, key, None).await
    }

    /// `ListObjectsV2` through every page. S3 already returns keys in order; sorting again
    /// makes the contract hold for servers that do not.
    /// `ListObjectsV2`, page by page. Our own loop rather than the SDK's paginator, which
    /// silently *stops* when a continuation token repeats: a listing cut short would look
    /// complete. A token that repeats (a server bug or a proxy replaying a page), or a truncated
    /// page without a token, is an error naming the prefix instead, never an endless loop.
    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        let ctx = self.ctx(Op::List, None);
        let mut entries = Vec::new();
        let mut pages = Pages::default();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|err| map_sdk_error(err, &ctx))?;
            entries.extend(page.contents().iter().filter_map(|object| {
                Some(ListEntry {
                    key: object.key()?.to_owned(),
                    size: to_u64(object.size()),
                    last_modified: object.last_modified().map(aws_smithy_types::DateTime::secs),
                    etag: object.e_tag().map(str::to_owned),
                })
            }));
            if page.is_truncated() != Some(true) {
                break;
            }
            let next = page.next_continuation_token().unwrap_or_default();
            pages.advance(&ctx, prefix, "continuation token", next)?;
            token = Some(next.to_owned());
        }
        entries.sort();
        entries.dedup();
        Ok(entries)
    }

    /// One ranged `GetObject`. The `Content-Range` of the answer is checked, because a server
    /// that ignores `Range` would otherwise hand back the object's first bytes as if they were
    /// the requested ones. A body that breaks off after some bytes is returned short (the
    /// [`Downloader`](crate::Downloader) resumes); a body that breaks before the first byte is
    /// [`ErrorKind::Transient`].
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let mut pieces = Vec::new();
        let len = self.read_range(key, range, None, &mut pieces).await?;
        if pieces.len() == 1 {
            return Ok(pieces.swap_remove(0));
        }
        let mut joined = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        for piece in pieces {
            joined.extend_from_slice(&piece);
        }
        Ok(Bytes::from(joined))
    }

    async fn read_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        pieces: &mut Vec<Bytes>,
    ) -> Result<u64> {
        self.read_range_of(key, None, range, if_match, pieces).await
    }

    /// With [`PutOptions::object_lock`], sends the retention headers and our CRC32C of the body
    /// (`x-amz-checksum-crc32c`): S3 requires an integrity header on every write that sets a
    /// retention ("Content-MD5 or x-amz-checksum-* is required"), and with it set the SDK
    /// adds no checksum of its own.
    async fn put(&self, key: &str, body: Bytes, options: &PutOptions) -> Result<String> {
        options.precondition()?;
        let checksum = options
            .object_lock
            .is_some()
            .then(|| Crc32c::of(&body).to_base64());
        if let Some(limit) = &self.bandwidth {
            // Small objects (seals, locks, short streams) wait for their slot whole.
            limit.take(body.len() as u64).await;
        }
        let out = self
            .bulk
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .set_metadata(metadata_of(options))
            .set_storage_class(options.storage_class.as_deref().map(StorageClass::from))
            .set_acl(options.acl.as_deref().map(ObjectCannedAcl::from))
            .set_server_side_encryption(self.sse.as_ref().map(Sse::header))
            .set_ssekms_key_id(self.sse.as_ref().and_then(Sse::key_id))
            .set_if_none_match(options.if_none_match.then(|| "*".to_owned()))
            .set_if_match(options.if_match.clone())
            .set_object_lock_mode(options.object_lock.map(|r| lock_mode(r.mode)))
            .set_object_lock_retain_until_date(
                options
                    .object_lock
                    .map(|r| DateTime::from_secs(r.retain_until)),
            )
            .set_checksum_crc32_c(checksum)
            .send()
            .await
            .map_err(|err| map_sdk_error(err, &self.ctx(Op::Put, Some(key))))?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| map_sdk_error(err, &self.ctx(Op::Delete, Some(key))))?;
        Ok(())
    }

    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .if_match(etag)
            .send()
            .await
            .map_err(|err| map_sdk_error(err, &self.ctx(Op::Delete, Some(key))))?;
        Ok(())
    }

    /// Declares CRC32C as the upload's checksum algorithm (composite type, AWS's default for
    /// CRC32C): AWS rejects parts that carry a checksum the upload was not created with
    /// ("Checksum Type mismatch").
    async fn create_multipart(&self, key: &str, options: &PutOptions) -> Result<UploadId> {
        let ctx = self.ctx(Op::CreateMultipart, Some(key));
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(metadata_of(options))
            .set_storage_class(options.storage_class.as_deref().map(StorageClass::from))
            .set_acl(options.acl.as_deref().map(ObjectCannedAcl::from))
            .set_server_side_encryption(self.sse.as_ref().map(Sse::header))
            .set_ssekms_key_id(self.sse.as_ref().and_then(Sse::key_id))
            .set_object_lock_mode(options.object_lock.map(|r| lock_mode(r.mode)))
            .set_object_lock_retain_until_date(
                options
                    .object_lock
                    .map(|r| DateTime::from_secs(r.retain_until)),
            )
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .send()
            .await
            .map_err(|err| map_sdk_error(err, &ctx))?;
        out.upload_id().map(UploadId::new).ok_or_else(|| {
            Error::new(
                ErrorKind::Other,
                format!("{ctx}: response has no upload id"),
            )
        })
    }

    /// Sends `checksum` as `x-amz-checksum-crc32c` with an unsigned payload; see the type's
    /// documentation for why nothing else hashes the body. The part's checksum in the result is
    /// the server's echo, or ours when the server sends none.
    async fn put_part(
        &self,
        key: &str,
        upload_id: &UploadId,
        part: PartNumber,
        body: Bytes,
        checksum: Crc32c,
    ) -> Result<CompletedPart> {
        let mut ctx = self.ctx(Op::PutPart, Some(key)).with_upload(upload_id);
        ctx.part = Some(part);
        let sent = checksum.to_base64();
        let request = self
            .bulk
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id.as_str())
            .part_number(i32::from(part.get()))
            .body(self.paced(body).await)
            .checksum_crc32_c(sent.clone())
            .customize();
        let request = if self.unsigned_payload {
            request.disable_payload_signing()
        } else {
            request
        };
        let out = request
            .send()
            .await
            .map_err(|err| map_sdk_error(err, &ctx))?;
        let etag = out
            .e_tag()
            .ok_or_else(|| Error::new(ErrorKind::Other, format!("{ctx}: response has no ETag")))?;
        Ok(CompletedPart {
            part_number: part,
            etag: etag.to_owned(),
            checksum_crc32c: Some(out.checksum_crc32_c().map_or(sent, str::to_owned)),
        })
    }

    /// Echoes each part's CRC32C, which S3 requires for uploads created with a checksum
    /// algorithm, and returns the composite checksum the server reports. A `200 OK` whose body
    /// is an error document (S3 can fail a completion after it started answering) is turned
    /// into an error by the SDK and mapped like any other.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
        precondition: &Precondition,
    ) -> Result<CompletedUpload> {
        let ctx = self
            .ctx(Op::CompleteMultipart, Some(key))
            .with_upload(upload_id);
        let parts = parts
            .into_iter()
            .map(|part| {
                SdkCompletedPart::builder()
                    .part_number(i32::from(part.part_number.get()))
                    .e_tag(part.etag)
                    .set_checksum_crc32_c(part.checksum_crc32c)
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id.as_str())
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .set_if_none_match((*precondition == Precondition::KeyFree).then(|| "*".to_owned()))
            .set_if_match(match precondition {
                Precondition::Unchanged(etag) => Some(etag.clone()),
                Precondition::None | Precondition::KeyFree => None,
            })
            .send()
            .await
            .map_err(|err| map_sdk_error(err, &ctx))?;
        Ok(CompletedUpload {
            etag: out.e_tag().unwrap_or_default().to_owned(),
            checksum_crc32c: out.checksum_crc32_c().map(str::to_owned),
        })
    }

    async fn abort_multipart(&self, key: &str, upload_id: &UploadId) -> Result<()> {
        let ctx = self
            .ctx(Op::AbortMultipart, Some(key))
            .with_upload(upload_id);
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id.as_str())
            .send()
            .await
            .map_err(|err| map_sdk_error(err, &ctx))?;
        Ok(())
    }

    /// `ListMultipartUploads` has no SDK paginator; pages are followed by key and upload-id
    /// markers until the response is no longer truncated. A marker pair that repeats, or a
    /// truncated page without a key marker, is an error naming the prefix, never an endless loop.
    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUploadInfo>> {
        let ctx = self.ctx(Op::ListMultipartUploads, None);
        let mut uploads = Vec::new();
        let mut pages = Pages::default();
        let mut key_marker: Option<String> = None;
        let mut upload_id_marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_id_marker.take())
                .send()
                .await
                .map_err(|err| map_sdk_error(err, &ctx))?;
            uploads.extend(out.uploads().iter().filter_map(|upload| {
                Some(MultipartUploadInfo {
                    key: upload.key()?.to_owned(),
                    upload_id: UploadId::new(upload.upload_id()?),
                    initiated: upload
                        .initiated()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                })
            }));
            if out.is_truncated() != Some(true) {
                break;
            }
            let next_key = out.next_key_marker().unwrap_or_default();
            let next_id = out.next_upload_id_marker().unwrap_or_default();
            let marker = if next_key.is_empty() {
                String::new()
            } else {
                format!("{next_key} / {next_id}")
            };
            pages.advance(&ctx, prefix, "key and upload-id marker", &marker)?;
            key_marker = Some(next_key.to_owned());
            upload_id_marker = Some(next_id.to_owned()).filter(|id| !id.is_empty());
        }
        Ok(uploads)
    }

    async fn list_parts(&self, key: &str, upload_id: &UploadId) -> Result<Vec<ListedPart>> {
        let ctx = self.ctx(Op::ListParts, Some(key));
        let mut parts = Vec::new();
        let mut pages = Pages::default();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id.as_str())
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|err| map_sdk_error(err, &ctx))?;
            for part in out.parts() {
                let number = part.part_number().and_then(|n| u16::try_from(n).ok());
                let (Some(part_number), Some(etag)) =
                    (number.and_then(PartNumber::new), part.e_tag())
                else {
                    return Err(Error::new(
                        ErrorKind::Other,
                        format!("{ctx}: a listed part without a valid number or ETag"),
                    ));
                };
                let size = part.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
                parts.push(ListedPart {
                    part_number,
                    size,
                    etag: etag.to_owned(),
                });
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            let next = out.next_part_number_marker().unwrap_or_default().to_owned();
            pages.advance(&ctx, key, "part-number marker", &next)?;
            marker = Some(next);
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    /// `GetBucketVersioning`, then `GetObjectLockConfiguration`, whose
    /// `ObjectLockConfigurationNotFoundError` (404) means "no Object Lock", not a missing bucket.
    async fn object_lock_config(&self) -> Result<BucketLockConfig> {
        let ctx = self.ctx(Op::ObjectLockConfig, None);
        let versioning = self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|err| map_sdk_error(err, &ctx))?;
        let versioning = match versioning.status() {
            Some(BucketVersioningStatus::Enabled) => Versioning::Enabled,
            Some(BucketVersioningStatus::Suspended) => Versioning::Suspended,
            _ => Versioning::Unversioned,
        };
        let lock = match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => out.object_lock_configuration,
            Err(err) if err.code() == Some("ObjectLockConfigurationNotFoundError") => None,
            Err(err) => return Err(map_sdk_error(err, &ctx)),
        };
        let object_lock = lock
            .as_ref()
            .is_some_and(|c| c.object_lock_enabled() == Some(&ObjectLockEnabled::Enabled));
        let default_retention = lock
            .as_ref()
            .and_then(|c| c.rule()?.default_retention())
            .and_then(|d| {
                let mode = RetentionMode::parse(d.mode()?.as_str())?;
                let as_u32 = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok());
                let period = match (as_u32(d.days()), as_u32(d.years())) {
                    (Some(days), _) => RetentionPeriod::Days(days),
                    (None, Some(years)) => RetentionPeriod::Years(years),
                    (None, None) => return None,
                };
                Some((mode, period))
            });
        Ok(BucketLockConfig {
            versioning,
            object_lock,
            default_retention,
        })
    }

    /// `ListObjectVersions`, page by page with our own loop, failing on a marker pair that
    /// repeats (as [`list`](ObjectStore::list)). The SDK hands a page's versions and delete
    /// markers over as two lists, each in the server's order (by key, newest first); they are
    /// merged back by key, the latest entry first, then by time. A data version and a delete
    /// marker of the same key written within the same second keep no known order between
    /// them (S3's times have whole seconds); data versions among themselves keep theirs.
    async fn list_versions(&self, prefix: &str) -> Result<Vec<VersionEntry>> {
        let ctx = self.ctx(Op::ListVersions, None);
        let mut entries = Vec::new();
        let mut pages = Pages::default();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|err| map_sdk_error(err, &ctx))?;
            let versions = out.versions().iter().filter_map(|v| {
                Some(VersionEntry {
                    key: v.key()?.to_owned(),
                    version_id: v.version_id().unwrap_or("null").to_owned(),
                    is_latest: v.is_latest() == Some(true),
                    is_delete_marker: false,
                    size: to_u64(v.size()),
                    last_modified: v.last_modified().map(DateTime::secs),
                    etag: v.e_tag().map(str::to_owned),
                })
            });
            let markers = out.delete_markers().iter().filter_map(|m| {
                Some(VersionEntry {
                    key: m.key()?.to_owned(),
                    version_id: m.version_id().unwrap_or("null").to_owned(),
                    is_latest: m.is_latest() == Some(true),
                    is_delete_marker: true,
                    size: 0,
                    last_modified: m.last_modified().map(DateTime::secs),
                    etag: None,
                })
            });
            entries.extend(merge_versions(versions.collect(), markers.collect()));
            if out.is_truncated() != Some(true) {
                break;
            }
            let next_key = out.next_key_marker().unwrap_or_default();
            let next_version = out.next_version_id_marker().unwrap_or_default();
            let marker = if next_key.is_empty() {
                String::new()
            } else {
                format!("{next_key} / {next_version}")
            };
            pages.advance(&ctx, prefix, "key and version-id marker", &marker)?;
            key_marker = Some(next_key.to_owned());
            version_marker = Some(next_version.to_owned()).filter(|v| !v.is_empty());
        }
        Ok(entries)
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo> {
        self.head_object(Op::HeadVersion, key, Some(version_id))
            .await
    }

    async fn read_range_version(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
        out: &mut Vec<Bytes>,
    ) -> Result<u64> {
        self.read_range_of(key, Some(version_id), range, None, out)
            .await
    }

    /// `DeleteObject` with `versionId`, never with `x-amz-bypass-governance-retention`.
    async fn delete_version(&self, key: &str, version_id: &str) -> Result<()> {
        let ctx = self
            .ctx(Op::DeleteVersion, Some(key))
            .with_version(Some(version_id));
        let result = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let err = map_sdk_error(err, &ctx);
                let now = unix_now();
                Err(self
                    .explain_denial(err, key, version_id, |info| info.is_locked_at(now))
                    .await)
            }
        }
    }

    /// `PutObjectRetention` with `versionId`, never with `x-amz-bypass-governance-retention`.
    /// The operation requires an integrity header, which the SDK computes (the body is a few
    /// hundred bytes of XML).
    async fn put_retention(&self, key: &str, version_id: &str, retention: Retention) -> Result<()> {
        let ctx = self
            .ctx(Op::PutRetention, Some(key))
            .with_version(Some(version_id));
        let mode = match retention.mode {
            RetentionMode::Governance => ObjectLockRetentionMode::Governance,
            RetentionMode::Compliance => ObjectLockRetentionMode::Compliance,
        };
        let result = self
            .client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .retention(
                ObjectLockRetention::builder()
                    .mode(mode)
                    .retain_until_date(DateTime::from_secs(retention.retain_until))
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let err = map_sdk_error(err, &ctx);
                let now = unix_now();
                Err(self
                    .explain_denial(err, key, version_id, |info| {
                        let current = info
                            .retention_mode
                            .zip(info.retain_until)
                            .map(|(mode, retain_until)| Retention { mode, retain_until });
                        current.is_some_and(|current| {
                            current.retain_until > now && !retention.extends(&current)
                        })
                    })
                    .await)
            }
        }
    }
}

/// The markers a paginated listing has followed, to stop on one that does not advance.
#[derive(Debug, Default)]
struct Pages {
    seen: std::collections::HashSet<String>,
}

impl Pages {
    /// Accepts `marker` as the next page's, or fails if it is empty (a truncated page that
    /// says nowhere to continue) or was followed before (the listing would never end).
    fn advance(&mut self, ctx: &Ctx<'_>, prefix: &str, what: &str, marker: &str) -> Result<()> {
        let problem = if marker.is_empty() {
            format!("a truncated page without a {what}")
        } else if !self.seen.insert(marker.to_owned()) {
            format!(
                "the {what} {marker:?} repeated after {} pages",
                self.seen.len() + 1
            )
        } else {
            return Ok(());
        };
        Err(Error::new(
            ErrorKind::Other,
            format!(
                "{ctx}: listing of prefix {prefix:?} does not advance: the server sent {problem}"
            ),
        ))
    }
}

/// Merges a `ListObjectVersions` page's versions and delete markers (each in the server's
/// order) into one list: by key, the latest first, then newest first; a tie keeps the data
/// version first. A two-way merge, so each input's own order is never changed.
fn merge_versions(versions: Vec<VersionEntry>, markers: Vec<VersionEntry>) -> Vec<VersionEntry> {
    let before = |a: &VersionEntry, b: &VersionEntry| {
        (
            a.key.as_str(),
            !a.is_latest,
            std::cmp::Reverse(a.last_modified),
        ) <= (
            b.key.as_str(),
            !b.is_latest,
            std::cmp::Reverse(b.last_modified),
        )
    };
    let mut merged = Vec::with_capacity(versions.len() + markers.len());
    let mut versions = versions.into_iter().peekable();
    let mut markers = markers.into_iter().peekable();
    loop {
        let take_version = match (versions.peek(), markers.peek()) {
            (Some(v), Some(m)) => before(v, m),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_version {
            versions.next()
        } else {
            markers.next()
        };
        merged.extend(next);
    }
    merged
}

fn lock_mode(mode: RetentionMode) -> ObjectLockMode {
    match mode {
        RetentionMode::Governance => ObjectLockMode::Governance,
        RetentionMode::Compliance => ObjectLockMode::Compliance,
    }
}

/// The client's clock in Unix seconds, to judge whether a retention still holds.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether nobody can alter a request body between us and `endpoint`: HTTPS (including AWS's
/// default endpoints, `None`), or plain HTTP to a loopback address.
fn transport_protects_payload(endpoint: Option<&str>) -> bool {
    let Some(endpoint) = endpoint else {
        return true;
    };
    if endpoint.starts_with("https://") {
        return true;
    }
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {

    #[test]
    fn payloads_go_unsigned_only_where_nobody_is_on_the_path() {
        for protected in [
            None,
            Some("https://s3.wasabisys.com"),
            Some("http://127.0.0.1:8333"),
            Some("http://127.8.9.10"),
            Some("http://localhost:9000/"),
            Some("http://[::1]:9000"),
        ] {
            assert!(transport_protects_payload(protected), "{protected:?}");
        }
        for exposed in [
            Some("http://10.0.0.5:9000"),
            Some("http://minio.lan:9000"),
            Some("http://127.0.0.1.evil.example"),
            Some("http://localhost.evil.example:80"),
            Some("http://[2001:db8::1]:9000"),
            Some("ftp://127.0.0.1"),
        ] {
            assert!(!transport_protects_payload(exposed), "{exposed:?}");
        }
    }
    use super::*;

    #[test]
    fn connection_settings_follow_the_originals_keys_and_name_the_one_at_fault() {
        let config = |s: &S3Settings<'_>| S3Config::from_settings("b".into(), None, s);
        let plain = config(&S3Settings::default()).unwrap();
        assert_eq!(
            (plain.endpoint, plain.region, plain.force_path_style),
            (None, None, false)
        );
        let host = config(&S3Settings {
            host: Some("s3.wasabisys.com"),
            aws_endpoint_url: Some("http://ignored"),
            ..S3Settings::default()
        })
        .unwrap();
        assert_eq!(host.endpoint.as_deref(), Some("https://s3.wasabisys.com"));
        assert_eq!(
            host.region.as_deref(),
            Some("us-east-1"),
            "a signing scope only"
        );
        assert!(host.force_path_style);
        let explicit = config(&S3Settings {
            endpoint: Some("http://127.0.0.1:9000"),
            host: Some("other"),
            regions: [None, Some(""), Some("eu-west-1")],
            path_style: Some("off"),
            timeout: Some("5"),
            ..S3Settings::default()
        })
        .unwrap();
        assert_eq!(explicit.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(explicit.region.as_deref(), Some("eu-west-1"));
        assert!(!explicit.force_path_style);
        assert_eq!(explicit.operation_timeout, Some(Duration::from_secs(5)));
        for (bad, key) in [
            (
                S3Settings {
                    path_style: Some("maybe"),
                    ..S3Settings::default()
                },
                "S3_PATH_STYLE",
            ),
            (
                S3Settings {
                    timeout: Some("0"),
                    ..S3Settings::default()
                },
                "S3_TIMEOUT",
            ),
            (
                S3Settings {
                    timeout: Some("90000"),
                    ..S3Settings::default()
                },
                "S3_TIMEOUT",
            ),
            (
                S3Settings {
                    timeout: Some("1m"),
                    ..S3Settings::default()
                },
                "S3_TIMEOUT",
            ),
            (
                S3Settings {
                    sse: [None, Some("k")],
                    ..S3Settings::default()
                },
                "SSE_KMS_KEY_ID",
            ),
        ] {
            assert_eq!(config(&bad).unwrap_err().0, key);
        }
    }

    #[test]
    fn classify_codes_and_statuses() {
        let cases: &[(Option<&str>, u16, bool, ErrorKind)] = &[
            (Some("NoSuchKey"), 404, false, ErrorKind::NotFound),
            (None, 404, false, ErrorKind::NotFound),
            (Some("NotFound"), 404, true, ErrorKind::NoSuchBucket),
            (None, 404, true, ErrorKind::NoSuchBucket),
            (Some("NoSuchBucket"), 404, false, ErrorKind::NoSuchBucket),
            (Some("NoSuchUpload"), 404, false, ErrorKind::NoSuchUpload),
            (Some("InvalidObjectState"), 403, false, ErrorKind::Archived),
            (Some("AccessDenied"), 403, false, ErrorKind::AccessDenied),
            (
                Some("InvalidAccessKeyId"),
                403,
                false,
                ErrorKind::AccessDenied,
            ),
            (
                Some("SignatureDoesNotMatch"),
                403,
                false,
                ErrorKind::AccessDenied,
            ),
            (None, 403, true, ErrorKind::AccessDenied),
            (Some("SlowDown"), 503, false, ErrorKind::Throttled),
            (None, 429, false, ErrorKind::Throttled),
            (Some("ServiceUnavailable"), 503, false, ErrorKind::Transient),
            (None, 503, false, ErrorKind::Transient),
            (None, 500, false, ErrorKind::Transient),
            (Some("InternalError"), 200, false, ErrorKind::Transient),
            (Some("SlowDown"), 200, false, ErrorKind::Throttled),
            (Some("RequestTimeout"), 400, false, ErrorKind::Transient),
            (None, 408, false, ErrorKind::Transient),
            (
                Some("EntityTooSmall"),
                400,
                false,
                ErrorKind::InvalidRequest,
            ),
            (Some("InvalidPart"), 400, false, ErrorKind::InvalidRequest),
            (Some("InvalidRange"), 416, false, ErrorKind::InvalidRequest),
            (Some("BadDigest"), 400, false, ErrorKind::Transient),
            (Some("IncompleteBody"), 400, false, ErrorKind::Transient),
            (None, 301, true, ErrorKind::Other),
        ];
        for &(code, status, bucket_level, want) in cases {
            assert_eq!(
                classify(code, status, bucket_level),
                want,
                "{code:?} {status} bucket_level={bucket_level}"
            );
        }
    }

    #[test]
    fn debug_redacts_secret() {
        let config = S3Config {
            credentials: Some(StaticCredentials {
                access_key_id: "AKIAEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG".into(),
            }),
            ..S3Config::new("bucket")
        };
        let text = format!("{config:?}");
        assert!(text.contains("AKIAEXAMPLE"), "{text}");
        assert!(!text.contains("wJalrXUtnFEMI"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    #[test]
    fn ctx_display() {
        let id = UploadId::new("u1");
        let ctx = Ctx {
            op: Op::PutPart,
            bucket: "b",
            key: Some("pool/fs@snap"),
            upload_id: Some(&id),
            part: PartNumber::new(3),
            version_id: None,
            endpoint: None,
        };
        assert_eq!(
            ctx.to_string(),
            "put_part s3://b/pool/fs@snap (upload id u1, part 3)"
        );
        let ctx = Ctx {
            op: Op::CheckBucket,
            bucket: "b",
            key: None,
            upload_id: None,
            part: None,
            version_id: None,
            endpoint: None,
        };
        assert_eq!(ctx.to_string(), "check_bucket bucket b");
    }

    #[test]
    fn content_range_check() {
        assert!(range_start_matches(Some("bytes 5-9/100"), 5));
        assert!(!range_start_matches(Some("bytes 0-99/100"), 5));
        assert!(range_start_matches(None, 0));
        assert!(!range_start_matches(None, 5));
        assert!(!range_start_matches(Some("garbage"), 5));
    }

    #[tokio::test]
    async fn connect_rejects_bad_config() {
        let err = AwsStore::connect(S3Config::new("")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        let err = AwsStore::connect(S3Config {
            endpoint: Some("127.0.0.1:9000".into()),
            ..S3Config::new("b")
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.to_string().contains("127.0.0.1:9000"), "{err}");
    }
}
