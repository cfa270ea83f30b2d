//! Session and socket ids: 20 characters of URL-safe base64 over 15 random
//! bytes, stored inline so that maps keyed by id never allocate for the key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A 20-character id, as used for Engine.IO sessions and Socket.IO sockets.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sid([u8; 20]);

impl Sid {
    /// A fresh random id.
    pub fn new() -> Sid {
        let mut raw = [0u8; 15];
        rand::fill(&mut raw);
        let mut out = [0u8; 20];
        // 15 bytes always encode to exactly 20 characters without padding.
        let _ = URL_SAFE_NO_PAD.encode_slice(raw, &mut out);
        Sid(out)
    }

    /// Reads an id from text; `None` unless it has the shape of one.
    pub fn parse(text: &str) -> Option<Sid> {
        let bytes = text.as_bytes();
        if bytes.len() != 20 || !bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_') {
            return None;
        }
        let mut out = [0u8; 20];
        out.copy_from_slice(bytes);
        Some(Sid(out))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Built only from base64url characters (ASCII) in `new` or `parse`.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// Hashes a [`Sid`] by its first eight characters. Ids are random, so that
/// is as good as hashing all twenty, at a fraction of SipHash's cost on the
/// fan-out path. Only for maps keyed by ids the server made (or checked).
#[derive(Clone, Copy, Default)]
pub struct SidHasher;

impl std::hash::BuildHasher for SidHasher {
    type Hasher = SidHash;
    fn build_hasher(&self) -> SidHash {
        SidHash(0)
    }
}

/// The hasher state of [`SidHasher`].
#[derive(Default)]
pub struct SidHash(u64);

impl std::hash::Hasher for SidHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `Sid` hashes as one `[u8; 20]` write (with its length first).
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        self.0 = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_usize(&mut self, _len: usize) {}
}

impl std::hash::Hash for Sid {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl Default for Sid {
    fn default() -> Self {
        Sid::new()
    }
}

impl std::fmt::Display for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_twenty_url_safe_characters_and_parse_back() {
        let a = Sid::new();
        let b = Sid::new();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 20);
        assert_eq!(Sid::parse(a.as_str()), Some(a));
        assert_eq!(Sid::parse("short"), None);
        assert_eq!(Sid::parse("aaaaaaaaaaaaaaaaaaa/"), None);
    }
}
