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

    /// The one rule for every payload a host sends, through the Rust API
    /// and the C API alike. Without attachments the arguments are plain
    /// JSON: an object shaped like a placeholder is data and travels as is
    /// (in a plain EVENT, as Socket.IO sends it). With attachments,
    /// placeholders and attachments pair exactly once: every placeholder
    /// names an attachment that exists, and every attachment is named by
    /// exactly one placeholder.
    pub fn is_consistent(&self) -> bool {
        self.binary.is_empty() || crate::protocol::socketio::placeholders_match(&self.args, self.binary.len())
    }
}

impl From<Vec<Value>> for Payload {
    fn from(args: Vec<Value>) -> Self {
        Payload::new(args)
    }
}

impl Payload {
    /// One JSON argument (an array stays one argument).
    pub fn one(arg: Value) -> Payload {
        Payload::new(vec![arg])
    }

    /// Argument `index` as text, if it is a string.
    pub fn str(&self, index: usize) -> Option<&str> {
        self.args.get(index).and_then(Value::as_str)
    }

    /// Argument `index` read into any deserializable type.
    pub fn arg<T: serde::de::DeserializeOwned>(&self, index: usize) -> Option<T> {
        self.args.get(index).and_then(|v| T::deserialize(v).ok())
    }

    /// How many JSON arguments there are.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }
}
