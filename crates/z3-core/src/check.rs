//! `z3 status --check`: one dataset's backups judged the way monitoring plugins report
//! (Nagios, Icinga, Zabbix's and Checkmk's plugin runners): a state, one summary line, and
//! performance data after a `|`.
//!
//! The state is also the exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. A freshness alert
//! is what catches a backup that silently stopped weeks ago, so age is measured from the newest
//! backup's upload (its `Last-Modified`), not from its snapshot.

use std::fmt;
use std::time::Duration;

/// A monitoring-plugin state; its discriminant is the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum State {
    /// 0: fresh and intact.
    Ok = 0,
    /// 1: older than the warning age.
    Warning = 1,
    /// 2: older than the critical age, no backup at all, or a broken chain.
    Critical = 2,
    /// 3: the state could not be found out (any error, usage errors included).
    Unknown = 3,
}

impl State {
    /// The exit code.
    #[must_use]
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "OK",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
            Self::Unknown => "UNKNOWN",
        })
    }
}

/// `--warn-age` and `--crit-age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Older than this is a warning.
    pub warn: Duration,
    /// Older than this is critical.
    pub crit: Duration,
}

/// What the check looks at, for one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckInput<'a> {
    /// The dataset.
    pub dataset: &'a str,
    /// The newest backup (`dataset@snapshot`) and how long ago it was uploaded; `None` when
    /// there is none (or its upload time is unknown).
    pub newest: Option<(&'a str, Duration)>,
    /// Backup objects of the dataset.
    pub objects: usize,
    /// Objects whose chain is broken (or that lack their seal).
    pub broken: usize,
    /// How many objects a restore of the newest backup receives.
    pub depth: Option<usize>,
}

/// The verdict: the state and the line a monitoring system shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The state (and exit code).
    pub state: State,
    /// `Z3 OK - pool/fs: newest backup pool/fs@snap 3h 2m ago, 12 objects | age=10920s;…`.
    pub line: String,
}

/// Judges `input` against `thresholds`: CRITICAL when there is no backup, a chain is broken, or
/// the newest backup is older than `crit`; WARNING when older than `warn`; OK otherwise.
#[must_use]
pub fn check(input: &CheckInput<'_>, thresholds: Thresholds) -> Check {
    let (state, what) = match input.newest {
        None => (State::Critical, "no backup".to_owned()),
        Some((name, age)) => {
            let state = if age > thresholds.crit {
                State::Critical
            } else if age > thresholds.warn {
                State::Warning
            } else {
                State::Ok
            };
            (
                state,
                format!("newest backup {name} {} ago", human_age(age)),
            )
        }
    };
    let (state, broken) = if input.broken > 0 {
        (
            State::Critical,
            format!(", {} broken or unsealed", input.broken),
        )
    } else {
        (state, String::new())
    };
    let mut perf = Vec::new();
    if let Some((_, age)) = input.newest {
        perf.push(format!(
            "age={}s;{};{};0",
            age.as_secs(),
            thresholds.warn.as_secs(),
            thresholds.crit.as_secs()
        ));
    }
    perf.push(format!("objects={};;;0", input.objects));
    perf.push(format!("broken={};;;0", input.broken));
    if let Some(depth) = input.depth {
        perf.push(format!("depth={depth};;;0"));
    }
    Check {
        state,
        line: format!(
            "Z3 {state} - {}: {what}, {} objects{broken} | {}",
            input.dataset,
            input.objects,
            perf.join(" ")
        ),
    }
}

/// The UNKNOWN line for an error (one line; the monitoring system shows it).
#[must_use]
pub fn unknown(error: &str) -> Check {
    let first = error.lines().next().unwrap_or_default();
    Check {
        state: State::Unknown,
        line: format!("Z3 UNKNOWN - {first}"),
    }
}

/// Parses an age: a whole number with `s`, `m`, `h`, `d` or `w` (`26h`, `2d`).
///
/// # Errors
/// A message saying what is expected.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let unit = match text.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        Some('w') => 7 * 86_400,
        _ => {
            return Err(format!(
                "'{text}': expected a number and s, m, h, d or w (e.g. 26h)"
            ));
        }
    };
    let number = &text[..text.len() - 1];
    number
        .parse::<u64>()
        .ok()
        .filter(|_| number.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.checked_mul(unit))
        .map(Duration::from_secs)
        .ok_or_else(|| format!("'{text}': expected a number and s, m, h, d or w (e.g. 26h)"))
}

fn human_age(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        warn: Duration::from_hours(26),
        crit: Duration::from_hours(50),
    };

    fn input(age_h: Option<u64>, broken: usize) -> CheckInput<'static> {
        CheckInput {
            dataset: "pool/fs",
            newest: age_h.map(|h| ("pool/fs@snap9", Duration::from_secs(h * 3600))),
            objects: 9,
            broken,
            depth: Some(3),
        }
    }

    #[test]
    fn fresh_stale_missing_and_broken_backups() {
        let ok = check(&input(Some(3), 0), T);
        assert_eq!(ok.state, State::Ok);
        assert_eq!(
            ok.line,
            "Z3 OK - pool/fs: newest backup pool/fs@snap9 3h 0m ago, 9 objects | \
             age=10800s;93600;180000;0 objects=9;;;0 broken=0;;;0 depth=3;;;0"
        );
        assert_eq!(check(&input(Some(27), 0), T).state, State::Warning);
        assert_eq!(
            check(&input(Some(26), 0), T).state,
            State::Ok,
            "at the threshold"
        );
        let stale = check(&input(Some(51), 0), T);
        assert_eq!((stale.state, stale.state.code()), (State::Critical, 2));
        assert!(stale.line.contains("2d 3h ago"), "{}", stale.line);
        let none = check(&input(None, 0), T);
        assert_eq!(none.state, State::Critical);
        assert!(
            none.line
                .starts_with("Z3 CRITICAL - pool/fs: no backup, 9 objects |")
        );
        let broken = check(&input(Some(1), 2), T);
        assert_eq!(broken.state, State::Critical);
        assert!(
            broken.line.contains("2 broken or unsealed"),
            "{}",
            broken.line
        );
        let err = unknown("cannot list s3://b/p: access denied\nmore");
        assert_eq!(
            (err.state.code(), err.line.as_str()),
            (3, "Z3 UNKNOWN - cannot list s3://b/p: access denied")
        );
    }

    #[test]
    fn ages_parse_with_units_only() {
        assert_eq!(parse_age("26h"), Ok(Duration::from_hours(26)));
        assert_eq!(parse_age("2d"), Ok(Duration::from_hours(48)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_mins(90)));
        for bad in ["", "26", "h", "-1h", "1.5h", "+2d", "99999999999999999999w"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
