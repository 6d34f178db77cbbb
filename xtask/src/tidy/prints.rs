//! Libraries do not print: output goes to a writer the caller hands in (the `Console` of z3-cli's engine),
//! logs go through `tracing`. Covers every `crates/*/src` file except the binaries (`src/main.rs`,
//! `src/bin/`) and the test modules.

use super::lexer;

/// The macros a library must not call.
const MACROS: &[&str] = &["println", "eprintln", "print", "eprint", "dbg"];

/// `(line number, macro)` for each print in `text`, outside comments, literals and test modules.
pub(crate) fn offences(text: &str) -> Vec<(usize, &'static str)> {
    let code = lexer::without_test_modules(&lexer::split(text).code);
    let mut found = Vec::new();
    for (index, line) in code.lines().enumerate() {
        for &name in MACROS {
            if calls(line, name) {
                found.push((index + 1, name));
            }
        }
    }
    found
}

/// Whether `line` invokes the macro `name!` (and not, say, `eprint!` when looking for `print!`).
fn calls(line: &str, name: &str) -> bool {
    let pattern = format!("{name}!");
    line.match_indices(&pattern).any(|(at, _)| {
        !line[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::offences;

    #[test]
    fn prints_in_library_code_are_found() {
        let text = "//! A module.\n\
                    fn f() {\n    eprintln!(\"x\");\n    std::print!(\"y\");\n    let _ = dbg!(1);\n}\n";
        assert_eq!(offences(text), [(3, "eprintln"), (4, "print"), (5, "dbg")]);
    }

    #[test]
    fn comments_literals_writers_and_test_modules_pass() {
        let text = "//! Never `println!` here.\n\
                    fn f(out: &mut String) {\n    \
                        let _ = writeln!(out, \"println!(no)\"); // not eprintln!\n    \
                        my_print!(out);\n}\n\
                    #[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {\n        println!(\"fine\");\n    }\n}\n";
        assert!(offences(text).is_empty(), "{:?}", offences(text));
    }

    #[test]
    fn code_after_a_test_module_is_still_checked() {
        let text = "#[cfg(test)]\npub(crate) mod tests {\n}\nfn g() {\n    print!(\"z\");\n}\n\
                    #[cfg(test)]\nfn helper() { dbg!(0); }\n";
        assert_eq!(offences(text), [(5, "print"), (8, "dbg")]);
    }
}
