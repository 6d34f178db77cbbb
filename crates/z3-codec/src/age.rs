//! age encryption (<https://age-encryption.org/v1>), in-process.
//!
//! Encryption writes the age v1 format itself so that the payload (ChaCha20-Poly1305 in 64 KiB
//! chunks, the STREAM construction) can be sealed by several threads at once: the `age` crate's
//! own writer seals one chunk at a time and allocates for each. The file key is wrapped for each
//! recipient by the `age` crate (X25519, or scrypt for a passphrase), and the header is the one
//! the specification gives, with its HMAC. Tests decrypt the output with the `age` crate and the
//! `age` program.
//!
//! Decryption is the `age` crate's own [`age::Decryptor`], on a blocking thread: it parses and
//! authenticates the header, finds the identity that unwraps the file key and checks every chunk,
//! including that the stream ends with the chunk marked last, so a truncated object fails.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use age::secrecy::{ExposeSecret, SecretString};
use age_core::format::{FileKey, Stanza};
use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use bytes::{BufMut, Bytes, BytesMut};
use hmac::Mac as _;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeroize::Zeroize as _;

use crate::error::{Error, ErrorKind};
use crate::inproc::{InputTap, classify};
use crate::{BoxedReader, Codec};

/// Plaintext bytes per STREAM chunk (age v1).
const CHUNK: usize = 64 * 1024;
/// Chunks read and sealed together; the threads share a batch.
const BATCH_CHUNKS: usize = 32;
/// Sealed runs in flight between an age task and its reader.
const CHANNEL_DEPTH: usize = 8;
/// Plaintext handed on per message when decrypting.
const DECRYPT_BATCH: u64 = 1 << 20;
/// The first line of every age v1 file.
const VERSION_LINE: &[u8] = b"age-encryption.org/v1\n";

/// The keys new backups are encrypted to: X25519 public keys (`age1…`), or one passphrase.
#[derive(Clone)]
pub struct AgeRecipients {
    keys: Keys,
}

#[derive(Clone)]
enum Keys {
    X25519(Vec<age::x25519::Recipient>),
    Passphrase(Arc<SecretString>),
}

/// Why a secret key is refused as a recipient; the key itself is never shown.
const SECRET_NOT_RECIPIENT: &str = "is an age secret key (AGE-SECRET-KEY-1…), not a public key \
     (age1…); it is not shown. Give the public key instead (`age-keygen -y` prints it) and keep \
     the secret key off this host";

/// Whether `text` is (or starts like) an age secret key, `AGE-SECRET-KEY-1…` in either case.
#[must_use]
pub fn is_age_secret_key(text: &str) -> bool {
    let text = text.trim();
    text.get(..15)
        .is_some_and(|head| head.eq_ignore_ascii_case("AGE-SECRET-KEY-"))
}

impl AgeRecipients {
    /// Parses public keys as the `age -r` option takes them.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidKey`] naming the first value that is not an `age1…` X25519 public key,
    /// or saying that the list is empty.
    pub fn parse<S: AsRef<str>>(keys: &[S]) -> Result<Self, Error> {
        let count = keys.len();
        let parsed = keys
            .iter()
            .enumerate()
            .map(|(n, key)| {
                let key = key.as_ref().trim();
                if is_age_secret_key(key) {
                    return Err(invalid_key(format!(
                        "recipient {} of {count} {SECRET_NOT_RECIPIENT}",
                        n + 1
                    )));
                }
                key.parse::<age::x25519::Recipient>().map_err(|reason| {
                    // Only what looks like a public key is echoed: anything else might be a
                    // mangled secret.
                    let shown = if key.to_ascii_lowercase().starts_with("age1") {
                        format!("{key:?}")
                    } else {
                        format!("recipient {} of {count}", n + 1)
                    };
                    invalid_key(format!(
                        "{shown} is not an age public key (age1…): {reason}"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Err(invalid_key("no age recipients given".to_owned()));
        }
        Ok(Self {
            keys: Keys::X25519(parsed),
        })
    }

    /// Reads a recipients file as `age -R` does: one public key per line; blank lines and lines
    /// starting with `#` are ignored.
    ///
    /// # Errors
    /// [`ErrorKind::KeyFile`] if the file cannot be read, [`ErrorKind::InvalidKey`] naming the file
    /// and line of a bad key, or for a file without keys.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            let fix = "fix the path, or write the public keys into it (`age-keygen -y KEY_FILE`)";
            key_file(path, &err, fix)
        })?;
        let keys: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(n, line)| (n + 1, line.trim()))
            .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
            .collect();
        if keys.is_empty() {
            return Err(invalid_key(format!(
                "{} holds no age recipients",
                path.display()
            )));
        }
        let parsed = keys
            .iter()
            .map(|(n, key)| {
                if is_age_secret_key(key) {
                    return Err(invalid_key(format!(
                        "{} line {n} {SECRET_NOT_RECIPIENT}",
                        path.display()
                    )));
                }
                key.parse::<age::x25519::Recipient>().map_err(|reason| {
                    invalid_key(format!(
                        "{} line {n}: not an age public key (age1…): {reason}",
                        path.display()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            keys: Keys::X25519(parsed),
        })
    }

    /// Encrypts to a passphrase (age's scrypt recipient) instead of public keys.
    #[must_use]
    pub fn passphrase(passphrase: SecretString) -> Self {
        Self {
            keys: Keys::Passphrase(Arc::new(passphrase)),
        }
    }

    /// Adds the keys of `other` (both must be public keys: a passphrase stands alone).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidKey`] when either side is a passphrase.
    pub fn merge(self, other: Self) -> Result<Self, Error> {
        match (self.keys, other.keys) {
            (Keys::X25519(mut a), Keys::X25519(b)) => {
                a.extend(b);
                Ok(Self {
                    keys: Keys::X25519(a),
                })
            }
            _ => Err(invalid_key(
                "an age passphrase cannot be combined with public-key recipients".to_owned(),
            )),
        }
    }

    /// The public keys, or `passphrase`.
    #[must_use]
    pub fn describe(&self) -> String {
        match &self.keys {
            Keys::X25519(keys) => keys
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            Keys::Passphrase(_) => "passphrase".to_owned(),
        }
    }

    /// Builds the age header for a fresh random file key; returns it with the payload key.
    fn header(&self) -> Result<(Vec<u8>, LessSafeKey), Error> {
        let file_key = FileKey::try_init_with_mut(|key| getrandom::getrandom(key))
            .map_err(|err| encrypt_error(io::Error::other(err)))?;
        let mut stanzas = Vec::new();
        let mut labels: Option<HashSet<String>> = None;
        let wrap = |recipient: &dyn age::Recipient| {
            recipient
                .wrap_file_key(&file_key)
                .map_err(|err| encrypt_error(io::Error::other(err.to_string())))
        };
        let wrapped: Vec<(Vec<Stanza>, HashSet<String>)> = match &self.keys {
            Keys::X25519(keys) => keys.iter().map(|k| wrap(k)).collect::<Result<_, _>>()?,
            Keys::Passphrase(passphrase) => {
                let recipient = age::scrypt::Recipient::new(passphrase.as_ref().clone());
                vec![wrap(&recipient)?]
            }
        };
        for (mut s, l) in wrapped {
            // The age rule: every recipient's labels must be the same set.
            if labels.get_or_insert_with(|| l.clone()) != &l {
                return Err(encrypt_error(io::Error::other(
                    "these age recipients cannot be combined in one file",
                )));
            }
            stanzas.append(&mut s);
        }
        let mut header = VERSION_LINE.to_vec();
        for stanza in &stanzas {
            write_stanza(&mut header, stanza);
        }
        header.extend_from_slice(b"---");
        let mut mac_key = age_core::primitives::hkdf(&[], b"header", file_key.expose_secret());
        let mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&mac_key);
        mac_key.zeroize();
        let mut mac = mac.map_err(|err| encrypt_error(io::Error::other(err.to_string())))?;
        mac.update(&header);
        header.push(b' ');
        header.extend_from_slice(
            STANDARD_NO_PAD
                .encode(mac.finalize().into_bytes())
                .as_bytes(),
        );
        header.push(b'\n');
        let mut nonce = [0u8; 16];
        getrandom::getrandom(&mut nonce).map_err(|err| encrypt_error(io::Error::other(err)))?;
        header.extend_from_slice(&nonce);
        let mut payload_key =
            age_core::primitives::hkdf(&nonce, b"payload", file_key.expose_secret());
        let aead = UnboundKey::new(&CHACHA20_POLY1305, &payload_key);
        payload_key.zeroize();
        let aead =
            aead.map_err(|_| encrypt_error(io::Error::other("ChaCha20-Poly1305 refused the key")))?;
        Ok((header, LessSafeKey::new(aead)))
    }
}

impl fmt::Debug for AgeRecipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public keys are not secret; a passphrase is never shown.
        write!(f, "AgeRecipients({})", self.describe())
    }
}

impl PartialEq for AgeRecipients {
    fn eq(&self, other: &Self) -> bool {
        match (&self.keys, &other.keys) {
            (Keys::X25519(a), Keys::X25519(b)) => a
                .iter()
                .map(ToString::to_string)
                .eq(b.iter().map(ToString::to_string)),
            (Keys::Passphrase(a), Keys::Passphrase(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for AgeRecipients {}

/// A stanza as the age specification writes it: `-> tag args…`, then the body in base64 without
/// padding, 64 columns a line, the last line shorter than 64 (so possibly empty).
fn write_stanza(out: &mut Vec<u8>, stanza: &Stanza) {
    out.extend_from_slice(b"->");
    for word in std::iter::once(&stanza.tag).chain(&stanza.args) {
        out.push(b' ');
        out.extend_from_slice(word.as_bytes());
    }
    out.push(b'\n');
    let body = STANDARD_NO_PAD.encode(&stanza.body);
    let mut lines = body.as_bytes().chunks(64).peekable();
    while let Some(line) = lines.next() {
        out.extend_from_slice(line);
        out.push(b'\n');
        if lines.peek().is_none() && line.len() < 64 {
            return;
        }
    }
    out.push(b'\n');
}

/// The identities restores decrypt with: identity files (`AGE-SECRET-KEY-1…` lines, as
/// `age-keygen` writes them), or a passphrase.
#[derive(Clone)]
pub struct AgeIdentities {
    identities: Vec<Arc<dyn age::Identity + Send + Sync>>,
    sources: Vec<String>,
}

impl AgeIdentities {
    /// Reads identity files as `age -d -i` does.
    ///
    /// # Errors
    /// [`ErrorKind::KeyFile`] naming a file that cannot be read or holds no usable identity.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self, Error> {
        let mut identities = Vec::new();
        for path in paths {
            let file = age::IdentityFile::from_file(path.to_string_lossy().into_owned())
                .map_err(|err| key_file(path, &err, &make_key_pair(path)))?;
            let mut found = file
                .into_identities()
                .map_err(|err| key_file(path, &io::Error::other(err.to_string()), ""))?;
            if found.is_empty() {
                return Err(key_file(
                    path,
                    &io::Error::other("no age identities (AGE-SECRET-KEY-1…) in it"),
                    "",
                ));
            }
            identities.extend(found.drain(..).map(Arc::from));
        }
        if identities.is_empty() {
            return Err(invalid_key("no age identity files given".to_owned()));
        }
        Ok(Self {
            identities,
            sources: paths.iter().map(|p| p.display().to_string()).collect(),
        })
    }

    /// Decrypts objects encrypted to a passphrase.
    #[must_use]
    pub fn passphrase(passphrase: SecretString) -> Self {
        Self {
            identities: vec![Arc::new(age::scrypt::Identity::new(passphrase))],
            sources: vec!["passphrase".to_owned()],
        }
    }

    /// Both sets of identities: whichever fits an object decrypts it.
    #[must_use]
    pub fn merge(mut self, mut other: Self) -> Self {
        self.identities.append(&mut other.identities);
        self.sources.append(&mut other.sources);
        self
    }

    /// The identity files (or `passphrase`), for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        self.sources.join(", ")
    }
}

impl fmt::Debug for AgeIdentities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgeIdentities({})", self.describe())
    }
}

impl PartialEq for AgeIdentities {
    fn eq(&self, other: &Self) -> bool {
        self.identities.len() == other.identities.len()
            && self
                .identities
                .iter()
                .zip(&other.identities)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

impl Eq for AgeIdentities {}

/// age encryption or decryption as a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgeCodec {
    /// Encrypts to the recipients, sealing with `threads` threads.
    Encrypt {
        /// Who can decrypt.
        recipients: AgeRecipients,
        /// Threads sealing chunks (at least 1).
        threads: usize,
    },
    /// Decrypts with any of the identities.
    Decrypt {
        /// The keys to try.
        identities: AgeIdentities,
    },
}

impl AgeCodec {
    /// Encryption to `recipients` with one thread per CPU.
    #[must_use]
    pub fn encrypt(recipients: AgeRecipients) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self::Encrypt {
            recipients,
            threads,
        }
    }

    /// Decryption with `identities`.
    #[must_use]
    pub fn decrypt(identities: AgeIdentities) -> Self {
        Self::Decrypt { identities }
    }
}

impl Codec for AgeCodec {
    #[allow(clippy::unnecessary_literal_bound)]
    fn name(&self) -> &str {
        "age"
    }

    fn describe(&self) -> String {
        match self {
            Self::Encrypt { recipients, .. } => {
                format!("age -e to {} (in-process)", recipients.describe())
            }
            Self::Decrypt { identities } => {
                format!("age -d with {} (in-process)", identities.describe())
            }
        }
    }

    fn apply(&self, input: BoxedReader) -> Result<BoxedReader, Error> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let reason =
                io::Error::other("no Tokio runtime: codecs must be applied from within one");
            return Err(Error::command(
                ErrorKind::Spawn,
                &self.describe(),
                Some(reason),
            ));
        };
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let codec = self.describe();
        let task = match self.clone() {
            Self::Encrypt {
                recipients,
                threads,
            } => runtime.spawn(encrypt(
                input,
                recipients,
                threads.max(1),
                tx,
                codec.clone(),
            )),
            Self::Decrypt { identities } => {
                let handle = runtime.clone();
                let codec = codec.clone();
                runtime.spawn_blocking(move || decrypt(&handle, input, &identities, &tx, &codec))
            }
        };
        Ok(Box::new(ChannelOutput {
            rx,
            queue: VecDeque::new(),
            finished: false,
            task,
            codec,
        }))
    }
}

/// What a codec task hands its reader.
enum Message {
    Data(Vec<Bytes>),
    End,
    Failed(io::Error),
}

/// Sends `message`; `false` once the reader is gone (the task should stop).
async fn send(tx: &mpsc::Sender<Message>, message: Message) -> bool {
    tx.send(message).await.is_ok()
}

/// Reads up to [`BATCH_CHUNKS`] chunks of plaintext; a short batch means the input ended.
async fn read_batch(input: &mut BoxedReader) -> io::Result<BytesMut> {
    let size = BATCH_CHUNKS * CHUNK;
    let mut buf = BytesMut::with_capacity(size);
    while buf.len() < size {
        let room = size - buf.len();
        match input.read_buf(&mut (&mut buf).limit(room)).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(buf)
}

/// The STREAM nonce: an 11-byte big-endian chunk counter and the last-chunk flag.
fn nonce(counter: u64, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[3..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

/// Seals `plain` in place as consecutive chunks numbered from `counter`, the final one marked
/// last if `last`, and returns the output pieces: each chunk followed by its tag. An empty `plain`
/// with `last` is the one empty chunk of an empty stream.
fn seal(
    aead: &LessSafeKey,
    mut plain: BytesMut,
    counter: u64,
    last: bool,
) -> io::Result<Vec<Bytes>> {
    let chunks = plain.len().div_ceil(CHUNK).max(usize::from(last));
    let mut out = Vec::with_capacity(2 * chunks);
    for i in 0..chunks {
        let mut data = plain.split_to(CHUNK.min(plain.len()));
        let is_last = last && i + 1 == chunks;
        let nonce = Nonce::assume_unique_for_key(nonce(counter + i as u64, is_last));
        let tag = aead
            .seal_in_place_separate_tag(nonce, Aad::empty(), &mut data)
            .map_err(|_| io::Error::other("ChaCha20-Poly1305 refused a chunk"))?;
        out.push(data.freeze());
        out.push(Bytes::copy_from_slice(tag.as_ref()));
    }
    Ok(out)
}

/// The encryption task: the header, then batches whose chunks are sealed by `threads` blocking
/// tasks while the next batch is read. A batch's final chunk is sealed only once the next read
/// says whether it is the last of the stream (age marks the last chunk, so that truncation is
/// detected).
async fn encrypt(
    mut input: BoxedReader,
    recipients: AgeRecipients,
    threads: usize,
    tx: mpsc::Sender<Message>,
    codec: String,
) {
    let failed = |kind, err| Message::Failed(classify(kind, &codec, err));
    // scrypt (a passphrase) takes about a second: not on the async threads.
    let header = tokio::task::spawn_blocking(move || recipients.header()).await;
    let (header, aead) = match header {
        Ok(Ok(pair)) => pair,
        Ok(Err(err)) => {
            send(&tx, Message::Failed(err.into())).await;
            return;
        }
        Err(err) => {
            send(&tx, failed(ErrorKind::Io, io::Error::other(err))).await;
            return;
        }
    };
    if !send(&tx, Message::Data(vec![Bytes::from(header)])).await {
        return;
    }
    let aead = Arc::new(aead);
    let mut counter: u64 = 0;
    let mut current = match read_batch(&mut input).await {
        Ok(batch) => batch,
        Err(err) => {
            send(&tx, failed(ErrorKind::Input, err)).await;
            return;
        }
    };
    loop {
        // Everything but the final chunk, in runs of whole chunks, one blocking task each.
        let early = current.len().div_ceil(CHUNK).saturating_sub(1);
        let per_task = early.div_ceil(threads).max(1);
        let short = current.len() < BATCH_CHUNKS * CHUNK;
        let runs: Vec<_> = (0..early)
            .step_by(per_task)
            .map(|first| {
                let end = (first + per_task).min(early);
                let plain = current.split_to((end - first) * CHUNK);
                let aead = Arc::clone(&aead);
                let run_counter = counter + first as u64;
                tokio::task::spawn_blocking(move || seal(&aead, plain, run_counter, false))
            })
            .collect();
        let tail = current;
        let next = if short {
            Ok(BytesMut::new())
        } else {
            read_batch(&mut input).await
        };
        let mut sealed = Vec::with_capacity(runs.len() + 1);
        for run in runs {
            match run.await {
                Ok(Ok(pieces)) => sealed.extend(pieces),
                Ok(Err(err)) => {
                    send(&tx, failed(ErrorKind::Io, err)).await;
                    return;
                }
                Err(err) => {
                    send(&tx, failed(ErrorKind::Io, io::Error::other(err))).await;
                    return;
                }
            }
        }
        counter += early as u64;
        let next = match next {
            Ok(next) => next,
            Err(err) => {
                send(&tx, failed(ErrorKind::Input, err)).await;
                return;
            }
        };
        let last = next.is_empty();
        if !tail.is_empty() || (last && counter == 0) {
            match seal(&aead, tail, counter, last) {
                Ok(pieces) => sealed.extend(pieces),
                Err(err) => {
                    send(&tx, failed(ErrorKind::Io, err)).await;
                    return;
                }
            }
            counter += 1;
        }
        if !send(&tx, Message::Data(sealed)).await {
            return;
        }
        if last {
            send(&tx, Message::End).await;
            return;
        }
        current = next;
    }
}

/// The decryption task, on a blocking thread: the `age` crate reads the async input through a
/// bridge and hands out plaintext in batches.
fn decrypt(
    runtime: &tokio::runtime::Handle,
    input: BoxedReader,
    identities: &AgeIdentities,
    tx: &mpsc::Sender<Message>,
    codec: &str,
) {
    let input_failed = Arc::new(AtomicBool::new(false));
    let tapped = InputTap::new(input, Arc::clone(&input_failed));
    let bridge = tokio_util::io::SyncIoBridge::new_with_handle(tapped, runtime.clone());
    let reader = io::BufReader::with_capacity(1 << 20, bridge);
    let fail = |err: io::Error| {
        let kind = if input_failed.load(Ordering::Relaxed) {
            ErrorKind::Input
        } else {
            ErrorKind::Corrupt
        };
        Message::Failed(classify(kind, codec, err))
    };
    let result = open(reader, identities, codec).and_then(|mut plain| {
        loop {
            let mut batch = Vec::with_capacity(usize::try_from(DECRYPT_BATCH).unwrap_or(1 << 20));
            if let Err(err) = (&mut plain).take(DECRYPT_BATCH).read_to_end(&mut batch) {
                break Err(OpenError::Io(err));
            }
            if batch.is_empty() {
                break Ok(());
            }
            if tx
                .blocking_send(Message::Data(vec![Bytes::from(batch)]))
                .is_err()
            {
                break Ok(());
            }
        }
    });
    let message = match result {
        Ok(()) => Message::End,
        Err(OpenError::Io(err)) => fail(err),
        Err(OpenError::Codec(err)) => Message::Failed(err.into()),
    };
    let _ = tx.blocking_send(message);
}

enum OpenError {
    Io(io::Error),
    Codec(Error),
}

/// Parses the header and unwraps the file key with the first identity that fits.
fn open<R: BufRead>(
    reader: R,
    identities: &AgeIdentities,
    codec: &str,
) -> Result<age::stream::StreamReader<R>, OpenError> {
    let from = |err: age::DecryptError| match err {
        age::DecryptError::Io(err) => OpenError::Io(err),
        // A wrong passphrase fails to unwrap scrypt's stanza rather than not matching it.
        age::DecryptError::NoMatchingKeys
        | age::DecryptError::DecryptionFailed
        | age::DecryptError::KeyDecryptionFailed => OpenError::Codec(Error::command(
            ErrorKind::NoMatchingIdentity {
                identities: identities.describe(),
            },
            codec,
            None,
        )),
        other => OpenError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            other.to_string(),
        )),
    };
    let decryptor = age::Decryptor::new_buffered(reader).map_err(from)?;
    decryptor
        .decrypt(
            identities
                .identities
                .iter()
                .map(|i| i.as_ref() as &dyn age::Identity),
        )
        .map_err(from)
}

/// The reading end of an age task: EOF only once the task says the stream is complete.
struct ChannelOutput {
    rx: mpsc::Receiver<Message>,
    queue: VecDeque<Bytes>,
    finished: bool,
    task: JoinHandle<()>,
    codec: String,
}

impl Drop for ChannelOutput {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AsyncRead for ChannelOutput {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.queue.is_empty() {
                // As much as fits, across pieces: a chunk and its tag in one read.
                while buf.remaining() > 0 {
                    let Some(front) = self.queue.front_mut() else {
                        break;
                    };
                    let n = front.len().min(buf.remaining());
                    buf.put_slice(&front.split_to(n));
                    if front.is_empty() {
                        self.queue.pop_front();
                    }
                }
                return Poll::Ready(Ok(()));
            }
            if self.finished {
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Message::Data(pieces))) => {
                    self.queue
                        .extend(pieces.into_iter().filter(|p| !p.is_empty()));
                }
                Poll::Ready(Some(Message::End)) => {
                    self.finished = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Some(Message::Failed(err))) => return Poll::Ready(Err(err)),
                Poll::Ready(None) => {
                    let err = io::Error::other("the age task stopped");
                    return Poll::Ready(Err(
                        Error::command(ErrorKind::Io, &self.codec, Some(err)).into()
                    ));
                }
            }
        }
    }
}

fn invalid_key(reason: String) -> Error {
    Error::new(ErrorKind::InvalidKey { reason })
}

/// What to do about a missing identity file.
fn make_key_pair(path: &Path) -> String {
    format!(
        "fix the path, or make a key pair with `age-keygen -o {}`",
        path.display()
    )
}

/// An unreadable key file; a missing one says `fix`, what to do about it.
fn key_file(path: &Path, err: &io::Error, fix: &str) -> Error {
    let reason = if err.kind() == io::ErrorKind::NotFound {
        format!("no such file: {fix}")
    } else {
        err.to_string()
    };
    Error::new(ErrorKind::KeyFile {
        path: path.to_owned(),
        reason,
    })
}

fn encrypt_error(err: io::Error) -> Error {
    Error::command(ErrorKind::Io, "age -e (in-process)", Some(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15, point 5: a missing key file says so and how to make one, on one line.
    #[test]
    fn a_missing_key_file_names_the_fix() {
        let path = std::path::PathBuf::from("/nonexistent/z3/age-key.txt");
        let err = AgeIdentities::from_files(std::slice::from_ref(&path)).unwrap_err();
        let line = err.to_string();
        assert_eq!(
            line,
            "cannot use age key file /nonexistent/z3/age-key.txt: no such file: fix the path, or \
             make a key pair with `age-keygen -o /nonexistent/z3/age-key.txt`"
        );
    }

    #[test]
    fn a_secret_key_is_refused_as_a_recipient_and_never_echoed() {
        let identity = age::x25519::Identity::generate();
        let secret = identity.to_string();
        let secret = secret.expose_secret();
        let public = identity.to_public().to_string();
        for given in [secret.to_owned(), secret.to_lowercase()] {
            let err = AgeRecipients::parse(&[public.as_str(), given.as_str()])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("recipient 2 of 2 is an age secret key"),
                "{err}"
            );
            assert!(!err.to_uppercase().contains(&secret[15..]), "{err}");
        }
        // Garbage that is not public-key-like is not echoed either (it may be a mangled secret).
        let err = AgeRecipients::parse(&[&secret[1..]])
            .unwrap_err()
            .to_string();
        assert!(!err.contains(&secret[16..]), "{err}");
        assert!(
            err.contains("recipient 1 of 1 is not an age public key"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("recipients.txt");
        std::fs::write(&file, format!("# mine\n{public}\n{secret}\n")).unwrap();
        let err = AgeRecipients::from_file(&file).unwrap_err().to_string();
        assert!(err.contains("line 3 is an age secret key"), "{err}");
        assert!(!err.contains(&secret[15..]), "{err}");
        assert!(AgeRecipients::parse(&[public]).is_ok());
    }

    #[test]
    fn secret_key_detection_never_slices_inside_a_character() {
        // 14 ASCII bytes then a two-byte character: byte 15 is inside it.
        assert!(!is_age_secret_key("AGE-SECRET-KE\u{e9}Y"));
        assert!(!is_age_secret_key("\u{1f511}\u{1f511}\u{1f511}\u{1f511}"));
        assert!(is_age_secret_key("  age-secret-key-1QQQ"));
        assert!(AgeRecipients::parse(&["AGE-SECRET-KE\u{e9}Y"]).is_err());
    }

    fn stanza(body_len: usize) -> Stanza {
        Stanza {
            tag: "X25519".into(),
            args: vec!["abc".into()],
            body: vec![7; body_len],
        }
    }

    #[test]
    fn stanza_bodies_end_with_a_short_line() {
        // 48 bytes encode to exactly 64 columns: an empty line must follow.
        let mut out = Vec::new();
        write_stanza(&mut out, &stanza(48));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], "-> X25519 abc");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2], "");
        assert_eq!(lines.len(), 4, "{text:?}");

        let mut out = Vec::new();
        write_stanza(&mut out, &stanza(32));
        assert_eq!(
            String::from_utf8(out)
                .unwrap()
                .lines()
                .nth(1)
                .unwrap()
                .len(),
            43
        );

        let mut out = Vec::new();
        write_stanza(&mut out, &stanza(0));
        assert_eq!(out, b"-> X25519 abc\n\n");
    }

    #[test]
    fn nonces_count_big_endian_and_flag_the_last_chunk() {
        assert_eq!(nonce(0, false).as_slice(), &[0; 12]);
        let n = nonce(0x0102, true);
        assert_eq!(n[9..], [1, 2, 1]);
        assert_eq!(n[..9], [0; 9]);
    }
}
