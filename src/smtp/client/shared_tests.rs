//! Messages holding blocks shared with other messages (an attachment's
//! encoding): on the wire they are exactly the message's bytes, stuffed or
//! chunked as a whole message would be, and a wire-ready block is handed to
//! the socket where it lies instead of being copied into the output.

use proptest::prelude::*;

use super::*;
use crate::smtp::bytes::{Piece, SharedBlock};

const EHLO_DATA: &str = "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
const EHLO_BDAT: &str = "250-mx.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n";

fn ready(ehlo: &str) -> Client {
    let mut c = Client::new(SessionConfig::new("client.test", TlsMode::None));
    c.feed(b"220 mx.test ESMTP\r\n");
    c.take_output();
    c.feed(ehlo.as_bytes());
    c.take_output();
    c
}

fn tx(data: MessageBytes) -> Transaction {
    Transaction {
        id: 1,
        mail_from: "from@a.test".into(),
        rcpt_to: vec!["to@b.test".into()],
        data: Arc::new(data),
        eight_bit: false,
        smtputf8: false,
        envid: None,
    }
}

/// The bytes written for the message's data, by DATA or by BDAT.
fn data_on_the_wire(ehlo: &str, message: MessageBytes) -> (MessageBytes, Vec<u8>) {
    let mut c = ready(ehlo);
    c.submit(tx(message));
    let commands = c.take_output();
    if ehlo.contains("CHUNKING") {
        let at = memchr::memmem::find(&commands, b"BDAT ").expect("a BDAT command");
        let line_end = at + memchr::memmem::find(&commands[at..], b"\r\n").unwrap() + 2;
        // The command and its chunk were handed out together.
        let flat = commands[line_end..].to_vec();
        let size = String::from_utf8_lossy(&commands[at + 5..line_end]).to_string();
        assert_eq!(size, format!("{} LAST\r\n", flat.len()), "the chunk's size");
        c.feed(b"250 ok\r\n250 ok\r\n");
        return (MessageBytes::default(), flat);
    }
    assert!(commands.ends_with(b"DATA\r\n"), "{commands:?}");
    c.feed(b"250 ok\r\n250 ok\r\n354 go\r\n");
    let (out, _) = c.take_output_with_finals();
    let flat = out.to_vec();
    (out, flat)
}

fn writer_of(segments: &[(bool, Vec<u8>)]) -> MessageBytes {
    let mut w = MessageWriter::default();
    for (shared, bytes) in segments {
        if *shared {
            w.push_shared(&Arc::new(SharedBlock::new(bytes.clone())));
        } else {
            w.extend_from_slice(bytes);
        }
    }
    w.finish()
}

#[test]
fn a_wire_ready_block_reaches_the_output_without_a_copy() {
    let block = Arc::new(SharedBlock::new(b"QUJD\r\nREVG\r\n".repeat(1000)));
    let mut w = MessageWriter::default();
    w.extend_from_slice(b"Subject: x\r\n\r\n.dot line\r\n");
    w.push_shared(&block);
    w.extend_from_slice(b"--end--\r\n");
    let (out, flat) = data_on_the_wire(EHLO_DATA, w.finish());
    let held = out
        .pieces()
        .filter(|p| matches!(p, Piece::Shared(s) if Arc::ptr_eq(s, &block)))
        .count();
    assert_eq!(held, 1, "the block is referenced once, not copied");
    let mut whole = b"Subject: x\r\n\r\n.dot line\r\n".to_vec();
    whole.extend_from_slice(block.as_bytes());
    whole.extend_from_slice(b"--end--\r\n");
    let mut expected = Vec::new();
    data::dot_stuff(&whole, &mut expected);
    assert_eq!(flat, expected);
}

fn segment() -> impl Strategy<Value = (bool, Vec<u8>)> {
    (
        any::<bool>(),
        proptest::collection::vec(
            prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'A'), Just(b'z')],
            0..40,
        ),
    )
        .prop_map(|(shared, mut bytes)| {
            // Half of the shared blocks are made wire-ready, as an
            // attachment's base64 is; the rest must be copied in.
            if shared && bytes.len() % 2 == 0 {
                bytes.retain(|&b| b != b'\r' && b != b'\n' && b != b'.');
                bytes.extend_from_slice(b"\r\n");
            }
            (shared, bytes)
        })
}

proptest! {
    #[test]
    fn a_message_in_pieces_goes_out_as_the_same_message_in_one_piece(
        segments in proptest::collection::vec(segment(), 0..8)
    ) {
        let message = writer_of(&segments);
        let whole = message.to_vec();
        let (_, data) = data_on_the_wire(EHLO_DATA, message.clone());
        let mut stuffed = Vec::new();
        data::dot_stuff(&whole, &mut stuffed);
        prop_assert_eq!(data, stuffed);
        let (_, chunk) = data_on_the_wire(EHLO_BDAT, message);
        let mut normal = Vec::new();
        data::normalize_crlf(&whole, &mut normal);
        prop_assert_eq!(chunk, normal);
    }
}
