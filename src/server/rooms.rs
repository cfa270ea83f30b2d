//! Room membership of one namespace on this node: which sockets are in
//! which rooms, and who a selection reaches.
//!
//! Two indexes (room → sockets, socket → rooms) under one lock, so fan-out
//! walks one set and join/leave churn touches two entries. A socket's own
//! room (its id) is implied, not stored, so a socket in no other room costs
//! one entry and no allocation.
//!
//! Ordering rule: broadcasts emitted during a burst of client messages may
//! still be waiting to be queued (`engine::burst`). A membership change must
//! not let such a broadcast reach a socket that joined after it was emitted,
//! or miss one that left after it, so every mutator here sends the deferred
//! work first. Callers cannot forget it.

use std::collections::{HashMap, HashSet};

use parking_lot::RwLock;

use super::adapter::BroadcastOptions;
use crate::Sid;
use crate::engine::burst;
use crate::sid::SidHasher;

#[derive(Default)]
struct Index {
    /// Named rooms and their members.
    members: HashMap<String, HashSet<Sid, SidHasher>>,
    /// Every socket, with the named rooms it joined.
    sockets: HashMap<Sid, HashSet<String>, SidHasher>,
}

impl Index {
    /// Calls `f` for each member of `room`.
    fn each_member(&self, room: &str, mut f: impl FnMut(Sid)) {
        if let Some(set) = self.members.get(room) {
            set.iter().copied().for_each(&mut f);
        } else if let Some(sid) = Sid::parse(room) {
            if self.sockets.contains_key(&sid) {
                f(sid);
            }
        }
    }

    fn remove_member(&mut self, sid: Sid, room: &str) {
        if let Some(set) = self.members.get_mut(room) {
            set.remove(&sid);
            if set.is_empty() {
                self.members.remove(room);
            }
        }
    }
}

/// The rooms of one namespace on this node.
#[derive(Default)]
pub struct RoomIndex {
    index: RwLock<Index>,
}

impl RoomIndex {
    /// An empty index.
    pub fn new() -> RoomIndex {
        RoomIndex::default()
    }

    /// Adds a socket to rooms (creating them); a socket is always in its own
    /// room once added.
    pub fn add_all(&self, sid: Sid, rooms: &[&str]) {
        burst::flush();
        let mut guard = self.index.write();
        let index = &mut *guard;
        let own = index.sockets.entry(sid).or_default();
        for room in rooms {
            if *room == sid.as_str() {
                continue;
            }
            if own.insert((*room).to_owned()) {
                index.members.entry((*room).to_owned()).or_default().insert(sid);
            }
        }
    }

    /// Removes a socket from one room.
    pub fn del(&self, sid: Sid, room: &str) {
        burst::flush();
        let mut index = self.index.write();
        index.remove_member(sid, room);
        if let Some(set) = index.sockets.get_mut(&sid) {
            set.remove(room);
        }
    }

    /// Removes a socket from every room (its own included).
    pub fn del_all(&self, sid: Sid) {
        burst::flush();
        let mut index = self.index.write();
        let Some(rooms) = index.sockets.remove(&sid) else {
            return;
        };
        for room in rooms {
            index.remove_member(sid, &room);
        }
    }

    /// The rooms a socket is in, its own room first; empty for a socket the
    /// index does not know.
    pub fn socket_rooms(&self, sid: Sid) -> Vec<String> {
        let index = self.index.read();
        match index.sockets.get(&sid) {
            Some(set) => std::iter::once(sid.to_string()).chain(set.iter().cloned()).collect(),
            None => Vec::new(),
        }
    }

    /// Every room that has members, sockets' own rooms included.
    pub fn rooms(&self) -> Vec<String> {
        let index = self.index.read();
        index.members.keys().cloned().chain(index.sockets.keys().map(Sid::to_string)).collect()
    }

    /// Whether anyone is in a room (a socket's own room included), at the
    /// cost of one lookup however large the room.
    pub fn has_room(&self, room: &str) -> bool {
        let index = self.index.read();
        index.members.contains_key(room) || Sid::parse(room).is_some_and(|sid| index.sockets.contains_key(&sid))
    }

    /// How many sockets are in a room (0 for a room nobody is in).
    pub fn room_size(&self, room: &str) -> usize {
        let index = self.index.read();
        let mut n = 0;
        index.each_member(room, |_| n += 1);
        n
    }

    /// The sockets a selection reaches, each once.
    pub fn recipients(&self, opts: &BroadcastOptions) -> Vec<Sid> {
        let mut out = Vec::new();
        self.for_each_recipient(opts, &mut |sid| out.push(sid));
        out
    }

    /// Calls `f` once for each socket a selection reaches, under the index's
    /// read lock: `f` must not change membership.
    pub fn for_each_recipient(&self, opts: &BroadcastOptions, f: &mut dyn FnMut(Sid)) {
        let index = self.index.read();
        let mut excluded = HashSet::with_hasher(SidHasher);
        for room in &opts.except {
            index.each_member(room, |sid| {
                excluded.insert(sid);
            });
        }
        excluded.extend(opts.except_sids.iter().copied());
        let keep = |sid: &Sid| excluded.is_empty() || !excluded.contains(sid);
        if opts.rooms.is_empty() {
            index.sockets.keys().copied().filter(keep).for_each(f);
            return;
        }
        if opts.rooms.len() == 1 {
            index.each_member(&opts.rooms[0], |sid| {
                if keep(&sid) {
                    f(sid);
                }
            });
            return;
        }
        let mut seen = HashSet::with_hasher(SidHasher);
        for room in &opts.rooms {
            index.each_member(room, |sid| {
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
        let a = RoomIndex::new();
        let (s1, s2, s3) = (Sid::new(), Sid::new(), Sid::new());
        a.add_all(s1, &[s1.as_str(), "r1", "r2"]);
        a.add_all(s2, &[s2.as_str(), "r1"]);
        a.add_all(s3, &[s3.as_str(), "r2", "vip"]);
        let all = |rooms: &[&str], except: &[&str], except_sids: &[Sid]| {
            sorted(a.recipients(&BroadcastOptions {
                rooms: rooms.iter().map(|s| s.to_string()).collect(),
                except: except.iter().map(|s| s.to_string()).collect(),
                except_sids: except_sids.to_vec(),
                ..BroadcastOptions::default()
            }))
        };
        assert_eq!(all(&[], &[], &[]), sorted(vec![s1, s2, s3]));
        assert_eq!(all(&["r1", "r2"], &[], &[]), sorted(vec![s1, s2, s3]));
        assert_eq!(all(&["r1", "r2"], &["vip"], &[]), sorted(vec![s1, s2]));
        assert_eq!(all(&["r1"], &[], &[s1]), vec![s2]);
        assert_eq!(all(&[], &[], &[s1, s3]), vec![s2]);
        assert_eq!(all(&[], &["r1"], &[]), vec![s3]);
        assert_eq!(all(&["nobody"], &[], &[]), vec![]);
        assert_eq!(a.room_size("r2"), 2);
        assert!(a.has_room("r2") && a.has_room(s1.as_str()) && !a.has_room("nobody"));
        assert_eq!(a.room_size(s1.as_str()), 1);
        a.del(s1, "r1");
        assert_eq!(all(&["r1"], &[], &[]), vec![s2]);
        a.del_all(s3);
        assert_eq!(all(&["r2"], &[], &[]), vec![s1]);
        assert!(!a.rooms().contains(&"vip".to_string()));
        // A socket's own room is implied: reachable by id, listed in rooms.
        assert_eq!(all(&[s2.as_str()], &[], &[]), vec![s2]);
        assert_eq!(all(&[], &[s2.as_str()], &[]), vec![s1]);
        assert!(a.rooms().contains(&s1.to_string()));
        a.add_all(s3, &[s3.as_str()]);
        assert_eq!(a.socket_rooms(s3), vec![s3.to_string()]);
        assert_eq!(all(&["r2", s3.as_str()], &[], &[]), sorted(vec![s1, s3]));
        let mut rooms = a.socket_rooms(s1);
        rooms.sort();
        let mut expected = vec!["r2".to_string(), s1.to_string()];
        expected.sort();
        assert_eq!(rooms, expected);
        // Joining twice keeps one membership.
        a.add_all(s1, &["r2"]);
        assert_eq!(a.room_size("r2"), 1);
    }
}
