//! Where a key sits in the job's YAML text (YAML 1.2 block style), so that a
//! problem found after parsing can name the line and column the user edits.
//! A light scan of the lines, not a second parser: the job loader and the
//! renderer both locate keys with it.

/// 1-based line and column of a block-style key path such as `smtp:` →
/// `  rate:`; the innermost key found wins. The first key may name one item
/// of a block sequence under it (`["attachments[1]", "path"]`). Keys may be
/// plain, `"double"` or `'single'` quoted. Flow mappings (`{ a: b }`) are
/// located at their parent key.
pub fn key_position(text: &str, path: &[&str]) -> (Option<u64>, Option<u64>) {
    let mut found = (None, None);
    let mut parent_indent: Option<usize> = None;
    let mut depth = 0;
    // The sequence item wanted under the first key, the one the scan is in,
    // and the indentation of that sequence's dashes.
    let mut want_item: Option<usize> = None;
    let mut item: Option<usize> = None;
    let mut item_indent: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        // A path ending in an item (`relays[1]`) goes on to that item's line.
        if depth == path.len() && want_item.is_none() {
            break;
        }
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        let dash = content == "-" || content.starts_with("- ");
        if let Some(pi) = parent_indent {
            // A block sequence may sit at its key's own indentation.
            if indent < pi || (indent == pi && !dash) {
                break; // left the parent's block without finding the child
            }
        } else if indent != 0 {
            continue;
        }
        if want_item.is_some() && dash {
            if item_indent.is_none() {
                item_indent = Some(indent);
            }
            if item_indent == Some(indent) {
                item = Some(item.map_or(0, |n| n + 1));
            }
        }
        if want_item.is_some() && item != want_item {
            continue;
        }
        if depth == path.len() {
            let rest = content.trim_start_matches('-').trim_start();
            found = (
                Some(i as u64 + 1),
                Some((indent + content.len() - rest.len() + 1) as u64),
            );
            break;
        }
        let key_text = match (depth, dash) {
            (0, _) | (_, false) => content,
            _ => content.trim_start_matches('-').trim_start(),
        };
        let column = indent + content.len() - key_text.len() + 1;
        let (key, index) = split_index(path[depth], depth);
        if is_key(key_text, key) {
            found = (Some(i as u64 + 1), Some(column as u64));
            parent_indent = Some(indent);
            want_item = index;
            depth += 1;
        }
    }
    found
}

/// The key and the sequence index of a path segment (`attachments[1]`,
/// `smtp` → `relays[0]`); a header name below `headers` never carries one.
fn split_index(segment: &str, depth: usize) -> (&str, Option<usize>) {
    if depth == 0 || segment.ends_with(']') {
        if let Some((key, rest)) = segment.split_once('[') {
            if let Ok(n) = rest.trim_end_matches(']').parse() {
                return (key, Some(n));
            }
        }
    }
    (segment, None)
}

/// Whether `content` (a line without its indentation) starts with `key:`.
fn is_key(content: &str, key: &str) -> bool {
    let quoted = |q: char| {
        content
            .strip_prefix(q)
            .and_then(|c| c.strip_prefix(key))
            .and_then(|c| c.strip_prefix(q))
    };
    content
        .strip_prefix(key)
        .or_else(|| quoted('"'))
        .or_else(|| quoted('\''))
        .is_some_and(|rest| rest.trim_start().starts_with(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_positions() {
        let text = "a: 1\nsmtp:\n  # note\n  host: x\n  rate: 2/s\nrate: top\n";
        assert_eq!(key_position(text, &["smtp", "rate"]), (Some(5), Some(3)));
        assert_eq!(key_position(text, &["rate"]), (Some(6), Some(1)));
        assert_eq!(key_position(text, &["smtp", "port"]), (Some(2), Some(1)));
        assert_eq!(key_position(text, &["nothere"]), (None, None));
    }

    #[test]
    fn key_position_finds_header_names_and_sequence_items() {
        let yaml = "from: a\nheaders:\n  X-One: 1\n  \"X-Two\": 2\nattachments:\n  - path: p0\n  - name: n1\n    path: p1\nsubject: s\n";
        let line = |path: &[&str]| key_position(yaml, path).0;
        assert_eq!(line(&["from"]), Some(1));
        assert_eq!(line(&["headers", "X-Two"]), Some(4));
        assert_eq!(line(&["attachments[0]", "path"]), Some(6));
        assert_eq!(line(&["attachments[1]", "path"]), Some(8));
        assert_eq!(line(&["subject"]), Some(9));
        assert_eq!(line(&["cc"]), None);
    }

    #[test]
    fn a_sequence_at_its_key_indentation_is_inside_the_key() {
        let yaml = "attachments:\n- path: p0\n- path: p1\nsubject: s\n";
        assert_eq!(
            key_position(yaml, &["attachments[1]", "path"]),
            (Some(3), Some(3))
        );
        assert_eq!(key_position(yaml, &["subject"]), (Some(4), Some(1)));
    }
}
