//! Reading C arguments safely: NULL checks, UTF-8, JSON, arrays. All the
//! pointer dereferencing of the C ABI's inputs happens here.

use std::ffi::{CStr, CString, c_char};

use bytes::Bytes;
use serde_json::Value;

use super::types::{IOBUS_SELECTION_LOCAL, IOBUS_SELECTION_VOLATILE, iobus_buf, iobus_selection};
use super::{Error, iobus_status};
use crate::server::{BroadcastFlags, BroadcastOptions};
use crate::{Payload, Sid};

pub(crate) fn null(what: &str) -> Error {
    Error::new(iobus_status::IOBUS_ERR_NULL_ARGUMENT, format!("{what} is NULL"))
}

/// A required C string.
///
/// # Safety
/// `p` is NULL or points at a NUL-terminated string alive for `'a`.
pub(crate) unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|_| Error::new(iobus_status::IOBUS_ERR_INVALID_UTF8, format!("{what} is not valid UTF-8")))
}

/// An optional C string (NULL → `None`).
///
/// # Safety
/// As [`text`].
pub(crate) unsafe fn opt_text<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() { Ok(None) } else { unsafe { text(p, what) }.map(Some) }
}

/// A byte range; NULL is allowed only with length 0.
///
/// # Safety
/// `p` points at `len` readable bytes alive for `'a` (or is NULL with `len == 0`).
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// The JSON text of an argument array (`len` bytes, or NUL-terminated when
/// `len` is `usize::MAX`); NULL means no arguments.
///
/// # Safety
/// As [`bytes`].
pub(crate) unsafe fn json_args(p: *const c_char, len: usize, what: &str) -> Result<Vec<Value>, Error> {
    if p.is_null() {
        return if len == 0 || len == usize::MAX { Ok(Vec::new()) } else { Err(null(what)) };
    }
    let raw = if len == usize::MAX {
        // SAFETY: NUL-terminated per the caller's contract.
        unsafe { CStr::from_ptr(p) }.to_bytes()
    } else {
        unsafe { bytes(p.cast(), len, what) }?
    };
    let text = std::str::from_utf8(raw)
        .map_err(|_| Error::new(iobus_status::IOBUS_ERR_INVALID_UTF8, format!("{what} is not valid UTF-8")))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(a)) => Ok(a),
        Ok(_) => Err(Error::new(iobus_status::IOBUS_ERR_INVALID_JSON, format!("{what} must be a JSON array"))),
        Err(e) => Err(Error::new(iobus_status::IOBUS_ERR_INVALID_JSON, format!("{what} is not valid JSON: {e}"))),
    }
}

/// One JSON value (`len` bytes, or NUL-terminated when `len` is `usize::MAX`).
///
/// # Safety
/// As [`bytes`].
pub(crate) unsafe fn json_value(p: *const c_char, len: usize, what: &str) -> Result<Option<Value>, Error> {
    if p.is_null() {
        return Ok(None);
    }
    let raw = if len == usize::MAX {
        unsafe { CStr::from_ptr(p) }.to_bytes()
    } else {
        unsafe { bytes(p.cast(), len, what) }?
    };
    let text = std::str::from_utf8(raw)
        .map_err(|_| Error::new(iobus_status::IOBUS_ERR_INVALID_UTF8, format!("{what} is not valid UTF-8")))?;
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| Error::new(iobus_status::IOBUS_ERR_INVALID_JSON, format!("{what} is not valid JSON: {e}")))
}

/// Binary attachments, copied.
///
/// # Safety
/// `p` points at `n` [`iobus_buf`]s (or is NULL with `n == 0`), each valid.
pub(crate) unsafe fn buffers(p: *const iobus_buf, n: usize) -> Result<Vec<Bytes>, Error> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(null("binary"));
    }
    // SAFETY: per the caller's contract.
    let bufs = unsafe { std::slice::from_raw_parts(p, n) };
    bufs.iter().map(|b| unsafe { bytes(b.data, b.len, "binary attachment data") }.map(Bytes::copy_from_slice)).collect()
}

/// An array of C strings (NULL allowed with `n == 0`); errors name the
/// element (`rooms[2] is NULL`).
///
/// # Safety
/// `p` points at `n` pointers, each NULL or a valid C string.
pub(crate) unsafe fn texts(p: *const *const c_char, n: usize, what: &str) -> Result<Vec<String>, Error> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: per the caller's contract.
    let ptrs = unsafe { std::slice::from_raw_parts(p, n) };
    ptrs.iter().enumerate().map(|(i, s)| unsafe { text(*s, &format!("{what}[{i}]")) }.map(str::to_owned)).collect()
}

/// Room names without repeats, in their first order (a single room keeps
/// the fast path of the room index and of cluster adapters).
fn distinct(mut v: Vec<String>) -> Vec<String> {
    if v.len() < 2 {
        return v;
    }
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    v.retain(|r| seen.insert(r.clone()));
    v
}

/// What an `iobus_selection` says: the namespace name and the selection.
pub(crate) struct Selection {
    pub(crate) nsp: String,
    pub(crate) opts: BroadcastOptions,
}

/// Reads an `iobus_selection`.
///
/// # Safety
/// `sel` is NULL or points at a valid `iobus_selection` whose arrays follow
/// [`texts`].
pub(crate) unsafe fn selection(sel: *const iobus_selection) -> Result<Selection, Error> {
    // SAFETY: NULL or valid per the caller's contract.
    let sel = unsafe { sel.as_ref() }.ok_or_else(|| null("selection"))?;
    let nsp = unsafe { opt_text(sel.nsp, "selection nsp") }?.unwrap_or("/");
    let nsp = if nsp.starts_with('/') { nsp.to_owned() } else { format!("/{nsp}") };
    let rooms = distinct(unsafe { texts(sel.rooms, sel.room_count, "selection rooms") }?);
    let except = distinct(unsafe { texts(sel.except_rooms, sel.except_room_count, "selection except_rooms") }?);
    let mut except_sids = Vec::with_capacity(sel.except_sid_count);
    for (i, id) in unsafe { texts(sel.except_sids, sel.except_sid_count, "selection except_sids") }?.iter().enumerate()
    {
        let sid = Sid::parse(id).ok_or_else(|| {
            Error::new(
                iobus_status::IOBUS_ERR_INVALID_ARGUMENT,
                format!("selection except_sids[{i}] is not a socket id: {id:?}"),
            )
        })?;
        if !except_sids.contains(&sid) {
            except_sids.push(sid);
        }
    }
    let known = IOBUS_SELECTION_VOLATILE | IOBUS_SELECTION_LOCAL;
    if sel.flags & !known != 0 {
        return Err(Error::new(
            iobus_status::IOBUS_ERR_INVALID_ARGUMENT,
            format!("selection flags {:#x} has unknown bits {:#x}", sel.flags, sel.flags & !known),
        ));
    }
    let flags = BroadcastFlags {
        volatile: sel.flags & IOBUS_SELECTION_VOLATILE != 0,
        local: sel.flags & IOBUS_SELECTION_LOCAL != 0,
        timeout: (sel.timeout_ms != 0).then(|| std::time::Duration::from_millis(sel.timeout_ms)),
    };
    Ok(Selection { nsp, opts: BroadcastOptions { rooms, except, except_sids, flags } })
}

/// A payload from the JSON argument array and the attachments.
///
/// # Safety
/// As [`json_args`] and [`buffers`].
pub(crate) unsafe fn payload(
    args: *const c_char,
    args_len: usize,
    binary: *const iobus_buf,
    binary_count: usize,
) -> Result<Payload, Error> {
    let args = unsafe { json_args(args, args_len, "args_json") }?;
    let binary = unsafe { buffers(binary, binary_count) }?;
    let payload = Payload::with_binary(args, binary);
    if !payload.is_consistent() {
        return Err(Error::new(
            iobus_status::IOBUS_ERR_INVALID_BINARY,
            "every attachment needs a {\"_placeholder\":true,\"num\":N} in args_json, and every placeholder an attachment",
        ));
    }
    Ok(payload)
}

/// [`payload`] with its error as status and message, for the fuzz target
/// `fuzz/fuzz_targets/ffi_payload.rs`, which calls it the way a C host calls
/// the emit functions. Not part of the API.
///
/// # Safety
/// As [`payload`].
#[doc(hidden)]
pub unsafe fn fuzz_payload(
    args: *const c_char,
    args_len: usize,
    binary: *const iobus_buf,
    binary_count: usize,
) -> Result<Payload, (iobus_status, String)> {
    unsafe { payload(args, args_len, binary, binary_count) }.map_err(|e| (e.status, e.message))
}

/// A C string from text that may (pathologically) hold NUL characters.
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "")).unwrap_or_default())
}

/// Hands a string to C: writes the pointer and length to the outs.
///
/// # Safety
/// `out` is a valid pointer; `len_out` is NULL or valid.
pub(crate) unsafe fn give_string(s: String, out: *mut *mut c_char, len_out: *mut usize) -> Result<(), Error> {
    if out.is_null() {
        return Err(null("out"));
    }
    let c = c_string(&s);
    let len = c.as_bytes().len();
    // SAFETY: checked non-NULL; the caller owns the pointed-to storage.
    unsafe {
        *out = c.into_raw();
        if !len_out.is_null() {
            *len_out = len;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_as_json_parse_does() {
        let args = b"[1234567890123456789012345671615,1890123.67890123456789]";
        // SAFETY: `args` holds `args.len()` bytes; no attachments.
        let read = unsafe { payload(args.as_ptr().cast(), args.len(), std::ptr::null(), 0) };
        let payload = read.map_err(|e| e.message).unwrap();
        assert_eq!(payload.args, vec![serde_json::json!(1.2345678901234568e30), serde_json::json!(1890123.6789012346)]);
    }
}
