//! Manual probe of a backend in a running Wayland session:
//! `cargo run -p tether-wayland --example probe -- [backend] [text] [x,y]`.
//! Lists displays, captures one frame (printing four sample pixels), types the text and clicks.

use tether_protocol::session::{InputEvent, MouseButton};
use tether_wayland::backend::Capture;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut b = tether_wayland::pick(args.first().map(String::as_str).unwrap_or("auto"))?;
    println!("backend {} ({})", b.name(), b.compositor());
    println!("displays {:?}", b.displays()?);
    let t = std::time::Instant::now();
    match b.capture(0)? {
        Capture::Frame(f) => {
            let px = |x: u32, y: u32| {
                let i = ((y * f.width + x) * 4) as usize;
                (f.pixels[i + 2], f.pixels[i + 1], f.pixels[i])
            };
            println!(
                "frame {}x{} in {:?}: {:?} {:?} {:?} {:?} damage {:?}",
                f.width,
                f.height,
                t.elapsed(),
                px(160, 100),
                px(480, 100),
                px(800, 100),
                px(1120, 100),
                f.damage
            );
        }
        Capture::Unchanged => println!("unchanged"),
    }
    if let Some(text) = args.get(1) {
        b.input(&InputEvent::Text(text.clone()))?;
    }
    if let Some(xy) = args.get(2) {
        let (x, y) = xy.split_once(',').unwrap_or(("0", "0"));
        std::thread::sleep(std::time::Duration::from_millis(300));
        b.input(&InputEvent::Click {
            x: x.parse()?,
            y: y.parse()?,
            button: MouseButton::Left,
        })?;
    }
    b.set_clipboard("from tether".into())?;
    println!("clipboard: {:?}", b.get_clipboard());
    for _ in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if let Some(p) = b.pointer() {
            println!(
                "pointer {:?}",
                (p.x, p.y, p.image.map(|i| (i.width, i.height)))
            );
            break;
        }
        let _ = b.capture(0);
        b.input(&InputEvent::MouseMove { x: 100, y: 100 })?;
    }
    println!(
        "pointer {:?}",
        b.pointer()
            .map(|p| (p.x, p.y, p.image.map(|i| (i.width, i.height))))
    );
    println!(
        "second capture: {:?}",
        b.capture(0).map(|c| matches!(c, Capture::Unchanged))
    );
    Ok(())
}
