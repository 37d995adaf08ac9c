//! Accounts on Linux, from `/etc/passwd`.

/// A user name (looked up in `/etc/passwd`) or a numeric uid.
pub fn parse_user(s: &str) -> Result<u32, String> {
    if let Ok(uid) = s.parse() {
        return Ok(uid);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&s))
        .and_then(|f| f.get(2).and_then(|uid| uid.parse().ok()))
        .ok_or_else(|| format!("no user named {s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_by_name_or_number() {
        assert_eq!(parse_user("0"), Ok(0));
        assert_eq!(parse_user("root"), Ok(0));
        assert!(parse_user("no-such-user-here").is_err());
    }
}
