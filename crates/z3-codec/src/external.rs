//! [`ExternalCodec`]: a filter program such as `pigz -d` or `gpg -e` run as a child process.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};
use crate::{BoxedReader, Codec, process};

/// An external filter program that reads the input on stdin and writes the output on stdout.
///
/// The program is looked up on `PATH` each time [`Codec::apply`] runs rather than at construction, so building the
/// codecs for a dry run (or for a restore plan) works on a machine that lacks the program, and the error
/// ([`ErrorKind::ProgramNotFound`]) comes when the program is really needed.
/// Arguments are passed as a vector, never through a shell, so no argument is ever re-interpreted.
///
/// While it runs, a task feeds the input to the child's stdin and another drains its stderr (keeping the last
/// 8 KiB for the error message), so a chatty program can never block on a full stderr pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalCodec {
    name: String,
    program: String,
    args: Vec<String>,
    env: Vec<(OsString, OsString)>,
}

impl ExternalCodec {
    /// Creates a codec called `name` that runs `program` with `args`.
    ///
    /// `program` is either a bare name, looked up on `PATH`, or a path containing a `/`.
    pub fn new(name: impl Into<String>, program: impl Into<String>, args: Vec<String>) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args,
            env: Vec::new(),
        }
    }

    /// Sets an extra environment variable for the child, e.g. `GNUPGHOME` to point gpg at another keyring.
    ///
    /// The child otherwise inherits this process's environment.
    #[must_use]
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The program as given to [`ExternalCodec::new`].
    #[must_use]
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The arguments passed to the program.
    #[must_use]
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The extra environment variables set by [`ExternalCodec::with_env`].
    #[must_use]
    pub fn envs(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    /// The command line for messages: program and arguments, with arguments quoted where a shell would need it.
    ///
    /// For display only; the program is never run through a shell.
    #[must_use]
    pub fn command_line(&self) -> String {
        let mut line = quote(&self.program);
        for arg in &self.args {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        line
    }
}

impl Codec for ExternalCodec {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        self.command_line()
    }

    fn apply(&self, input: BoxedReader) -> Result<BoxedReader, Error> {
        let path =
            resolve(&self.program, std::env::var_os("PATH").as_deref()).ok_or_else(|| {
                Error::new(ErrorKind::ProgramNotFound {
                    program: self.program.clone(),
                })
            })?;
        let mut command = tokio::process::Command::new(path);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        process::spawn(command, self.command_line(), input)
    }
}

/// Finds `program` like a shell would: a name containing `/` is taken as a path, anything else is searched for in
/// the directories of `path_var`. Only executable regular files count.
fn resolve(program: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    std::env::split_paths(path_var?)
        // An empty PATH entry means the current directory to a shell; skipping it avoids running whatever
        // file of that name happens to sit in the working directory.
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Quotes `word` for display with POSIX shell single quotes when it contains anything but plain characters.
fn quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_quotes_only_where_needed() {
        let codec = ExternalCodec::new(
            "t",
            "sh",
            vec![
                "-c".into(),
                "echo it's >&2".into(),
                String::new(),
                "a=b".into(),
            ],
        );
        assert_eq!(codec.command_line(), r"sh -c 'echo it'\''s >&2' '' a=b");
        assert_eq!(codec.describe(), codec.command_line());
    }

    #[test]
    fn accessors_return_what_was_given() {
        let codec =
            ExternalCodec::new("pigz1", "pigz", vec!["-1".into()]).with_env("GNUPGHOME", "/tmp/g");
        assert_eq!(codec.name(), "pigz1");
        assert_eq!(codec.program(), "pigz");
        assert_eq!(codec.args(), ["-1"]);
        assert_eq!(
            codec.envs(),
            [(OsString::from("GNUPGHOME"), OsString::from("/tmp/g"))]
        );
    }

    #[test]
    fn resolve_searches_path_and_skips_non_executables() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        let tool = dir.path().join("tool");
        std::fs::write(&plain, "").unwrap();
        std::fs::write(&tool, "").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(dir.path().join("subdir")).unwrap();
        let path_var = std::env::join_paths(["/nonexistent-z3".as_ref(), dir.path()]).unwrap();

        assert_eq!(resolve("tool", Some(&path_var)), Some(tool.clone()));
        assert_eq!(resolve("plain", Some(&path_var)), None);
        assert_eq!(resolve("subdir", Some(&path_var)), None);
        assert_eq!(resolve("tool", None), None);
        assert_eq!(resolve("", Some(&path_var)), None);
        assert_eq!(resolve(tool.to_str().unwrap(), None), Some(tool));
        assert_eq!(resolve(plain.to_str().unwrap(), None), None);
    }
}
