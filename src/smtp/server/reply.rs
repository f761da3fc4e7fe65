//! Replies as a server writes them (RFC 5321 4.2.1): a multiline reply
//! repeats its code on every line, with `-` after it on all but the last.

/// The lines of one reply under `code`, joined by CRLF, without the final
/// CRLF. No lines give the bare code.
pub fn multiline<S: AsRef<str>>(code: u16, lines: &[S]) -> String {
    if lines.is_empty() {
        return code.to_string();
    }
    let last = lines.len() - 1;
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let sep = if i == last { ' ' } else { '-' };
            format!("{code}{sep}{}", l.as_ref())
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_but_the_last_has_a_hyphen() {
        assert_eq!(
            multiline(250, &["mx.test Hello c", "PIPELINING", "SIZE 10"]),
            "250-mx.test Hello c\r\n250-PIPELINING\r\n250 SIZE 10"
        );
        assert_eq!(multiline(250, &["mx.test"]), "250 mx.test");
        assert_eq!(multiline::<&str>(221, &[]), "221");
    }
}
