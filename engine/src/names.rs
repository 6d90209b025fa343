//! Interned names: each user and computer name (`U123`, `C456`) becomes a
//! dense [`NameId`], an index into per-user and per-computer state, and
//! back. Names are copied once, on first sight; short ones (nearly all of
//! LANL's) are packed into the key itself.

use rustc_hash::FxHashMap;

/// Dense id of an interned name; index into per-user / per-computer state.
pub type NameId = u32;

/// Maps names (`U123`, `C456`) to dense ids and back. Names are copied once, on
/// first sight; every later lookup borrows the input bytes.
#[derive(Default)]
pub struct Interner {
    /// Names of up to [`INLINE_NAME`] bytes, packed into the key itself: a
    /// lookup compares two integers instead of following a pointer to the
    /// name (a cache miss per event at this table's size). LANL names
    /// (`U1234@DOM1`, `C1234`) are nearly all this short.
    short: FxHashMap<u128, NameId>,
    long: FxHashMap<Box<[u8]>, NameId>,
    /// Validated once, when first interned, so lookups never re-check UTF-8.
    names: Vec<Box<str>>,
    /// First 8 bytes of each name, big-endian, zero-padded: comparing these
    /// orders names like comparing the bytes (names hold no NUL), without
    /// touching the names themselves unless the prefixes tie.
    order_keys: Vec<u64>,
}

impl Interner {
    /// The id of `name`, interning it if new. Returns `(id, was_new)`.
    #[inline]
    pub fn intern(&mut self, name: &[u8]) -> (NameId, bool) {
        let packed = pack(name);
        let found = match packed {
            Some(key) => self.short.get(&key),
            None => self.long.get(name),
        };
        if let Some(&id) = found {
            return (id, false);
        }
        let id = NameId::try_from(self.names.len()).expect("fewer than 2^32 distinct names");
        let text: Box<str> = String::from_utf8_lossy(name).into();
        let mut prefix = [0u8; 8];
        let n = name.len().min(8);
        prefix[..n].copy_from_slice(&name[..n]);
        self.order_keys.push(u64::from_be_bytes(prefix));
        self.names.push(text);
        match packed {
            Some(key) => self.short.insert(key, id),
            None => self.long.insert(name.into(), id),
        };
        (id, true)
    }

    /// The id of `name` if it is interned.
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<NameId> {
        match pack(name) {
            Some(key) => self.short.get(&key),
            None => self.long.get(name),
        }
        .copied()
    }

    /// Orders two interned names as their bytes would (fast path: 8-byte prefixes).
    #[inline]
    pub fn cmp_names(&self, a: NameId, b: NameId) -> std::cmp::Ordering {
        if a == b {
            return std::cmp::Ordering::Equal;
        }
        let (ka, kb) = (self.order_keys[a as usize], self.order_keys[b as usize]);
        if ka != kb {
            return ka.cmp(&kb);
        }
        self.names[a as usize].cmp(&self.names[b as usize])
    }

    /// The name of `id` (input names are validated UTF-8; anything else was
    /// stored with replacement characters).
    #[inline]
    pub fn name(&self, id: NameId) -> &str {
        &self.names[id as usize]
    }

    #[inline]
    pub fn name_bytes(&self, id: NameId) -> &[u8] {
        self.names[id as usize].as_bytes()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Every name, in id order (what a state snapshot keeps).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|name| &**name)
    }

    /// An interner holding `names` with ids `0..`, in that order: the one
    /// [`Interner::names`] came from.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Interner {
        let mut interner = Interner::default();
        for name in names {
            interner.intern(name.as_bytes());
        }
        interner
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Longest name kept inline in [`Interner`]'s keys.
const INLINE_NAME: usize = 15;

/// `name`'s bytes and length in one integer, if it has at most
/// [`INLINE_NAME`] bytes (the length byte keeps `U1` and `U1\0` apart).
#[inline]
fn pack(name: &[u8]) -> Option<u128> {
    if name.len() > INLINE_NAME {
        return None;
    }
    let mut bytes = [0u8; 16];
    bytes[..name.len()].copy_from_slice(name);
    bytes[INLINE_NAME] = name.len() as u8;
    Some(u128::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interner_is_dense_and_stable() {
        let mut i = Interner::default();
        assert_eq!(i.intern(b"U1"), (0, true));
        assert_eq!(i.intern(b"U2"), (1, true));
        assert_eq!(i.intern(b"U1"), (0, false));
        assert_eq!(i.name(1), "U2");
        // Short (inline) and long names, and names that differ only in a
        // trailing NUL or in length.
        let names: [&[u8]; 6] = [
            b"U1\0",
            b"ANONYMOUS LOGON@C586",
            b"123456789012345",
            b"1234567890123456",
            b"",
            b"U1\0\0",
        ];
        for (k, name) in names.iter().enumerate() {
            assert_eq!(i.intern(name), (2 + k as NameId, true), "{name:?}");
        }
        for (k, name) in names.iter().enumerate() {
            assert_eq!(i.intern(name), (2 + k as NameId, false), "{name:?}");
            assert_eq!(i.name_bytes(2 + k as NameId), *name);
        }
        assert_eq!(i.intern(b"U1"), (0, false));
    }

    #[test]
    fn name_order_matches_byte_order() {
        let names: [&[u8]; 8] = [
            b"U1",
            b"U10",
            b"U2",
            b"ANONYMOUS LOGON",
            b"ANONYMOUS LOGOFF",
            b"U1\x7f",
            b"",
            b"Zz",
        ];
        let mut i = Interner::default();
        for n in names {
            i.intern(n);
        }
        for (a, na) in names.iter().enumerate() {
            for (b, nb) in names.iter().enumerate() {
                assert_eq!(
                    i.cmp_names(a as NameId, b as NameId),
                    na.cmp(nb),
                    "{na:?} vs {nb:?}"
                );
            }
        }
    }
}
