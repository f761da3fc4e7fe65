//! Fuzzes the SMTP reply parser (RFC 5321 §4.2): arbitrary server bytes,
//! split at a fuzzer-chosen point, must never panic, and the split must not
//! change the replies parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailshot::smtp::reply::{Reply, ReplyParser};

fn parse(chunks: &[&[u8]]) -> (Vec<Reply>, bool) {
    let mut p = ReplyParser::new();
    let mut replies = Vec::new();
    for c in chunks {
        p.feed(c);
        loop {
            match p.next_reply() {
                Ok(Some(r)) => {
                    // Display must stay one line whatever the server sent.
                    assert!(!r.to_string().contains(['\r', '\n']));
                    replies.push(r);
                }
                Ok(None) => break,
                Err(_) => return (replies, true),
            }
        }
    }
    (replies, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(cut).min(rest.len());
    let whole = parse(&[rest]);
    let split = parse(&[&rest[..at], &rest[at..]]);
    // Without an error, any split yields the same replies.
    if !whole.1 && !split.1 {
        assert_eq!(whole.0, split.0);
    }
});
