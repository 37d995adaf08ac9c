//! Windows command lines. A Windows process receives one string, which the program splits into
//! arguments itself; nearly all (the C runtime, `CommandLineToArgvW`, Rust's std) split it by
//! the same rules, which [`command_line`] quotes for. Pure string work, so it is built and
//! tested on every platform; only the Windows agent uses it (`run-as-user`).
#![cfg_attr(not(windows), allow(dead_code))]

/// Joins a program and its arguments into a command line that splits back into exactly them.
///
/// The program (the first element) is quoted when it has a space or tab: it is split by simpler
/// rules (no escapes), and cannot hold a `"` anyway. Each argument is left as it is when it is
/// non-empty and has no space, tab, newline or `"`; else it is put in quotes, with each `"`
/// escaped by a backslash and the backslashes before a `"` (or before the closing quote)
/// doubled.
pub fn command_line<S: AsRef<str>>(argv: &[S]) -> String {
    let mut line = String::new();
    for (i, arg) in argv.iter().enumerate() {
        let arg = arg.as_ref();
        if i > 0 {
            line.push(' ');
        }
        if i == 0 {
            if arg.is_empty() || arg.contains([' ', '\t']) {
                line.push('"');
                line.push_str(arg);
                line.push('"');
            } else {
                line.push_str(arg);
            }
            continue;
        }
        quote_arg(arg, &mut line);
    }
    line
}

fn quote_arg(arg: &str, line: &mut String) {
    if !arg.is_empty() && !arg.contains([' ', '\t', '\n', '\x0b', '"']) {
        line.push_str(arg);
        return;
    }
    line.push('"');
    let mut backslashes = 0usize;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                // Each backslash before a quote is doubled, then the quote is escaped.
                line.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                line.push('"');
                backslashes = 0;
            }
            c => {
                line.extend(std::iter::repeat_n('\\', backslashes));
                backslashes = 0;
                line.push(c);
            }
        }
    }
    // Backslashes before the closing quote are doubled so that it stays a quote.
    line.extend(std::iter::repeat_n('\\', backslashes * 2));
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a command line's arguments (not the program) as the Microsoft C runtime does
    /// (post-2008 rules, as `CommandLineToArgvW`), to check that quoting round-trips.
    fn split_args(line: &str) -> Vec<String> {
        let mut chars = line.chars().peekable();
        // The program: up to the first space or tab outside quotes; quotes do not escape.
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c == '"' {
                quoted = !quoted;
            } else if !quoted && (c == ' ' || c == '\t') {
                break;
            }
            chars.next();
        }
        let mut args = Vec::new();
        loop {
            while matches!(chars.peek(), Some(' ' | '\t')) {
                chars.next();
            }
            if chars.peek().is_none() {
                return args;
            }
            let mut arg = String::new();
            let mut quoted = false;
            while let Some(&c) = chars.peek() {
                match c {
                    '\\' => {
                        let mut n = 0;
                        while chars.peek() == Some(&'\\') {
                            chars.next();
                            n += 1;
                        }
                        if chars.peek() == Some(&'"') {
                            arg.extend(std::iter::repeat_n('\\', n / 2));
                            if n % 2 == 1 {
                                arg.push('"');
                                chars.next();
                            }
                        } else {
                            arg.extend(std::iter::repeat_n('\\', n));
                        }
                    }
                    '"' => {
                        chars.next();
                        if quoted && chars.peek() == Some(&'"') {
                            arg.push('"');
                            chars.next();
                        } else {
                            quoted = !quoted;
                        }
                    }
                    ' ' | '\t' if !quoted => break,
                    c => {
                        arg.push(c);
                        chars.next();
                    }
                }
            }
            args.push(arg);
        }
    }

    #[test]
    fn arguments_split_back_into_themselves() {
        let cases: &[&[&str]] = &[
            &["cmd", "/c", "exit", "7"],
            &["cmd", "/c", "echo %USERNAME%"],
            &[r"C:\Program Files\x.exe", "", "a b", "tab\there"],
            &[
                "p",
                r#"say "hi""#,
                r"C:\dir\",
                r"C:\dir with space\",
                r#"\\"\\"#,
            ],
            &["p", r"a\\b", r#"a\"b"#, "\"", "\\", "ünïcødé ✓"],
        ];
        for argv in cases {
            let line = command_line(argv);
            assert_eq!(split_args(&line), argv[1..], "{line}");
        }
    }

    #[test]
    fn plain_arguments_stay_as_they_are() {
        assert_eq!(command_line(&["cmd", "/c", "exit", "7"]), "cmd /c exit 7");
        assert_eq!(
            command_line(&[r"C:\Program Files\x.exe", "a b", r"d\"]),
            r#""C:\Program Files\x.exe" "a b" d\"#
        );
        assert_eq!(command_line(&["p", r"a b\"]), r#"p "a b\\""#);
        assert_eq!(command_line(&["p", r#"x"y"#]), r#"p "x\"y""#);
    }
}
