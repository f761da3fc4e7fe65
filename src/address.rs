//! Address syntax: RFC 5322 mailbox lists ("Name <a@b>, c@d") and RFC 5321 /
//! RFC 6531 addr-specs, including internationalised local parts and domains.
//!
//! The checks are deliberately about what an SMTP server will accept in
//! `MAIL FROM` / `RCPT TO` (RFC 5321 4.1.2 `Mailbox`, extended by RFC 6531
//! with UTF-8), not the full RFC 5322 grammar with comments and folding:
//! template output is one line, and anything looser would let a CSV value
//! smuggle in a header or a recipient.

use std::borrow::Cow;
use std::fmt;

use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// One address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Display name, unencoded (may be non-ASCII); never contains CR or LF.
    pub name: Option<String>,
    /// The addr-spec `local@domain` (the domain may be internationalised).
    pub addr: String,
}

/// Why an address (or address list) is refused: the text, once, and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError {
    /// The offending address, entry or list as written (values filled in).
    pub address: String,
    /// What is wrong with it.
    pub reason: String,
    /// For [`parse_filled_list`]: the index of the interpolated value at
    /// fault, when one value is.
    pub value: Option<usize>,
}

impl AddressError {
    fn new(address: &str, reason: impl Into<String>) -> Self {
        AddressError {
            address: address.to_string(),
            reason: reason.into(),
            value: None,
        }
    }

    fn of_value(mut self, index: usize) -> Self {
        self.value = Some(index);
        self
    }
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}", visible(&self.address))?;
        write!(f, "\": {}", self.reason)
    }
}

impl std::error::Error for AddressError {}

/// RFC 5321 4.5.3.1.1: the local part is at most 64 octets.
const MAX_LOCAL: usize = 64;
/// RFC 5321 4.5.3.1.3 allows a 256-octet path including `<` and `>`.
const MAX_ADDRESS: usize = 254;
/// RFC 1035 2.3.4: labels are at most 63 octets (in their ASCII form).
const MAX_LABEL: usize = 63;
/// RFC 1035 name limit minus the root label's length octets.
const MAX_DOMAIN: usize = 253;

/// Parse a comma-separated list of mailboxes as written in a job template's
/// output (display names optional, quoted names allowed). Rejects CR, LF and
/// other control characters, empty entries and invalid addr-specs.
///
/// An input that is empty or only spaces is an empty list, so an optional
/// `cc: "{{ cc }}"` with an empty CSV cell adds nobody.
pub fn parse_mailbox_list(input: &str) -> Result<Vec<Mailbox>, AddressError> {
    if let Some(c) = input.chars().find(|c| c.is_control()) {
        return Err(AddressError::new(
            input,
            format!(
                "address list contains the control character {}",
                describe_char(c)
            ),
        ));
    }
    if input.trim().is_empty() {
        return Ok(Vec::new());
    }
    let entries = split_entries(input).map_err(|r| AddressError::new(input, r))?;
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(empty_entry(input, i, entries.len()));
        }
        out.push(parse_mailbox(entry)?);
    }
    Ok(out)
}

fn empty_entry(list: &str, i: usize, n: usize) -> AddressError {
    AddressError::new(
        list,
        format!("address list has an empty entry (entry {} of {n})", i + 1),
    )
}

/// One piece of what an address template rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<'a> {
    /// Text written in the template itself (trusted: it may be syntax).
    Text(&'a str),
    /// A value the template interpolated: a CSV cell, a variable, an
    /// expression's result (never syntax).
    Value(Cow<'a, str>),
}

/// Stands for one value in the template's own text while its structure is
/// parsed. A private-use character, so it is no delimiter and no `atext`
/// a template would write; template text holding it is refused.
const SLOT: char = '\u{E000}';

/// Where a value sits in the mailbox the template's own text shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Part of the part before the template's `@`.
    LocalPart,
    /// Part of the domain after the template's `@`.
    Domain,
}

/// Parse an address template's output, in which every interpolated value is
/// known, into mailboxes.
///
/// The template's own text alone decides the structure: which entries the
/// list has, where each display name, `<`, `@` and domain is. Each value
/// must then fall entirely inside one token of one address:
///
/// - a value that is a whole list entry (`{{ manager }}`) may be one
///   mailbox (`Name <a@b>`) or blank, which adds nobody;
/// - a value that is the whole addr-spec (`<{{ email }}>`) must be one
///   valid addr-spec;
/// - a value in the display name or a trailing `(comment)` is text of the
///   name, whatever it holds (the name is quoted or encoded when written);
/// - a value in the local part (`news+{{ id }}@example.com`) may hold only
///   `atext` and `.`, without `%` and `!`, which some relays still read as
///   routes; a value in the domain only letters, digits, `-` and `.`
///   (beyond ASCII, letters, marks and digits only, in both).
///
/// So no value can add a recipient, a header or a route, or change a domain
/// the template writes. The filled-in address is then checked as
/// [`check_addr_spec`] does. An error names the address once and, when one
/// value is at fault, its index among the values.
pub fn parse_filled_list(parts: &[Part<'_>]) -> Result<Vec<Mailbox>, AddressError> {
    let mut skeleton = String::new();
    let mut values: Vec<&str> = Vec::new();
    for part in parts {
        match part {
            Part::Text(text) => skeleton.push_str(text),
            Part::Value(value) => {
                skeleton.push(SLOT);
                values.push(value);
            }
        }
    }
    // The filled-in text, for messages only.
    let full = || fill(&skeleton, &values);
    if skeleton.matches(SLOT).count() != values.len() {
        return Err(AddressError::new(
            &full(),
            format!(
                "the template text holds {}, a character reserved for marking values",
                describe_char(SLOT)
            ),
        ));
    }
    if values.is_empty() {
        return parse_mailbox_list(&skeleton);
    }
    let control = |s: &str| s.chars().find(|c| c.is_control());
    let culprit = values
        .iter()
        .enumerate()
        .find_map(|(i, v)| Some((Some(i), control(v)?)));
    if let Some((value, c)) = culprit.or_else(|| Some((None, control(&skeleton)?))) {
        let reason = format!(
            "address list contains the control character {}",
            describe_char(c)
        );
        return Err(AddressError {
            value,
            ..AddressError::new(&full(), reason)
        });
    }
    let blank = skeleton.chars().all(|c| c == SLOT || c.is_whitespace())
        && values.iter().all(|v| v.trim().is_empty());
    if blank {
        return Ok(Vec::new());
    }
    let entries = split_entries(&skeleton).map_err(|r| AddressError::new(&full(), r))?;
    let mut out = Vec::with_capacity(entries.len());
    let mut first = 0;
    for (i, entry) in entries.iter().enumerate() {
        let n = entry.matches(SLOT).count();
        let vals = &values[first..first + n];
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(empty_entry(&full(), i, entries.len()));
        }
        if entry.len() == SLOT.len_utf8() && n == 1 {
            // The value is the whole entry: at most one mailbox of its own.
            let value = vals[0];
            if !value.trim().is_empty() {
                let n = split_entries(value)
                    .map_err(|r| AddressError::new(value, r).of_value(first))?
                    .len();
                if n != 1 {
                    let reason = format!(
                        "the value is a list of {n} entries; one value can fill in at most one address"
                    );
                    return Err(AddressError::new(value, reason).of_value(first));
                }
                out.push(parse_mailbox(value.trim()).map_err(|e| e.of_value(first))?);
            }
        } else {
            out.push(parse_filled_mailbox(entry, vals, first)?);
        }
        first += n;
    }
    Ok(out)
}

/// `skeleton` with every slot replaced by its value.
fn fill(skeleton: &str, values: &[&str]) -> String {
    let mut out =
        String::with_capacity(skeleton.len() + values.iter().map(|v| v.len()).sum::<usize>());
    let mut values = values.iter();
    for c in skeleton.chars() {
        match (c, c == SLOT) {
            (_, true) => out.push_str(values.next().copied().unwrap_or_default()),
            (c, false) => out.push(c),
        }
    }
    out
}

/// One entry of a template's output that is more than one value: the
/// shapes of [`parse_mailbox`], each value placed by the template's text.
/// `first` is the index of the entry's first value among all values.
fn parse_filled_mailbox(
    entry: &str,
    values: &[&str],
    first: usize,
) -> Result<Mailbox, AddressError> {
    let slots = |s: &str| s.matches(SLOT).count();
    if let Some(open) = find_unquoted(entry, '<') {
        // split_entries guarantees a matching '>' follows.
        let close = open + entry[open..].find('>').unwrap_or(entry.len() - open);
        let (phrase, addr) = (&entry[..open], entry[open + 1..close].trim());
        let rest = entry.get(close + 1..).unwrap_or("").trim();
        let (in_phrase, in_addr) = (slots(phrase), slots(addr));
        if !rest.is_empty() {
            let text = fill(entry, values);
            return Err(AddressError::new(&text, "unexpected text after '>'"));
        }
        let name = filled_display_name(phrase, &values[..in_phrase])
            .map_err(|r| AddressError::new(&fill(entry, values), r))?;
        let addr = filled_addr_spec(
            addr,
            &values[in_phrase..in_phrase + in_addr],
            first + in_phrase,
        )?;
        return Ok(Mailbox { name, addr });
    }
    // A bare addr-spec, optionally followed by an old-style "(Name)" comment.
    let (addr, name) = match find_unquoted(entry, '(') {
        Some(open) => {
            let comment = entry[open + 1..].trim_end();
            let comment = comment.strip_suffix(')').ok_or_else(|| {
                AddressError::new(&fill(entry, values), "unexpected text after ')'")
            })?;
            let in_addr = slots(&entry[..open]);
            let name = fill(comment, &values[in_addr..]);
            (
                filled_addr_spec(entry[..open].trim(), &values[..in_addr], first)?,
                Some(name.trim().to_string()),
            )
        }
        None => (filled_addr_spec(entry, values, first)?, None),
    };
    Ok(Mailbox {
        name: name.filter(|n| !n.is_empty()),
        addr,
    })
}

/// The addr-spec `skeleton` (trimmed) with its values filled in and checked.
fn filled_addr_spec(skeleton: &str, values: &[&str], first: usize) -> Result<String, AddressError> {
    if skeleton.len() == SLOT.len_utf8() && values.len() == 1 {
        // The value is the whole address.
        let addr = values[0].trim();
        check_addr_spec(addr).map_err(|e| e.of_value(first))?;
        return Ok(addr.to_string());
    }
    let addr = fill(skeleton, values);
    let blame = |e: AddressError| match values {
        [_] => e.of_value(first),
        _ => e,
    };
    if !values.is_empty() {
        let Some(at) = skeleton.rfind('@') else {
            return Err(blame(AddressError::new(
                &addr,
                "a value that is only part of an address cannot supply its '@'; write the \
                 '@' in the template, or put the whole address in one value",
            )));
        };
        let slots = skeleton.match_indices(SLOT).map(|(pos, _)| pos);
        for ((index, value), pos) in (first..).zip(values).zip(slots) {
            let position = if pos < at {
                Position::LocalPart
            } else {
                Position::Domain
            };
            if let Some(c) = value.chars().find(|&c| !fits(c, position)) {
                let part = match position {
                    Position::LocalPart => "the part before '@'",
                    Position::Domain => "the domain",
                };
                let reason = format!(
                    "the value \"{}\" fills in {part}, where {} is not allowed",
                    visible(value),
                    describe_char(c)
                );
                return Err(AddressError::new(&addr, reason).of_value(index));
            }
        }
    }
    check_addr_spec(&addr).map_err(blame)?;
    Ok(addr)
}

/// Whether a value's character may stand at `position` of an address.
///
/// Beyond ASCII only letters, marks and digits: no punctuation, symbol or
/// space, since a fullwidth `＠` or an ideographic full stop `。` turns into
/// `@` or `.` wherever text is normalised (NFKC, IDNA mapping).
fn fits(c: char, position: Position) -> bool {
    if !c.is_ascii() {
        return matches!(
            c.general_category_group(),
            GeneralCategoryGroup::Letter
                | GeneralCategoryGroup::Mark
                | GeneralCategoryGroup::Number
        );
    }
    match position {
        Position::LocalPart => c == '.' || (is_atext(c) && c != '%' && c != '!'),
        Position::Domain => c.is_ascii_alphanumeric() || c == '-' || c == '.',
    }
}

/// The display name `phrase` (template text with slots) as [`display_name`]
/// reads it, each value taken as name text whatever it holds.
fn filled_display_name(phrase: &str, values: &[&str]) -> Result<Option<String>, String> {
    let mut values = values.iter();
    let mut out = String::new();
    let mut in_quote = false;
    let mut escaped = false;
    for c in phrase.chars() {
        if c == SLOT {
            if let Some(value) = values.next() {
                out.push_str(value);
                continue;
            }
        }
        if in_quote {
            if escaped {
                out.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            } else {
                out.push(c);
            }
        } else if c == '"' {
            in_quote = true;
        } else if c == '>' {
            return Err("unexpected '>' in the display name".into());
        } else if c.is_whitespace() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    let name = out.trim();
    Ok((!name.is_empty()).then(|| name.to_string()))
}

/// Split at commas that are outside quotes, angle brackets and comments,
/// checking that those are balanced.
fn split_entries(input: &str) -> Result<Vec<&str>, String> {
    let mut entries = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let mut escaped = false;
    let mut angle = false;
    let mut paren = 0usize;
    // Bytes, not chars: every delimiter is ASCII, and no byte of a multi-byte
    // UTF-8 character is (an escaped one is skipped from its first byte on).
    for (i, &b) in input.as_bytes().iter().enumerate() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
            continue;
        }
        match b {
            b'"' => in_quote = true,
            b'<' if angle => return Err("nested '<' in address list".into()),
            b'<' => angle = true,
            b'>' if !angle => return Err("'>' without a matching '<' in address list".into()),
            b'>' => angle = false,
            b'(' if !angle => paren += 1,
            b')' if !angle && paren == 0 => {
                return Err("')' without a matching '(' in address list".into())
            }
            b')' if !angle => paren -= 1,
            b',' if !angle && paren == 0 => {
                entries.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quote {
        return Err("unbalanced '\"' in address list".into());
    }
    if angle {
        return Err("'<' without a matching '>' in address list".into());
    }
    if paren > 0 {
        return Err("'(' without a matching ')' in address list".into());
    }
    entries.push(&input[start..]);
    Ok(entries)
}

/// One entry: `addr`, `Name <addr>`, `"Quoted, Name" <addr>` or `addr (Name)`.
fn parse_mailbox(entry: &str) -> Result<Mailbox, AddressError> {
    if let Some(open) = find_unquoted(entry, '<') {
        // split_entries guarantees a matching '>' follows.
        let close = open
            + entry[open..]
                .find('>')
                .ok_or_else(|| AddressError::new(entry, "missing '>'"))?;
        let rest = entry[close + 1..].trim();
        if !rest.is_empty() {
            return Err(AddressError::new(entry, "unexpected text after '>'"));
        }
        let addr = entry[open + 1..close].trim();
        check_addr_spec(addr)?;
        let name = display_name(entry[..open].trim()).map_err(|r| AddressError::new(entry, r))?;
        return Ok(Mailbox {
            name,
            addr: addr.to_string(),
        });
    }
    // A bare addr-spec, optionally followed by an old-style "(Name)" comment.
    let (addr, name) = match find_unquoted(entry, '(') {
        Some(open) => {
            let inner = entry[open + 1..].trim_end();
            let inner = inner
                .strip_suffix(')')
                .ok_or_else(|| AddressError::new(entry, "unexpected text after ')'"))?;
            (entry[..open].trim(), Some(inner.trim().to_string()))
        }
        None => (entry, None),
    };
    check_addr_spec(addr)?;
    Ok(Mailbox {
        name: name.filter(|n| !n.is_empty()),
        addr: addr.to_string(),
    })
}

/// Byte index of the first `target` outside a quoted string.
fn find_unquoted(s: &str, target: char) -> Option<usize> {
    // Every caller looks for an ASCII delimiter; bytes as in `split_entries`.
    let target = u8::try_from(target).ok().filter(u8::is_ascii)?;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
        } else if b == b'"' {
            in_quote = true;
        } else if b == target {
            return Some(i);
        }
    }
    None
}

/// The phrase before `<`: quoted parts are unquoted and unescaped, runs of
/// spaces collapse to one (RFC 5322 3.2.5 semantics of a phrase).
fn display_name(phrase: &str) -> Result<Option<String>, String> {
    filled_display_name(phrase, &[])
}

/// Append `text` to `out` as an RFC 5322 quoted-string: in double quotes,
/// with `"` and `\` escaped.
pub fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Check one addr-spec (`local@domain`) for SMTP use.
///
/// Accepts RFC 5321 dot-atom and quoted-string local parts, UTF-8 in both
/// (RFC 6531), domain names (IDN allowed; label lengths are checked on the
/// A-label) and address literals (`[192.0.2.1]`, `[IPv6:::1]`).
pub fn check_addr_spec(addr: &str) -> Result<(), AddressError> {
    addr_spec_problem(addr).map_err(|r| AddressError::new(addr, r))
}

/// Why `addr` is no valid addr-spec, without repeating it.
fn addr_spec_problem(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("the address is empty".into());
    }
    if let Some(c) = addr.chars().find(|c| c.is_control()) {
        return Err(format!(
            "address contains the control character {}",
            describe_char(c)
        ));
    }
    // RFC 6531 admits any UTF-8 text, but a character that shows nothing
    // (a BOM, a zero-width space, a bidi control) or a non-ASCII space makes
    // an address that looks like another one; no real mailbox has them.
    if let Some(c) = addr
        .chars()
        .find(|&c| is_invisible(c) || c.is_whitespace() && c != ' ')
    {
        return Err(format!(
            "address contains {}, an invisible or space character",
            describe_char(c)
        ));
    }
    if addr.len() > MAX_ADDRESS {
        return Err(format!(
            "address is {} octets long; at most {MAX_ADDRESS} are allowed",
            addr.len()
        ));
    }
    // The last '@' separates: a quoted local part may itself contain '@'.
    let at = addr.rfind('@').ok_or("there is no '@'")?;
    let (local, domain) = (&addr[..at], &addr[at + 1..]);
    check_local_part(local)?;
    check_domain(domain)
}

/// `text` with every hidden character shown by its code, so that what a
/// terminal shows is what the text holds.
fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_hidden(c) {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A character that does not show as itself: a control, a space other than
/// ' ', or an invisible format character.
fn is_hidden(c: char) -> bool {
    c.is_control() || (c.is_whitespace() && c != ' ') || is_invisible(c)
}

/// Unicode general category Cf (format): BOM, zero-width and bidi controls,
/// soft hyphen, invisible operators, tags.
fn is_invisible(c: char) -> bool {
    !c.is_ascii() && c.general_category() == GeneralCategory::Format
}

/// RFC 5322 `atext`, extended with any non-ASCII character by RFC 6531.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn check_local_part(local: &str) -> Result<(), String> {
    if local.is_empty() {
        return Err("the part before '@' is empty".into());
    }
    if local.len() > MAX_LOCAL {
        return Err(format!(
            "the part before '@' is {} octets long; at most {MAX_LOCAL} are allowed",
            local.len()
        ));
    }
    if let Some(inner) = local.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or("unterminated quoted local part")?;
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                // quoted-pairSMTP: a backslash and one printable ASCII character.
                '\\' => match chars.next() {
                    Some(n) if (' '..='~').contains(&n) => {}
                    _ => return Err("bad '\\' escape in quoted local part".into()),
                },
                '"' => return Err("unescaped '\"' inside quoted local part".into()),
                // qtextSMTP: printable ASCII (with space) or UTF-8.
                c if c == ' ' || c.is_ascii_graphic() || !c.is_ascii() => {}
                c => {
                    return Err(format!(
                        "character {} is not allowed in a quoted local part",
                        describe_char(c)
                    ))
                }
            }
        }
        return Ok(());
    }
    for atom in local.split('.') {
        if atom.is_empty() {
            return Err("the part before '@' has an empty dot-separated part ('..' or a leading/trailing '.')".into());
        }
        if let Some(c) = atom.chars().find(|&c| !is_atext(c)) {
            return Err(format!(
                "character {} is not allowed before '@' unless the local part is quoted",
                describe_char(c)
            ));
        }
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("the domain after '@' is empty".into());
    }
    if let Some(lit) = domain.strip_prefix('[') {
        let lit = lit
            .strip_suffix(']')
            .ok_or("unterminated address literal")?;
        let ok = match lit.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
                lit[5..].parse::<std::net::Ipv6Addr>().is_ok()
            }
            _ => lit.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        return if ok {
            Ok(())
        } else {
            Err(format!("[{lit}] is not a valid address literal"))
        };
    }
    let ascii = if domain.is_ascii() {
        std::borrow::Cow::Borrowed(domain)
    } else {
        let encoded = domain_to_ascii(domain).ok_or("the domain cannot be encoded as IDNA")?;
        std::borrow::Cow::Owned(encoded)
    };
    if ascii.len() > MAX_DOMAIN {
        return Err(format!(
            "the domain is {} octets long; at most {MAX_DOMAIN} are allowed",
            ascii.len()
        ));
    }
    for (label, ascii_label) in domain.split('.').zip(ascii.split('.')) {
        if label.is_empty() {
            return Err("the domain has an empty label ('..' or a leading/trailing '.')".into());
        }
        if ascii_label.len() > MAX_LABEL {
            return Err(format!(
                "domain label \"{label}\" is {} octets long; at most {MAX_LABEL} are allowed",
                ascii_label.len()
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("domain label \"{label}\" starts or ends with '-'"));
        }
        if let Some(c) = label
            .chars()
            .find(|&c| c.is_ascii() && !(c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(format!(
                "character {} is not allowed in a domain",
                describe_char(c)
            ));
        }
    }
    Ok(())
}

/// The domain with every non-ASCII label in its `xn--` A-label form
/// (RFC 3492 Punycode); ASCII labels are returned unchanged. No UTS #46
/// mapping is applied: the domain is expected to be in its written form.
/// `None` if a label is too long to encode.
pub fn domain_to_ascii(domain: &str) -> Option<String> {
    let mut out = String::with_capacity(domain.len());
    for (i, label) in domain.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        if label.is_ascii() {
            out.push_str(label);
        } else {
            out.push_str("xn--");
            out.push_str(&punycode_encode(&label.to_lowercase())?);
        }
    }
    Some(out)
}

/// RFC 3492 section 6.3, with the parameters of section 5.
fn punycode_encode(input: &str) -> Option<String> {
    const BASE: u32 = 36;
    const TMIN: u32 = 1;
    const TMAX: u32 = 26;
    const INITIAL_BIAS: u32 = 72;
    const INITIAL_N: u32 = 128;

    fn adapt(delta: u32, numpoints: u32, first: bool) -> u32 {
        const SKEW: u32 = 38;
        const DAMP: u32 = 700;
        let mut delta = if first { delta / DAMP } else { delta / 2 };
        delta += delta / numpoints;
        let mut k = 0;
        while delta > ((BASE - TMIN) * TMAX) / 2 {
            delta /= BASE - TMIN;
            k += BASE;
        }
        k + (BASE - TMIN + 1) * delta / (delta + SKEW)
    }
    fn digit(d: u32) -> char {
        if d < 26 {
            (b'a' + d as u8) as char
        } else {
            (b'0' + (d - 26) as u8) as char
        }
    }

    let cps: Vec<u32> = input.chars().map(|c| c as u32).collect();
    let mut out: String = input.chars().filter(char::is_ascii).collect();
    let basic = out.len() as u32;
    let mut handled = basic;
    if basic > 0 {
        out.push('-');
    }
    let (mut n, mut delta, mut bias) = (INITIAL_N, 0u32, INITIAL_BIAS);
    while (handled as usize) < cps.len() {
        let m = cps.iter().copied().filter(|&c| c >= n).min()?;
        delta = delta.checked_add((m - n).checked_mul(handled + 1)?)?;
        n = m;
        for &c in &cps {
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = if k <= bias {
                        TMIN
                    } else if k >= bias + TMAX {
                        TMAX
                    } else {
                        k - bias
                    };
                    if q < t {
                        break;
                    }
                    out.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                out.push(digit(q));
                bias = adapt(delta, handled + 1, handled == basic);
                delta = 0;
                handled += 1;
            }
        }
        delta = delta.checked_add(1)?;
        n += 1;
    }
    Some(out)
}

/// A character named so that an invisible one is still visible in a message.
fn describe_char(c: char) -> String {
    match c {
        '\r' => "CR (\\r)".into(),
        '\n' => "LF (\\n)".into(),
        '\t' => "TAB (\\t)".into(),
        '\0' => "NUL".into(),
        c if is_hidden(c) || c == SLOT => format!("U+{:04X}", c as u32),
        c => format!("'{c}'"),
    }
}

/// True when the address needs SMTPUTF8 (non-ASCII local part or domain).
pub fn needs_smtputf8(addr: &str) -> bool {
    !addr.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(name: Option<&str>, addr: &str) -> Mailbox {
        Mailbox {
            name: name.map(str::to_string),
            addr: addr.to_string(),
        }
    }

    #[test]
    fn parses_mixed_list() {
        let got = parse_mailbox_list("Name <a@b.example>, \"Doe, J\" <j@d.example>, c@d.example")
            .unwrap();
        assert_eq!(
            got,
            vec![
                mb(Some("Name"), "a@b.example"),
                mb(Some("Doe, J"), "j@d.example"),
                mb(None, "c@d.example"),
            ]
        );
    }

    #[test]
    fn parses_utf8_names_escapes_and_comments() {
        let got = parse_mailbox_list(
            "张三 <zhang@例子.中国>, \"A \\\"Q\\\" B\" <q@x.org>, old@x.org (Old Style), <bare@x.org>",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                mb(Some("张三"), "zhang@例子.中国"),
                mb(Some("A \"Q\" B"), "q@x.org"),
                mb(Some("Old Style"), "old@x.org"),
                mb(None, "bare@x.org"),
            ]
        );
    }

    #[test]
    fn blank_input_is_empty_list() {
        assert_eq!(parse_mailbox_list("").unwrap(), vec![]);
        assert_eq!(parse_mailbox_list("   ").unwrap(), vec![]);
    }

    #[test]
    fn rejects_bad_lists() {
        for bad in [
            "a@b.org\r\nBcc: evil@x.org",
            "a@b.org\nx@y.org",
            "a@b.org\0",
            "Name\t<a@b.org>",
            "a@b.org, , c@d.org",
            "a@b.org,",
            ", a@b.org",
            "\"Unclosed <a@b.org>",
            "Name <a@b.org",
            "Name a@b.org>",
            "Name <<a@b.org>>",
            "Name <a@b.org> trailing",
            "Name <not-an-address>",
            "a@b.org (unclosed",
            "plainword",
            "a@b@c",
        ] {
            assert!(parse_mailbox_list(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn error_names_control_character() {
        let err = parse_mailbox_list("a@b.org\r\n").unwrap_err().to_string();
        assert!(err.contains("CR"), "{err}");
    }

    #[test]
    fn accepts_good_addr_specs() {
        for good in [
            "user@example.com",
            "first.last+tag@sub.example.co.uk",
            "o'brien@example.ie",
            "\"john doe\"@example.com",
            "\"a@b\\\"c\"@example.com",
            "用户@例子.广告",
            "δοκιμή@παράδειγμα.δοκιμή",
            "user@localhost",
            "user@[192.0.2.1]",
            "user@[IPv6:2001:db8::1]",
            "x@a-b.c1",
        ] {
            assert_eq!(check_addr_spec(good), Ok(()), "{good}");
        }
        // 66 UTF-8 octets, but a 28-octet A-label: the limit is on the A-label.
        assert_eq!(
            check_addr_spec(&format!("x@{}.cn", "中".repeat(22))),
            Ok(())
        );
    }

    #[test]
    fn rejects_bad_addr_specs() {
        let long_label = format!("a@{}.com", "x".repeat(64));
        let long_local = format!("{}@x.com", "l".repeat(65));
        let long_total = format!("a@{}com", "abcdefghi.".repeat(26));
        // Distinct ideographs cost two or more Punycode digits each.
        let long_idn: String = (0..32)
            .map(|i| char::from_u32(0x4E00 + i * 97).unwrap())
            .collect();
        let long_idn = format!("a@{long_idn}.com");
        for bad in [
            "",
            "no-at-sign",
            "@example.com",
            "user@",
            "a..b@example.com",
            ".a@example.com",
            "a.@example.com",
            "a b@example.com",
            "a(b)@example.com",
            "\"unterminated@example.com",
            "user@exa mple.com",
            "user@example..com",
            "user@.example.com",
            "user@example.com.",
            "user@-example.com",
            "user@example-.com",
            "user@exa_mple.com",
            "user@[300.1.1.1]",
            "user@[IPv6:zz::1]",
            "user@example.com\r",
            long_label.as_str(),
            long_local.as_str(),
            long_total.as_str(),
            long_idn.as_str(),
        ] {
            assert!(check_addr_spec(bad).is_err(), "accepted {bad:?}");
        }
    }

    /// Template text and values: `T` for text, `V` for a value.
    fn filled(parts: &[(&str, char)]) -> Result<Vec<Mailbox>, AddressError> {
        let parts: Vec<Part<'_>> = parts
            .iter()
            .map(|&(s, kind)| match kind {
                'T' => Part::Text(s),
                _ => Part::Value(s.into()),
            })
            .collect();
        parse_filled_list(&parts)
    }

    #[test]
    fn values_fill_the_token_the_template_puts_them_in() {
        let ok = |parts: &[(&str, char)], want: Vec<Mailbox>| {
            assert_eq!(filled(parts).unwrap(), want, "{parts:?}")
        };
        ok(
            &[("ann.b", 'V'), ("@example.com", 'T')],
            vec![mb(None, "ann.b@example.com")],
        );
        ok(
            &[("Manager <mgr+", 'T'), ("4", 'V'), ("@example.com>", 'T')],
            vec![mb(Some("Manager"), "mgr+4@example.com")],
        );
        ok(
            &[("a@", 'T'), ("eu", 'V'), (".", 'T'), ("例子", 'V')],
            vec![mb(None, "a@eu.例子")],
        );
        // Names take any text; a quoted name keeps its quotes' contents.
        ok(
            &[
                ("Eve <x@y.example>, \"Q\"", 'V'),
                (" <", 'T'),
                ("e@x.example", 'V'),
                (">", 'T'),
            ],
            vec![mb(Some("Eve <x@y.example>, \"Q\""), "e@x.example")],
        );
        ok(
            &[("\"Dr ", 'T'), ("Who", 'V'), ("\" <w@x.example>", 'T')],
            vec![mb(Some("Dr Who"), "w@x.example")],
        );
        ok(
            &[("w@x.example (", 'T'), ("Who)(", 'V'), (")", 'T')],
            vec![mb(Some("Who)("), "w@x.example")],
        );
        // A whole entry may be one mailbox, or blank for nobody.
        ok(
            &[("Boss <b@x.example>", 'V'), (", ", 'T'), ("  ", 'V')],
            vec![mb(Some("Boss"), "b@x.example")],
        );
        ok(&[(" ", 'V')], vec![]);
        // A whole addr-spec may be any one valid address.
        ok(
            &[("<", 'T'), (" \"a b\"@x.example ", 'V'), (">", 'T')],
            vec![mb(None, "\"a b\"@x.example")],
        );
    }

    #[test]
    fn a_value_cannot_leave_its_token() {
        let bad = |parts: &[(&str, char)], value: Option<usize>| {
            let err = filled(parts).expect_err(&format!("accepted {parts:?}"));
            assert_eq!(err.value, value, "{parts:?}: {err}");
        };
        for v in [
            "a,b",
            "a@b",
            "a b",
            "a<b",
            "a>b",
            "a;b",
            "a:b",
            "\"a\"",
            "a\\b",
            "a(b)",
            "a[b]",
            "a%b",
            "a!b",
            "a\u{ff20}b",
            "a\u{3002}b",
            "a\u{ff0e}b",
            "a\u{feff}b",
            "a\u{ad}b",
            "a\u{3000}b",
            "a\tb",
            "a\nb",
            "a.",
        ] {
            bad(&[("x+", 'T'), (v, 'V'), ("@example.com", 'T')], Some(0));
            bad(&[("x@", 'T'), (v, 'V'), (".example", 'T')], Some(0));
        }
        // The domain the template writes stays its domain.
        bad(&[("a@evil.example", 'V'), ("@example.com", 'T')], Some(0));
        bad(
            &[("a@evil.example, b", 'V'), ("@example.com", 'T')],
            Some(0),
        );
        // Only the template supplies '@' to a partial address.
        bad(&[("user@", 'V'), ("example.com", 'T')], Some(0));
        // A whole entry holds at most one mailbox; a whole addr-spec is checked.
        bad(&[("a@x.example, b@y.example", 'V')], Some(0));
        bad(
            &[("<", 'T'), ("a@x.example>, <b@y.example", 'V'), (">", 'T')],
            Some(0),
        );
        bad(
            &[("Eve <", 'T'), ("a\u{200b}@x.example", 'V'), (">", 'T')],
            Some(0),
        );
        // Which value is at fault is counted across entries.
        bad(
            &[
                ("a@x.example, ", 'V'),
                ("b+", 'T'),
                ("1", 'V'),
                ("@x.example, c+", 'T'),
                ("?,", 'V'),
                ("@x.example", 'T'),
            ],
            Some(0),
        );
        bad(
            &[
                ("a@x.example", 'V'),
                (", b+", 'T'),
                ("1", 'V'),
                ("@x.example, c+", 'T'),
                ("?,", 'V'),
                ("@x.example", 'T'),
            ],
            Some(2),
        );
        // Template text never holds the value marker.
        bad(&[("\u{E000}", 'T'), ("a@x.example", 'V')], None);
    }

    #[test]
    fn an_error_names_the_address_once() {
        let err = filled(&[("archive+", 'T'), ("a..b", 'V'), ("@example.com", 'T')]).unwrap_err();
        let text = err.to_string();
        assert_eq!(
            text.matches("archive+a..b@example.com").count(),
            1,
            "{text}"
        );
        let text = parse_mailbox_list("Ann <a..b@example.com>")
            .unwrap_err()
            .to_string();
        assert_eq!(text.matches("a..b@example.com").count(), 1, "{text}");
        let text = check_addr_spec("a\u{feff}b@example.com")
            .unwrap_err()
            .to_string();
        assert!(text.contains("a<U+FEFF>b@example.com"), "{text}");
        assert!(text.contains("U+FEFF,"), "{text}");
    }

    #[test]
    fn invisible_format_characters_are_not_address_text() {
        for c in [
            '\u{feff}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{2060}',
            '\u{2064}',
            '\u{202a}',
            '\u{202e}',
            '\u{ad}',
            '\u{2066}',
            '\u{e0001}',
            '\u{a0}',
            '\u{2028}',
        ] {
            for addr in [format!("a{c}b@example.com"), format!("ab@exa{c}mple.com")] {
                let err = check_addr_spec(&addr).expect_err(&addr);
                assert!(err.reason.contains(&format!("U+{:04X}", c as u32)), "{err}");
            }
        }
    }

    #[test]
    fn punycode_matches_published_a_labels() {
        // Registered TLDs and the RFC 3492 sample, not computed here.
        assert_eq!(
            domain_to_ascii("例子.中国").unwrap(),
            "xn--fsqu00a.xn--fiqs8s"
        );
        assert_eq!(domain_to_ascii("公司").unwrap(), "xn--55qx5d");
        assert_eq!(domain_to_ascii("münchen.de").unwrap(), "xn--mnchen-3ya.de");
        assert_eq!(domain_to_ascii("example.com").unwrap(), "example.com");
    }

    #[test]
    fn smtputf8_detection() {
        assert!(needs_smtputf8("用户@example.com"));
        assert!(!needs_smtputf8("user@example.com"));
    }
}
