//! The classic chat app: named users in rooms, typing notices, direct
//! messages, and the Socket.IO tutorial's `chat message` broadcast.
//!
//! Usage: `chat [port]` (or env `PORT`; default 3000). Serves the page in
//! `examples/chat/public` (override with env `CHAT_PUBLIC_DIR`) and the
//! `socket.io-client` bundle under `/socket.io/`.
//!
//! Events (client → server, then what the server sends):
//!
//! | event | arguments | effect | ack |
//! | --- | --- | --- | --- |
//! | `join` | name | joins `lobby`; `join` {name, room, id} to the room | {room, users, members} |
//! | `chat` | {msg} | `chat` {name, msg, room, ts, id} to the room | {ok} |
//! | `switch room` | room | `leave` to the old room, `join` to the new one | {room, users, members} |
//! | `typing` | – | `typing` {name} to the room, sender excluded | – |
//! | `dm` | {to, msg} | `dm` {from, fromId, msg, ts} to socket `to` | {ok} |
//! | `leave` | – | `leave` {name, room, id} to the room, then disconnects | {ok} |
//! | `chat message` | text | `chat message` text to everyone | – |
//!
//! `users` is the sorted list of names in the room; `members` is
//! `[{id, name}]` in the same order, so a page can address DMs. A socket
//! that disconnects without `leave` still produces the `leave` notice.
//!
//! Connection state recovery is on (env `CHAT_RECOVERY_MS`, default 30000;
//! 0 turns it off): a page whose connection drops keeps its user for that
//! long. Coming back in time, it gets its id, room and every message it
//! missed, and the others see nothing of the drop; a DM sent to it meanwhile
//! waits for it. Only when it stays away longer does the room get its
//! `leave` notice.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use iobus::server::RecoveryOptions;
use iobus::{AckSender, DisconnectReason, Namespace, Server, ServerOptions, Sid, Socket};
use parking_lot::Mutex;
use serde_json::{Value, json};

const LOBBY: &str = "lobby";
const MAX_NAME: usize = 32;
const MAX_ROOM: usize = 40;
const MAX_MSG: usize = 2000;
/// How long a dropped page keeps its user, unless `CHAT_RECOVERY_MS` says.
const RECOVERY_MS: u64 = 30_000;
/// How much later than the server's own recovery deadline a user that has
/// not come back is let go: by then no recovery of it can be under way.
const EXPIRY_GRACE: Duration = Duration::from_secs(1);

/// What the server knows about a socket that has joined.
#[derive(Debug, Clone)]
struct User {
    name: String,
    room: String,
    /// Since when its connection is gone, while it may still recover.
    away: Option<Instant>,
}

impl User {
    fn new(name: String, room: String) -> User {
        User { name, room, away: None }
    }
}

/// Joined users by socket id.
type Users = Arc<Mutex<HashMap<Sid, User>>>;

/// The adapter room behind a chat room. The prefix keeps chat rooms apart
/// from the per-socket rooms named after socket ids.
fn room_key(room: &str) -> String {
    format!("chat:{room}")
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Trims, drops control characters, and caps the length (in characters).
fn clean(text: &str, max: usize) -> String {
    text.trim().chars().filter(|c| !c.is_control()).take(max).collect::<String>().trim().to_owned()
}

/// A non-empty cleaned string from a JSON value, or `None`.
fn text_arg(v: Option<&Value>, max: usize) -> Option<String> {
    let s = clean(v?.as_str()?, max);
    (!s.is_empty()).then_some(s)
}

/// The message of a `chat` or `dm` payload: `{msg}`, or a bare string.
fn msg_arg(v: Option<&Value>) -> Option<String> {
    let v = v?;
    let raw = match v {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("msg")?.as_str()?,
        _ => return None,
    };
    let s: String = raw.chars().take(MAX_MSG).collect();
    (!s.trim().is_empty()).then_some(s)
}

fn reply(ack: Option<AckSender>, value: Value) {
    if let Some(ack) = ack {
        let _ = ack.send(vec![value]);
    }
}

fn error(ack: Option<AckSender>, message: &str) {
    reply(ack, json!({ "ok": false, "error": message }));
}

/// `{room, users, members}` for a room: its users, those whose connection
/// dropped a moment ago included (the others still see them there).
fn roster(users: &Users, room: &str) -> Value {
    let mut members: Vec<(String, String)> = users
        .lock()
        .iter()
        .filter(|(_, user)| user.room == room)
        .map(|(sid, user)| (user.name.clone(), sid.to_string()))
        .collect();
    members.sort();
    json!({
        "room": room,
        "users": members.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        "members": members
            .iter()
            .map(|(name, id)| json!({ "id": id, "name": name }))
            .collect::<Vec<_>>(),
    })
}

fn notice(sid: Sid, user: &User) -> Value {
    json!({ "name": user.name, "room": user.room, "id": sid.as_str() })
}

/// Puts a joined socket into `room` (leaving its current one, if different)
/// and announces the move. Returns the ack payload.
fn enter(socket: &Arc<Socket>, users: &Users, name: String, room: String) -> Value {
    let nsp = socket.namespace();
    let sid = socket.id();
    let previous = users.lock().insert(sid, User::new(name.clone(), room.clone()));
    // Kept with the socket too, so that a recovered socket always knows who it is.
    *socket.data() = json!({ "name": name, "room": room });
    if let Some(old) = previous.filter(|old| old.room != room) {
        socket.leave(&room_key(&old.room));
        let _ = nsp.to(&room_key(&old.room)).emit("leave", vec![notice(sid, &old)]);
    }
    socket.join(&room_key(&room));
    let user = User::new(name, room.clone());
    let _ = nsp.to(&room_key(&room)).emit("join", vec![notice(sid, &user)]);
    roster(users, &room)
}

/// Removes a socket from the chat, telling its room. Returns whether it had
/// joined.
fn depart(socket: &Arc<Socket>, users: &Users) -> bool {
    let Some(user) = users.lock().remove(&socket.id()) else {
        return false;
    };
    *socket.data() = Value::Null;
    let key = room_key(&user.room);
    socket.leave(&key);
    let _ = socket.namespace().to(&key).emit("leave", vec![notice(socket.id(), &user)]);
    true
}

/// A socket whose connection dropped for a reason it may recover from: its
/// user stays, marked away, until it comes back or `keep` has passed.
fn away(socket: &Arc<Socket>, users: &Users, keep: Duration) {
    let nsp = socket.namespace().clone();
    let sid = socket.id();
    let since = Instant::now();
    match users.lock().get_mut(&sid) {
        // Not if it is back already (recovered before this handler ran).
        Some(user) if nsp.socket(sid).is_none() => user.away = Some(since),
        _ => return,
    }
    let users = users.clone();
    let Some(runtime) = nsp.runtime() else {
        return expire(&nsp, &users, sid, since);
    };
    runtime.spawn(async move {
        tokio::time::sleep(keep + EXPIRY_GRACE).await;
        expire(&nsp, &users, sid, since);
    });
}

/// The end of an absence that began at `since`: if the socket has not
/// come back (and not dropped again since), its user leaves the room.
fn expire(nsp: &Arc<Namespace>, users: &Users, sid: Sid, since: Instant) {
    let gone = {
        let mut table = users.lock();
        let still_away = table.get(&sid).is_some_and(|user| user.away == Some(since));
        if still_away && nsp.socket(sid).is_none() { table.remove(&sid) } else { None }
    };
    if let Some(user) = gone {
        let _ = nsp.to(&room_key(&user.room)).emit("leave", vec![notice(sid, &user)]);
    }
}

/// A recovered socket: the same id, rooms and data as before its drop, so
/// its user is simply back, and nobody is told. Should the user have been
/// let go meanwhile, it is taken back from the socket's data, and its room
/// (which was told it left) hears that it joined again.
fn come_back(socket: &Arc<Socket>, users: &Users) {
    let sid = socket.id();
    let returned = {
        let mut table = users.lock();
        if let Some(user) = table.get_mut(&sid) {
            user.away = None;
            return;
        }
        let data = socket.data().clone();
        let (Some(name), Some(room)) =
            (data.get("name").and_then(Value::as_str), data.get("room").and_then(Value::as_str))
        else {
            return;
        };
        let user = User::new(name.to_owned(), room.to_owned());
        table.insert(sid, user.clone());
        user
    };
    socket.join(&room_key(&returned.room));
    let _ = socket.namespace().to(&room_key(&returned.room)).emit("join", vec![notice(sid, &returned)]);
}

fn install(nsp: &Arc<Namespace>, users: &Users, keep: Option<Duration>) {
    let u = users.clone();
    nsp.on("join", move |socket, args, ack| {
        let Some(name) = text_arg(args.args.first(), MAX_NAME) else {
            return error(ack, "a name is required");
        };
        let roster = enter(socket, &u, name, LOBBY.to_owned());
        reply(ack, roster);
    });

    let u = users.clone();
    nsp.on("switch room", move |socket, args, ack| {
        let Some(room) = text_arg(args.args.first(), MAX_ROOM) else {
            return error(ack, "a room name is required");
        };
        let Some(name) = u.lock().get(&socket.id()).map(|user| user.name.clone()) else {
            return error(ack, "join first");
        };
        let roster = enter(socket, &u, name, room);
        reply(ack, roster);
    });

    let u = users.clone();
    nsp.on("chat", move |socket, args, ack| {
        let Some(user) = u.lock().get(&socket.id()).cloned() else {
            return error(ack, "join first");
        };
        let Some(msg) = msg_arg(args.args.first()) else {
            return error(ack, "a message is required");
        };
        let message = json!({
            "name": user.name,
            "msg": msg,
            "room": user.room,
            "ts": now_ms(),
            "id": socket.id().as_str(),
        });
        let _ = socket.namespace().to(&room_key(&user.room)).emit("chat", vec![message]);
        reply(ack, json!({ "ok": true }));
    });

    let u = users.clone();
    nsp.on("typing", move |socket, _args, _ack| {
        let Some(user) = u.lock().get(&socket.id()).cloned() else {
            return;
        };
        let _ = socket.to(&room_key(&user.room)).volatile().emit("typing", vec![json!({ "name": user.name })]);
    });

    let u = users.clone();
    nsp.on("dm", move |socket, args, ack| {
        let Some(from) = u.lock().get(&socket.id()).map(|user| user.name.clone()) else {
            return error(ack, "join first");
        };
        let first = args.args.first();
        let Some(to) = first.and_then(|v| v.get("to")).and_then(Value::as_str) else {
            return error(ack, "a recipient is required");
        };
        let Some(msg) = msg_arg(first) else {
            return error(ack, "a message is required");
        };
        let dm = json!({
            "from": from,
            "fromId": socket.id().as_str(),
            "msg": msg,
            "ts": now_ms(),
        });
        let nsp = socket.namespace();
        let ok = if let Some(target) = nsp.socket_by_str(to) {
            target.emit("dm", vec![dm]).is_ok()
        } else if u.lock().iter().any(|(sid, user)| sid.as_str() == to && user.away.is_some()) {
            // Away for a moment: its own room keeps the DM for its recovery.
            nsp.to(to).emit("dm", vec![dm]).is_ok()
        } else {
            return error(ack, "no such user");
        };
        reply(ack, json!({ "ok": ok }));
    });

    let u = users.clone();
    nsp.on("leave", move |socket, _args, ack| {
        let was_in = depart(socket, &u);
        reply(ack, json!({ "ok": was_in }));
        socket.disconnect(false);
    });

    nsp.on("chat message", |socket, args, _ack| {
        let _ = socket.namespace().emit("chat message", args);
    });

    let u = users.clone();
    nsp.on_connection(move |socket| {
        if socket.recovered() {
            come_back(socket, &u);
        }
    });

    let u = users.clone();
    nsp.on_disconnect(move |socket, reason: DisconnectReason| match keep {
        Some(keep) if reason.is_recoverable() => away(socket, &u, keep),
        _ => {
            depart(socket, &u);
        }
    });
}

fn port() -> u16 {
    std::env::args().nth(1).or_else(|| std::env::var("PORT").ok()).and_then(|p| p.trim().parse().ok()).unwrap_or(3000)
}

/// `CHAT_PUBLIC_DIR`, else `examples/chat/public` under the current
/// directory, else the one in this source tree.
fn public_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CHAT_PUBLIC_DIR") {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("examples/chat/public");
    if local.join("index.html").is_file() {
        return local;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/chat/public"))
}

/// How long a dropped page keeps its user: `CHAT_RECOVERY_MS` (0: not at
/// all, recovery off), else `RECOVERY_MS`.
fn recovery_window() -> Option<Duration> {
    let ms = std::env::var("CHAT_RECOVERY_MS").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(RECOVERY_MS);
    (ms > 0).then(|| Duration::from_millis(ms))
}

fn main() {
    let port = port();
    let keep = recovery_window();
    let options = ServerOptions {
        static_dir: Some(public_dir()),
        connection_state_recovery: keep.map(|max_disconnection_duration| RecoveryOptions {
            max_disconnection_duration,
            ..RecoveryOptions::default()
        }),
        ..ServerOptions::default()
    };
    let server = Server::new(options);
    let users: Users = Arc::default();
    install(&server.of("/"), &users, keep);

    let addr = match server.start(("127.0.0.1", port)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("chat server on http://{addr}");
    wait_for_signal();
    server.stop();
}

/// Blocks until SIGINT or SIGTERM, so that the server stops cleanly either way.
fn wait_for_signal() {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(_) => return,
    };
    rt.block_on(async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
}
