//! The sans-IO core: every rule of the service as plain, deterministic Rust.
//!
//! Nothing here reads a clock, touches a socket or calls storage. Handlers take `now` and their
//! inputs and return effects ([`object::Effect`], under the contract [`object::Object`]); the wasm shell in `crate::edge` applies them. The core
//! builds and is tested on the host (`cargo test`); `worker` is not even a dependency there.

pub mod admission;
pub mod auth;
pub mod body;
pub mod caps;
pub mod config;
pub mod dev_token;
pub mod doc;
pub mod effect;
pub mod error;
pub mod gate;
pub mod ids;
pub mod notify;
pub mod object;
pub mod origin;
pub mod ot;
pub mod outbox;
pub mod presence;
pub mod protocol;
pub mod room;
pub mod route;
pub mod sessions;
pub mod throttle;
pub mod time;
pub mod timers;
pub mod user;
