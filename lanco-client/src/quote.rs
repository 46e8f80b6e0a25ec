//! Command lines as a shell would read them back: each argument
//! shell-quoted where it needs to be (`sh -c 'while true; do …; done'`),
//! for `ls` and `status`, which show argv, not a string.

use std::borrow::Cow;

/// `arg` as a POSIX shell word: as it is when it holds only characters no
/// shell treats specially, else in single quotes (a `'` in it as `'\''`).
pub(crate) fn word(arg: &str) -> Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        return Cow::Borrowed(arg);
    }
    Cow::Owned(format!("'{}'", arg.replace('\'', r"'\''")))
}

/// The arguments as one line a shell reads back as the same argv.
pub(crate) fn words<S: AsRef<str>>(args: &[S]) -> String {
    let mut line = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(&word(a.as_ref()));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_where_a_shell_needs_it() {
        assert_eq!(
            words(&["sh", "-c", "while true; do sleep 1; done"]),
            "sh -c 'while true; do sleep 1; done'"
        );
        assert_eq!(words(&["echo", "it's", ""]), r"echo 'it'\''s' ''");
        assert_eq!(
            words(&["/usr/bin/env", "A=b", "x@y:1,2"]),
            "/usr/bin/env A=b x@y:1,2"
        );
        assert_eq!(words(&["$HOME", "a*b", "é"]), "'$HOME' 'a*b' 'é'");
    }
}
