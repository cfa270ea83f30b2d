//! Handler registration: what a server does with connections, events,
//! disconnects and server-side emits of a namespace (or of every namespace
//! a pattern accepts). A handler either calls a C callback or, for hosts
//! that take records (`iobus_server_poll_records`), is a subscription that
//! only queues records: no C callback needed.

use std::cell::OnceCell;
use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::convert::{self, opt_text, text};
use super::dispatch::Dispatcher;
use super::event::{Reply, iobus_connect, iobus_event};
use super::records::{
    ConnectFn, ConnectJob, DisconnectFn, DisconnectJob, EventFn, EventJob, UserData, iobus_record_kind,
};
use super::server::{PendingSockets, iobus_server, server_ref};
use super::types::{iobus_connect_cb, iobus_disconnect_cb, iobus_event_cb};
use super::{Error, guard, iobus_status};
use crate::server::ServerSideReply;
use crate::{AckSender, ConnectRequest, DisconnectReason, Namespace, Payload, Socket};

/// One handler slot of a namespace.
#[derive(Debug, Clone, Copy)]
enum Slot<'a> {
    Connect,
    /// One event name; `None`: every event without a handler of its own.
    Event(Option<&'a str>),
    Disconnect,
    ServerSide,
}

/// What a slot's handler does with each call: a C callback, or records
/// only (`None`), each call carrying `user`.
struct Sink<F> {
    cb: Option<F>,
    user: UserData,
}

fn connect_handler(
    dispatch: Arc<Dispatcher>,
    pending: PendingSockets,
    sink: Sink<ConnectFn>,
) -> impl Fn(ConnectRequest) + Send + Sync + 'static {
    move |req| {
        if let Some(req) = iobus_connect::new(req, pending.clone()) {
            dispatch.push(Box::new(ConnectJob { cb: sink.cb, user: sink.user, req, handshake: OnceCell::new() }));
        }
    }
}

/// A socket recovered without asking the connect handler (connection state
/// recovery with `skip_middlewares`): the host still hears of it, through
/// its connect callback or record, with the connection already accepted.
fn recovered_handler(
    dispatch: Arc<Dispatcher>,
    pending: PendingSockets,
    sink: Sink<ConnectFn>,
) -> impl Fn(&Arc<Socket>) + Send + Sync + 'static {
    move |socket| {
        let skipped = socket.namespace().recovery().is_some_and(|log| log.options().skip_middlewares);
        if socket.recovered() && skipped {
            let req = iobus_connect::recovered(socket.clone(), pending.clone());
            dispatch.push(Box::new(ConnectJob { cb: sink.cb, user: sink.user, req, handshake: OnceCell::new() }));
        }
    }
}

fn event_handler(
    dispatch: Arc<Dispatcher>,
    sink: Sink<EventFn>,
) -> impl Fn(&Arc<Socket>, &str, Payload, Option<AckSender>) + Send + Sync + 'static {
    move |socket, name, payload, ack| {
        let ack = ack.map(Reply::Socket);
        let event = iobus_event::new(socket.namespace().name(), socket.id().as_str(), Some(name), payload, ack);
        let kind = iobus_record_kind::IOBUS_RECORD_EVENT;
        dispatch.push(Box::new(EventJob { cb: sink.cb, user: sink.user, event, kind }));
    }
}

fn disconnect_handler(
    dispatch: Arc<Dispatcher>,
    sink: Sink<DisconnectFn>,
) -> impl Fn(&Arc<Socket>, DisconnectReason) + Send + Sync + 'static {
    move |socket, reason| {
        let mut rooms = socket.rooms();
        rooms.sort();
        let rooms = convert::c_string(&serde_json::to_string(&rooms).unwrap_or_else(|_| "[]".into()));
        let nsp = convert::c_string(socket.namespace().name());
        let sid = convert::c_string(socket.id().as_str());
        let reason = convert::c_string(reason.as_str());
        dispatch.push(Box::new(DisconnectJob { cb: sink.cb, user: sink.user, nsp, sid, reason, rooms }));
    }
}

fn server_side_handler(
    dispatch: Arc<Dispatcher>,
    sink: Sink<EventFn>,
) -> impl Fn(&Namespace, &str, Payload, Option<ServerSideReply>) + Send + Sync + 'static {
    move |nsp, name, payload, reply| {
        let event = iobus_event::new(nsp.name(), "", Some(name), payload, reply.map(Reply::Server));
        let kind = iobus_record_kind::IOBUS_RECORD_SERVER_SIDE_EMIT;
        dispatch.push(Box::new(EventJob { cb: sink.cb, user: sink.user, event, kind }));
    }
}

/// The C callback types a slot may hold, to install one or records only.
enum Handler {
    Connect(Option<ConnectFn>),
    Event(Option<EventFn>),
    Disconnect(Option<DisconnectFn>),
}

/// Sets (`Some`) or removes (`None`) the handler of a slot. Removing leaves
/// Socket.IO's behaviour without a handler: connections are accepted,
/// events and disconnects go unheard.
fn install(s: &iobus_server, namespace: &Namespace, slot: Slot<'_>, handler: Option<(Handler, UserData)>) {
    let dispatch = s.dispatch.clone();
    match (slot, handler) {
        (Slot::Connect, None) => {
            namespace.on_connect(drop);
            namespace.on_connection(|_| {});
        }
        (Slot::Event(Some(name)), None) => namespace.off(name),
        (Slot::Event(None), None) => namespace.on_any(|_, _, _, _| {}),
        (Slot::Disconnect, None) => namespace.on_disconnecting(|_, _| {}),
        (Slot::ServerSide, None) => namespace.off_server_side_emit(),
        (Slot::Connect, Some((Handler::Connect(cb), user))) => {
            namespace.on_connect(connect_handler(dispatch.clone(), s.pending.clone(), Sink { cb, user }));
            namespace.on_connection(recovered_handler(dispatch, s.pending.clone(), Sink { cb, user }));
        }
        (Slot::Event(Some(name)), Some((Handler::Event(cb), user))) => {
            let handler = event_handler(dispatch, Sink { cb, user });
            let event_name = name.to_owned();
            namespace.on(name, move |socket, payload, ack| handler(socket, &event_name, payload, ack));
        }
        (Slot::Event(None), Some((Handler::Event(cb), user))) => {
            namespace.on_any(event_handler(dispatch, Sink { cb, user }));
        }
        // Taken while the socket still knows its rooms.
        (Slot::Disconnect, Some((Handler::Disconnect(cb), user))) => {
            namespace.on_disconnecting(disconnect_handler(dispatch, Sink { cb, user }));
        }
        (Slot::ServerSide, Some((Handler::Event(cb), user))) => {
            namespace.on_server_side_emit(server_side_handler(dispatch, Sink { cb, user }));
        }
        // The callers pair each slot with its own handler type.
        _ => {}
    }
}

/// Registers a C callback (`Some`) or removes the slot's handler (`None`).
fn register<'a>(
    server: *mut iobus_server,
    nsp: *const c_char,
    slot: impl FnOnce() -> Result<Slot<'a>, Error>,
    handler: Option<Handler>,
    user_data: *mut c_void,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let namespace = s.handlers_of(unsafe { opt_text(nsp, "nsp") }?);
        let slot = slot()?;
        install(s, &namespace, slot, handler.map(|h| (h, UserData(user_data))));
        Ok(())
    })
}

/// Accepts every namespace matching `pattern`, where `*` matches any run of
/// characters (`"/room-*"`). Handlers registered with `pattern` as their
/// namespace serve all of them.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_add_namespace_pattern(
    server: *mut iobus_server,
    pattern: *const c_char,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let pattern = unsafe { text(pattern, "pattern") }?;
        if !pattern.starts_with('/') {
            return Err(Error::new(iobus_status::IOBUS_ERR_INVALID_ARGUMENT, "a namespace pattern starts with '/'"));
        }
        let mut patterns = s.patterns.lock();
        if !patterns.contains_key(pattern) {
            let template = s.server.dynamic_namespace_pattern(pattern);
            patterns.insert(pattern.to_owned(), template);
        }
        Ok(())
    })
}

/// Sets the connect callback of namespace `nsp` (NULL: `"/"`; a registered
/// pattern: every namespace it matches). Without one, connections are
/// accepted. `cb` NULL removes it (or a connect subscription).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_on_connect(
    server: *mut iobus_server,
    nsp: *const c_char,
    cb: iobus_connect_cb,
    user_data: *mut c_void,
) -> iobus_status {
    register(server, nsp, || Ok(Slot::Connect), cb.map(|f| Handler::Connect(Some(f))), user_data)
}

/// Sets the callback of event `event` in namespace `nsp` (NULL: `"/"`, or a
/// registered pattern). `cb` NULL removes it (or a subscription to that
/// event).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_on_event(
    server: *mut iobus_server,
    nsp: *const c_char,
    event: *const c_char,
    cb: iobus_event_cb,
    user_data: *mut c_void,
) -> iobus_status {
    let slot = || Ok(Slot::Event(Some(unsafe { text(event, "event") }?)));
    register(server, nsp, slot, cb.map(|f| Handler::Event(Some(f))), user_data)
}

/// Sets the callback of every event of `nsp` that has no callback (or
/// subscription) of its own. `cb` NULL removes it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_on_any(
    server: *mut iobus_server,
    nsp: *const c_char,
    cb: iobus_event_cb,
    user_data: *mut c_void,
) -> iobus_status {
    register(server, nsp, || Ok(Slot::Event(None)), cb.map(|f| Handler::Event(Some(f))), user_data)
}

/// Sets the disconnect callback of `nsp`. `cb` NULL removes it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_on_disconnect(
    server: *mut iobus_server,
    nsp: *const c_char,
    cb: iobus_disconnect_cb,
    user_data: *mut c_void,
) -> iobus_status {
    register(server, nsp, || Ok(Slot::Disconnect), cb.map(|f| Handler::Disconnect(Some(f))), user_data)
}

/// Sets the callback of the events other servers emit to namespace `nsp`
/// with `iobus_namespace_server_side_emit` (never events from clients). It
/// receives an `iobus_event` with the namespace, an empty socket id, the
/// event name and its arguments; when the sending server asked for a reply
/// (`iobus_namespace_server_side_emit_with_ack`), `iobus_event_take_ack`
/// gives the handle to answer once with `iobus_ack_send`. A server never
/// receives its own server-side emits: with the default in-memory adapter
/// (one server) this callback is never called. `cb` NULL removes it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_on_server_side_emit(
    server: *mut iobus_server,
    nsp: *const c_char,
    cb: iobus_event_cb,
    user_data: *mut c_void,
) -> iobus_status {
    register(server, nsp, || Ok(Slot::ServerSide), cb.map(|f| Handler::Event(Some(f))), user_data)
}

/// The slot a subscription names.
///
/// # Safety
/// `event` is NULL or a valid C string.
unsafe fn subscription_slot<'a>(kind: i32, event: *const c_char) -> Result<(Slot<'a>, Handler), Error> {
    let event = unsafe { opt_text(event, "event") }?;
    let kind = iobus_record_kind::from_i32(kind)
        .ok_or_else(|| Error::new(iobus_status::IOBUS_ERR_INVALID_ARGUMENT, format!("unknown record kind {kind}")))?;
    let no_event = |slot, handler| match event {
        None => Ok((slot, handler)),
        Some(_) => Err(Error::new(
            iobus_status::IOBUS_ERR_INVALID_ARGUMENT,
            format!("event must be NULL for kind {}", kind as i32),
        )),
    };
    match kind {
        iobus_record_kind::IOBUS_RECORD_CONNECT => no_event(Slot::Connect, Handler::Connect(None)),
        iobus_record_kind::IOBUS_RECORD_EVENT => Ok((Slot::Event(event), Handler::Event(None))),
        iobus_record_kind::IOBUS_RECORD_DISCONNECT => no_event(Slot::Disconnect, Handler::Disconnect(None)),
        iobus_record_kind::IOBUS_RECORD_SERVER_SIDE_EMIT => no_event(Slot::ServerSide, Handler::Event(None)),
        _ => Err(Error::new(
            iobus_status::IOBUS_ERR_INVALID_ARGUMENT,
            format!(
                "kind {} is a completion, not a subscription: pass a NULL callback to the call that asks for it",
                kind as i32
            ),
        )),
    }
}

/// In `IOBUS_DISPATCH_POLL` mode, for hosts that take records: subscribes
/// namespace `nsp` (NULL: `"/"`, or a registered pattern) to records of
/// `kind` without a C callback. Each becomes a record of that kind for
/// `iobus_server_poll_records`, carrying `user_data` (which iobus never
/// dereferences; any value will do). `kind` (an `iobus_record_kind`):
///
/// - `IOBUS_RECORD_CONNECT`: connections, to answer through the record's
///   `iobus_connect *`;
/// - `IOBUS_RECORD_EVENT`: the events named `event`, or, with `event`
///   NULL, every event that has no handler of its own (as
///   `iobus_server_on_any`);
/// - `IOBUS_RECORD_DISCONNECT`: disconnects;
/// - `IOBUS_RECORD_SERVER_SIDE_EMIT`: server-side emits from other servers.
///
/// `event` must be NULL except for `IOBUS_RECORD_EVENT`. A subscription
/// replaces the callback of its slot (and the other way round); remove
/// either with `iobus_server_unsubscribe` or the `iobus_server_on_*`
/// function with a NULL callback. Records of a subscription are not calls:
/// `iobus_server_poll` and `iobus_server_free` release them (a connection
/// is refused, an ack handle dropped unanswered). Errors:
/// `IOBUS_ERR_WRONG_STATE` when the server calls callbacks on its own
/// thread, `IOBUS_ERR_INVALID_ARGUMENT` for another kind.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_subscribe(
    server: *mut iobus_server,
    nsp: *const c_char,
    kind: i32,
    event: *const c_char,
    user_data: *mut c_void,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        if !s.dispatch.is_poll_mode() {
            return Err(Error::new(
                iobus_status::IOBUS_ERR_WRONG_STATE,
                "subscriptions deliver records: the server must use IOBUS_DISPATCH_POLL",
            ));
        }
        let namespace = s.handlers_of(unsafe { opt_text(nsp, "nsp") }?);
        let (slot, handler) = unsafe { subscription_slot(kind, event) }?;
        install(s, &namespace, slot, Some((handler, UserData(user_data))));
        Ok(())
    })
}

/// Removes the handler of the slot `kind` / `event` names (as in
/// `iobus_server_subscribe`) from namespace `nsp`, whether a subscription
/// or a callback registered with `iobus_server_on_*`. Removing what is not
/// there does nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn iobus_server_unsubscribe(
    server: *mut iobus_server,
    nsp: *const c_char,
    kind: i32,
    event: *const c_char,
) -> iobus_status {
    guard(|| {
        let s = server_ref(server)?;
        let namespace = s.handlers_of(unsafe { opt_text(nsp, "nsp") }?);
        let (slot, _) = unsafe { subscription_slot(kind, event) }?;
        install(s, &namespace, slot, None);
        Ok(())
    })
}
