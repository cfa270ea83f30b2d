//! Wire formats, as pure functions over strings and bytes.
//!
//! `engine` is the Engine.IO v4 packet and long-polling payload codec;
//! `socketio` is the Socket.IO v5 packet codec that lives inside Engine.IO
//! message packets. Neither touches a socket or a timer, so both are tested
//! (and fuzzable) alone.

pub mod engine;
pub mod socketio;
