//! Where an H.264 frame's time goes at 1920×1080 with the agent's encoder settings: the BGRX to
//! YUV 4:2:0 conversion and the encoding itself, over a moving full-screen pattern (the
//! `animation_fullscreen` workload's kind of picture: every pixel changes each frame).
//! Decides whether pipelining capture and encoding, or giving the encoder the damage, pays.

use crate::Report;
use anyhow::Result;
use openh264::encoder::{BitRate, Encoder, EncoderConfig, RateControlMode, UsageType};
use openh264::formats::{BgraSliceU8, YUVBuffer};
use std::time::Instant;

const FRAMES: u32 = 60;

pub fn h264(report: &mut Report) -> Result<()> {
    let (w, h) = (1920usize, 1080usize);
    // As the agent's stream sets it up (agent/src/stream.rs).
    let cfg = EncoderConfig::new()
        .usage_type(UsageType::ScreenContentRealTime)
        .rate_control_mode(RateControlMode::Bitrate)
        .bitrate(BitRate::from_bps(4_000_000))
        .skip_frames(false);
    let mut enc = Encoder::with_api_config(openh264::OpenH264API::from_source(), cfg)?;
    let mut yuv = YUVBuffer::new(w, h);
    let (mut convert, mut encode) = (vec![], vec![]);
    let mut px = vec![0u8; w * h * 4];
    for f in 0..FRAMES {
        for (i, p) in px.chunks_exact_mut(4).enumerate() {
            let (x, y) = ((i % w) as u32, (i / w) as u32);
            let v = ((x + f * 7) ^ (y + f * 3)) as u8;
            p.copy_from_slice(&[v, v.wrapping_mul(3), v.wrapping_add(f as u8), 0]);
        }
        let t = Instant::now();
        yuv.read_bgra8(BgraSliceU8::new(&px, (w, h)));
        convert.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let _ = enc.encode(&yuv)?.to_vec();
        encode.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    report.add(
        "h264.1920x1080.convert_ms_p50",
        crate::screen::pctl(&mut convert, 0.5),
        "ms",
        None,
    );
    report.add(
        "h264.1920x1080.encode_ms_p50",
        crate::screen::pctl(&mut encode, 0.5),
        "ms",
        None,
    );
    Ok(())
}
