//! Integration tests of z3-zfs: the conformance checks on the fake and (gated on
//! `Z3_TEST_ZPOOL`) on a real pool, and `ZfsCli`'s dialect detection against scripted `zfs`
//! stand-ins.

mod cli_dialect;
mod fake_conformance;
mod real_zfs;
