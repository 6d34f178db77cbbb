//! Splits Rust source into its code and its comments, so that the tidy checks look at the right part.
//!
//! Not a full lexer: it knows line and (nested) block comments, string literals (plain, byte, C and raw
//! with any number of `#`), char literals and lifetimes, which is all it takes to tell those apart.

/// One source text seen two ways, each with the same lines as the original.
#[derive(Debug)]
pub(crate) struct Split {
    /// The source with every comment and the contents of every string and char literal blanked out.
    pub(crate) code: String,
    /// Only the comments (doc comments included); everything else blanked out.
    pub(crate) comments: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Part {
    Code,
    Literal,
    Comment,
}

/// Splits `text` into code and comments; a blanked character becomes a space, newlines stay.
pub(crate) fn split(text: &str) -> Split {
    let chars: Vec<char> = text.chars().collect();
    let mut parts = vec![Part::Code; chars.len()];
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        if rest.starts_with(&['/', '/']) {
            let end = find(&chars, i, |c| c == '\n');
            parts[i..end].fill(Part::Comment);
            i = end;
        } else if rest.starts_with(&['/', '*']) {
            let end = block_comment_end(&chars, i);
            parts[i..end].fill(Part::Comment);
            i = end;
        } else if let Some(hashes) = raw_string_start(&chars, i) {
            // r##"…"##: the contents run to a quote followed by as many hashes.
            let open = i + 1 + hashes + 1;
            let mut j = open;
            let closes = |j: usize| {
                chars[j] == '"'
                    && chars[j + 1..].iter().take_while(|&&c| c == '#').count() >= hashes
            };
            while j < chars.len() && !closes(j) {
                j += 1;
            }
            parts[open..j].fill(Part::Literal);
            i = (j + 1 + hashes).min(chars.len());
        } else if chars[i] == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            let j = j.min(chars.len());
            parts[i + 1..j].fill(Part::Literal);
            i = j + 1;
        } else if chars[i] == '\'' {
            i = char_literal(&chars, i, &mut parts);
        } else {
            i += 1;
        }
    }
    let render = |keep: Part| -> String {
        chars
            .iter()
            .zip(&parts)
            .map(|(&c, &part)| if c == '\n' || part == keep { c } else { ' ' })
            .collect()
    };
    Split {
        code: render(Part::Code),
        comments: render(Part::Comment),
    }
}

/// `code` (as [`Split::code`] has it) with the lines of its test modules blanked out.
///
/// A test module is a `#[cfg(test)]` at column 0 followed by a `mod name {` line; it ends at the next `}`
/// at column 0 (where rustfmt puts its closing brace; every test module in the repository is such).
pub(crate) fn without_test_modules(code: &str) -> String {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = String::with_capacity(code.len());
    let mut index = 0;
    while index < lines.len() {
        if lines[index].trim_end() == "#[cfg(test)]"
            && lines.get(index + 1).is_some_and(|l| is_mod_line(l))
        {
            while index < lines.len() {
                out.push('\n');
                index += 1;
                if lines[index - 1].trim_end() == "}" {
                    break;
                }
            }
        } else {
            out.push_str(lines[index]);
            out.push('\n');
            index += 1;
        }
    }
    out
}

/// `mod tests {`, `pub(crate) mod pump_tests {` … (not `mod tests;`, whose code is in another file).
fn is_mod_line(line: &str) -> bool {
    let line = line.trim_start();
    let line = ["pub(crate) ", "pub(super) ", "pub "]
        .iter()
        .find_map(|vis| line.strip_prefix(vis))
        .unwrap_or(line);
    line.starts_with("mod ") && line.trim_end().ends_with('{')
}

/// The index of the first character at or after `from` that matches, or the end.
fn find(chars: &[char], from: usize, what: impl Fn(char) -> bool) -> usize {
    chars[from.min(chars.len())..]
        .iter()
        .position(|&c| what(c))
        .map_or(chars.len(), |p| from + p)
}

/// The end (exclusive) of the block comment that opens at `start`, nested ones included.
fn block_comment_end(chars: &[char], start: usize) -> usize {
    let mut depth = 0usize;
    let mut j = start;
    while j < chars.len() {
        if chars[j..].starts_with(&['/', '*']) {
            depth += 1;
            j += 2;
        } else if chars[j..].starts_with(&['*', '/']) {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return j;
            }
        } else {
            j += 1;
        }
    }
    chars.len()
}

/// The number of `#` of a raw string literal (`r"`, `r#"`, `br"`, `cr#"` …) whose `r` is at `i`.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    if chars[i] != 'r' {
        return None;
    }
    let ident = |k: usize| chars[k].is_alphanumeric() || chars[k] == '_';
    let starts_token = match i {
        0 => true,
        1 => !ident(0) || matches!(chars[0], 'b' | 'c'),
        _ => !ident(i - 1) || (matches!(chars[i - 1], 'b' | 'c') && !ident(i - 2)),
    };
    if !starts_token {
        return None;
    }
    let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
    (chars.get(i + 1 + hashes) == Some(&'"')).then_some(hashes)
}

/// Marks a char literal that opens at `i` (`'x'`, `'\n'`, `'\u{1F600}'`) and returns the index after
/// it; a lifetime or label (`'a`) stays code.
fn char_literal(chars: &[char], i: usize, parts: &mut [Part]) -> usize {
    if chars.get(i + 1) == Some(&'\\') {
        let end = find(chars, i + 3, |c| c == '\'');
        parts[i + 1..end].fill(Part::Literal);
        end + 1
    } else if chars.get(i + 2) == Some(&'\'') {
        parts[i + 1] = Part::Literal;
        i + 3
    } else {
        i + 1
    }
}

#[cfg(test)]
mod tests {
    use super::{split, without_test_modules};

    #[test]
    fn comments_and_literals_are_told_apart() {
        let text = r##"let a = "// not a comment"; // a comment
let b = r#"/* raw "quoted" */"#; /* block /* nested */ still */ let c = 'x';
fn f<'a>(s: &'a str) -> char { '\'' } // done
let q = ['"', '/']; let e = "\"//"; // end
let u = '\"##;
        let split = split(text);
        let code: Vec<&str> = split.code.lines().map(str::trim_end).collect();
        let comments: Vec<&str> = split.comments.lines().map(str::trim).collect();
        assert_eq!(
            code,
            [
                r#"let a = "                ";"#,
                r##"let b = r#"                  "#;                                let c = ' ';"##,
                "fn f<'a>(s: &'a str) -> char { '  ' }",
                r#"let q = [' ', ' ']; let e = "    ";"#,
                "let u = '",
            ]
        );
        assert_eq!(
            comments,
            [
                "// a comment",
                "/* block /* nested */ still */",
                "// done",
                "// end",
                ""
            ]
        );
    }

    #[test]
    fn test_modules_are_blanked_and_the_rest_kept() {
        let code = "fn a() {}\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\nfn b() {}\n\
                    #[cfg(test)]\nfn helper() {}\n#[cfg(test)]\nmod other;\nfn c() {}\n";
        let blanked = without_test_modules(code);
        let kept: Vec<&str> = blanked.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(
            kept,
            [
                "fn a() {}",
                "fn b() {}",
                "#[cfg(test)]",
                "fn helper() {}",
                "#[cfg(test)]",
                "mod other;",
                "fn c() {}"
            ]
        );
        assert_eq!(blanked.lines().count(), code.lines().count());
    }
}
