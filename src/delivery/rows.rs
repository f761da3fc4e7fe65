//! A map keyed by row number kept as a vector indexed by row: the journal's
//! replay of a million settled rows holds one slot a row (16 bytes for a
//! [`super::journal::Done`]) instead of a hash map's
//! entry, control byte and spare buckets (40–80 bytes a row). A row far past
//! the others (which only a damaged journal would name) goes to a small
//! side map, so that one wild row number cannot make the vector huge.

use std::collections::BTreeMap;

/// How far past the end the vector grows for one row.
const REACH: usize = 1 << 20;

/// Row number (1-based) → value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMap<T> {
    /// Row r at index r − 1.
    slots: Vec<Option<T>>,
    /// Rows beyond `slots`, too far out to extend it to.
    far: BTreeMap<u64, T>,
    len: usize,
}

impl<T> Default for RowMap<T> {
    fn default() -> Self {
        RowMap {
            slots: Vec::new(),
            far: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T> RowMap<T> {
    /// An empty map.
    pub fn new() -> Self {
        RowMap::default()
    }

    fn index(row: u64) -> Option<usize> {
        usize::try_from(row).ok()?.checked_sub(1)
    }

    /// The value of `row`.
    pub fn get(&self, row: &u64) -> Option<&T> {
        match Self::index(*row)? {
            i if i < self.slots.len() => self.slots[i].as_ref(),
            _ => self.far.get(row),
        }
    }

    /// The value of `row`, to change in place.
    pub fn get_mut(&mut self, row: &u64) -> Option<&mut T> {
        match Self::index(*row)? {
            i if i < self.slots.len() => self.slots[i].as_mut(),
            _ => self.far.get_mut(row),
        }
    }

    /// Whether `row` has a value.
    pub fn contains_key(&self, row: &u64) -> bool {
        self.get(row).is_some()
    }

    /// Set the value of `row` (row 0 has none and is ignored); returns the old one.
    pub fn insert(&mut self, row: u64, value: T) -> Option<T> {
        let i = Self::index(row)?;
        if i >= self.slots.len() && i < self.slots.len().max(REACH) * 2 {
            self.slots.resize_with(i + 1, || None);
            // Rows the vector now covers leave the side map.
            let beyond = self.far.split_off(&(i as u64 + 2));
            for (r, v) in std::mem::replace(&mut self.far, beyond) {
                self.slots[r as usize - 1] = Some(v);
            }
        }
        let old = match self.slots.get_mut(i) {
            Some(slot) => slot.replace(value),
            None => self.far.insert(row, value),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Forget `row`; returns its value.
    pub fn remove(&mut self, row: &u64) -> Option<T> {
        let old = match Self::index(*row)? {
            i if i < self.slots.len() => self.slots[i].take(),
            _ => self.far.remove(row),
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Keep only the rows for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(u64, &mut T) -> bool) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(v) = slot {
                if !keep(i as u64 + 1, v) {
                    *slot = None;
                    self.len -= 1;
                }
            }
        }
        let before = self.far.len();
        self.far.retain(|r, v| keep(*r, v));
        self.len -= before - self.far.len();
    }

    /// Rows with a value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No row has a value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// (row, value) in row order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i as u64 + 1, v)))
            .chain(self.far.iter().map(|(r, v)| (*r, v)))
    }

    /// Bytes of memory the vector holds (the side map is small).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Option<T>>()
    }
}

impl<T> std::ops::Index<&u64> for RowMap<T> {
    type Output = T;
    fn index(&self, row: &u64) -> &T {
        self.get(row).expect("no value for this row")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_agrees_with_a_hash_map() {
        let mut m = RowMap::new();
        let mut h = std::collections::HashMap::new();
        let mut x = 88172645463325252u64;
        for step in 0..50_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly near rows, sometimes a far one.
            let row = if step % 1000 == 7 {
                x % (1 << 40)
            } else {
                x % 5000
            };
            match x % 3 {
                0 => assert_eq!(m.remove(&row), h.remove(&row), "remove {row}"),
                _ => assert_eq!(m.insert(row, step), h.insert(row, step).filter(|_| row > 0)),
            }
            h.remove(&0);
            assert_eq!(m.len(), h.len());
        }
        for (row, v) in &h {
            assert_eq!(m.get(row), Some(v));
        }
        assert_eq!(m.iter().count(), h.len());
        m.retain(|r, _| r % 2 == 0);
        h.retain(|r, _| r % 2 == 0);
        assert_eq!(m.len(), h.len());
        assert!(m.iter().all(|(r, v)| h.get(&r) == Some(v)));
    }

    #[test]
    fn a_wild_row_number_does_not_grow_the_vector() {
        let mut m = RowMap::new();
        m.insert(3, 1u32);
        m.insert(u64::MAX / 2, 2);
        assert_eq!(m.get(&(u64::MAX / 2)), Some(&2));
        assert!(m.heap_bytes() < 1 << 20, "{}", m.heap_bytes());
    }

    #[test]
    fn far_rows_move_into_the_vector_when_it_reaches_them() {
        let mut m = RowMap::new();
        m.insert(5_000_000, b'a');
        m.insert(1, b'b');
        for row in (1..=5_000_001).step_by(1_000_000) {
            m.insert(row, b'c');
        }
        assert_eq!(m.get(&5_000_000), Some(&b'a'));
        assert_eq!(m.remove(&5_000_000), Some(b'a'));
        assert_eq!(m.get(&5_000_000), None);
        assert_eq!(m.len(), 6);
    }
}
