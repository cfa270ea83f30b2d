//! iobus: a Socket.IO v5 / Engine.IO v4 server, embeddable through a C ABI.
//!
//! Layers, bottom up: [`protocol`] (pure codecs), [`engine`] (Engine.IO
//! sessions and transports), the Socket.IO [`server`] (namespaces, sockets,
//! rooms, broadcasts, acks), and the HTTP listener that serves them.

pub mod engine;
pub mod ffi;
mod http;
pub mod protocol;
#[cfg(feature = "redis")]
pub mod redis;
mod sched;
pub mod server;
mod sid;

pub use http::HttpOptions;
pub use server::{
    AckError, AckSender, BroadcastOperator, ConnectRequest, DisconnectReason, EmitError, Namespace, Payload, Server,
    ServerOptions, Socket, placeholder,
};
pub use sid::Sid;

/// The README's example compiles.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
