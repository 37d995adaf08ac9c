//! (being written: the portal backend)
use tether_protocol::helper::HelperError;
pub type Portal = crate::gnome::Gnome;
pub fn connect_stub() {}
pub fn available() -> bool {
    false
}
pub trait Connect {
    fn connect() -> Result<Portal, HelperError>;
}
impl Connect for Portal {
    fn connect() -> Result<Portal, HelperError> {
        Err(HelperError::Unsupported("portal: not yet".into()))
    }
}
