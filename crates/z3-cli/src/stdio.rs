//! Standard input and output for `pput` and `z3_get` as blocking files, for z3-s3's threads
//! ([`z3_s3::MultipartUploader::upload_blocking`], [`z3_s3::Downloader::download_blocking`]).
//!
//! Both are duplicates of the descriptor (`dup`), so they share the file offset and flags of the
//! process's own stdin/stdout (`>>` appends, a seekable file continues where it was); a pipe's
//! kernel buffer is enlarged ([`z3_s3::grow_pipe`]).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

/// A duplicate of this process's standard input.
///
/// # Errors
/// The descriptor cannot be duplicated.
pub fn stdin_file() -> io::Result<File> {
    let file = File::from(io::stdin().as_fd().try_clone_to_owned()?);
    z3_s3::grow_pipe(&file);
    Ok(file)
}

/// A duplicate of this process's standard output.
///
/// # Errors
/// The descriptor cannot be duplicated.
pub fn stdout_file() -> io::Result<File> {
    let file = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    z3_s3::grow_pipe(&file);
    Ok(file)
}
