//! Room membership, behind one trait so that another adapter (for several
//! machines) can replace the in-memory one without touching socket code.
//!
//! An adapter knows which socket ids are in which rooms of one namespace and
//! answers "who receives this broadcast". Delivery itself is the namespace's
//! job.

use std::collections::{HashMap, HashSet};

use parking_lot::RwLock;

use crate::Sid;
use crate::sid::SidHasher;

/// Who a broadcast is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    /// Rooms to reach (their union); empty means every socket.
    pub rooms: Vec<String>,
    /// Rooms whose members are left out.
    pub except: Vec<String>,
    /// A socket left out (the sender of a socket broadcast).
    pub except_sid: Option<Sid>,
}

/// Room membership of one namespace.
pub trait Adapter: Send + Sync + 'static {
    /// Adds a socket to rooms (creating them).
    fn add_all(&self, sid: Sid, rooms: &[&str]);
    /// Removes a socket from one room.
    fn del(&self, sid: Sid, room: &str);
    /// Removes a socket from every room.
    fn del_all(&self, sid: Sid);
    /// The rooms a socket is in.
    fn socket_rooms(&self, sid: Sid) -> Vec<String>;
    /// Every room that has members.
    fn rooms(&self) -> Vec<String>;
    /// The sockets a broadcast reaches, each once.
    fn recipients(&self, opts: &BroadcastOptions) -> Vec<Sid> {
        let mut out = Vec::new();
        self.for_each_recipient(opts, &mut |sid| out.push(sid));
        out
    }
    /// Calls `f` once for each socket a broadcast reaches. It may run under
    /// the adapter's lock: `f` must not call back into the adapter.
    fn for_each_recipient(&self, opts: &BroadcastOptions, f: &mut dyn FnMut(Sid));
}

#[derive(Default)]
struct Rooms {
    /// Named rooms and their members.
    members: HashMap<String, HashSet<Sid, SidHasher>>,
    /// Every socket, with the named rooms it joined. A socket's own room
    /// (its id) is implied, not stored, so a socket in no other room costs
    /// one entry and no allocation.
    sockets: HashMap<Sid, HashSet<String>, SidHasher>,
}

impl Rooms {
    /// The members of `room`, calling `f` for each.
    fn each_member(&self, room: &str, mut f: impl FnMut(Sid)) {
        if let Some(set) = self.members.get(room) {
            set.iter().copied().for_each(&mut f);
        } else if let Some(sid) = Sid::parse(room) {
            if self.sockets.contains_key(&sid) {
                f(sid);
            }
        }
    }
}

/// The in-memory adapter: two indexes (room → sockets, socket → rooms) under
/// one lock, so fan-out walks one set and churn touches two entries.
#[derive(Default)]
pub struct MemoryAdapter {
    rooms: RwLock<Rooms>,
}

impl MemoryAdapter {
    /// An empty adapter.
    pub fn new() -> MemoryAdapter {
        MemoryAdapter::default()
    }
}

impl Adapter for MemoryAdapter {
    fn add_all(&self, sid: Sid, rooms: &[&str]) {
        let mut guard = self.rooms.write();
        let r = &mut *guard;
        let own = r.sockets.entry(sid).or_default();
        for room in rooms {
            if *room == sid.as_str() {
                continue;
            }
            own.insert((*room).to_owned());
            r.members.entry((*room).to_owned()).or_default().insert(sid);
        }
    }

    fn del(&self, sid: Sid, room: &str) {
        let mut r = self.rooms.write();
        if let Some(set) = r.members.get_mut(room) {
            set.remove(&sid);
            if set.is_empty() {
                r.members.remove(room);
            }
        }
        if let Some(set) = r.sockets.get_mut(&sid) {
            set.remove(room);
        }
    }

    fn del_all(&self, sid: Sid) {
        let mut r = self.rooms.write();
        let Some(rooms) = r.sockets.remove(&sid) else {
            return;
        };
        for room in rooms {
            if let Some(set) = r.members.get_mut(&room) {
                set.remove(&sid);
                if set.is_empty() {
                    r.members.remove(&room);
                }
            }
        }
    }

    fn socket_rooms(&self, sid: Sid) -> Vec<String> {
        let r = self.rooms.read();
        match r.sockets.get(&sid) {
            Some(set) => std::iter::once(sid.to_string()).chain(set.iter().cloned()).collect(),
            None => Vec::new(),
        }
    }

    fn rooms(&self) -> Vec<String> {
        let r = self.rooms.read();
        r.members.keys().cloned().chain(r.sockets.keys().map(Sid::to_string)).collect()
    }

    fn for_each_recipient(&self, opts: &BroadcastOptions, f: &mut dyn FnMut(Sid)) {
        let r = self.rooms.read();
        let mut excluded = HashSet::with_hasher(SidHasher);
        for room in &opts.except {
            r.each_member(room, |sid| {
                excluded.insert(sid);
            });
        }
        if let Some(sid) = opts.except_sid {
            excluded.insert(sid);
        }
        let keep = |sid: &Sid| excluded.is_empty() || !excluded.contains(sid);
        if opts.rooms.is_empty() {
            r.sockets.keys().copied().filter(keep).for_each(f);
            return;
        }
        if opts.rooms.len() == 1 {
            r.each_member(&opts.rooms[0], |sid| {
                if keep(&sid) {
                    f(sid);
                }
            });
            return;
        }
        let mut seen = HashSet::with_hasher(SidHasher);
        for room in &opts.rooms {
            r.each_member(room, |sid| {
                if keep(&sid) && seen.insert(sid) {
                    f(sid);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<Sid>) -> Vec<Sid> {
        v.sort();
        v
    }

    #[test]
    fn union_except_and_sender_exclusion() {
        let a = MemoryAdapter::new();
        let (s1, s2, s3) = (Sid::new(), Sid::new(), Sid::new());
        a.add_all(s1, &[s1.as_str(), "r1", "r2"]);
        a.add_all(s2, &[s2.as_str(), "r1"]);
        a.add_all(s3, &[s3.as_str(), "r2", "vip"]);
        let all = |rooms: &[&str], except: &[&str], except_sid| {
            sorted(a.recipients(&BroadcastOptions {
                rooms: rooms.iter().map(|s| s.to_string()).collect(),
                except: except.iter().map(|s| s.to_string()).collect(),
                except_sid,
            }))
        };
        assert_eq!(all(&[], &[], None), sorted(vec![s1, s2, s3]));
        assert_eq!(all(&["r1", "r2"], &[], None), sorted(vec![s1, s2, s3]));
        assert_eq!(all(&["r1", "r2"], &["vip"], None), sorted(vec![s1, s2]));
        assert_eq!(all(&["r1"], &[], Some(s1)), vec![s2]);
        assert_eq!(all(&[], &["r1"], None), vec![s3]);
        assert_eq!(all(&["nobody"], &[], None), vec![]);
        a.del(s1, "r1");
        assert_eq!(all(&["r1"], &[], None), vec![s2]);
        a.del_all(s3);
        assert_eq!(all(&["r2"], &[], None), vec![s1]);
        assert!(!a.rooms().contains(&"vip".to_string()));
        // A socket's own room is implied: reachable by id, listed in rooms.
        assert_eq!(all(&[s2.as_str()], &[], None), vec![s2]);
        assert_eq!(all(&[], &[s2.as_str()], None), vec![s1]);
        assert!(a.rooms().contains(&s1.to_string()));
        a.add_all(s3, &[s3.as_str()]);
        assert_eq!(a.socket_rooms(s3), vec![s3.to_string()]);
        assert_eq!(all(&["r2", s3.as_str()], &[], None), sorted(vec![s1, s3]));
        let mut rooms = a.socket_rooms(s1);
        rooms.sort();
        let mut expected = vec!["r2".to_string(), s1.to_string()];
        expected.sort();
        assert_eq!(rooms, expected);
    }
}
