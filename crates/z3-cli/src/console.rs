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

/// Renders the engine's events as lines (the original z3's output).
pub(crate) trait Render: Send {
    /// Writes `event`'s lines, if it has any.
    fn render(&mut self, event: z3_engine::Event) -> std::io::Result<()>;
}

/// A [`Render`] as the engine's [`z3_engine::Events`], keeping the write that failed: the
/// command's error is then that write's, so a closed stdout is reported as such
/// ([`crate::exit::run_main`]).
pub(crate) struct Rendered<R> {
    pub(crate) inner: R,
    pub(crate) failed: Option<std::io::Error>,
}

impl<R> Rendered<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            failed: None,
        }
    }

    /// The engine's error, or the failed write that caused it.
    pub(crate) fn error(&mut self, err: z3_engine::Error) -> anyhow::Error {
        match self.failed.take() {
            Some(write) => write.into(),
            None => err.into(),
        }
    }
}

impl<R: Render + ?Sized> Render for Box<R> {
    fn render(&mut self, event: z3_engine::Event) -> std::io::Result<()> {
        (**self).render(event)
    }
}

impl<R: Render> z3_engine::Events for Rendered<R> {
    fn event(&mut self, event: z3_engine::Event) -> std::io::Result<()> {
        self.inner.render(event).map_err(|err| {
            let kind = err.kind();
            self.failed = Some(err);
            std::io::Error::from(kind)
        })
    }
}
