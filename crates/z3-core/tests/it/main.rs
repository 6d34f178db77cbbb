//! Integration tests of z3-core through its public API: the upstream test suite's scenarios,
//! the fixes of the original's bugs, and property tests of the planners.

// Tests may unwrap: a panic is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod fixes;
mod fixtures;
mod fuzz;
mod overwrite;
mod props;
mod ssh_sync;
mod status;
mod upstream_snap;
