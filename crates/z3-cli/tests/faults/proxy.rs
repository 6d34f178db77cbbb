//! A fault-injecting HTTP/1.1 proxy of our own, between the binaries under test and SeaweedFS.
//!
//! The proxy forwards every request byte for byte (the `Host` header included: the client signs
//! its requests for the proxy's address, and SeaweedFS checks the signature against the `Host`
//! it receives, which is the same). Each client connection gets its own upstream connection, so
//! keep-alive behaves as it would without the proxy. Faults are rules matched on the S3
//! operation (told apart by method, query and `Range`, see [`Op`]) and optionally on the path;
//! each rule fires a given number of times after skipping a given number of matches, and every
//! firing is recorded, so a test can insist that its fault really happened ([`Proxy::finish`]).
//!
//! It runs on a Tokio runtime of its own, because the tests block their own thread while the
//! binaries run.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The S3 operation of a request, as far as the faults need to tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `POST ?uploads`.
    CreateMultipart,
    /// `PUT ?partNumber&uploadId`.
    UploadPart,
    /// `POST ?uploadId` (`CompleteMultipartUpload`).
    Complete,
    /// `DELETE ?uploadId` (`AbortMultipartUpload`).
    Abort,
    /// `GET` with a `Range` header.
    GetRange,
    /// `HEAD` (object or bucket).
    Head,
    /// `PUT` without `uploadId` (`PutObject`, the lock records).
    PutObject,
    /// `GET ?list-type=2` (`ListObjectsV2`).
    List,
    /// `GET ?uploads` (`ListMultipartUploads`).
    ListUploads,
    /// Anything else (plain `GET`, `DELETE` of an object).
    Other,
}

impl Op {
    /// Classifies a request. The SDK adds `x-id=…` to some queries; it is ignored.
    fn of(method: &str, target: &str, has_range: bool) -> Self {
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let has = |name: &str| {
            query
                .split('&')
                .any(|p| p == name || p.strip_prefix(name).is_some_and(|r| r.starts_with('=')))
        };
        match method {
            "POST" if has("uploads") => Self::CreateMultipart,
            "POST" if has("uploadId") => Self::Complete,
            "PUT" if has("uploadId") && has("partNumber") => Self::UploadPart,
            "PUT" => Self::PutObject,
            "DELETE" if has("uploadId") => Self::Abort,
            "GET" if has("list-type") => Self::List,
            "GET" if has("uploads") => Self::ListUploads,
            "GET" if has_range => Self::GetRange,
            "HEAD" => Self::Head,
            _ => Self::Other,
        }
    }
}

/// What the proxy does to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Answer `503 SlowDown` without forwarding.
    SlowDown,
    /// Answer `500 InternalError` without forwarding.
    InternalError,
    /// Answer `404 NoSuchUpload` without forwarding: what AWS says to a completion retried
    /// after the upload it names was completed (SeaweedFS completes it again instead).
    NoSuchUpload,
    /// Answer `403 InvalidObjectState` without forwarding: what S3 says to a GET of an object
    /// in Glacier Flexible Retrieval or Deep Archive that was not restored.
    Archived,
    /// Forward the request head and this many bytes of its body, then reset both connections.
    ResetRequestBody(u64),
    /// Forward the request, relay the response head and this many body bytes, then reset.
    ResetResponseBody(u64),
    /// Forward the request, relay the response head and this many body bytes, then close
    /// cleanly (FIN): a body shorter than its `Content-Length`.
    TruncateResponseBody(u64),
    /// Forward the request, and hold the response this long before relaying it.
    DelayResponse(Duration),
    /// Forward the request, read the whole response, and close the client connection without
    /// relaying any of it: the server did the work, the client never hears of it.
    DropResponse,
}

/// One fault rule: `fault` for the matching requests number `skip + 1` to `skip + times`.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) op: Op,
    /// Only requests whose path (before `?`) contains this; `None` matches every path.
    pub(crate) path: Option<String>,
    pub(crate) skip: u32,
    pub(crate) times: u32,
    pub(crate) fault: Fault,
}

impl Rule {
    /// `fault` on the first `times` requests of kind `op`.
    pub(crate) fn new(op: Op, fault: Fault, times: u32) -> Self {
        Self {
            op,
            path: None,
            skip: 0,
            times,
            fault,
        }
    }

    /// Only on requests whose path contains `path` (URL-encoded as the client sends it).
    pub(crate) fn on_path(mut self, path: &str) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    /// Lets the first `skip` matching requests through untouched.
    pub(crate) fn after(mut self, skip: u32) -> Self {
        self.skip = skip;
        self
    }
}

#[derive(Debug)]
struct RuleState {
    rule: Rule,
    matched: u32,
    fired: u32,
}

#[derive(Debug)]
struct State {
    upstream: SocketAddr,
    rules: Mutex<Vec<RuleState>>,
    /// One line per injected fault.
    log: Mutex<Vec<String>>,
    /// Requests seen, by operation.
    seen: Mutex<Vec<Op>>,
}

impl State {
    fn pick(&self, op: Op, path: &str) -> Option<Fault> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(op);
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, state) in rules.iter_mut().enumerate() {
            let rule = &state.rule;
            if rule.op != op || rule.path.as_deref().is_some_and(|p| !path.contains(p)) {
                continue;
            }
            state.matched += 1;
            if state.matched > rule.skip && state.fired < rule.times {
                state.fired += 1;
                let line = format!("rule {i}: {:?} on {op:?} {path}", rule.fault);
                eprintln!("fault proxy: {line}");
                self.log
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
                return Some(rule.fault);
            }
        }
        None
    }
}

/// The running proxy; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 forwarding to `upstream` (`http://127.0.0.1:PORT`).
    pub(crate) fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("upstream {upstream:?} is not http://IP:PORT: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // Bound here, registered with the runtime inside it: the caller may itself be on a
        // runtime, where `block_on` is not allowed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            upstream,
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
        });
        let shared = Arc::clone(&state);
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            while let Ok((client, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    // Connection errors are what the faults are about; nothing to report.
                    let _ = serve(&state, client).await;
                });
            }
        });
        Self {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// The endpoint URL the binaries under test use.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a rule; rules are tried in the order they were added.
    pub(crate) fn inject(&self, rule: Rule) {
        self.state
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(RuleState {
                rule,
                matched: 0,
                fired: 0,
            });
    }

    /// How many requests of kind `op` went through the proxy (faulted or not).
    pub(crate) fn seen(&self, op: Op) -> usize {
        self.state
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|&&o| o == op)
            .count()
    }

    /// Faults injected so far.
    pub(crate) fn injected(&self) -> usize {
        self.state
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Asserts that every rule fired all its `times`, and returns how many faults were injected.
    pub(crate) fn finish(&self) -> usize {
        let rules = self
            .state
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (i, state) in rules.iter().enumerate() {
            assert_eq!(
                state.fired, state.rule.times,
                "rule {i} ({:?}) fired {} of {} times (matched {} requests)",
                state.rule, state.fired, state.rule.times, state.matched
            );
        }
        drop(rules);
        self.injected()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// The parts of a request or response head the proxy needs.
#[derive(Debug)]
struct Head {
    raw: Vec<u8>,
    /// Method (requests) or status code (responses).
    first: String,
    /// Request target (requests only).
    target: String,
    framing: Framing,
    expect_continue: bool,
    has_range: bool,
    close: bool,
}

impl Head {
    fn parse(raw: Vec<u8>, is_request: bool) -> std::io::Result<Self> {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut lines = text.split("\r\n");
        let start = lines.next().unwrap_or_default();
        let mut words = start.split(' ');
        let (first, target) = if is_request {
            let method = words.next().unwrap_or_default().to_owned();
            (method, words.next().unwrap_or_default().to_owned())
        } else {
            words.next();
            (words.next().unwrap_or_default().to_owned(), String::new())
        };
        let mut head = Self {
            raw,
            first,
            target,
            framing: if is_request {
                Framing::Length(0)
            } else {
                Framing::UntilClose
            },
            expect_continue: false,
            has_range: false,
            close: false,
        };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    let len = value.parse().map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, "bad Content-Length")
                    })?;
                    head.framing = Framing::Length(len);
                }
                "transfer-encoding" if value.to_ascii_lowercase().contains("chunked") => {
                    head.framing = Framing::Chunked;
                }
                "expect" => head.expect_continue = value.eq_ignore_ascii_case("100-continue"),
                "range" => head.has_range = true,
                "connection" => head.close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        Ok(head)
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// Reads a message head up to and including the empty line; `None` at a clean end of stream.
async fn read_head(
    reader: &mut BufReader<TcpStream>,
    is_request: bool,
) -> std::io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        let n = reader.read_until(b'\n', &mut raw).await?;
        if n == 0 {
            if raw.is_empty() {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if &raw[before..] == b"\r\n" && before > 0 {
            return Head::parse(raw, is_request).map(Some);
        }
        if raw.len() > 64 << 10 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}

/// Writes up to a byte limit, then refuses.
struct Limited<'a, W> {
    writer: &'a mut W,
    left: u64,
}

impl<W: AsyncWrite + Unpin> Limited<'_, W> {
    /// Writes what fits; `false` once the limit is reached.
    async fn put(&mut self, bytes: &[u8]) -> std::io::Result<bool> {
        let n = bytes
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        self.writer.write_all(&bytes[..n]).await?;
        self.left -= n as u64;
        Ok(n == bytes.len())
    }

    /// Copies exactly `left` bytes from `from` through `buf`; `false` once the limit is
    /// reached, an error if `from` ends first.
    async fn copy_exact(
        &mut self,
        from: &mut BufReader<TcpStream>,
        buf: &mut [u8],
        mut left: u64,
    ) -> std::io::Result<bool> {
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = from.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            left -= n as u64;
            if !self.put(&buf[..n]).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Relays one body; `Ok(false)` if the limit cut it.
async fn relay_body<W: AsyncWrite + Unpin>(
    from: &mut BufReader<TcpStream>,
    to: &mut W,
    framing: Framing,
    limit: u64,
) -> std::io::Result<bool> {
    let mut out = Limited {
        writer: to,
        left: limit,
    };
    let mut buf = vec![0u8; 64 << 10];
    match framing {
        Framing::Length(left) => {
            if !out.copy_exact(from, &mut buf, left).await? {
                return Ok(false);
            }
        }
        Framing::UntilClose => loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            if !out.put(&buf[..n]).await? {
                return Ok(false);
            }
        },
        Framing::Chunked => loop {
            let mut line = Vec::new();
            from.read_until(b'\n', &mut line).await?;
            if !out.put(&line).await? {
                return Ok(false);
            }
            let text = String::from_utf8_lossy(&line);
            let size = u64::from_str_radix(text.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    let mut trailer = Vec::new();
                    from.read_until(b'\n', &mut trailer).await?;
                    if !out.put(&trailer).await? {
                        return Ok(false);
                    }
                    if trailer == b"\r\n" || trailer.is_empty() {
                        break;
                    }
                }
                break;
            }
            // The chunk and its CRLF.
            if !out.copy_exact(from, &mut buf, size + 2).await? {
                return Ok(false);
            }
        },
    }
    out.writer.flush().await?;
    Ok(true)
}

/// An S3 error document as SeaweedFS and AWS send them.
fn error_response(status: u16, code: &str, path: &str, head_request: bool) -> Vec<u8> {
    let reason = match status {
        503 => "Service Unavailable",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the z3 fault proxy</Message><Resource>{path}</Resource><RequestId>z3-fault</RequestId></Error>"
    );
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nx-amz-request-id: z3-fault\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_request {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Resets a connection (RST instead of FIN) as it is dropped.
fn reset(stream: BufReader<TcpStream>) {
    let _ = stream.get_ref().set_zero_linger();
    drop(stream);
}

/// Serves one client connection until it closes or a fault ends it.
async fn serve(state: &State, client: TcpStream) -> std::io::Result<()> {
    let mut client = BufReader::new(client);
    let mut upstream: Option<BufReader<TcpStream>> = None;
    loop {
        let Some(request) = read_head(&mut client, true).await? else {
            return Ok(());
        };
        let op = Op::of(&request.first, &request.target, request.has_range);
        let fault = state.pick(op, request.path());
        if let Some(
            code @ (Fault::SlowDown | Fault::InternalError | Fault::NoSuchUpload | Fault::Archived),
        ) = fault
        {
            // Read the body first, so the client sees the answer rather than a broken pipe.
            relay_body(
                &mut client,
                &mut tokio::io::sink(),
                request.framing,
                u64::MAX,
            )
            .await?;
            let (status, name) = match code {
                Fault::SlowDown => (503, "SlowDown"),
                Fault::NoSuchUpload => (404, "NoSuchUpload"),
                Fault::Archived => (403, "InvalidObjectState"),
                _ => (500, "InternalError"),
            };
            let response = error_response(status, name, request.path(), request.first == "HEAD");
            client.get_mut().write_all(&response).await?;
            client.get_mut().shutdown().await?;
            return Ok(());
        }

        let mut server = match upstream.take() {
            Some(server) => server,
            None => BufReader::new(TcpStream::connect(state.upstream).await?),
        };
        server.get_mut().write_all(&request.raw).await?;
        if request.expect_continue {
            let interim = read_head(&mut server, false)
                .await?
                .ok_or(std::io::ErrorKind::UnexpectedEof)?;
            client.get_mut().write_all(&interim.raw).await?;
            if interim.first != "100" {
                relay_body(&mut server, client.get_mut(), interim.framing, u64::MAX).await?;
                return Ok(());
            }
        }
        let limit = match fault {
            Some(Fault::ResetRequestBody(n)) => n,
            _ => u64::MAX,
        };
        let whole = relay_body(&mut client, server.get_mut(), request.framing, limit).await?;
        if !whole {
            reset(client);
            reset(server);
            return Ok(());
        }

        let response = read_head(&mut server, false)
            .await?
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        let framing = if request.first == "HEAD" || matches!(response.first.as_str(), "204" | "304")
        {
            Framing::Length(0)
        } else {
            response.framing
        };
        match fault {
            Some(Fault::DropResponse) => {
                relay_body(&mut server, &mut tokio::io::sink(), framing, u64::MAX).await?;
                reset(client);
                return Ok(());
            }
            Some(Fault::DelayResponse(delay)) => tokio::time::sleep(delay).await,
            _ => {}
        }
        client.get_mut().write_all(&response.raw).await?;
        let limit = match fault {
            Some(Fault::ResetResponseBody(n) | Fault::TruncateResponseBody(n)) => n,
            _ => u64::MAX,
        };
        let whole = relay_body(&mut server, client.get_mut(), framing, limit).await?;
        if !whole {
            if matches!(fault, Some(Fault::ResetResponseBody(_))) {
                reset(client);
            } else {
                client.get_mut().flush().await?;
                client.get_mut().shutdown().await?;
            }
            return Ok(());
        }
        if request.close || response.close || matches!(framing, Framing::UntilClose) {
            return Ok(());
        }
        upstream = Some(server);
    }
}
