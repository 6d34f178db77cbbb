//! The JSON z3 writes with `--json`, schema 1 (docs/json.md has the whole contract).
//!
//! Two shapes:
//! - `status --json` (and `status --all --json`) write one pretty-printed document: the report,
//!   with `"schema": 1` added.
//! - `backup`, `restore`, `verify`, `prune` and `z3_mp_cleanup` stream: one JSON object per
//!   line, each [`Event`] as it happens (tagged by `"event"`, notes included),
//!   and last a [`finished`] line with the exit code and either the command's report or its
//!   error. A consumer reads lines until `"event": "finished"`.
//!
//! Every document and line carries `"schema": 1`. Within schema 1 keys may be added; a key that
//! changes meaning or goes away raises the number.

use std::io::Write;

use serde::Serialize;

use crate::report::{Event, Events};

/// The version of the JSON z3 writes (the `"schema"` key of every document and line).
pub const SCHEMA: u32 = 1;

/// `value`'s keys with `"schema"` first.
#[derive(Serialize)]
struct Stamped<'a, T: ?Sized> {
    schema: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// Writes `value` (which must serialize as a JSON object) as one line with `"schema": 1`, and
/// flushes, so a reader sees each event when it happens.
///
/// # Errors
/// The write's, or serde's if `value` is not an object.
pub fn write_line<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> std::io::Result<()> {
    let stamped = Stamped {
        schema: SCHEMA,
        body: value,
    };
    serde_json::to_writer(&mut *out, &stamped)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Writes `value` (an object) as one pretty-printed document with `"schema": 1`.
///
/// # Errors
/// As [`write_line`].
pub fn write_document<T: Serialize + ?Sized>(
    out: &mut dyn Write,
    value: &T,
) -> std::io::Result<()> {
    let stamped = Stamped {
        schema: SCHEMA,
        body: value,
    };
    serde_json::to_writer_pretty(&mut *out, &stamped)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The last line of a streamed run.
#[derive(Serialize)]
struct Finished<'a, R> {
    event: &'static str,
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataset: Option<&'a str>,
    exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<&'a R>,
}

/// Writes the `finished` line that closes a run of `command` (for `dataset`, where there is
/// one): the exit code the process exits with and, as `result`, the command's report or its
/// error message.
///
/// # Errors
/// As [`write_line`].
pub fn finished<R: Serialize>(
    out: &mut dyn Write,
    command: &str,
    dataset: Option<&str>,
    exit_code: u8,
    result: Result<&R, &str>,
) -> std::io::Result<()> {
    write_line(
        out,
        &Finished {
            event: "finished",
            command,
            dataset,
            exit_code,
            error: result.err(),
            report: result.ok(),
        },
    )
}

/// [`Events`] as JSON lines on `out` (see the module).
#[derive(Debug)]
pub struct JsonLines<W>(pub W);

impl<W: Write + Send> Events for JsonLines<W> {
    fn event(&mut self, event: Event) -> std::io::Result<()> {
        write_line(&mut self.0, &event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Kind, ObjectVerification, PruneReport, Pruned, Verdict};
    use serde_json::Value;

    fn lines(bytes: &[u8]) -> Vec<Value> {
        std::str::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn every_event_is_one_line_with_the_schema_and_its_tag() {
        let mut sink = JsonLines(Vec::new());
        sink.event(Event::Note {
            text: "a note\nwith a newline".into(),
        })
        .unwrap();
        sink.event(Event::Verified(ObjectVerification {
            name: "pool/fs@a".into(),
            kind: Kind::Full,
            verdict: Verdict::Failed,
            detail: "digest differs".into(),
        }))
        .unwrap();
        let got = lines(&sink.0);
        assert_eq!(got.len(), 2, "{}", String::from_utf8_lossy(&sink.0));
        assert_eq!(got[0]["schema"], 1);
        assert_eq!(got[0]["event"], "note");
        assert_eq!(got[0]["text"], "a note\nwith a newline");
        assert_eq!(got[1]["event"], "verified");
        assert_eq!(got[1]["verdict"], "failed");
        assert_eq!(got[1]["kind"], "full");
    }

    #[test]
    fn the_finished_line_carries_the_report_or_the_error_never_both() {
        let report = PruneReport {
            dry_run: true,
            deleted: vec![Pruned {
                name: "pool/fs@a".into(),
                what: "object".into(),
                key: "z3/pool/fs@a".into(),
                reason: "expired".into(),
                bytes: 10,
                dry_run: true,
            }],
            kept: vec![],
            bytes_freed: 10,
            early_delete_gib_days: 0.0,
            locks_extended: vec![],
        };
        let mut out = Vec::new();
        finished(&mut out, "prune", Some("pool/fs"), 0, Ok(&report)).unwrap();
        finished::<PruneReport>(&mut out, "backup", None, 4, Err("lock held")).unwrap();
        let got = lines(&out);
        assert_eq!(got[0]["event"], "finished");
        assert_eq!(got[0]["schema"], SCHEMA);
        assert_eq!(got[0]["dataset"], "pool/fs");
        assert_eq!(got[0]["exit_code"], 0);
        assert_eq!(got[0]["report"]["deleted"][0]["key"], "z3/pool/fs@a");
        assert!(got[0].get("error").is_none());
        assert_eq!(got[1]["exit_code"], 4);
        assert_eq!(got[1]["error"], "lock held");
        assert!(got[1].get("report").is_none() && got[1].get("dataset").is_none());
    }

    #[test]
    fn a_document_is_pretty_and_stamped() {
        let mut out = Vec::new();
        write_document(&mut out, &serde_json::json!({"dataset": "pool/fs"})).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.lines().count() > 1, "{text}");
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["schema"], 1);
        assert_eq!(value["dataset"], "pool/fs");
    }

    #[test]
    fn a_value_that_is_not_an_object_is_an_error_not_a_bad_line() {
        let mut out = Vec::new();
        assert!(write_line(&mut out, &42).is_err());
    }
}
