//! BDAT (RFC 3030 2): the `size [LAST]` argument and the chunk that follows
//! it, taken by length whatever its bytes are, and read in full even when it
//! will be refused so the input stays in step.

/// The argument of one `BDAT` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BdatArg {
    /// The chunk's length in octets.
    pub size: u64,
    /// Whether this chunk ends the message.
    pub last: bool,
}

impl BdatArg {
    /// Parses `size [LAST]`; `None` when malformed, in which case the chunk's
    /// length is unknown and the input cannot be resynchronised.
    pub fn parse(arg: &str) -> Option<BdatArg> {
        let mut words = arg.split_whitespace();
        let size = words.next()?.parse::<u64>().ok()?;
        let last = match words.next() {
            None => false,
            Some(w) if w.eq_ignore_ascii_case("LAST") => true,
            Some(_) => return None,
        };
        if words.next().is_some() {
            return None;
        }
        Some(BdatArg { size, last })
    }
}

/// One chunk being read: takes input until it has its announced length.
#[derive(Debug, Clone)]
pub struct Chunk {
    remaining: u64,
    keep: bool,
    data: Vec<u8>,
}

impl Chunk {
    /// A chunk of `size` octets; with `keep` false its bytes are consumed and
    /// dropped (a chunk that will be refused).
    pub fn new(size: u64, keep: bool) -> Chunk {
        let capacity = if keep { size.min(1 << 20) as usize } else { 0 };
        Chunk {
            remaining: size,
            keep,
            data: Vec::with_capacity(capacity),
        }
    }

    /// Takes what the chunk still lacks from the front of `input`; returns
    /// how many bytes it took.
    pub fn take(&mut self, input: &[u8]) -> usize {
        let n = self.remaining.min(input.len() as u64) as usize;
        if self.keep {
            self.data.extend_from_slice(&input[..n]);
        }
        self.remaining -= n as u64;
        n
    }

    /// Whether every announced octet has been taken.
    pub fn is_complete(&self) -> bool {
        self.remaining == 0
    }

    /// The chunk's bytes (empty if not kept).
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse() {
        assert_eq!(
            BdatArg::parse("5"),
            Some(BdatArg {
                size: 5,
                last: false
            })
        );
        assert_eq!(
            BdatArg::parse("0 last"),
            Some(BdatArg {
                size: 0,
                last: true
            })
        );
        assert_eq!(
            BdatArg::parse(" 12  LAST "),
            Some(BdatArg {
                size: 12,
                last: true
            })
        );
        assert_eq!(BdatArg::parse(""), None);
        assert_eq!(BdatArg::parse("-1"), None);
        assert_eq!(BdatArg::parse("5 FIRST"), None);
        assert_eq!(BdatArg::parse("5 LAST x"), None);
        assert_eq!(BdatArg::parse("LAST"), None);
    }

    #[test]
    fn a_chunk_takes_its_length_byte_by_byte_and_no_more() {
        let input = b"BDAT\r\n.\r\nQUIT\r\n";
        let mut chunk = Chunk::new(9, true);
        let mut used = 0;
        while !chunk.is_complete() {
            used += chunk.take(&input[used..used + 1]);
        }
        assert_eq!(used, 9);
        assert_eq!(chunk.take(b"more"), 0);
        assert_eq!(chunk.into_data(), b"BDAT\r\n.\r\n");
    }

    #[test]
    fn a_chunk_takes_from_a_longer_input_only_its_own_bytes() {
        let mut chunk = Chunk::new(3, true);
        assert_eq!(chunk.take(b"abcdef"), 3);
        assert!(chunk.is_complete());
        assert_eq!(chunk.into_data(), b"abc");
    }

    #[test]
    fn a_refused_chunk_is_consumed_but_not_kept() {
        let mut chunk = Chunk::new(4, false);
        assert_eq!(chunk.take(b"ab"), 2);
        assert!(!chunk.is_complete());
        assert_eq!(chunk.take(b"cdQUIT"), 2);
        assert!(chunk.is_complete());
        assert!(chunk.into_data().is_empty());
    }

    #[test]
    fn an_empty_chunk_is_complete_at_once() {
        assert!(Chunk::new(0, true).is_complete());
    }
}
