//! Room membership, behind one trait so that another adapter (for several
//! machines) can replace the in-memory one without touching socket code.
//!
//! An adapter knows which socket ids are in which rooms of one namespace and
//! answers "who receives this broadcast". Delivery itself is the namespace's
//! job.

use std::collections::{HashMap, HashSet};

use parking_lot::RwLock;

use crate::Sid;

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
    fn recipients(&self, opts: &BroadcastOptions) -> Vec<Sid>;
}

#[derive(Default)]
struct Rooms {
    members: HashMap<String, HashSet<Sid>>,
    of_socket: HashMap<Sid, HashSet<String>>,
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
        let mut r = self.rooms.write();
        for room in rooms {
            r.members.entry((*room).to_owned()).or_default().insert(sid);
            r.of_socket.entry(sid).or_default().insert((*room).to_owned());
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
        if let Some(set) = r.of_socket.get_mut(&sid) {
            set.remove(room);
            if set.is_empty() {
                r.of_socket.remove(&sid);
            }
        }
    }

    fn del_all(&self, sid: Sid) {
        let mut r = self.rooms.write();
        let Some(rooms) = r.of_socket.remove(&sid) else {
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
        self.rooms.read().of_socket.get(&sid).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    fn rooms(&self) -> Vec<String> {
        self.rooms.read().members.keys().cloned().collect()
    }

    fn recipients(&self, opts: &BroadcastOptions) -> Vec<Sid> {
        let r = self.rooms.read();
        let mut excluded: HashSet<Sid> = HashSet::new();
        for room in &opts.except {
            if let Some(set) = r.members.get(room) {
                excluded.extend(set.iter().copied());
            }
        }
        if let Some(sid) = opts.except_sid {
            excluded.insert(sid);
        }
        let keep = |sid: &Sid| !excluded.contains(sid);
        if opts.rooms.is_empty() {
            return r.of_socket.keys().copied().filter(keep).collect();
        }
        if opts.rooms.len() == 1 {
            return r
                .members
                .get(&opts.rooms[0])
                .map(|set| set.iter().copied().filter(keep).collect())
                .unwrap_or_default();
        }
        let mut seen: HashSet<Sid> = HashSet::new();
        let mut out = Vec::new();
        for room in &opts.rooms {
            if let Some(set) = r.members.get(room) {
                for sid in set {
                    if keep(sid) && seen.insert(*sid) {
                        out.push(*sid);
                    }
                }
            }
        }
        out
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
        let mut rooms = a.socket_rooms(s1);
        rooms.sort();
        let mut expected = vec!["r2".to_string(), s1.to_string()];
        expected.sort();
        assert_eq!(rooms, expected);
    }
}
