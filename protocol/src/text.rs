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

/// A duration in words for people: `1 day`, `2 days 3 hours`, `15 minutes`, `30 seconds` (the
/// two largest units; humantime's `1day 2h 30m` reads poorly in a sentence).
pub fn duration_words(d: std::time::Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return format!("{} ms", d.as_millis());
    }
    let units = [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let mut parts = Vec::new();
    for (size, name) in units {
        let n = secs / size;
        secs %= size;
        if n > 0 {
            parts.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
        } else if !parts.is_empty() {
            // Stop at the first empty unit after the largest: "1 day", not "1 day 0 hours 5 s".
            break;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}

/// "16.0 GiB", "512 MiB", "0 B" (the alert engine's details and every printed size).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// "42 s", "5 min 3 s", "2 h 5 min", "3 d 4 h" (the alert engine's details and health tables).
pub fn human_secs(s: i64) -> String {
    let s = s.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 if s % 60 == 0 => format!("{} min", s / 60),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
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

    #[test]
    fn durations_read_as_words() {
        use std::time::Duration;
        assert_eq!(duration_words(Duration::from_secs(86_400)), "1 day");
        assert_eq!(
            duration_words(Duration::from_secs(2 * 86_400 + 3 * 3600)),
            "2 days 3 hours"
        );
        assert_eq!(duration_words(Duration::from_secs(15 * 60)), "15 minutes");
        assert_eq!(duration_words(Duration::from_secs(3600 + 1)), "1 hour");
        assert_eq!(duration_words(Duration::from_secs(30)), "30 seconds");
        assert_eq!(duration_words(Duration::from_millis(250)), "250 ms");
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(16 << 30), "16.0 GiB");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_secs(-3), "0 s");
        assert_eq!(human_secs(42), "42 s");
        assert_eq!(human_secs(300), "5 min");
        assert_eq!(human_secs(303), "5 min 3 s");
        assert_eq!(human_secs(7500), "2 h 5 min");
        assert_eq!(human_secs(3 * 86_400 + 4 * 3600), "3 d 4 h");
    }
}
