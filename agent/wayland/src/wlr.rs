//! (being written: the wlroots backend)
use tether_protocol::helper::HelperError;
pub type Wlr = crate::gnome::Gnome;
pub fn connect_stub() {}
pub fn available() -> bool {
    false
}
pub trait Connect {
    fn connect() -> Result<Wlr, HelperError>;
}
impl Connect for Wlr {
    fn connect() -> Result<Wlr, HelperError> {
        Err(HelperError::Unsupported("wlroots: not yet".into()))
    }
}
