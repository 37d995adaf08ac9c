//! The Tether relay: the organisation's CA, enrollment, presence of agents, requests from
//! technicians, and the store behind them. `main.rs` is thin CLI glue over this library.
#![forbid(unsafe_code)]

pub mod admission;
pub mod alerts;
pub mod broker;
pub mod ca;
pub mod cluster;
pub mod config;
mod enroll;
pub mod group_policy;
pub mod live;
pub mod policy;
pub mod presence;
mod scope;
pub mod server;
mod state;
pub mod store;
pub mod tech;
pub mod tokens;
