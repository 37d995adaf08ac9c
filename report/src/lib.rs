//! What the programs that print make of protocol data: readable sections of an inventory, CSV
//! rows for spreadsheets ([`inventory`]) and a health report as tables ([`health`]). Shared by
//! `tether-agent` and `tether`; the wire protocol (`tether-protocol`) formats nothing for a
//! terminal.
//!
//! Everything rendered here came from a device and is untrusted: every string goes through
//! [`tether_protocol::text::clean`] (terminal) or [`tether_protocol::inventory::csv_cell`]
//! (spreadsheets) on its way out.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod health;
pub mod inventory;
