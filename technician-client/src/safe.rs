//! What `tether` prints that came from the network, made harmless for the technician's terminal.
//!
//! A hostile agent (or relay) chooses the text of its `Bye`, `Error` and refusals, and a
//! terminal obeys escape sequences: ESC and CSI (U+009B) sequences recolour, move the cursor,
//! retitle the window or worse; CR overwrites what was printed; bidi overrides reorder it. So
//! every error and status line goes through [`line`] (errors through [`error_line`]), JSON through
//! [`json`], and command output shown on a terminal through [`TerminalFilter`]. These are the
//! only ways the binary prints such text.
//!
//! Raw bytes remain where the technician asked for them: `tether exec` into a pipe or a file
//! passes the command's output unchanged (binary-exact, like `ssh host cmd > file`), and
//! `tether shell` is an interactive terminal by design. On a terminal, `tether exec` output is
//! filtered; pipe it through `cat` to see it raw.

use std::fmt::Display;
use tether_protocol::text;

/// Longest line of error or status text printed.
pub const MAX_LINE: usize = 4096;

/// One line of text that came (in part) from the network: control characters (ESC, BEL, CR,
/// LF, C1 such as CSI) and bidi overrides removed, bounded to [`MAX_LINE`] bytes.
pub fn line(s: &str) -> String {
    text::clean(s, MAX_LINE)
}

/// An error and its causes (`{:#}`, so anyhow's chain) as one clean line.
pub fn error_line<E: Display + ?Sized>(e: &E) -> String {
    line(&format!("{e:#}"))
}

/// Pretty JSON with every character a terminal could act on (C0 and C1 controls, DEL, bidi
/// overrides) written as a `\uXXXX` escape: the same data for a script, nothing for a terminal
/// to obey.
pub fn json(value: &serde_json::Value) -> String {
    let pretty = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
    escape_json(&pretty)
}

/// One-line JSON (for streams of records), escaped like [`json`].
pub fn json_line(value: &serde_json::Value) -> String {
    escape_json(&value.to_string())
}

fn escape_json(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        // Outside strings serde_json writes only ASCII punctuation, digits, letters and (pretty)
        // newlines and spaces; an unsafe character can only be inside a string, where the
        // escape means the same character.
        if c == '\n' || text::is_safe_char(c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// Streaming filter for a remote command's output on a terminal: keeps text, newlines and tabs;
/// drops every other control character (ESC, BEL, CR, C1 such as CSI) and bidi overrides;
/// invalid UTF-8 becomes U+FFFD (a lone byte 0x9B is CSI to an 8-bit terminal). A character
/// split across chunks is held until its end arrives.
#[derive(Default)]
pub struct TerminalFilter {
    pending: Vec<u8>,
}

impl TerminalFilter {
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    keep(s, &mut out);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    keep(std::str::from_utf8(good).unwrap_or_default(), &mut out);
                    match e.error_len() {
                        Some(n) => {
                            out.extend_from_slice("\u{FFFD}".as_bytes());
                            rest = &bad[n..];
                        }
                        // An incomplete character at the end: wait for the rest of it.
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// The end of the stream: an incomplete character left over is shown as U+FFFD.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.pending.is_empty() {
            Vec::new()
        } else {
            self.pending.clear();
            "\u{FFFD}".as_bytes().to_vec()
        }
    }
}

fn keep(s: &str, out: &mut Vec<u8>) {
    for c in s.chars() {
        if c == '\n' || c == '\t' || text::is_safe_char(c) {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVIL: &str = "a\u{1b}]0;pwned\u{7}b\rc\u{9b}31md\u{202e}e\u{7f}f";

    fn is_harmless(s: &str) -> bool {
        !s.chars().any(|c| {
            matches!(
                c,
                '\u{1b}' | '\u{7}' | '\r' | '\u{9b}' | '\u{202e}' | '\u{7f}'
            )
        })
    }

    #[test]
    fn lines_lose_escapes_bidi_and_line_breaks() {
        let l = line(&format!("{EVIL}\nnext"));
        assert_eq!(l, "a]0;pwnedbc31mdefnext");
        assert!(is_harmless(&l));
        let e = anyhow::anyhow!("inner {EVIL}").context("outer");
        let l = error_line(&e);
        assert!(l.starts_with("outer: inner a"), "{l}");
        assert!(is_harmless(&l));
    }

    #[test]
    fn json_keeps_the_data_and_escapes_what_a_terminal_obeys() {
        let v = serde_json::json!({ "error": EVIL, "ok": "Débian ✓" });
        for s in [json(&v), json_line(&v)] {
            assert!(is_harmless(&s), "{s}");
            let back: serde_json::Value = serde_json::from_str(&s).unwrap();
            assert_eq!(back, v);
            assert!(s.contains("\\u009b") && s.contains("\\u202e") && s.contains("Débian ✓"));
        }
    }

    #[test]
    fn terminal_filter_works_across_chunk_boundaries() {
        let bytes = format!("{EVIL}\nline\ttab\n").into_bytes();
        for split in 0..bytes.len() {
            let mut f = TerminalFilter::default();
            let mut out = f.push(&bytes[..split]);
            out.extend(f.push(&bytes[split..]));
            out.extend(f.finish());
            let s = String::from_utf8(out).unwrap();
            assert_eq!(s, "a]0;pwnedbc31mdef\nline\ttab\n", "split at {split}");
        }
        // A raw 0x9B byte (CSI to an 8-bit terminal) and other invalid UTF-8.
        let mut f = TerminalFilter::default();
        let mut out = f.push(b"x\x9b[2Jy\xff");
        out.extend(f.push(b"\xe2\x80"));
        out.extend(f.finish());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "x\u{FFFD}[2Jy\u{FFFD}\u{FFFD}"
        );
    }
}
