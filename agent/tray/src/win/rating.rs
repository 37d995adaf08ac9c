//! After an engagement ends, asks the user how it went, as on Linux (`ui/rating.rs`): 1 to 5 and
//! an optional comment. Independent of everything else; closing it skips the rating.

use super::sys::{Button, Event, Font, Form, ID_CANCEL, ID_OK, Kind, Place, px};
use super::{Column, centre};
use crate::ipc::Ipc;
use crate::text;
use tether_protocol::consent::{LocalRequest, MAX_COMMENT};
use tracing::info;

pub const TITLE: &str = "Tether: rate your support session";

const SEND: u16 = 300;
const SKIP: u16 = 301;
const COMMENT: u16 = 302;
/// The score buttons' ids are STAR + 1 ..= STAR + 5.
const STAR: u16 = 310;

pub fn show(ipc: Ipc, id: &str, technician: &str) -> Result<(), String> {
    let form = Form::create(Kind::Dialog { topmost: false }, TITLE)?;
    let mut col = Column::new(form);
    col.label(&text::rating_question(technician), Font::Large, 0);
    col.label("1 = poor, 5 = excellent", Font::Normal, 0);
    let side = px(36);
    let stars: Vec<_> = (1..=5u16)
        .map(|n| {
            let x = col.x + i32::from(n - 1) * (side + px(6));
            form.button(
                STAR + n,
                &n.to_string(),
                Button::Toggle { first: n == 1 },
                (x, col.y, side, side),
            )
        })
        .collect();
    col.gap(36 + 10);
    let comment = col.edit(COMMENT, "Comment (optional)", MAX_COMMENT);
    col.gap(2);
    let buttons = col.buttons(&[
        (SKIP, "Skip", Button::Push),
        (SEND, "Send", Button::Default),
    ]);
    let (skip, send) = (buttons[0], buttons[1]);
    send.enable(false);
    col.finish();
    form.place(Place::Centre);

    let id = id.to_string();
    let chosen = {
        let stars = stars.clone();
        move || {
            stars
                .iter()
                .position(|s| s.is_checked())
                .and_then(|i| u8::try_from(i + 1).ok())
        }
    };
    {
        let id = id.clone();
        form.on_event(move |event| match event {
            Event::Command(n) if (STAR + 1..=STAR + 5).contains(&n) => {
                send.enable(chosen().is_some());
            }
            Event::Command(SEND | ID_OK) => {
                let Some(rating) = chosen() else { return };
                info!(id = %id, rating, "user rated the session");
                ipc.send(LocalRequest::Rate {
                    id: id.clone(),
                    rating,
                    comment: comment.text().trim().to_string(),
                });
                form.destroy();
            }
            Event::Command(SKIP | ID_CANCEL) | Event::Close => {
                info!(id = %id, "rating window closed");
                form.destroy();
            }
            _ => {}
        });
    }
    form.show(true);
    let stars: Vec<String> = stars.iter().map(|s| centre(*s)).collect();
    info!(
        id = %id,
        send_button = %centre(send),
        skip_button = %centre(skip),
        star_buttons = %stars.join(";"),
        "rating shown"
    );
    Ok(())
}
