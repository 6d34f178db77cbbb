//! Comments cite only documents inside the repository. The behaviour of the original z3 and the output of
//! `zfs` that the code relies on are written down in `docs/compatibility.md`; comments cite its sections by
//! name, not the reference notes outside the repository they were first taken from.

use super::lexer;

/// What a comment must not contain: section signs and the paths and names of documents outside the
/// repository.
const FORBIDDEN: &[&str] = &[
    "\u{a7}",
    "../shared",
    "spec/",
    "z3-behaviour.md",
    "zfs-output.md",
];

/// A mention of the directory beside the checkout that is not a document citation: xtask reads the
/// offline `RustSec` advisory database from there.
const ALLOWED: &[&str] = &["../shared/rustsec/"];

/// `(line number, forbidden text)` for each offending comment line of `text`.
pub(crate) fn offences(text: &str) -> Vec<(usize, &'static str)> {
    let comments = lexer::split(text).comments;
    let mut found = Vec::new();
    for (index, line) in comments.lines().enumerate() {
        let mut line = line.to_string();
        for allowed in ALLOWED {
            line = line.replace(allowed, "");
        }
        for &pattern in FORBIDDEN {
            if line.contains(pattern) {
                found.push((index + 1, pattern));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::offences;

    #[test]
    fn citations_of_outside_documents_are_found() {
        let text = "//! Key layout (spec \u{a7}3.1).\n\
                    /// See ../shared/spec/z3-behaviour.md.\nfn f() {}\n/* zfs-output.md */\n";
        assert_eq!(
            offences(text),
            [
                (1, "\u{a7}"),
                (2, "../shared"),
                (2, "spec/"),
                (2, "z3-behaviour.md"),
                (4, "zfs-output.md")
            ]
        );
    }

    #[test]
    fn citations_inside_the_repository_and_literals_pass() {
        let text = "//! Key layout (docs/compatibility.md, \"Key layout\").\n\
                    /// The bundle ../shared/rustsec/advisory-db.bundle.\n\
                    const S: &str = \"spec \u{a7}3.1 ../shared/spec/\";\n";
        assert!(offences(text).is_empty(), "{:?}", offences(text));
    }
}
