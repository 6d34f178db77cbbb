//! Integration tests of the z3 CLI: engine tests on fakes, and the end-to-end suite on real zfs-fuse and SeaweedFS.

mod cleanup;
mod cli;
mod e2e;
mod engine;
mod first_errors;
mod fuzz;
mod immutable;
mod json;
mod lock;
mod many;
mod moto;
mod object_lock;
mod original;
mod overwrite;
mod promises;
mod prune;
mod reference;
mod restore_to;
mod retention;
mod rollback;
mod seals;
mod ssh_sync;
mod support;
mod sync;
mod transfer;
mod year;
