//! Where the commands write: results to stdout, notes to stderr (a pair of writers tests replace).

use std::io::Write;

/// Where commands write: results to `out` (stdout), notes to `err` (stderr).
pub struct Console<'a> {
    /// Results, one line each (scripts read this).
    pub out: &'a mut (dyn Write + Send),
    /// Notes for humans.
    pub err: &'a mut (dyn Write + Send),
}

impl std::fmt::Debug for Console<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}
