//! Switchboard: realtime rooms, presence, notifications and collaborative documents as a
//! Cloudflare Worker on Durable Objects.
//!
//! The crate has two halves. [`core`] holds every rule as deterministic, host-testable Rust
//! that takes `now` and returns effects. `edge` (wasm32 only) is the thin shell that routes
//! requests, authenticates upgrades and applies effects to sockets, SQLite storage and alarms.

#![warn(missing_docs)]

pub mod core;

#[cfg(target_arch = "wasm32")]
mod edge;
