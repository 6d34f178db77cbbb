//! `AwsStore` against a canned HTTP server on 127.0.0.1: one attempt per call (SDK retries are
//! off), the error mapping, including S3's HTTP 200 error bodies and cut-short GET bodies, and
//! what goes on the wire for checksums (our CRC32C only, unsigned payload, no aws-chunked).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use z3_s3::{
    AwsStore, CompletedPart, Crc32c, ErrorKind, ObjectStore, Op, PartNumber, PutOptions, S3Config,
    StaticCredentials, UploadId,
};

const SECRET: &str = "secret-that-must-never-appear";

/// One canned response; the body is cut after `send_body` bytes when set (then the
/// connection closes).
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    send_body: Option<usize>,
}

fn xml_error(status: u16, code: &str, message: &str) -> Canned {
    Canned {
        status,
        headers: vec![("content-type", "application/xml".to_owned())],
        body: format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>r1</RequestId></Error>"
        )
        .into_bytes(),
        send_body: None,
    }
}

/// One request as the server saw it: the head (request line and headers, as sent) and the body.
struct Recorded {
    head: String,
    body: Vec<u8>,
}

impl std::fmt::Debug for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.head.lines().next().unwrap_or_default())
    }
}

impl Recorded {
    /// The value of header `name` (case-insensitive), if sent.
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

/// Serves `responses` in order, one per connection, and records each request.
async fn serve(responses: Vec<Canned>) -> (String, Arc<Mutex<Vec<Recorded>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    tokio::spawn(async move {
        for canned in responses {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if socket.read(&mut byte).await.unwrap() == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let lower = head.to_ascii_lowercase();
            if lower.contains("expect: 100-continue") {
                socket
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .unwrap();
            }
            let length = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            socket.read_exact(&mut body).await.unwrap();
            log.lock().unwrap().push(Recorded { head, body });

            let mut response = format!("HTTP/1.1 {} Canned\r\n", canned.status);
            for (name, value) in &canned.headers {
                write!(response, "{name}: {value}\r\n").unwrap();
            }
            write!(
                response,
                "content-length: {}\r\nconnection: close\r\n\r\n",
                canned.body.len()
            )
            .unwrap();
            socket.write_all(response.as_bytes()).await.unwrap();
            let sent = canned.send_body.unwrap_or(canned.body.len());
            socket.write_all(&canned.body[..sent]).await.unwrap();
            socket.flush().await.unwrap();
            drop(socket);
        }
    });
    (endpoint, requests)
}

async fn store(endpoint: String) -> AwsStore {
    AwsStore::connect(S3Config {
        endpoint: Some(endpoint),
        force_path_style: true,
        region: Some("us-east-1".to_owned()),
        credentials: Some(StaticCredentials {
            access_key_id: "AKIDTEST".to_owned(),
            secret_access_key: SECRET.to_owned(),
        }),
        ..S3Config::new("bucket")
    })
    .await
    .unwrap()
}

fn part(n: u16) -> PartNumber {
    PartNumber::new(n).unwrap()
}

#[tokio::test]
async fn slow_down_is_throttled_after_one_attempt() {
    let (endpoint, requests) = serve(vec![xml_error(
        503,
        "SlowDown",
        "Please reduce your request rate.",
    )])
    .await;
    let store = store(endpoint).await;
    let err = store
        .put_part(
            "k",
            &UploadId::new("u-42"),
            part(7),
            Bytes::from_static(b"data"),
            Crc32c::of(b"data"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttled, "{err}");
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("s3://bucket/k"), "{text}");
    assert!(text.contains("upload id u-42"), "{text}");
    assert!(text.contains("part 7"), "{text}");
    assert!(text.contains("SlowDown"), "{text}");
    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 1, "the SDK must not retry: {requests:?}");
    assert!(
        requests[0].head.starts_with("PUT /bucket/k?"),
        "{requests:?}"
    );
    assert!(requests[0].head.contains("partNumber=7"), "{requests:?}");
}

#[tokio::test]
async fn server_error_on_head_is_transient() {
    let mut canned = xml_error(500, "InternalError", "boom");
    canned.body.clear();
    let (endpoint, requests) = serve(vec![canned]).await;
    let err = store(endpoint).await.head("k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert_eq!(requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn internal_error_inside_http_200_complete_is_transient() {
    let mut canned = xml_error(
        200,
        "InternalError",
        "We encountered an internal error. Please try again.",
    );
    canned.status = 200;
    let (endpoint, _) = serve(vec![canned]).await;
    let parts = vec![CompletedPart {
        part_number: part(1),
        etag: "\"e\"".to_owned(),
        checksum_crc32c: None,
    }];
    let err = store(endpoint)
        .await
        .complete_multipart("k", &UploadId::new("u"), parts, &z3_s3::Precondition::None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("InternalError"), "{err}");
}

#[tokio::test]
async fn no_such_upload_and_no_such_key() {
    let (endpoint, _) = serve(vec![
        xml_error(404, "NoSuchUpload", "The specified upload does not exist."),
        xml_error(404, "NoSuchKey", "The specified key does not exist."),
        xml_error(404, "NoSuchBucket", "The specified bucket does not exist."),
    ])
    .await;
    let store = store(endpoint).await;
    let err = store
        .abort_multipart("k", &UploadId::new("u"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchUpload, "{err}");
    let err = store.get_range("k", 0..10).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = store.list("").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchBucket, "{err}");
}

#[tokio::test]
async fn bad_signature_is_access_denied_without_the_secret() {
    let (endpoint, _) = serve(vec![xml_error(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.",
    )])
    .await;
    let err = store(endpoint).await.list("p/").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    // Issue 15, point 5: the cause (S3's code) and the settings to check, never their values.
    let line = err.to_string();
    assert!(
        line.contains("access denied, S3 refused the credentials (SignatureDoesNotMatch"),
        "{line}"
    );
    assert!(line.contains("HTTP 403"), "{line}");
    assert!(
        line.ends_with(
            "check S3_KEY_ID and S3_SECRET (not printed) and that they may use this bucket"
        ),
        "{line}"
    );
    assert!(!format!("{err} {err:?}").contains(SECRET));
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        assert!(!format!("{inner} {inner:?}").contains(SECRET));
        source = inner.source();
    }
}

#[tokio::test]
async fn entity_too_small_is_invalid_request() {
    let (endpoint, _) = serve(vec![xml_error(
        400,
        "EntityTooSmall",
        "Your proposed upload is smaller than the minimum allowed size",
    )])
    .await;
    let err = store(endpoint)
        .await
        .complete_multipart(
            "k",
            &UploadId::new("u"),
            Vec::new(),
            &z3_s3::Precondition::None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn head_bucket_404_is_no_such_bucket() {
    let (endpoint, _) = serve(vec![Canned {
        status: 404,
        headers: Vec::new(),
        body: Vec::new(),
        send_body: None,
    }])
    .await;
    let err = store(endpoint).await.check_bucket().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchBucket, "{err}");
    assert!(
        err.to_string()
            .contains("the bucket 'bucket' does not exist at http://127.0.0.1:"),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with(": create the bucket, or fix BUCKET"),
        "{err}"
    );
}

#[tokio::test]
async fn refused_connection_is_unreachable() {
    // Bind and drop to find a port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let store = store(format!("http://127.0.0.1:{port}")).await;
    let err = store.check_bucket().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.is_retryable());
    assert_eq!(
        err.to_string(),
        format!(
            "check_bucket bucket bucket: cannot reach the S3 endpoint http://127.0.0.1:{port} \
             (connection refused): check S3_ENDPOINT (or --endpoint) and that the S3 server is \
             running"
        )
    );
}

#[tokio::test]
async fn cut_short_body_returns_what_arrived() {
    let body: Vec<u8> = (0..100u8).collect();
    let (endpoint, requests) = serve(vec![Canned {
        status: 206,
        headers: vec![("content-range", "bytes 10-109/1000".to_owned())],
        body: body.clone(),
        send_body: Some(40),
    }])
    .await;
    let got = store(endpoint).await.get_range("k", 10..110).await.unwrap();
    assert_eq!(&got[..], &body[..40]);
    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].head.starts_with("GET /bucket/k"),
        "{requests:?}"
    );
}

#[tokio::test]
async fn ignored_range_is_detected() {
    let (endpoint, _) = serve(vec![Canned {
        status: 200,
        headers: Vec::new(),
        body: vec![0u8; 100],
        send_body: None,
    }])
    .await;
    let err = store(endpoint)
        .await
        .get_range("k", 10..20)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Other, "{err}");
    assert!(err.to_string().contains("ignored the range"), "{err}");
}

fn ok(headers: Vec<(&'static str, String)>, body: &str) -> Canned {
    Canned {
        status: 200,
        headers,
        body: body.as_bytes().to_vec(),
        send_body: None,
    }
}

#[tokio::test]
async fn part_carries_our_crc32c_and_nothing_else_hashes_the_body() {
    // The CPU budget: the part's bytes are hashed once, by us. The SDK must send our
    // x-amz-checksum-crc32c as is, add no CRC of its own, no Content-MD5, no aws-chunked
    // trailer, and sign the payload as UNSIGNED-PAYLOAD (no SHA-256 over the body).
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let checksum = Crc32c::of(&data);
    let (endpoint, requests) = serve(vec![ok(
        vec![
            ("etag", "\"0123\"".to_owned()),
            ("x-amz-checksum-crc32c", checksum.to_base64()),
        ],
        "",
    )])
    .await;
    let done = store(endpoint)
        .await
        .put_part(
            "k",
            &UploadId::new("u-1"),
            part(3),
            Bytes::from(data.clone()),
            checksum,
        )
        .await
        .unwrap();
    assert_eq!(done.etag, "\"0123\"");
    assert_eq!(done.checksum_crc32c, Some(checksum.to_base64()));

    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        request.header("x-amz-checksum-crc32c"),
        Some(checksum.to_base64()),
        "{}",
        request.head
    );
    assert_eq!(
        request.header("x-amz-content-sha256").as_deref(),
        Some("UNSIGNED-PAYLOAD"),
        "{}",
        request.head
    );
    for absent in [
        "content-md5",
        "x-amz-trailer",
        "x-amz-checksum-crc32",
        "x-amz-decoded-content-length",
        "content-encoding",
    ] {
        assert_eq!(request.header(absent), None, "{absent}: {}", request.head);
    }
    assert!(
        request
            .header("authorization")
            .is_some_and(|a| a.contains("x-amz-checksum-crc32c")),
        "the checksum header is signed: {}",
        request.head
    );
    assert!(request.body == data, "the body is sent plainly");
}

#[tokio::test]
async fn part_echoed_with_another_checksum_is_reported_as_such() {
    // A server that confirms another checksum than we sent: the store reports the server's
    // value, so the uploader can refuse it.
    let (endpoint, _) = serve(vec![ok(
        vec![
            ("etag", "\"0123\"".to_owned()),
            ("x-amz-checksum-crc32c", "AAAAAA==".to_owned()),
        ],
        "",
    )])
    .await;
    let done = store(endpoint)
        .await
        .put_part(
            "k",
            &UploadId::new("u-1"),
            part(1),
            Bytes::from_static(b"x"),
            Crc32c::of(b"x"),
        )
        .await
        .unwrap();
    assert_eq!(done.checksum_crc32c.as_deref(), Some("AAAAAA=="));
}

#[tokio::test]
async fn multipart_declares_crc32c_and_completion_reports_the_composite() {
    let composite = "AbCdEg==-2";
    let (endpoint, requests) = serve(vec![
        ok(
            vec![("content-type", "application/xml".to_owned())],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult><Bucket>bucket</Bucket><Key>k</Key><UploadId>u-9</UploadId></InitiateMultipartUploadResult>",
        ),
        ok(
            vec![("content-type", "application/xml".to_owned())],
            &format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult><Bucket>bucket</Bucket><Key>k</Key><ETag>\"abc-2\"</ETag><ChecksumCRC32C>{composite}</ChecksumCRC32C></CompleteMultipartUploadResult>"
            ),
        ),
        ok(
            vec![
                ("etag", "\"abc-2\"".to_owned()),
                ("x-amz-checksum-crc32c", composite.to_owned()),
                ("content-length-ignored", "0".to_owned()),
            ],
            "",
        ),
    ])
    .await;
    let store = store(endpoint).await;
    let id = store
        .create_multipart("k", &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(id.as_str(), "u-9");
    let parts = [b"first".as_slice(), b"second".as_slice()]
        .iter()
        .enumerate()
        .map(|(i, body)| CompletedPart {
            part_number: part(u16::try_from(i + 1).unwrap()),
            etag: format!("\"e{i}\""),
            checksum_crc32c: Some(Crc32c::of(body).to_base64()),
        })
        .collect::<Vec<_>>();
    let done = store
        .complete_multipart("k", &id, parts.clone(), &z3_s3::Precondition::None)
        .await
        .unwrap();
    assert_eq!(done.etag, "\"abc-2\"");
    assert_eq!(done.checksum_crc32c.as_deref(), Some(composite));
    let info = store.head_checksum("k").await.unwrap();
    assert_eq!(info.checksum_crc32c.as_deref(), Some(composite));

    let requests = requests.lock().unwrap();
    assert_eq!(
        requests[0].header("x-amz-checksum-algorithm").as_deref(),
        Some("CRC32C"),
        "{}",
        requests[0].head
    );
    let complete_body = String::from_utf8_lossy(&requests[1].body);
    for part in &parts {
        let expected = format!(
            "<ChecksumCRC32C>{}</ChecksumCRC32C>",
            part.checksum_crc32c.as_deref().unwrap()
        );
        assert!(complete_body.contains(&expected), "{complete_body}");
    }
    assert_eq!(
        requests[2].header("x-amz-checksum-mode").as_deref(),
        Some("ENABLED"),
        "{}",
        requests[2].head
    );
    assert_eq!(Op::HeadChecksum.as_str(), "head_checksum");
}

// ---- Pagination: a listing follows its pages, and one that does not advance is an error.

fn xml_ok(body: &str) -> Canned {
    ok(vec![("content-type", "application/xml".to_owned())], body)
}

fn objects_page(keys: &[&str], next: Option<&str>) -> Canned {
    let mut contents = String::new();
    for key in keys {
        write!(
            contents,
            "<Contents><Key>{key}</Key><Size>3</Size></Contents>"
        )
        .unwrap();
    }
    let truncated = next.map_or_else(
        || "<IsTruncated>false</IsTruncated>".to_owned(),
        |token| {
            format!("<IsTruncated>true</IsTruncated><NextContinuationToken>{token}</NextContinuationToken>")
        },
    );
    xml_ok(&format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>bucket</Name><Prefix>p/</Prefix><KeyCount>{}</KeyCount><MaxKeys>1000</MaxKeys>{truncated}{contents}</ListBucketResult>",
        keys.len()
    ))
}

fn uploads_page(uploads: &[(&str, &str)], next: Option<(&str, &str)>) -> Canned {
    let mut listed = String::new();
    for (key, id) in uploads {
        write!(listed, "<Upload><Key>{key}</Key><UploadId>{id}</UploadId><Initiated>2024-01-01T00:00:00.000Z</Initiated></Upload>").unwrap();
    }
    let truncated = next.map_or_else(
        || "<IsTruncated>false</IsTruncated>".to_owned(),
        |(key, id)| {
            format!("<IsTruncated>true</IsTruncated><NextKeyMarker>{key}</NextKeyMarker><NextUploadIdMarker>{id}</NextUploadIdMarker>")
        },
    );
    xml_ok(&format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListMultipartUploadsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>bucket</Bucket><Prefix>p/</Prefix><MaxUploads>1000</MaxUploads>{truncated}{listed}</ListMultipartUploadsResult>"
    ))
}

#[tokio::test]
async fn list_follows_its_continuation_tokens() {
    let (endpoint, requests) = serve(vec![
        objects_page(&["p/b", "p/a"], Some("t1")),
        objects_page(&["p/c"], Some("t2")),
        objects_page(&["p/d"], None),
    ])
    .await;
    let keys: Vec<String> = store(endpoint)
        .await
        .list("p/")
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.key)
        .collect();
    assert_eq!(keys, ["p/a", "p/b", "p/c", "p/d"]);
    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 3);
    assert!(
        requests[1].head.contains("continuation-token=t1"),
        "{:?}",
        requests[1].head
    );
    assert!(
        requests[2].head.contains("continuation-token=t2"),
        "{:?}",
        requests[2].head
    );
}

#[tokio::test]
async fn list_whose_continuation_token_repeats_is_an_error_not_a_short_listing() {
    // The SDK's paginator stopped here and returned p/a and p/b as if that were all.
    let (endpoint, requests) = serve(vec![
        objects_page(&["p/a"], Some("t1")),
        objects_page(&["p/b"], Some("t2")),
        objects_page(&["p/c"], Some("t1")),
    ])
    .await;
    let err = store(endpoint).await.list("p/").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Other, "{err}");
    assert!(!err.is_retryable());
    let message = err.to_string();
    assert!(
        message.contains("list bucket bucket")
            && message.contains("prefix \"p/\"")
            && message.contains("token \"t1\" repeated after 3 pages"),
        "{message}"
    );
    assert_eq!(requests.lock().unwrap().len(), 3);

    // The same token twice in a row: the SDK's paginator stopped silently after two pages.
    let (endpoint, _requests) = serve(vec![
        objects_page(&["p/a"], Some("t1")),
        objects_page(&["p/b"], Some("t1")),
    ])
    .await;
    let err = store(endpoint).await.list("p/").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("token \"t1\" repeated after 2 pages"),
        "{err}"
    );
}

#[tokio::test]
async fn list_truncated_without_a_token_is_an_error() {
    let (endpoint, _requests) = serve(vec![xml_ok(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>bucket</Name><IsTruncated>true</IsTruncated><Contents><Key>p/a</Key><Size>1</Size></Contents></ListBucketResult>",
    )])
    .await;
    let err = store(endpoint).await.list("p/").await.unwrap_err();
    assert!(
        err.to_string().contains("without a continuation token"),
        "{err}"
    );
}

#[tokio::test]
async fn list_multipart_uploads_follows_markers_and_stops_on_a_repeated_one() {
    let (endpoint, requests) = serve(vec![
        uploads_page(&[("p/k", "u1")], Some(("p/k", "u1"))),
        uploads_page(&[("p/k", "u2")], Some(("p/k", "u2"))),
        uploads_page(&[("p/z", "u3")], None),
    ])
    .await;
    let uploads = store(endpoint)
        .await
        .list_multipart_uploads("p/")
        .await
        .unwrap();
    let ids: Vec<&str> = uploads.iter().map(|u| u.upload_id.as_str()).collect();
    assert_eq!(ids, ["u1", "u2", "u3"]);
    {
        let requests = requests.lock().unwrap();
        assert!(
            requests[1].head.contains("upload-id-marker=u1"),
            "{:?}",
            requests[1].head
        );
    }

    // A server that keeps answering the same markers: the old loop never ended.
    let same = || uploads_page(&[("p/k", "u1")], Some(("p/k", "u1")));
    let (endpoint, requests) = serve(vec![same(), same(), same()]).await;
    let err = store(endpoint)
        .await
        .list_multipart_uploads("p/")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("marker \"p/k / u1\" repeated"),
        "{err}"
    );
    assert_eq!(requests.lock().unwrap().len(), 2);
}

// ---- Server-side encryption: every object created asks for it, nothing else does.

#[tokio::test]
async fn sse_is_asked_for_on_every_put_and_multipart_create_and_nowhere_else() {
    let initiate = || {
        xml_ok(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult><Bucket>bucket</Bucket><Key>k</Key><UploadId>u-1</UploadId></InitiateMultipartUploadResult>",
        )
    };
    let put_ok = || ok(vec![("etag", "\"e\"".to_owned())], "");
    for (sse, mode, key_id) in [
        (z3_s3::Sse::Aes256, "AES256", None),
        (
            z3_s3::Sse::Kms {
                key_id: Some("arn:aws:kms:us-east-1:1:key/k1".to_owned()),
            },
            "aws:kms",
            Some("arn:aws:kms:us-east-1:1:key/k1"),
        ),
        (z3_s3::Sse::Kms { key_id: None }, "aws:kms", None),
    ] {
        let (endpoint, requests) = serve(vec![put_ok(), initiate(), put_ok()]).await;
        let store = AwsStore::connect(S3Config {
            endpoint: Some(endpoint),
            force_path_style: true,
            region: Some("us-east-1".to_owned()),
            credentials: Some(StaticCredentials {
                access_key_id: "AKIDTEST".to_owned(),
                secret_access_key: SECRET.to_owned(),
            }),
            sse: Some(sse.clone()),
            ..S3Config::new("bucket")
        })
        .await
        .unwrap();
        store
            .put(
                "seal",
                bytes::Bytes::from_static(b"s"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        store
            .create_multipart("k", &PutOptions::default())
            .await
            .unwrap();
        store
            .put_part(
                "k",
                &z3_s3::UploadId::new("u-1"),
                part(1),
                bytes::Bytes::from_static(b"x"),
                Crc32c::of(b"x"),
            )
            .await
            .unwrap();
        let requests = requests.lock().unwrap();
        for creating in &requests[..2] {
            assert_eq!(
                creating.header("x-amz-server-side-encryption").as_deref(),
                Some(mode),
                "{sse:?}: {}",
                creating.head
            );
            assert_eq!(
                creating
                    .header("x-amz-server-side-encryption-aws-kms-key-id")
                    .as_deref(),
                key_id,
                "{sse:?}: {}",
                creating.head
            );
        }
        // A part upload must not repeat it (S3 rejects SSE headers on UploadPart).
        assert_eq!(requests[2].header("x-amz-server-side-encryption"), None);
    }
}

#[test]
fn sse_settings_parse_and_refuse_what_s3_would() {
    use z3_s3::Sse;
    assert_eq!(Sse::parse("AES256", None), Ok(Sse::Aes256));
    assert_eq!(Sse::parse("aes256", Some(" ")), Ok(Sse::Aes256));
    assert_eq!(
        Sse::parse("aws:kms", Some("k1")),
        Ok(Sse::Kms {
            key_id: Some("k1".to_owned())
        })
    );
    assert_eq!(Sse::parse("aws:kms", None), Ok(Sse::Kms { key_id: None }));
    assert!(
        Sse::parse("AES256", Some("k1"))
            .unwrap_err()
            .contains("SSE_KMS_KEY_ID")
    );
    assert!(Sse::parse("rot13", None).unwrap_err().contains("'rot13'"));
}

// ---- Versions and Object Lock: what goes on the wire.

#[tokio::test]
async fn put_with_retention_sends_lock_headers_and_our_crc32c() {
    // S3 requires Content-MD5 or an x-amz-checksum-* header on a write that sets a retention;
    // we send our CRC32C of the body, so the SDK adds no checksum of its own.
    let put_ok = || ok(vec![("etag", "\"e\"".to_owned())], "");
    let initiate = xml_ok(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult><Bucket>bucket</Bucket><Key>k</Key><UploadId>u-1</UploadId></InitiateMultipartUploadResult>",
    );
    let (endpoint, requests) = serve(vec![put_ok(), initiate, put_ok()]).await;
    let store = store(endpoint).await;
    let retention = z3_s3::Retention {
        mode: z3_s3::RetentionMode::Compliance,
        retain_until: 1_900_000_000,
    };
    let locked = PutOptions {
        object_lock: Some(retention),
        ..PutOptions::default()
    };
    store
        .put("seal", Bytes::from_static(b"seal body"), &locked)
        .await
        .unwrap();
    store.create_multipart("k", &locked).await.unwrap();
    store
        .put("plain", Bytes::from_static(b"p"), &PutOptions::default())
        .await
        .unwrap();
    let requests = requests.lock().unwrap();
    for request in &requests[..2] {
        assert_eq!(
            request.header("x-amz-object-lock-mode").as_deref(),
            Some("COMPLIANCE"),
            "{}",
            request.head
        );
        assert_eq!(
            request
                .header("x-amz-object-lock-retain-until-date")
                .as_deref(),
            Some("2030-03-17T17:46:40Z"),
            "{}",
            request.head
        );
        assert_eq!(request.header("x-amz-bypass-governance-retention"), None);
    }
    let put = &requests[0];
    assert_eq!(
        put.header("x-amz-checksum-crc32c"),
        Some(Crc32c::of(b"seal body").to_base64()),
        "{}",
        put.head
    );
    for absent in ["content-md5", "x-amz-checksum-crc32", "x-amz-trailer"] {
        assert_eq!(put.header(absent), None, "{absent}: {}", put.head);
    }
    assert!(put.body == b"seal body", "the body is sent plainly");
    assert!(
        requests[1].head.contains("?uploads"),
        "{}",
        requests[1].head
    );
    // Without a retention, no lock header.
    assert_eq!(requests[2].header("x-amz-object-lock-mode"), None);
    assert_eq!(
        requests[2].header("x-amz-object-lock-retain-until-date"),
        None
    );
}

#[tokio::test]
async fn versioned_delete_names_the_version_and_never_bypasses() {
    let (endpoint, requests) = serve(vec![Canned {
        status: 204,
        headers: vec![("x-amz-version-id", "v 1/2".to_owned())],
        body: Vec::new(),
        send_body: None,
    }])
    .await;
    store(endpoint)
        .await
        .delete_version("pool/fs@snap", "v 1/2")
        .await
        .unwrap();
    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    let head = &requests[0].head;
    assert!(
        head.starts_with("DELETE /bucket/pool/fs%40snap?")
            && head.lines().next().unwrap().contains("versionId=v%201%2F2"),
        "{head}"
    );
    assert_eq!(
        requests[0].header("x-amz-bypass-governance-retention"),
        None
    );
}

#[tokio::test]
async fn locked_version_delete_is_locked_not_access_denied() {
    // S3 answers 403 AccessDenied both for a missing permission and for Object Lock; the
    // store reads the version's retention to tell them apart.
    let denied = || xml_error(403, "AccessDenied", "Access Denied.");
    let head_locked = ok(
        vec![
            ("x-amz-version-id", "v1".to_owned()),
            ("x-amz-object-lock-mode", "GOVERNANCE".to_owned()),
            (
                "x-amz-object-lock-retain-until-date",
                "2099-01-01T00:00:00Z".to_owned(),
            ),
        ],
        "",
    );
    let head_free = ok(vec![("x-amz-version-id", "v1".to_owned())], "");
    let (endpoint, requests) = serve(vec![denied(), head_locked, denied(), head_free]).await;
    let store = store(endpoint).await;
    let err = store.delete_version("k", "v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    let text = err.to_string();
    assert!(text.contains("s3://bucket/k version v1"), "{text}");
    assert!(
        text.contains("GOVERNANCE retention until 2099-01-01"),
        "{text}"
    );
    let err = store.delete_version("k", "v1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    let requests = requests.lock().unwrap();
    assert!(
        requests[1].head.starts_with("HEAD /bucket/k?")
            && requests[1].head.contains("versionId=v1"),
        "{}",
        requests[1].head
    );
}

#[tokio::test]
async fn version_listing_merges_markers_and_follows_its_markers() {
    let page = |body: &str, next: Option<(&str, &str)>| {
        let truncated = next.map_or(String::from("<IsTruncated>false</IsTruncated>"), |(k, v)| {
            format!("<IsTruncated>true</IsTruncated><NextKeyMarker>{k}</NextKeyMarker><NextVersionIdMarker>{v}</NextVersionIdMarker>")
        });
        xml_ok(&format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListVersionsResult><Name>bucket</Name><Prefix>p/</Prefix>{truncated}{body}</ListVersionsResult>"
        ))
    };
    let version = |key: &str, id: &str, latest: bool, at: &str| {
        format!(
            "<Version><Key>{key}</Key><VersionId>{id}</VersionId><IsLatest>{latest}</IsLatest><LastModified>{at}</LastModified><ETag>\"e{id}\"</ETag><Size>3</Size></Version>"
        )
    };
    let marker = |key: &str, id: &str, latest: bool, at: &str| {
        format!(
            "<DeleteMarker><Key>{key}</Key><VersionId>{id}</VersionId><IsLatest>{latest}</IsLatest><LastModified>{at}</LastModified></DeleteMarker>"
        )
    };
    let first = format!(
        "{}{}{}",
        marker("p/a", "m1", true, "2026-01-03T00:00:00.000Z"),
        version("p/a", "a2", false, "2026-01-02T00:00:00.000Z"),
        version("p/a", "a1", false, "2026-01-01T00:00:00.000Z"),
    );
    let second = format!(
        "{}{}",
        version("p/b", "b2", true, "2026-01-05T00:00:00.000Z"),
        marker("p/b", "m0", false, "2026-01-04T00:00:00.000Z"),
    );
    let (endpoint, requests) = serve(vec![
        page(&first, Some(("p/a", "a1"))),
        page(&second, None),
        page(&first, Some(("p/a", "a1"))),
        page(&first, Some(("p/a", "a1"))),
    ])
    .await;
    let store = store(endpoint).await;
    let versions = store.list_versions("p/").await.unwrap();
    let got: Vec<(&str, &str, bool, bool)> = versions
        .iter()
        .map(|v| {
            (
                v.key.as_str(),
                v.version_id.as_str(),
                v.is_latest,
                v.is_delete_marker,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("p/a", "m1", true, true),
            ("p/a", "a2", false, false),
            ("p/a", "a1", false, false),
            ("p/b", "b2", true, false),
            ("p/b", "m0", false, true),
        ]
    );
    assert_eq!(versions[1].etag.as_deref(), Some("\"ea2\""));
    assert_eq!(versions[1].size, 3);
    assert_eq!(versions[1].last_modified, Some(1_767_312_000));
    // A marker pair that repeats is an error, not a short listing.
    let err = store.list_versions("p/").await.unwrap_err();
    assert!(err.to_string().contains("does not advance"), "{err}");

    let requests = requests.lock().unwrap();
    assert!(
        requests[0].head.contains("?versions"),
        "{}",
        requests[0].head
    );
    assert!(
        requests[1].head.contains("key-marker=p%2Fa")
            && requests[1].head.contains("version-id-marker=a1"),
        "{}",
        requests[1].head
    );
}

#[tokio::test]
async fn put_retention_names_the_version_and_never_bypasses() {
    let (endpoint, requests) = serve(vec![ok(Vec::new(), "")]).await;
    store(endpoint)
        .await
        .put_retention(
            "p/a",
            "a2",
            z3_s3::Retention {
                mode: z3_s3::RetentionMode::Governance,
                retain_until: 1_900_000_000,
            },
        )
        .await
        .unwrap();
    let requests = requests.lock().unwrap();
    let retention = &requests[0];
    assert!(
        retention.head.starts_with("PUT /bucket/p/a?retention"),
        "{}",
        retention.head
    );
    let body = String::from_utf8_lossy(&retention.body);
    assert!(body.contains("<Mode>GOVERNANCE</Mode>"), "{body}");
    assert!(
        body.contains("<RetainUntilDate>2030-03-17T17:46:40Z</RetainUntilDate>"),
        "{body}"
    );
    assert_eq!(retention.header("x-amz-bypass-governance-retention"), None);
    // PutObjectRetention requires an integrity header; the SDK computes one for this small body.
    assert!(
        retention.header("content-md5").is_some()
            || retention
                .head
                .to_ascii_lowercase()
                .contains("x-amz-checksum-"),
        "{}",
        retention.head
    );
    assert!(
        retention
            .head
            .lines()
            .next()
            .unwrap()
            .contains("versionId=a2")
    );
}
