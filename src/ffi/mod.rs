//! The C ABI. Only this module knows about C: raw pointers, `extern "C"`,
//! `catch_unwind`. Everything here wraps the safe Rust core.
//!
//! Conventions (see `include/iobus.h`):
//! - every fallible function returns an [`iobus_status`]; out-parameters are
//!   written only on success; [`iobus_last_error`] gives the message of the
//!   last failure on the calling thread;
//! - NULL, invalid UTF-8 and invalid JSON are errors, never crashes, and no
//!   panic crosses the boundary;
//! - callbacks of one server run one at a time, on the library's dispatcher
//!   thread or inside [`server::iobus_server_poll`] on the host's thread,
//!   never on a network thread.
//!
//! Files by the C object they serve: `server.rs` (the handle, lifecycle,
//! poll), `handlers.rs` (registration and subscriptions), `socket.rs` (one
//! socket), `selection.rs` (the sockets an `iobus_selection` chooses),
//! `namespace.rs` (a namespace as a whole), `event.rs` (what callbacks
//! receive), `config.rs`; the shared C types in `types.rs`; the jobs and
//! records in `records.rs`; completions owed exactly once in
//! `completion.rs`; every read of C input in `convert.rs`.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

// In the order the header presents them (cbindgen follows this order).
pub mod types;

pub mod cluster;
pub mod config;
pub mod event;

pub mod server;

pub mod handlers;

pub mod socket;

pub mod selection;

pub mod namespace;

pub mod records;

mod completion;
mod convert;
mod dispatch;
#[cfg(test)]
mod tests;

#[doc(hidden)]
pub use convert::fuzz_payload;

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The result of every fallible iobus function.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum iobus_status {
    /// Success.
    IOBUS_OK = 0,
    /// A required pointer argument was NULL.
    IOBUS_ERR_NULL_ARGUMENT = 1,
    /// A string argument was not valid UTF-8.
    IOBUS_ERR_INVALID_UTF8 = 2,
    /// A JSON argument did not parse, or was not of the required shape
    /// (event arguments must be a JSON array).
    IOBUS_ERR_INVALID_JSON = 3,
    /// An argument had a value outside its domain.
    IOBUS_ERR_INVALID_ARGUMENT = 4,
    /// No connected socket has that id.
    IOBUS_ERR_UNKNOWN_SOCKET = 5,
    /// The server is not running (never started, or stopped).
    IOBUS_ERR_NOT_RUNNING = 6,
    /// The server is already running.
    IOBUS_ERR_ALREADY_RUNNING = 7,
    /// The operating system refused (binding the address, creating threads).
    IOBUS_ERR_IO = 8,
    /// The event name is reserved by Socket.IO (`connect`, `disconnect`, …).
    IOBUS_ERR_RESERVED_EVENT = 9,
    /// The binary placeholders in the JSON do not match the attachments.
    /// With attachments, every attachment must be named by exactly one
    /// `{"_placeholder":true,"num":N}` object and every placeholder must name
    /// an attachment; without attachments the JSON is plain data (a
    /// placeholder-shaped object is sent as is). The Rust API applies the
    /// same rule.
    IOBUS_ERR_INVALID_BINARY = 10,
    /// The call is not allowed here (for example polling from inside a
    /// callback, or polling a server that dispatches on its own thread).
    IOBUS_ERR_WRONG_STATE = 11,
    /// The socket disconnected before the operation completed.
    IOBUS_ERR_DISCONNECTED = 12,
    /// An internal error was caught; the server stays usable.
    IOBUS_ERR_PANIC = 13,
}

/// The major version number.
pub const IOBUS_VERSION_MAJOR: u32 = 0;
/// The minor version number.
pub const IOBUS_VERSION_MINOR: u32 = 1;
/// The patch version number.
pub const IOBUS_VERSION_PATCH: u32 = 0;

/// An error on its way to the C caller.
pub(crate) struct Error {
    pub(crate) status: iobus_status,
    pub(crate) message: String,
}

impl Error {
    pub(crate) fn new(status: iobus_status, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

/// Runs `f`, turning its error or panic into a status and the thread's last
/// error message.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Error>) -> iobus_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => iobus_status::IOBUS_OK,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(_) => {
            set_last_error("internal error (caught panic)");
            iobus_status::IOBUS_ERR_PANIC
        }
    }
}

/// Runs `f` where no status can be returned; a panic is swallowed.
pub(crate) fn guard_void(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

/// The message of the last failed iobus call on this thread ("" if none).
/// Valid until the next iobus call on this thread.
#[unsafe(no_mangle)]
pub extern "C" fn iobus_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The library version, `"MAJOR.MINOR.PATCH"` (static storage).
#[unsafe(no_mangle)]
pub extern "C" fn iobus_version() -> *const c_char {
    static VERSION: &[u8] = concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes();
    VERSION.as_ptr().cast()
}

/// A human-readable name for a status (static storage).
#[unsafe(no_mangle)]
pub extern "C" fn iobus_status_str(status: i32) -> *const c_char {
    let s: &'static [u8] = match status {
        0 => b"ok\0",
        1 => b"null argument\0",
        2 => b"invalid UTF-8\0",
        3 => b"invalid JSON\0",
        4 => b"invalid argument\0",
        5 => b"unknown socket\0",
        6 => b"server not running\0",
        7 => b"server already running\0",
        8 => b"I/O error\0",
        9 => b"reserved event name\0",
        10 => b"binary placeholders do not match attachments\0",
        11 => b"not allowed in this state\0",
        12 => b"socket disconnected\0",
        13 => b"internal error\0",
        _ => b"unknown status\0",
    };
    s.as_ptr().cast()
}

/// Frees a string returned by iobus (NULL is ignored).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    guard_void(|| {
        // SAFETY: iobus hands out strings only from `CString::into_raw`.
        drop(unsafe { CString::from_raw(s) });
    });
}
