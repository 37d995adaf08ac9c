//! Cleaning of untrusted text (hostnames, OS strings, anything an agent reports).
//!
//! A rival's admin UI was taken over through an agent's OS-description string; here every such
//! string is bounded and stripped of control characters and bidi overrides before it is stored
//! or shown, so it can neither drive a terminal nor reorder what an admin reads.

/// Is `c` safe to store and print?
pub fn is_safe_char(c: char) -> bool {
    !(c.is_control() // C0, DEL, C1
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}'))
}

/// Strips unsafe characters and truncates to at most `max_bytes` bytes at a char boundary.
pub fn clean(s: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_bytes));
    for c in s.chars().filter(|&c| is_safe_char(c)) {
        if out.len() + c.len_utf8() > max_bytes {
            break;
        }
        out.push(c);
    }
    out
}

/// True if `s` needs no cleaning.
pub fn is_clean(s: &str, max_bytes: usize) -> bool {
    s.len() <= max_bytes && s.chars().all(is_safe_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_escapes_and_bidi() {
        assert_eq!(clean("ws-01\u{1b}[31m\r\n", 64), "ws-01[31m");
        assert_eq!(clean("a\u{202E}b\u{0085}c", 64), "abc");
        assert!(!is_clean("x\u{7}", 64));
        assert!(is_clean("Débian 12 ✓", 64));
    }

    #[test]
    fn truncates_at_char_boundary() {
        assert_eq!(clean("ééé", 5), "éé");
        assert_eq!(clean(&"x".repeat(1 << 20), 255).len(), 255);
    }
}
