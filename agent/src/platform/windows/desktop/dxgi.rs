//! DXGI Desktop Duplication (FFI, through the `windows` crate's COM wrappers): the compositor's
//! own copy of a monitor, faster than GDI and the only way to see full-screen Direct3D. It says
//! when nothing changed (the next frame does not come), so a still screen costs no copy.
//!
//! Used where it opens; GDI otherwise ([`super::screen`]). It does not open under Wine (its
//! `DuplicateOutput` is a stub), over Remote Desktop before Windows 10, or on a rotated monitor
//! (whose duplicated image is unrotated: left to GDI rather than turned here). Access is lost
//! when the desktop switches (UAC, sign-in, a full-screen mode change); the capturer is then
//! dropped and opened again later.
#![allow(unsafe_code)]

use windows::Win32::Foundation::{E_FAIL, HMODULE};
use windows::Win32::Graphics::Direct3D::D3D_DRIVER_TYPE_UNKNOWN;
use windows::Win32::Graphics::Direct3D11::{
    D3D11_CPU_ACCESS_READ, D3D11_CREATE_DEVICE_BGRA_SUPPORT, D3D11_MAP_READ,
    D3D11_MAPPED_SUBRESOURCE, D3D11_SDK_VERSION, D3D11_TEXTURE2D_DESC, D3D11_USAGE_STAGING,
    D3D11CreateDevice, ID3D11Device, ID3D11DeviceContext, ID3D11Texture2D,
};
use windows::Win32::Graphics::Dxgi::Common::{
    DXGI_FORMAT_B8G8R8A8_UNORM, DXGI_MODE_ROTATION_IDENTITY, DXGI_MODE_ROTATION_UNSPECIFIED,
};
use windows::Win32::Graphics::Dxgi::{
    CreateDXGIFactory1, DXGI_ERROR_WAIT_TIMEOUT, DXGI_OUTDUPL_FRAME_INFO, IDXGIFactory1,
    IDXGIOutput1, IDXGIOutputDuplication, IDXGIResource,
};
use windows::core::Interface;

/// What a grab found.
pub enum Grab {
    /// `out` holds the newest image.
    Frame,
    /// Nothing changed since the last grab (`out` untouched).
    Unchanged,
}

/// One monitor's duplication.
pub struct Duplication {
    context: ID3D11DeviceContext,
    device: ID3D11Device,
    dup: IDXGIOutputDuplication,
    /// A CPU-readable copy of the desktop image, made on first use.
    staging: Option<ID3D11Texture2D>,
    width: u32,
    height: u32,
}

fn fail(what: &str) -> windows::core::Error {
    windows::core::Error::new(E_FAIL, what)
}

impl Duplication {
    /// Duplicates the output that covers exactly this area of the virtual screen.
    pub fn open(left: i32, top: i32, width: i32, height: i32) -> windows::core::Result<Self> {
        // SAFETY: COM calls on interfaces the wrappers own and release; every out-value is
        // checked before use.
        unsafe {
            let factory: IDXGIFactory1 = CreateDXGIFactory1()?;
            let mut a = 0;
            // EnumAdapters1 fails (DXGI_ERROR_NOT_FOUND) past the last adapter.
            while let Ok(adapter) = factory.EnumAdapters1(a) {
                a += 1;
                let mut o = 0;
                while let Ok(output) = adapter.EnumOutputs(o) {
                    o += 1;
                    let desc = output.GetDesc()?;
                    let r = desc.DesktopCoordinates;
                    if (r.left, r.top, r.right - r.left, r.bottom - r.top)
                        != (left, top, width, height)
                    {
                        continue;
                    }
                    if desc.Rotation != DXGI_MODE_ROTATION_IDENTITY
                        && desc.Rotation != DXGI_MODE_ROTATION_UNSPECIFIED
                    {
                        return Err(fail("a rotated monitor (left to GDI)"));
                    }
                    let output: IDXGIOutput1 = output.cast()?;
                    let mut device = None;
                    let mut context = None;
                    D3D11CreateDevice(
                        &adapter,
                        D3D_DRIVER_TYPE_UNKNOWN,
                        HMODULE::default(),
                        D3D11_CREATE_DEVICE_BGRA_SUPPORT,
                        None,
                        D3D11_SDK_VERSION,
                        Some(&mut device),
                        None,
                        Some(&mut context),
                    )?;
                    let (Some(device), Some(context)) = (device, context) else {
                        return Err(fail("no Direct3D device"));
                    };
                    let dup = output.DuplicateOutput(&device)?;
                    return Ok(Duplication {
                        context,
                        device,
                        dup,
                        staging: None,
                        width: width as u32,
                        height: height as u32,
                    });
                }
            }
        }
        Err(fail("no DXGI output covers this monitor"))
    }

    /// The staging texture for images like `desc`, made on first use.
    fn staging(&mut self, desc: &D3D11_TEXTURE2D_DESC) -> windows::core::Result<ID3D11Texture2D> {
        if let Some(t) = &self.staging {
            return Ok(t.clone());
        }
        let mut want = *desc;
        want.Usage = D3D11_USAGE_STAGING;
        want.BindFlags = 0;
        want.CPUAccessFlags = D3D11_CPU_ACCESS_READ.0 as u32;
        want.MiscFlags = 0;
        want.MipLevels = 1;
        want.ArraySize = 1;
        let mut texture = None;
        // SAFETY: `want` is a valid description alive for the call.
        unsafe {
            self.device
                .CreateTexture2D(&want, None, Some(&mut texture))?
        };
        let texture = texture.ok_or_else(|| fail("no staging texture"))?;
        self.staging = Some(texture.clone());
        Ok(texture)
    }

    /// Copies the newest image into `out` (BGRX, rows packed) when it changed since the last
    /// grab, waiting up to `timeout_ms` for one.
    pub fn grab(&mut self, out: &mut Vec<u8>, timeout_ms: u32) -> windows::core::Result<Grab> {
        let mut info = DXGI_OUTDUPL_FRAME_INFO::default();
        let mut resource: Option<IDXGIResource> = None;
        // SAFETY: out-pointers to locals; the frame is released below whatever happens.
        match unsafe {
            self.dup
                .AcquireNextFrame(timeout_ms, &mut info, &mut resource)
        } {
            Err(e) if e.code() == DXGI_ERROR_WAIT_TIMEOUT => return Ok(Grab::Unchanged),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        let result = self.copy(&info, resource, out);
        // SAFETY: a frame was acquired above.
        let _ = unsafe { self.dup.ReleaseFrame() };
        result
    }

    fn copy(
        &mut self,
        info: &DXGI_OUTDUPL_FRAME_INFO,
        resource: Option<IDXGIResource>,
        out: &mut Vec<u8>,
    ) -> windows::core::Result<Grab> {
        // Only the pointer moved: the image is the one before.
        if info.LastPresentTime == 0 {
            return Ok(Grab::Unchanged);
        }
        let texture: ID3D11Texture2D = resource.ok_or_else(|| fail("no frame"))?.cast()?;
        let mut desc = D3D11_TEXTURE2D_DESC::default();
        // SAFETY: `desc` is an out-parameter.
        unsafe { texture.GetDesc(&mut desc) };
        if desc.Format != DXGI_FORMAT_B8G8R8A8_UNORM
            || (desc.Width, desc.Height) != (self.width, self.height)
        {
            return Err(fail(
                "an image of another format or size than the monitor's",
            ));
        }
        let staging = self.staging(&desc)?;
        let mut mapped = D3D11_MAPPED_SUBRESOURCE::default();
        // SAFETY: both textures are alive and alike; the mapping is read within the bounds
        // Direct3D gives (RowPitch × height) and unmapped before returning.
        unsafe {
            self.context.CopyResource(&staging, &texture);
            self.context
                .Map(&staging, 0, D3D11_MAP_READ, 0, Some(&mut mapped))?;
            let row = self.width as usize * 4;
            let pitch = mapped.RowPitch as usize;
            if pitch < row || mapped.pData.is_null() {
                self.context.Unmap(&staging, 0);
                return Err(fail("a mapping smaller than the image"));
            }
            out.clear();
            out.reserve(row * self.height as usize);
            let base = mapped.pData as *const u8;
            for y in 0..self.height as usize {
                out.extend_from_slice(std::slice::from_raw_parts(base.add(y * pitch), row));
            }
            self.context.Unmap(&staging, 0);
        }
        Ok(Grab::Frame)
    }
}
