//! `AwsStore` against a canned HTTP server on 127.0.0.1: one attempt per call (SDK retries are
//! off) and the error mapping, including S3's HTTP 200 error bodies and cut-short GET bodies.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use z3_s3::{
    AwsStore, CompletedPart, ErrorKind, ObjectStore, PartNumber, S3Config, StaticCredentials,
    UploadId,
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

/// Serves `responses` in order, one per connection, and records each request line.
async fn serve(responses: Vec<Canned>) -> (String, Arc<Mutex<Vec<String>>>) {
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
            log.lock()
                .unwrap()
                .push(head.lines().next().unwrap_or_default().to_owned());
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
    assert!(requests[0].starts_with("PUT /bucket/k?"), "{requests:?}");
    assert!(requests[0].contains("partNumber=7"), "{requests:?}");
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
        checksum_crc32: None,
    }];
    let err = store(endpoint)
        .await
        .complete_multipart("k", &UploadId::new("u"), parts)
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
        .complete_multipart("k", &UploadId::new("u"), Vec::new())
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
        err.to_string().contains("bucket bucket does not exist"),
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
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
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
    assert!(requests[0].starts_with("GET /bucket/k"), "{requests:?}");
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
