//! Running `zfs` on another host through `ssh`, for `z3_ssh_sync`.
//!
//! `ssh` joins the words after the destination with spaces and hands them to the remote user's
//! shell, so every remote word is quoted here for a POSIX shell: a dataset name with a space
//! stays one argument, and nothing in a name can run a command. Local arguments (options, the
//! destination) are an argument vector as everywhere else; the destination comes after `--`, so
//! it can never be taken for an option.

use std::path::PathBuf;

use crate::error::{Error, ErrorKind};

/// How to reach the other host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The `ssh` program (default `ssh` from `PATH`).
    pub program: PathBuf,
    /// `[user@]host`.
    pub destination: String,
    /// `-p PORT`.
    pub port: Option<u16>,
    /// `-i FILE`.
    pub identity: Option<PathBuf>,
    /// Each becomes `-o OPTION` (e.g. `StrictHostKeyChecking=yes`).
    pub options: Vec<String>,
    /// Run the remote `zfs` through `sudo -n` (non-interactive: fails instead of prompting).
    pub sudo: bool,
}

impl SshTarget {
    /// A target with default settings; refuses destinations that `ssh` could read as an option
    /// or that are empty.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidName`] naming the destination.
    pub fn new(destination: &str) -> Result<Self, Error> {
        let bad = destination.is_empty()
            || destination.starts_with('-')
            || destination
                .chars()
                .any(|c| c.is_whitespace() || c.is_control());
        if bad {
            return Err(Error::new(
                ErrorKind::InvalidName,
                format!("invalid ssh destination '{destination}'"),
            ));
        }
        Ok(Self {
            program: PathBuf::from("ssh"),
            destination: destination.to_owned(),
            port: None,
            identity: None,
            options: Vec::new(),
            sudo: false,
        })
    }

    /// The local argument vector (after the program) that runs `program args…` on the host:
    /// `[-p P] [-i I] [-o O]… -- DESTINATION 'LC_ALL=C [sudo -n] program args…'`, each remote
    /// word quoted for the remote shell.
    #[must_use]
    pub fn args(&self, program: &str, args: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(port) = self.port {
            out.extend(["-p".to_owned(), port.to_string()]);
        }
        if let Some(identity) = &self.identity {
            out.extend(["-i".to_owned(), identity.to_string_lossy().into_owned()]);
        }
        for option in &self.options {
            out.extend(["-o".to_owned(), option.clone()]);
        }
        out.extend(["--".to_owned(), self.destination.clone()]);
        let mut remote = vec!["LC_ALL=C".to_owned()];
        if self.sudo {
            remote.extend(["sudo".to_owned(), "-n".to_owned()]);
        }
        remote.push(shell_quote(program));
        remote.extend(args.iter().map(|a| shell_quote(a)));
        out.push(remote.join(" "));
        out
    }
}

/// Quotes `word` for a POSIX shell: unchanged when it holds only characters no shell treats
/// specially, else in single quotes (a `'` inside becomes `'\''`).
#[must_use]
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+:,./_-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_words_are_quoted_for_the_shell_and_options_precede_the_destination() {
        let mut target = SshTarget::new("backup@example.com").unwrap();
        target.port = Some(2222);
        target.identity = Some("/keys/id ed25519".into());
        target.options = vec!["BatchMode=yes".into()];
        target.sudo = true;
        let args = target.args(
            "zfs",
            &["receive".into(), "-F".into(), "tank/my data@snap 1".into()],
        );
        assert_eq!(
            args,
            [
                "-p",
                "2222",
                "-i",
                "/keys/id ed25519",
                "-o",
                "BatchMode=yes",
                "--",
                "backup@example.com",
                "LC_ALL=C sudo -n zfs receive -F 'tank/my data@snap 1'"
            ]
        );
    }

    #[test]
    fn quoting_survives_every_hostile_character() {
        for (word, quoted) in [
            ("tank/fs@daily:1", "tank/fs@daily:1"),
            ("a b", "'a b'"),
            ("it's", r"'it'\''s'"),
            ("$(reboot)", "'$(reboot)'"),
            ("`x`;y&z|w>v<u", "'`x`;y&z|w>v<u'"),
            ("#comment", "'#comment'"),
            ("a=b", "'a=b'"),
            ("", "''"),
            ("*?[", "'*?['"),
        ] {
            assert_eq!(shell_quote(word), quoted, "{word}");
        }
    }

    #[test]
    fn destinations_that_look_like_options_are_refused() {
        for bad in ["", "-oProxyCommand=x", "a b", "host\n"] {
            let err = SshTarget::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}");
        }
        assert!(SshTarget::new("root@127.0.0.1").is_ok());
    }
}
