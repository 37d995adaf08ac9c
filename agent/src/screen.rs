//! Screenshots for the wire: one frame from a [`ScreenSource`], compressed.

use crate::platform::{ScreenError, ScreenSource};
use tether_protocol::session::{Compression, Image, PixelFormat};

/// Captures and compresses a screenshot for the wire.
pub fn screenshot(src: &mut dyn ScreenSource, display: u32) -> Result<Image, ScreenError> {
    let (width, height, pixels) = src.capture(display)?;
    let data = zstd::bulk::compress(&pixels, 1).map_err(ScreenError::Compress)?;
    Ok(Image {
        width,
        height,
        format: PixelFormat::Bgrx8,
        compression: Compression::Zstd,
        data,
    })
}
