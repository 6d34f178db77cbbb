//! Runnable examples of the z3 libraries; each runs offline on `FakeZfs` and `MemoryStore`.
//!
//! `cargo run -p z3-examples --example backup_restore` and `--example plan`.
