//! `--shard I/N`: one of N disjoint parts of a job's rows, for running one
//! job on N machines. A row belongs to the shard its address hashes to
//! (SHA-256 of the lowercased address), so the split does not depend on row
//! order, appended rows never move others, and every duplicate of an address
//! lands in the shard of its first occurrence, where it is caught.

use std::fmt;

use sha2::{Digest, Sha256};

/// Shard `index` of `count` (0-based, as array task indices are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which part, `0..count`.
    pub index: u32,
    /// How many parts.
    pub count: u32,
}

impl Shard {
    /// Parse `I/N` with `0 <= I < N`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: expected I/N, e.g. 0/4"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: I must be a number from 0"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: N must be a number from 1"))?;
        if count == 0 || index >= count {
            return Err(format!(
                "{text:?}: I must be at least 0 and below N (shards are numbered 0 to N-1)"
            ));
        }
        Ok(Shard { index, count })
    }

    /// The shard `address` belongs to, of `count`.
    pub fn of(address: &str, count: u32) -> u32 {
        let digest = Sha256::digest(address.trim().to_lowercase().as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
    }

    /// Whether `address` belongs to this shard.
    pub fn contains(&self, address: &str) -> bool {
        Shard::of(address, self.count) == self.index
    }

    /// The output file suffix for `what` (`journal`, `report.csv`):
    /// `shard-I-of-N.journal`.
    pub fn suffix(&self, what: &str) -> String {
        format!("shard-{}-of-{}.{what}", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The output file suffix for `what`, per shard when there is one.
pub fn suffix(shard: Option<&Shard>, what: &str) -> String {
    shard.map_or_else(|| what.to_owned(), |s| s.suffix(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_i_of_n_from_zero() {
        assert_eq!(Shard::parse("0/4"), Ok(Shard { index: 0, count: 4 }));
        assert_eq!(Shard::parse("3/4").unwrap().to_string(), "3/4");
        for bad in ["4/4", "1/0", "-1/4", "a/4", "2", "1/4/5"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_shard_depends_on_the_lowercased_address_only() {
        assert_eq!(
            Shard::of("Ann@Example.COM", 7),
            Shard::of("ann@example.com", 7)
        );
        // Fixed for all time: SHA-256 of the address decides.
        let digest = Sha256::digest(b"ann@example.com");
        let want = u64::from_be_bytes(digest[..8].try_into().unwrap()) % 7;
        assert_eq!(u64::from(Shard::of("ann@example.com", 7)), want);
        // Every address is in exactly one shard.
        for i in 0..200 {
            let a = format!("user{i}@example.test");
            let n = (0..5)
                .filter(|&k| Shard { index: k, count: 5 }.contains(&a))
                .count();
            assert_eq!(n, 1);
        }
        assert_eq!(suffix(None, "journal"), "journal");
        assert_eq!(
            suffix(Some(&Shard { index: 2, count: 8 }), "report.csv"),
            "shard-2-of-8.report.csv"
        );
    }
}
