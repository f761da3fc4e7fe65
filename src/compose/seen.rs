//! Duplicate detection over a recipient list in little memory: which row
//! first had an address, keyed by a 64-bit fingerprint of the lowercased
//! address (the address itself is never kept).
//!
//! Layout, per recipient row: the row's fingerprint in a vector indexed by
//! row number (8 bytes), and an open-addressing table (linear probing) whose
//! slots hold a row number (4 bytes) and 8 bits of its fingerprint (1 byte),
//! so that a probe rarely has to look the full fingerprint up. The table is
//! kept between 53 % and 80 % full by growing 1.5× at a time, rebuilt from
//! the fingerprint vector: about 8 + 5 × 1.25–1.9 ≈ 14–17.5 bytes a row, and
//! about 19 MB at its peak for 1,000,000 rows (a `HashMap<u64, u32>` needed
//! 35.6 MB, and 53 MB while it grew).
//!
//! Collision policy: two different addresses with the same 64-bit
//! fingerprint count as one, so the later row is reported `skipped` as a
//! duplicate of the earlier one (visible in the report, never silent). For
//! n distinct addresses that happens with probability about n² / 2⁶⁵:
//! 3 × 10⁻⁸ for a million, 3 × 10⁻⁶ for ten million.
//!
//! Rows past 4,294,967,295 are beyond the table's row numbers and are not
//! checked for duplicates.

/// The tag that marks an empty slot.
const EMPTY: u8 = 0;

/// The first row of every address fingerprint seen so far.
#[derive(Debug, Default)]
pub struct FirstSeen {
    /// Fingerprint of row r at index r − 1 (rows never offered hold 0).
    by_row: Vec<u64>,
    /// Row number per slot (valid where the tag is not [`EMPTY`]).
    rows: Vec<u32>,
    /// 8 bits of the slot's fingerprint, never [`EMPTY`]; EMPTY marks a free slot.
    tags: Vec<u8>,
    /// Occupied slots.
    len: usize,
}

/// Slots of a new table.
const FIRST_CAPACITY: usize = 1024;

/// A non-empty 8-bit tag from the bits the home slot does not use much.
fn tag(fp: u64) -> u8 {
    match (fp >> 56) as u8 {
        EMPTY => 1,
        t => t,
    }
}

/// The home slot of `fp` in a table of `cap` slots (multiply-shift range
/// reduction, so any capacity works).
fn home(fp: u64, cap: usize) -> usize {
    ((u128::from(fp) * cap as u128) >> 64) as usize
}

impl FirstSeen {
    /// An empty detector.
    pub fn new() -> Self {
        FirstSeen::default()
    }

    /// An empty detector sized for `rows` rows, when a pass already counted
    /// them: it never grows while they are checked, so it never holds an
    /// old table and a new one at once, and its table is two-thirds full at
    /// the end (about 8 + 5 × 1.5 = 15.5 bytes a row, where growing can
    /// peak at 21). More rows than that still fit; it grows then.
    pub fn for_rows(rows: u64) -> Self {
        let rows = usize::try_from(rows.min(u64::from(u32::MAX))).unwrap_or(usize::MAX);
        let cap = (rows.saturating_mul(3) / 2).max(FIRST_CAPACITY);
        FirstSeen {
            by_row: Vec::with_capacity(rows),
            rows: vec![0; cap],
            tags: vec![EMPTY; cap],
            len: 0,
        }
    }

    /// Record that `row` (1-based, increasing from call to call) has the
    /// address with fingerprint `fp`. Returns the earlier row with the same
    /// fingerprint, if there is one.
    pub fn check(&mut self, fp: u64, row: u64) -> Option<u64> {
        let Ok(row32) = u32::try_from(row) else {
            return None;
        };
        if row32 == 0 {
            return None;
        }
        let index = row32 as usize - 1;
        if self.by_row.len() <= index {
            self.by_row.resize(index + 1, 0);
        }
        self.by_row[index] = fp;
        if (self.len + 1) * 5 > self.tags.len() * 4 {
            self.grow();
        }
        let (found, slot) = self.find(fp);
        if found {
            return Some(u64::from(self.rows[slot]));
        }
        self.rows[slot] = row32;
        self.tags[slot] = tag(fp);
        self.len += 1;
        None
    }

    /// The slot holding `fp` (true), or the free slot where it belongs (false).
    fn find(&self, fp: u64) -> (bool, usize) {
        let cap = self.tags.len();
        let want = tag(fp);
        let mut slot = home(fp, cap);
        loop {
            let t = self.tags[slot];
            if t == EMPTY {
                return (false, slot);
            }
            if t == want && self.by_row[self.rows[slot] as usize - 1] == fp {
                return (true, slot);
            }
            slot += 1;
            if slot == cap {
                slot = 0;
            }
        }
    }

    /// A table 1.5× the size (the first one is [`FIRST_CAPACITY`]), refilled
    /// from the rows already placed.
    fn grow(&mut self) {
        let cap = (self.tags.len() * 3 / 2).max(FIRST_CAPACITY);
        let old_rows = std::mem::take(&mut self.rows);
        let old_tags = std::mem::take(&mut self.tags);
        self.rows = vec![0; cap];
        self.tags = vec![EMPTY; cap];
        for (row, t) in old_rows.into_iter().zip(old_tags) {
            if t == EMPTY {
                continue;
            }
            let fp = self.by_row[row as usize - 1];
            let (_, slot) = self.find(fp);
            self.rows[slot] = row;
            self.tags[slot] = t;
        }
    }

    /// Bytes of memory it has written to: the fingerprint of every row so
    /// far and the whole table (the vector's spare capacity is left out,
    /// since pages never written take no memory).
    pub fn heap_bytes(&self) -> usize {
        self.by_row.len() * 8 + self.rows.len() * 4 + self.tags.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_row_of_each_fingerprint_is_returned() {
        let mut s = FirstSeen::new();
        assert_eq!(s.check(7, 1), None);
        assert_eq!(s.check(9, 2), None);
        assert_eq!(s.check(7, 3), Some(1));
        assert_eq!(s.check(9, 5), Some(2));
        assert_eq!(s.check(7, 6), Some(1));
        assert_eq!(s.check(0, 7), None);
        assert_eq!(s.check(0, 8), Some(7));
    }

    #[test]
    fn rows_beyond_the_table_are_not_checked() {
        let mut s = FirstSeen::new();
        assert_eq!(s.check(1, 1), None);
        assert_eq!(s.check(1, u64::from(u32::MAX) + 1), None);
    }

    #[test]
    fn fingerprints_that_share_a_home_and_a_tag_stay_apart() {
        // Same top byte (tag) and same home slot in every table size.
        let mut s = FirstSeen::new();
        let a = 0xAB00_0000_0000_0001;
        let b = 0xAB00_0000_0000_0002;
        assert_eq!(s.check(a, 1), None);
        assert_eq!(s.check(b, 2), None);
        assert_eq!(s.check(b, 3), Some(2));
        assert_eq!(s.check(a, 4), Some(1));
    }

    #[test]
    fn it_agrees_with_a_map_across_many_growths() {
        let mut s = FirstSeen::new();
        let mut map = std::collections::HashMap::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for row in 1..=200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // About one row in four repeats an earlier address.
            let fp = if row % 4 == 0 { x % (row / 2 + 1) } else { x };
            let first = *map.entry(fp).or_insert(row);
            let want = (first != row).then_some(first);
            assert_eq!(s.check(fp, row), want, "row {row}");
        }
    }

    /// The peak of what `s` holds while it takes a million distinct rows.
    fn peak_over_a_million_rows(s: FirstSeen) -> usize {
        let (_, peak, _) = crate::test_alloc::cost(move || {
            let mut s = s;
            for row in 1..=1_000_000u64 {
                let fp = row.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (row << 40);
                assert_eq!(s.check(fp, row), None);
            }
            s
        });
        peak
    }

    #[test]
    fn sized_for_its_rows_it_peaks_at_16_bytes_a_row_where_growing_takes_more() {
        let rows = 1_000_000;
        let sized = peak_over_a_million_rows(FirstSeen::for_rows(rows));
        assert!(sized <= 16 * rows as usize, "{sized} bytes at the peak");
        let grown = peak_over_a_million_rows(FirstSeen::new());
        assert!(
            grown > 18 * rows as usize,
            "{grown} bytes at the peak growing"
        );
    }

    #[test]
    fn sized_too_small_it_still_grows_and_finds_every_row() {
        let mut s = FirstSeen::for_rows(10);
        for row in 1..=5000u64 {
            assert_eq!(s.check(row * 7919, row), None);
        }
        for row in 1..=5000u64 {
            assert_eq!(s.check(row * 7919, 5000 + row), Some(row));
        }
    }

    #[test]
    fn a_million_rows_take_at_most_20_bytes_each() {
        let mut s = FirstSeen::new();
        for row in 1..=1_000_000u64 {
            let fp = row.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (row << 40);
            assert_eq!(s.check(fp, row), None);
        }
        assert!(s.heap_bytes() <= 20 * 1_000_000, "{}", s.heap_bytes());
    }
}
