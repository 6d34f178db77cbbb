//! Integration tests for z3-s3, one binary: uploader and downloader over the in-memory fakes,
//! the conformance suite (always on `MemoryStore`, on a real S3 server when
//! `Z3_TEST_S3_ENDPOINT` is set), and `AwsStore` against a canned local HTTP server.

mod aws_offline;
mod conformance;
mod download;
mod resume;
mod support;
mod upload;
