//! When a handler command can skip `sh`.
//!
//! `sh -c CMD` costs a shell's start before the user's program starts (about
//! half a millisecond here, a third of what running `cat` as a handler costs).
//! For a command line the shell would only split into words and look up in
//! `PATH` — plain words, no quoting, expansion, redirection, globbing,
//! assignment or control syntax, and a first word that is not a shell builtin
//! or keyword — running the program directly does exactly what the shell
//! would. Anything else goes through `sh -c` as the contract says. A program
//! that cannot be started directly (not found, not executable, a script
//! without `#!`) is also handed to `sh`, so the outcome stays the shell's
//! (`not found` and 127, or the script run by `sh`).

/// The argument vector to run without a shell, or `None` when only `sh -c`
/// gives the command its meaning.
pub(super) fn argv(command: &str) -> Option<Vec<&str>> {
    if !command.chars().all(is_plain) {
        return None;
    }
    let words: Vec<&str> = command.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
    let first = words.first()?;
    // `NAME=value prog`: an assignment; `~`: tilde expansion.
    if first.contains('=') || words.iter().any(|w| w.starts_with('~')) {
        return None;
    }
    if SHELL_WORDS.contains(first) {
        return None;
    }
    Some(words)
}

/// Characters a shell gives no meaning to inside a word (POSIX 2.2, 2.6, 2.13),
/// plus the blanks between words. `=` and `~` mean something only in places
/// [`argv`] checks.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, ' ' | '\t' | '-' | '_' | '.' | '/' | ',' | ':' | '+' | '@' | '%' | '=' | '~')
}

/// Reserved words and the builtins of dash and bash (special or not): for
/// these the shell does something else than run a program from `PATH`, or
/// runs its own version of it.
const SHELL_WORDS: &[&str] = &[
    // reserved words
    "case",
    "do",
    "done",
    "elif",
    "else",
    "esac",
    "fi",
    "for",
    "function",
    "if",
    "in",
    "select",
    "then",
    "time",
    "until",
    "while",
    // builtins
    ".",
    ":",
    "alias",
    "bg",
    "bind",
    "break",
    "builtin",
    "caller",
    "cd",
    "chdir",
    "command",
    "compgen",
    "complete",
    "compopt",
    "continue",
    "declare",
    "dirs",
    "disown",
    "echo",
    "enable",
    "eval",
    "exec",
    "exit",
    "export",
    "false",
    "fc",
    "fg",
    "getopts",
    "hash",
    "help",
    "history",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "times",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "wait",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_command_lines_run_without_a_shell() {
        assert_eq!(argv("cat"), Some(vec!["cat"]));
        assert_eq!(
            argv("  python3  bot.py --model=x\t-v "),
            Some(vec!["python3", "bot.py", "--model=x", "-v"])
        );
        assert_eq!(
            argv("/usr/local/bin/agent run,fast a:b user@host 50%"),
            Some(vec!["/usr/local/bin/agent", "run,fast", "a:b", "user@host", "50%"])
        );
    }

    #[test]
    fn anything_the_shell_interprets_goes_through_sh() {
        for cmd in [
            "echo re:$(cat)",
            "cat | tr a-z A-Z",
            "cat > out.txt",
            "cat; true",
            "cat && true",
            "cat &",
            "cat 'quoted'",
            "cat \"quoted\"",
            "cat \\n",
            "cat $HOME",
            "cat `x`",
            "cat *.txt",
            "cat file?",
            "cat [ab]",
            "cat {a,b}",
            "(cat)",
            "cat # comment",
            "! cat",
            "cat\nwc",
            "FOO=1 cat",
            "cat ~/x",
            "~/bin/agent",
            "exit 3",
            "echo hi",
            "true",
            "kill -0 1",
            "if",
            ". ./env",
            "",
            "   ",
            "caté",
        ] {
            assert_eq!(argv(cmd), None, "{cmd:?}");
        }
        // `=` and `~` inside later words are plain: the shell passes them as is.
        assert_eq!(argv("prog a=b c~d"), Some(vec!["prog", "a=b", "c~d"]));
    }
}
