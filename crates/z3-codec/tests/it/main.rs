//! Integration tests for z3-codec: real programs (`pigz`, `gpg`, `gzip`, `sh`, `cat`) behind the `Codec` trait.
//!
//! Tests that need a program other than `sh` and `cat` skip with a message when it is missing.

mod age;
mod failures;
mod gpg;
mod inproc;
mod prop;
mod round_trip;
mod support;
