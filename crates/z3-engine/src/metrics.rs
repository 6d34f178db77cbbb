//! `--metrics-dir`: one Prometheus textfile-collector file per dataset (`z3_<dataset>.prom`),
//! rewritten after every backup run, so that an alert catches a backup that silently stopped.
//!
//! The file is written to a temporary file in the same directory and renamed over the old one:
//! `node_exporter`'s textfile collector never reads half a file. A failed run keeps the previous
//! file's last success time, so "time since the last success" keeps growing until one succeeds.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// What one backup run did, for [`render`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackupMetrics {
    /// The dataset.
    pub dataset: String,
    /// When the run started (Unix seconds).
    pub attempt: u64,
    /// When the last successful run ended (Unix seconds): this run's end when it succeeded,
    /// else the previous file's value, if any.
    pub last_success: Option<u64>,
    /// The run's exit code as the z3 binary reports it (0 success, 1 error, 2 usage, 3
    /// integrity, 4 locked, 128 + signal when interrupted).
    pub exit_code: u8,
    /// Bytes `zfs send` produced in this run.
    pub bytes_read: u64,
    /// Bytes uploaded in this run.
    pub bytes_stored: u64,
    /// How long the run took.
    pub duration_secs: f64,
    /// Backup objects of the dataset after the run, when the bucket could be read.
    pub objects: Option<usize>,
    /// How many objects a restore of the newest backup receives.
    pub chain_depth: Option<usize>,
    /// Age of the newest backup's upload at the end of the run.
    pub newest_age_secs: Option<u64>,
}

/// The metric names and their help, in the order they are written.
const METRICS: [(&str, &str); 9] = [
    (
        "z3_backup_last_success_timestamp_seconds",
        "End of the last successful z3 backup run (Unix time).",
    ),
    (
        "z3_backup_last_attempt_timestamp_seconds",
        "Start of the last z3 backup run (Unix time).",
    ),
    (
        "z3_backup_last_exit_code",
        "Exit code of the last z3 backup run (0 success, 1 error, 2 usage, 3 integrity, 4 locked).",
    ),
    (
        "z3_backup_last_read_bytes",
        "Bytes zfs send produced in the last run.",
    ),
    (
        "z3_backup_last_stored_bytes",
        "Bytes uploaded in the last run.",
    ),
    (
        "z3_backup_last_duration_seconds",
        "Duration of the last run.",
    ),
    ("z3_backup_objects", "Backup objects of the dataset."),
    (
        "z3_backup_chain_depth",
        "Objects a restore of the newest backup receives.",
    ),
    (
        "z3_backup_newest_age_seconds",
        "Age of the newest backup's upload at the end of the last run.",
    ),
];

/// The file's text: `# HELP` and `# TYPE` (gauge) for every metric, and a sample labelled
/// `dataset="…"` for every value known.
#[must_use]
pub fn render(metrics: &BackupMetrics) -> String {
    let values: [Option<String>; 9] = [
        metrics.last_success.map(|v| v.to_string()),
        Some(metrics.attempt.to_string()),
        Some(metrics.exit_code.to_string()),
        Some(metrics.bytes_read.to_string()),
        Some(metrics.bytes_stored.to_string()),
        Some(format!("{:.3}", metrics.duration_secs)),
        metrics.objects.map(|v| v.to_string()),
        metrics.chain_depth.map(|v| v.to_string()),
        metrics.newest_age_secs.map(|v| v.to_string()),
    ];
    let label = escape_label(&metrics.dataset);
    let mut text = String::new();
    for ((name, help), value) in METRICS.iter().zip(values) {
        let Some(value) = value else { continue };
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} gauge");
        let _ = writeln!(text, "{name}{{dataset=\"{label}\"}} {value}");
    }
    text
}

/// The last success time a file written by [`render`] records, if any.
#[must_use]
pub fn last_success(text: &str) -> Option<u64> {
    text.lines()
        .find(|line| line.starts_with("z3_backup_last_success_timestamp_seconds{"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// The file of `dataset` in `dir`: `z3_<dataset>.prom`, the name kept to ASCII letters,
/// digits, `.` and `-`, `/` written as `_` and every other byte as `%XX` (so two datasets never
/// share a file).
#[must_use]
pub fn file_of(dir: &Path, dataset: &str) -> PathBuf {
    let mut name = String::from("z3_");
    for byte in dataset.bytes() {
        match byte {
            b'/' => name.push('_'),
            b if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' => name.push(char::from(b)),
            b => {
                let _ = write!(name, "%{b:02X}");
            }
        }
    }
    name.push_str(".prom");
    dir.join(name)
}

/// Writes `metrics` to [`file_of`]`(dir, dataset)`, through a temporary file in `dir` renamed
/// over it; when `metrics.last_success` is `None`, the previous file's is kept.
///
/// # Errors
/// The directory cannot be written.
pub fn write(dir: &Path, metrics: &BackupMetrics) -> std::io::Result<PathBuf> {
    let path = file_of(dir, &metrics.dataset);
    let mut metrics = metrics.clone();
    if metrics.last_success.is_none() {
        metrics.last_success = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| last_success(&text));
    }
    let mut file = tempfile::Builder::new()
        .prefix(".z3_")
        .suffix(".prom.tmp")
        .tempfile_in(dir)?;
    file.write_all(render(&metrics).as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BackupMetrics {
        BackupMetrics {
            dataset: "tank/data set".into(),
            attempt: 1_800_000_000,
            last_success: Some(1_800_000_060),
            exit_code: 0,
            bytes_read: 1000,
            bytes_stored: 400,
            duration_secs: 60.25,
            objects: Some(12),
            chain_depth: Some(3),
            newest_age_secs: Some(0),
        }
    }

    /// Parsed by a Prometheus text-format parser, not matched with a regex: every sample has
    /// its value and label, and every metric its type.
    #[test]
    fn the_file_parses_as_prometheus_text() {
        let text = render(&sample());
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        assert_eq!(scrape.samples.len(), 9, "{text}");
        let value = |name: &str| {
            let sample = scrape.samples.iter().find(|s| s.metric == name).unwrap();
            assert_eq!(sample.labels.get("dataset"), Some("tank/data set"));
            match sample.value {
                prometheus_parse::Value::Gauge(v) => v,
                ref other => panic!("{name}: {other:?}"),
            }
        };
        assert!((value("z3_backup_last_success_timestamp_seconds") - 1_800_000_060.0).abs() < 1.0);
        assert!((value("z3_backup_last_duration_seconds") - 60.25).abs() < 1e-9);
        assert!((value("z3_backup_chain_depth") - 3.0).abs() < 1e-9);
        assert_eq!(scrape.docs.len(), 9);
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_and_unknown_values_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &sample()).unwrap();
        assert_eq!(path, dir.path().join("z3_tank_data%20set.prom"));
        let failed = BackupMetrics {
            attempt: 1_800_086_400,
            last_success: None,
            exit_code: 1,
            objects: None,
            chain_depth: None,
            newest_age_secs: None,
            ..sample()
        };
        write(dir.path(), &failed).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(last_success(&text), Some(1_800_000_060), "{text}");
        assert!(text.contains("z3_backup_last_exit_code{dataset=\"tank/data set\"} 1"));
        assert!(!text.contains("z3_backup_objects"), "{text}");
        // Only the .prom file is left: the temporary one was renamed.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // Datasets whose names differ only in `_` and `/` get different files.
        assert_ne!(file_of(dir.path(), "a/b_c"), file_of(dir.path(), "a_b/c"));
    }
}
