//! Validated ZFS dataset and snapshot names (OpenZFS `zfs_namecheck.c` rules).

use std::fmt;
use std::str::FromStr;

/// Why a name was refused. The `Display` text names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} '{name}': {reason}")]
pub struct NameError {
    /// "dataset name", "snapshot name" or "full snapshot name".
    pub what: &'static str,
    /// The input as given.
    pub name: String,
    /// Lowercase reason, e.g. "invalid character '!' in name".
    pub reason: String,
}

/// A dataset (filesystem or volume) name such as `pool/fs`.
///
/// Rules: components separated by `/`, none empty, each of `a-z A-Z 0-9 - _ . :` and space,
/// no component equal to `.` or `..`, the pool (first component) begins with a letter,
/// the whole name shorter than 256 bytes, fewer than 50 `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DatasetName(String);

/// The part of a snapshot name after `@`, such as `zfs-auto-snap:daily-2024-01-01`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotName(String);

/// `dataset@snapshot`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FullSnapshotName {
    dataset: DatasetName,
    snapshot: SnapshotName,
}

/// Longest full name ZFS accepts, in bytes (`ZFS_MAX_DATASET_NAME_LEN` - 1).
pub const MAX_NAME_LEN: usize = 255;
/// ZFS refuses names nested this deep or deeper (`zfs_max_dataset_nesting`).
pub const MAX_NESTING: usize = 50;

fn err(what: &'static str, name: &str, reason: impl Into<String>) -> NameError {
    NameError {
        what,
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// Checks the characters of one component (pool, filesystem or snapshot part).
fn check_component(what: &'static str, full: &str, component: &str) -> Result<(), NameError> {
    if component.is_empty() {
        return Err(err(what, full, "empty component in name"));
    }
    if let Some(bad) = component
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | ' ')))
    {
        return Err(err(
            what,
            full,
            format!("invalid character '{bad}' in name"),
        ));
    }
    if component == "." {
        return Err(err(what, full, "self reference, '.' is found in name"));
    }
    if component == ".." {
        return Err(err(what, full, "parent reference, '..' is found in name"));
    }
    Ok(())
}

impl DatasetName {
    /// Validates `name` as a dataset name.
    ///
    /// # Errors
    /// [`NameError`] naming the rule that `name` breaks.
    pub fn new(name: &str) -> Result<Self, NameError> {
        const WHAT: &str = "dataset name";
        if name.is_empty() {
            return Err(err(WHAT, name, "empty name"));
        }
        if name.contains('@') {
            return Err(err(
                WHAT,
                name,
                "snapshot delimiter '@' is not expected here",
            ));
        }
        if name.starts_with('/') {
            return Err(err(WHAT, name, "leading slash in name"));
        }
        if name.ends_with('/') {
            return Err(err(WHAT, name, "trailing slash in name"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(err(WHAT, name, "name is too long"));
        }
        if name.matches('/').count() >= MAX_NESTING {
            return Err(err(WHAT, name, "maximum name nesting depth exceeded"));
        }
        for component in name.split('/') {
            check_component(WHAT, name, component)?;
        }
        if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(err(WHAT, name, "pool name must begin with a letter"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pool, i.e. the first component.
    #[must_use]
    pub fn pool(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

impl SnapshotName {
    /// Validates `name` as the part of a snapshot name after `@`.
    ///
    /// # Errors
    /// [`NameError`] naming the rule that `name` breaks.
    pub fn new(name: &str) -> Result<Self, NameError> {
        const WHAT: &str = "snapshot name";
        if name.contains('@') {
            return Err(err(WHAT, name, "multiple '@' delimiters in name"));
        }
        if name.contains('/') {
            return Err(err(WHAT, name, "'/' is not allowed in a snapshot name"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(err(WHAT, name, "name is too long"));
        }
        check_component(WHAT, name, name)?;
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FullSnapshotName {
    /// Joins a dataset and a snapshot name, checking the combined length.
    ///
    /// # Errors
    /// [`NameError`] when `dataset@snapshot` is longer than ZFS allows.
    pub fn new(dataset: DatasetName, snapshot: SnapshotName) -> Result<Self, NameError> {
        let len = dataset.0.len() + 1 + snapshot.0.len();
        if len > MAX_NAME_LEN {
            return Err(err(
                "full snapshot name",
                &format!("{}@{}", dataset.0, snapshot.0),
                "name is too long",
            ));
        }
        Ok(Self { dataset, snapshot })
    }

    /// Parses `dataset@snapshot`.
    ///
    /// # Errors
    /// [`NameError`] when there is no `@` or either part is invalid.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let Some((dataset, snapshot)) = name.split_once('@') else {
            return Err(err(
                "full snapshot name",
                name,
                "missing '@' delimiter in snapshot name",
            ));
        };
        Self::new(DatasetName::new(dataset)?, SnapshotName::new(snapshot)?)
    }

    /// The dataset part.
    #[must_use]
    pub fn dataset(&self) -> &DatasetName {
        &self.dataset
    }

    /// The part after `@`.
    #[must_use]
    pub fn snapshot(&self) -> &SnapshotName {
        &self.snapshot
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for FullSnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.dataset, self.snapshot)
    }
}

impl FromStr for DatasetName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl FromStr for SnapshotName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl FromStr for FullSnapshotName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for DatasetName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SnapshotName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that `name` parses as a full snapshot name and displays unchanged.
    fn valid(name: &str) {
        let parsed = FullSnapshotName::parse(name)
            .unwrap_or_else(|e| panic!("{name:?} should be valid: {e}"));
        assert_eq!(parsed.to_string(), name);
        assert_eq!(name.parse::<FullSnapshotName>().unwrap(), parsed);
    }

    /// Asserts that `name` is refused as a full snapshot name with `reason`.
    fn invalid(name: &str, reason: &str) {
        let err = FullSnapshotName::parse(name).expect_err(name);
        assert_eq!(err.reason, reason, "{name:?}");
        assert!(name.contains(err.name.as_str()), "{name:?}: {err}");
    }

    #[test]
    fn accepted_names_from_the_captures() {
        // docs/compatibility.md, "ZFS names": spaces and ':' are allowed, as are '-', '_' and '.'.
        for name in [
            "fxpool/src@sp ace",
            "fxpool/src@co:lon-da_sh.dot",
            "pool/fs@zfs-auto-snap:daily-2024-01-01",
            "pool/fs@zfs-auto-snap_hourly-2024-01-01-1000",
            "pool@snap_p1",
            "p/a.b/c..d/.e@x",
            "pool/with space/x@y",
            "pool@...",
        ] {
            valid(name);
        }
    }

    #[test]
    fn refused_names_from_the_spec() {
        let cases = [
            ("fxpool/src@pct%x", "invalid character '%' in name"),
            ("fxpool/src@a@b", "multiple '@' delimiters in name"),
            ("fxpool/src@", "empty component in name"),
            ("fxpool/src@x/y", "'/' is not allowed in a snapshot name"),
            ("fxpool//x@s", "empty component in name"),
            ("/fxpool/x@s", "leading slash in name"),
            ("fxpool/x/@s", "trailing slash in name"),
            ("fxpool/a#b@s", "invalid character '#' in name"),
            ("fxpool/\u{fc}@s", "invalid character '\u{fc}' in name"),
            ("fxpool/src@bad name!", "invalid character '!' in name"),
            ("fxpool/.@s", "self reference, '.' is found in name"),
            ("fxpool/..@s", "parent reference, '..' is found in name"),
            ("fxpool/src@.", "self reference, '.' is found in name"),
            ("fxpool/src@..", "parent reference, '..' is found in name"),
            ("1pool/fs@s", "pool name must begin with a letter"),
            ("_pool@s", "pool name must begin with a letter"),
            ("@s", "empty name"),
            ("pool/fs", "missing '@' delimiter in snapshot name"),
            ("", "missing '@' delimiter in snapshot name"),
            ("pool/fs@@s", "multiple '@' delimiters in name"),
            ("pool/fs@s\t", "invalid character '\t' in name"),
        ];
        for (name, reason) in cases {
            invalid(name, reason);
        }
    }

    #[test]
    fn length_limit_is_255_bytes_for_the_full_name() {
        let dataset = "pool/fs";
        let snap_255 = "s".repeat(255 - dataset.len() - 1);
        let name_255 = format!("{dataset}@{snap_255}");
        assert_eq!(name_255.len(), 255);
        valid(&name_255);
        let name_256 = format!("{name_255}s");
        invalid(&name_256, "name is too long");
        // Each part alone is also limited.
        assert!(DatasetName::new(&"d".repeat(255)).is_ok());
        assert_eq!(
            DatasetName::new(&"d".repeat(256)).unwrap_err().reason,
            "name is too long"
        );
        assert_eq!(
            SnapshotName::new(&"s".repeat(256)).unwrap_err().reason,
            "name is too long"
        );
    }

    #[test]
    fn nesting_limit() {
        let ok = format!("p{}", "/c".repeat(MAX_NESTING - 1));
        assert!(DatasetName::new(&ok).is_ok());
        let deep = format!("p{}", "/c".repeat(MAX_NESTING));
        assert_eq!(
            DatasetName::new(&deep).unwrap_err().reason,
            "maximum name nesting depth exceeded"
        );
    }

    #[test]
    fn dataset_and_snapshot_parts() {
        let ds = DatasetName::new("tank/home/user").unwrap();
        assert_eq!(ds.pool(), "tank");
        assert_eq!(DatasetName::new("tank").unwrap().pool(), "tank");
        assert_eq!(
            DatasetName::new("tank@x").unwrap_err().reason,
            "snapshot delimiter '@' is not expected here"
        );
        let full = FullSnapshotName::parse("tank/home@daily").unwrap();
        assert_eq!(full.dataset().as_str(), "tank/home");
        assert_eq!(full.snapshot().as_str(), "daily");
        let err = FullSnapshotName::parse("tank/home@bad!").unwrap_err();
        assert_eq!(err.what, "snapshot name");
        assert_eq!(
            err.to_string(),
            "invalid snapshot name 'bad!': invalid character '!' in name"
        );
        let joined = FullSnapshotName::new(ds.clone(), SnapshotName::new("s").unwrap()).unwrap();
        assert_eq!(joined.to_string(), "tank/home/user@s");
        let long = FullSnapshotName::new(ds, SnapshotName::new(&"s".repeat(250)).unwrap());
        assert_eq!(long.unwrap_err().what, "full snapshot name");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(input in "\\PC{0,80}") {
            if let Ok(name) = FullSnapshotName::parse(&input) {
                proptest::prop_assert_eq!(name.to_string(), input.clone());
            }
            if let Ok(name) = DatasetName::new(&input) {
                proptest::prop_assert_eq!(name.to_string(), input.clone());
            }
            if let Ok(name) = SnapshotName::new(&input) {
                proptest::prop_assert_eq!(name.to_string(), input);
            }
        }

        #[test]
        fn near_valid_names_never_panic(input in "[a-c0-9 ./@:%#_-]{0,300}") {
            match FullSnapshotName::parse(&input) {
                Ok(name) => {
                    proptest::prop_assert_eq!(name.to_string(), input.clone());
                    proptest::prop_assert!(input.len() <= MAX_NAME_LEN);
                    proptest::prop_assert_eq!(FullSnapshotName::parse(&name.to_string()), Ok(name));
                }
                Err(err) => proptest::prop_assert!(!err.reason.is_empty()),
            }
        }

        #[test]
        fn generated_valid_names_are_accepted(
            pool in "[a-zA-Z][a-zA-Z0-9_.: -]{0,20}",
            children in proptest::collection::vec("[a-zA-Z0-9_: -]{1,20}", 0..5),
            snap in "[a-zA-Z0-9_: -][a-zA-Z0-9_.: -]{0,30}",
        ) {
            let mut text = pool;
            for child in children {
                text.push('/');
                text.push_str(&child);
            }
            text.push('@');
            text.push_str(&snap);
            let name = FullSnapshotName::parse(&text);
            proptest::prop_assert!(name.is_ok(), "{} refused: {:?}", text, name);
            proptest::prop_assert_eq!(name.unwrap().to_string(), text);
        }
    }
}
