//! Acting as another account, on Windows: not built yet. Sessions run as the agent's own
//! account (the service's, LocalSystem) only when the technician was granted root and asked
//! for it; the others are refused with this reason rather than run with more rights than the
//! technician was given.

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "running as the signed-in Windows user is not supported yet; ask for --as-root (runs as the agent's service account) where the group's policy allows it"
    )]
    NotSupported,
}

pub fn switch_wrapper(_uid: u32, _gid: u32) -> Result<Vec<String>, CredentialsError> {
    Err(CredentialsError::NotSupported)
}

pub fn become_on_this_thread(_uid: u32, _gid: u32, _groups: &[u32]) -> std::io::Result<()> {
    Err(std::io::Error::other(CredentialsError::NotSupported))
}
