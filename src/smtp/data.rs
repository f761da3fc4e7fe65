//! Message bytes on their way to the wire: line-end normalisation for BDAT
//! (RFC 3030) and dot-stuffing plus the `.` terminator for DATA (RFC 5321
//! §4.5.2).
//!
//! Every line end becomes CRLF — a bare CR or bare LF never reaches the
//! server, so a message cannot smuggle an end-of-data sequence that some
//! servers would honour and others not (SMTP smuggling, CVE-2023-51764).
//! Both transforms write into a `Vec<u8>` so they are tested without I/O.

/// Normalises `input` into `out`: CRLF stays, bare LF and bare CR become
/// CRLF, and non-empty data always ends with CRLF. `out` grows; nothing in
/// it is removed. The BDAT size is the number of bytes this appends.
pub fn normalize_crlf(input: &[u8], out: &mut Vec<u8>) {
    transform(input, out, false);
}

/// Dot-stuffs `input` into `out` for DATA: normalises line ends like
/// [`normalize_crlf`], doubles a `.` at the start of every line, and appends
/// the terminating `.\r\n` (empty input gives just `.\r\n`).
pub fn dot_stuff(input: &[u8], out: &mut Vec<u8>) {
    transform(input, out, true);
    out.extend_from_slice(b".\r\n");
}

/// Dot-stuffs `input` into `out` like [`dot_stuff`], without the
/// terminator: for a message written piece by piece, each piece starting a
/// line.
pub fn stuff_lines(input: &[u8], out: &mut Vec<u8>) {
    transform(input, out, true);
}

/// Length of [`normalize_crlf`]'s output, without building it.
pub fn normalized_len(input: &[u8]) -> usize {
    let mut n = 0;
    let mut pending_cr = false;
    let mut line_start = true;
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' => {
                if pending_cr {
                    n += 2;
                }
                pending_cr = true;
                i += 1;
            }
            b'\n' => {
                n += 2;
                pending_cr = false;
                line_start = true;
                i += 1;
            }
            _ => {
                if pending_cr {
                    n += 2;
                    pending_cr = false;
                }
                let run = line_run(&input[i..]);
                n += run;
                line_start = false;
                i += run;
            }
        }
    }
    if pending_cr || !line_start {
        n += 2;
    }
    n
}

/// Bytes before the next CR or LF (all of `rest` when there is none),
/// found with a vectorised search: a 1 MB attachment is 18,000 lines.
fn line_run(rest: &[u8]) -> usize {
    memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len())
}

/// The shared state machine. State: whether a CR is waiting to see if an LF
/// follows, and whether the next byte starts a line. Runs of ordinary bytes
/// are copied as slices.
fn transform(input: &[u8], out: &mut Vec<u8>, stuff: bool) {
    out.reserve(input.len() + input.len() / 64 + 2);
    let mut pending_cr = false;
    let mut line_start = true;
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' => {
                if pending_cr {
                    out.extend_from_slice(b"\r\n"); // the earlier CR was bare
                    line_start = true;
                }
                pending_cr = true;
                i += 1;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n"); // CRLF, or a bare LF made whole
                pending_cr = false;
                line_start = true;
                i += 1;
            }
            _ => {
                if pending_cr {
                    out.extend_from_slice(b"\r\n");
                    pending_cr = false;
                    line_start = true;
                }
                if stuff && line_start && input[i] == b'.' {
                    out.push(b'.');
                }
                let run = line_run(&input[i..]);
                out.extend_from_slice(&input[i..i + run]);
                line_start = false;
                i += run;
            }
        }
    }
    if pending_cr || !line_start {
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stuffed(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        dot_stuff(input, &mut out);
        out
    }

    fn normalized(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        normalize_crlf(input, &mut out);
        out
    }

    #[test]
    fn dot_stuffing_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b".", b"..\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\r.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"..x\r\n", b"...x\r\n.\r\n"),
            (b"a.b\r\n.", b"a.b\r\n..\r\n.\r\n"),
            (b"a\r\n\r\n", b"a\r\n\r\n.\r\n"),
            (b"\r\n", b"\r\n.\r\n"),
            (b"a\r\r\nb", b"a\r\n\r\nb\r\n.\r\n"),
            (b"a\n\rb", b"a\r\n\r\nb\r\n.\r\n"),
            (b"x\r", b"x\r\n.\r\n"),
            (b"\r", b"\r\n.\r\n"),
        ];
        for (input, want) in cases {
            assert_eq!(
                stuffed(input),
                want.to_vec(),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn smuggling_sequences_are_neutralised() {
        // Each would end DATA early on a lenient server if passed through.
        for body in [
            &b"x\n.\ny"[..],
            b"x\r.\ry",
            b"x\r\n.\ny",
            b"x\n.\r\ny",
            b"x\r\n.\ry",
        ] {
            let out = stuffed(body);
            assert_eq!(out, b"x\r\n..\r\ny\r\n.\r\n", "{body:?}");
        }
    }

    #[test]
    fn normalize_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"a", b"a\r\n"),
            (b".\n", b".\r\n"),
            (b"a\nb\rc\r\nd", b"a\r\nb\r\nc\r\nd\r\n"),
            (b"\r\r", b"\r\n\r\n"),
            (b"\n\n", b"\r\n\r\n"),
        ];
        for (input, want) in cases {
            assert_eq!(normalized(input), want.to_vec(), "{input:?}");
            assert_eq!(normalized_len(input), want.len(), "{input:?}");
        }
    }

    #[test]
    fn appends_without_clearing() {
        let mut out = b"BDAT 3 LAST\r\n".to_vec();
        normalize_crlf(b"a", &mut out);
        assert_eq!(out, b"BDAT 3 LAST\r\na\r\n");
    }

    /// Reverses dot-stuffing the way a receiving server does (RFC 5321 §4.5.2).
    fn unstuff(wire: &[u8]) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        for line in wire.split_inclusive(|&b| b == b'\n') {
            if line == b".\r\n" {
                return Some(body);
            }
            let line = line.strip_prefix(b".").unwrap_or(line);
            body.extend_from_slice(line);
        }
        None
    }

    proptest! {
        #[test]
        fn no_bare_cr_or_lf_and_server_recovers_the_normalised_body(
            input in proptest::collection::vec(
                prop::sample::select(vec![b'a', b'.', b'\r', b'\n', b' ', 0xc3]), 0..200)
        ) {
            let wire = stuffed(&input);
            for (i, &b) in wire.iter().enumerate() {
                if b == b'\r' { prop_assert_eq!(wire.get(i + 1), Some(&b'\n')); }
                if b == b'\n' { prop_assert!(i > 0 && wire[i - 1] == b'\r'); }
            }
            let norm = normalized(&input);
            prop_assert_eq!(unstuff(&wire), Some(norm.clone()));
            // The terminator is the only `.` line: nothing ends the data early.
            prop_assert!(wire.ends_with(b".\r\n"));
            prop_assert_eq!(normalized_len(&input), norm.len());
            // Normalising is idempotent, so re-normalising changes nothing.
            prop_assert_eq!(normalized(&norm), norm);
        }
    }
}
