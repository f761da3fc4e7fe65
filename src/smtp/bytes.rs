//! A message's bytes as the engine carries them: the message's own bytes,
//! and blocks it shares with other messages (a file's base64, the same for
//! every recipient) held once and referenced, never copied into each
//! message nor into the output on their way to the socket.
//!
//! A shared block is only ever referenced when it is ready for the wire as
//! it stands — CRLF line ends only, ending with CRLF, no line starting with
//! a dot — and starts a line; otherwise its bytes are copied in like any
//! other. So every piece starts a line, and line-end normalisation and
//! dot-stuffing can work piece by piece and leave shared blocks alone.

use std::borrow::Cow;
use std::io::IoSlice;
use std::sync::Arc;

use super::data;

/// Bytes shared by many messages, and what is known of them once.
#[derive(Debug, PartialEq, Eq)]
pub struct SharedBlock {
    bytes: Vec<u8>,
    wire_ready: bool,
    ascii: bool,
}

impl SharedBlock {
    /// A block of `bytes`, examined once here.
    pub fn new(bytes: Vec<u8>) -> SharedBlock {
        let wire_ready = bytes.ends_with(b"\r\n")
            && data::normalized_len(&bytes) == bytes.len()
            && !bytes.starts_with(b".")
            && memchr::memmem::find(&bytes, b"\n.").is_none();
        let ascii = bytes.is_ascii();
        SharedBlock {
            bytes,
            wire_ready,
            ascii,
        }
    }

    /// A block of base64 lines, each ending with CRLF, as the composer
    /// writes a file's encoding: wire-ready and ASCII by construction, so
    /// not examined again (a debug build checks).
    pub fn base64_lines(bytes: Vec<u8>) -> SharedBlock {
        let block = SharedBlock {
            bytes,
            wire_ready: true,
            ascii: true,
        };
        debug_assert_eq!(SharedBlock::new(block.bytes.clone()), block);
        block
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the block can go to the wire as it stands, in DATA or BDAT.
    pub fn is_wire_ready(&self) -> bool {
        self.wire_ready
    }
}

/// One piece of a message.
#[derive(Debug, Clone)]
pub enum Piece<'a> {
    /// Bytes of this message alone.
    Own(&'a [u8]),
    /// A block shared with other messages; always wire-ready.
    Shared(&'a Arc<SharedBlock>),
}

impl Piece<'_> {
    /// The piece's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Piece::Own(b) => b,
            Piece::Shared(s) => s.as_bytes(),
        }
    }
}

#[derive(Debug, Clone)]
enum Held {
    Own(Vec<u8>),
    Shared(Arc<SharedBlock>),
}

impl Held {
    fn bytes(&self) -> &[u8] {
        match self {
            Held::Own(b) => b,
            Held::Shared(s) => s.as_bytes(),
        }
    }
}

/// The bytes of one message (or of output on its way to the socket), in
/// pieces.
#[derive(Debug, Clone, Default)]
pub struct MessageBytes {
    pieces: Vec<Held>,
    len: usize,
}

impl MessageBytes {
    /// Every byte, in order.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes this message holds of its own (what it costs in memory beyond
    /// the blocks it shares).
    pub fn own_capacity(&self) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                Held::Own(b) => b.capacity(),
                Held::Shared(_) => 0,
            })
            .sum()
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> impl Iterator<Item = Piece<'_>> {
        self.pieces.iter().map(|p| match p {
            Held::Own(b) => Piece::Own(b),
            Held::Shared(s) => Piece::Shared(s),
        })
    }

    /// The pieces as slices for one vectored write.
    pub fn io_slices(&self) -> Vec<IoSlice<'_>> {
        self.pieces
            .iter()
            .map(|p| IoSlice::new(p.bytes()))
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The bytes in one slice: borrowed when the message is one piece,
    /// else copied together.
    pub fn contiguous(&self) -> Cow<'_, [u8]> {
        match self.pieces.as_slice() {
            [] => Cow::Borrowed(&[]),
            [one] => Cow::Borrowed(one.bytes()),
            _ => Cow::Owned(self.to_vec()),
        }
    }

    /// The bytes copied into one vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for p in &self.pieces {
            out.extend_from_slice(p.bytes());
        }
        out
    }

    /// Whether every byte is ASCII.
    pub fn is_ascii(&self) -> bool {
        self.pieces.iter().all(|p| match p {
            Held::Own(b) => b.is_ascii(),
            Held::Shared(s) => s.ascii,
        })
    }

    /// The length [`data::normalize_crlf`] would give the whole message.
    pub fn normalized_len(&self) -> usize {
        // Every piece starts a line, so each is normalised on its own.
        self.pieces
            .iter()
            .map(|p| match p {
                Held::Shared(s) => s.bytes.len(),
                Held::Own(b) => data::normalized_len(b),
            })
            .sum()
    }

    /// The message with CRLF line ends only: itself when it has them
    /// already (a composed message always does), else a normalised copy
    /// that still references the shared blocks.
    pub fn normalized(self: &Arc<Self>) -> Arc<MessageBytes> {
        if self.normalized_len() == self.len {
            return Arc::clone(self);
        }
        let mut out = MessageWriter::default();
        out.append_with(self, data::normalize_crlf);
        Arc::new(out.finish())
    }

    /// This message with `head` in front of it (e.g. a signature header).
    pub fn with_head(&self, head: &[u8]) -> MessageBytes {
        let mut pieces = Vec::with_capacity(self.pieces.len() + 1);
        pieces.push(Held::Own(head.to_vec()));
        pieces.extend(self.pieces.iter().cloned());
        MessageBytes {
            pieces,
            len: self.len + head.len(),
        }
    }

    /// Takes back the first piece's buffer (to be written into again), when
    /// the first piece is the message's own.
    pub fn into_first_buffer(self) -> Option<Vec<u8>> {
        match self.pieces.into_iter().next() {
            Some(Held::Own(b)) => Some(b),
            _ => None,
        }
    }
}

impl From<Vec<u8>> for MessageBytes {
    fn from(bytes: Vec<u8>) -> Self {
        let len = bytes.len();
        MessageBytes {
            pieces: if len == 0 {
                Vec::new()
            } else {
                vec![Held::Own(bytes)]
            },
            len,
        }
    }
}

impl PartialEq for MessageBytes {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.contiguous() == other.contiguous()
    }
}

impl Eq for MessageBytes {}

/// Writes a [`MessageBytes`]: ordinary bytes go into the current buffer
/// (the writer is that `Vec<u8>` for everything else), shared blocks are
/// referenced where they can be.
#[derive(Debug, Default)]
pub struct MessageWriter {
    done: MessageBytes,
    cur: Vec<u8>,
}

impl MessageWriter {
    /// A writer whose first buffer is `buf` (cleared).
    pub fn with_buffer(mut buf: Vec<u8>) -> MessageWriter {
        buf.clear();
        MessageWriter {
            done: MessageBytes::default(),
            cur: buf,
        }
    }

    /// Every byte written so far.
    pub fn len(&self) -> usize {
        self.done.len + self.cur.len()
    }

    /// Nothing written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `bytes`: each of its own pieces passed through `own` (e.g.
    /// dot-stuffing), each shared block as [`push_shared`](Self::push_shared)
    /// does.
    pub fn append_with(&mut self, bytes: &MessageBytes, mut own: impl FnMut(&[u8], &mut Vec<u8>)) {
        for piece in bytes.pieces() {
            match piece {
                Piece::Own(b) => own(b, &mut self.cur),
                Piece::Shared(s) => self.push_shared(s),
            }
        }
    }

    /// Whether what was written so far ends with CRLF.
    pub fn ends_with_crlf(&self) -> bool {
        match self.done.pieces.last() {
            Some(p) if self.cur.is_empty() => p.bytes().ends_with(b"\r\n"),
            _ => self.cur.ends_with(b"\r\n"),
        }
    }

    /// Appends `block`: referenced when it is wire-ready and starts a line,
    /// else copied.
    pub fn push_shared(&mut self, block: &Arc<SharedBlock>) {
        let at_line_start = match self.cur.last() {
            Some(&b) => b == b'\n',
            None => self
                .done
                .pieces
                .last()
                .is_none_or(|p| p.bytes().ends_with(b"\n")),
        };
        if !(block.wire_ready && at_line_start) {
            self.cur.extend_from_slice(block.as_bytes());
            return;
        }
        self.seal();
        self.done.len += block.bytes.len();
        self.done.pieces.push(Held::Shared(Arc::clone(block)));
    }

    fn seal(&mut self) {
        if !self.cur.is_empty() {
            let cur = std::mem::take(&mut self.cur);
            self.done.len += cur.len();
            self.done.pieces.push(Held::Own(cur));
        }
    }

    /// Drops everything written, keeping the current buffer's memory.
    pub fn clear(&mut self) {
        self.done = MessageBytes::default();
        self.cur.clear();
    }

    /// Capacity of the current buffer.
    pub fn buffer_capacity(&self) -> usize {
        self.cur.capacity()
    }

    /// The bytes written.
    pub fn finish(mut self) -> MessageBytes {
        self.seal();
        self.done
    }

    /// The bytes written, leaving the writer empty.
    pub fn take(&mut self) -> MessageBytes {
        std::mem::take(self).finish()
    }
}

impl std::ops::Deref for MessageWriter {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.cur
    }
}

impl std::ops::DerefMut for MessageWriter {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(b: &[u8]) -> Arc<SharedBlock> {
        Arc::new(SharedBlock::new(b.to_vec()))
    }

    #[test]
    fn only_crlf_blocks_without_leading_dots_are_wire_ready() {
        assert!(block(b"QUJD\r\nREVG\r\n").is_wire_ready());
        assert!(!block(b"QUJD\r\nREVG").is_wire_ready(), "no final CRLF");
        assert!(!block(b"QUJD\nREVG\r\n").is_wire_ready(), "a bare LF");
        assert!(
            !block(b"QUJD\r\n.REVG\r\n").is_wire_ready(),
            "a leading dot"
        );
        assert!(!block(b".QUJD\r\n").is_wire_ready(), "a leading dot");
    }

    #[test]
    fn a_ready_block_at_a_line_start_is_referenced_and_any_other_copied() {
        let b = block(b"QUJD\r\n");
        let mut w = MessageWriter::default();
        w.extend_from_slice(b"head\r\n");
        w.push_shared(&b);
        w.extend_from_slice(b"mid");
        w.push_shared(&b); // mid-line: copied
        let m = w.finish();
        assert_eq!(m.to_vec(), b"head\r\nQUJD\r\nmidQUJD\r\n");
        assert_eq!(m.len(), m.to_vec().len());
        let shared = m.pieces().filter(|p| matches!(p, Piece::Shared(_))).count();
        assert_eq!(shared, 1);
        assert_eq!(Arc::strong_count(&b), 2, "held once more, not copied");
    }

    #[test]
    fn normalising_leaves_shared_blocks_shared_and_fixes_own_line_ends() {
        let b = block(b"QUJD\r\n");
        let mut w = MessageWriter::default();
        w.extend_from_slice(b"a\nb\n");
        w.push_shared(&b);
        w.extend_from_slice(b"end");
        let m = Arc::new(w.finish());
        assert_eq!(m.normalized_len(), b"a\r\nb\r\nQUJD\r\nend\r\n".len());
        let n = m.normalized();
        assert_eq!(n.to_vec(), b"a\r\nb\r\nQUJD\r\nend\r\n");
        assert!(n.pieces().any(|p| matches!(p, Piece::Shared(_))));
        let clean = Arc::new(MessageBytes::from(b"x\r\n".to_vec()));
        assert!(Arc::ptr_eq(&clean, &clean.normalized()));
    }

    #[test]
    fn a_head_goes_in_front_and_messages_compare_by_their_bytes() {
        let b = block(b"QUJD\r\n");
        let mut w = MessageWriter::default();
        w.extend_from_slice(b"x\r\n");
        w.push_shared(&b);
        let m = w.finish();
        let signed = m.with_head(b"Sig: 1\r\n");
        assert_eq!(signed.to_vec(), b"Sig: 1\r\nx\r\nQUJD\r\n");
        assert_eq!(m, MessageBytes::from(b"x\r\nQUJD\r\n".to_vec()));
        assert_ne!(m, MessageBytes::from(b"x\r\nQUJE\r\n".to_vec()));
    }
}
