//! For Windows (MinGW) targets: embeds `windows/tether-tray.manifest` in `tether-tray.exe`, so its
//! buttons and edit boxes are the system's own (Common Controls 6: themed, with placeholder
//! text) and Windows knows it is DPI aware. Uses MinGW's `windres` (`gcc-mingw-w64-x86-64`, as
//! `deploy/build-windows.sh` installs; `WINDRES` overrides). Nothing on other targets.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=windows/tether-tray.manifest");
    println!("cargo:rerun-if-changed=windows/tether-tray.rc");
    println!("cargo:rerun-if-env-changed=WINDRES");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "windows" {
        return;
    }
    if target_env != "gnu" {
        println!(
            "cargo:warning=tether-tray: no manifest embedded for {target_env} targets (classic controls)"
        );
        return;
    }
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let windres = env::var("WINDRES").unwrap_or_else(|_| format!("{arch}-w64-mingw32-windres"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("tether-tray-manifest.o");
    let status = Command::new(&windres)
        .current_dir("windows")
        .args(["tether-tray.rc", "-O", "coff", "-o"])
        .arg(&obj)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run {windres}: {e} (install gcc-mingw-w64-x86-64, or set WINDRES)")
        });
    assert!(
        status.success(),
        "{windres} failed on windows/tether-tray.rc"
    );
    println!("cargo:rustc-link-arg-bins={}", obj.display());
}
