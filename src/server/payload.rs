//! Event arguments as they travel: a JSON argument list whose binary values
//! are `{"_placeholder":true,"num":N}` objects, and the attachments beside it.

use bytes::Bytes;
use serde_json::Value;

pub use crate::protocol::socketio::placeholder;

/// The arguments of an event or an ack.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    /// The JSON arguments, placeholders standing in for binary values.
    pub args: Vec<Value>,
    /// The binary attachments, in placeholder order.
    pub binary: Vec<Bytes>,
}

impl Payload {
    /// No arguments.
    pub fn empty() -> Payload {
        Payload::default()
    }

    /// JSON arguments only.
    pub fn new(args: Vec<Value>) -> Payload {
        Payload { args, binary: Vec::new() }
    }

    /// JSON arguments with binary attachments (see [`placeholder`]).
    pub fn with_binary(args: Vec<Value>, binary: Vec<Bytes>) -> Payload {
        Payload { args, binary }
    }

    /// Whether placeholders and attachments agree.
    pub fn is_consistent(&self) -> bool {
        self.binary.is_empty() || crate::protocol::socketio::placeholders_match(&self.args, self.binary.len())
    }
}

impl From<Vec<Value>> for Payload {
    fn from(args: Vec<Value>) -> Self {
        Payload::new(args)
    }
}

impl From<Value> for Payload {
    /// A JSON array becomes the argument list; any other value is one argument.
    fn from(v: Value) -> Self {
        match v {
            Value::Array(args) => Payload::new(args),
            other => Payload::new(vec![other]),
        }
    }
}
