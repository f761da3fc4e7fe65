//! What goes on the wire is valid RFC 5322 whatever the CSV holds: header
//! lines stay within 998 octets (folded, encoded-words, RFC 2231 sections),
//! text that merely looks like an encoded-word is shown literally, and every
//! message ends with CRLF. Messages are read back with mail-parser and with
//! Python's `email` package and compared with the CSV values.

use std::time::Duration;

use mail_parser::MimeHeaders;
use serde_json::Value;

use super::{header_names, simple_job, JobDir};
use crate::support::fault::FaultServer;
use crate::support::python;

/// Every CSV value below reaches a header through this job.
const JOB: &str = "from: \"Sender <sender@example.com>\"
to: \"{{ name }} <{{ email }}>\"
subject: \"{{ subj }}\"
text: body.txt
headers:
  X-Note: \"{{ note }}\"
list_unsubscribe: \"https://example.com/u?t={{ token }}\"
attachments:
  - path: body.txt
    name: \"{{ fname }}\"
recipients:
  file: r.csv
";

/// One recipient's values.
struct Values {
    email: &'static str,
    name: String,
    subj: String,
    note: String,
    token: String,
    fname: String,
}

/// Far too long for one line, each in its own way.
fn long_values() -> Values {
    Values {
        email: "long@example.com",
        name: format!("{} Long", "名".repeat(3000)),
        subj: "w".repeat(20_000),
        note: "note ".repeat(4_000).trim_end().to_string(),
        token: "t".repeat(20_000),
        fname: format!("{}.txt", "f".repeat(5_000)),
    }
}

/// Values that look like encoded-words hiding a line break.
fn encoded_word_lookalikes() -> Values {
    Values {
        email: "eve@example.com",
        name: "=?utf-8?q?Eve=0D=0ABcc:_victim@example.com?=".into(),
        subj: "=?UTF-8?B?SGkNCkJjYzogdmljdGltQGV4YW1wbGUuY29t?=".into(),
        note: "=?utf-8?q?x=0D=0AX-Injected:_1?=".into(),
        token: "ok".into(),
        fname: "=?utf-8?q?evil=0D=0A.txt?=".into(),
    }
}

fn csv(rows: &[Values]) -> String {
    let mut out = String::from("email,name,subj,note,token,fname\n");
    for r in rows {
        out.push_str(&format!(
            "{},\"{}\",\"{}\",\"{}\",{},\"{}\"\n",
            r.email, r.name, r.subj, r.note, r.token, r.fname
        ));
    }
    out
}

const PY_HEADERS: &str = r#"
import email, email.policy, json, sys
out = []
for path in sys.argv[1:]:
    with open(path, 'rb') as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    atts = [a.get_filename() for a in msg.iter_attachments()]
    out.append({
        'defects': [str(d) for p in msg.walk() for d in p.defects],
        'names': [k.lower() for k in msg.keys()],
        'subject': str(msg['subject']),
        'to': [[a.display_name, a.addr_spec] for a in msg['to'].addresses],
        'note': str(msg['x-note']),
        'unsubscribe': ''.join(str(msg['list-unsubscribe']).split()),
        'attachments': atts,
    })
print(json.dumps(out))
"#;

#[test]
fn long_header_values_fold_within_998_octets_and_decode_to_the_csv_values() {
    assert_headers_decode_to(&[long_values()]);
}

#[test]
fn values_that_look_like_encoded_words_are_shown_literally() {
    assert_headers_decode_to(&[encoded_word_lookalikes()]);
}

/// Sends `rows` through [`JOB`] with `--dry-run` and checks each message with
/// both parsers: lines within 998 octets, exactly the job's headers, and
/// every header value decoding to the CSV value.
fn assert_headers_decode_to(rows: &[Values]) {
    let jd = JobDir::new();
    jd.csv(csv(rows));
    jd.job(JOB);
    let msgs = jd.dry_run();
    assert_eq!(msgs.len(), rows.len());

    let paths: Vec<String> = (1..=rows.len())
        .map(|row| {
            jd.dir
                .join(format!("out/{row}.eml"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = python(PY_HEADERS, &args);
    assert!(ok, "python: {stderr}");
    let py: Vec<Value> = serde_json::from_str(&stdout).expect("python JSON");

    let expected_names = [
        "date",
        "message-id",
        "mime-version",
        "from",
        "to",
        "subject",
        "x-note",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "content-type",
    ];
    for (i, v) in rows.iter().enumerate() {
        let raw = &msgs[&(i as u64 + 1)];
        let row = i + 1;
        for (n, line) in raw.split(|&b| b == b'\n').enumerate() {
            assert!(
                line.len() <= 999,
                "row {row}: line {} has {} octets",
                n + 1,
                line.len()
            );
        }
        let unsubscribe = format!("<https://example.com/u?t={}>", v.token);

        // mail-parser.
        let m = super::parse(raw);
        assert!(m.subject() == Some(v.subj.as_str()), "row {row}: subject");
        let to = m.to().unwrap().first().unwrap();
        assert!(
            to.name() == Some(v.name.as_str()),
            "row {row}: display name"
        );
        assert_eq!(to.address(), Some(v.email));
        assert!(
            m.attachment(0).unwrap().attachment_name() == Some(v.fname.as_str()),
            "row {row}: file name"
        );
        let unsub: String = m
            .header_raw("List-Unsubscribe")
            .unwrap()
            .split_whitespace()
            .collect();
        assert!(unsub == unsubscribe, "row {row}: List-Unsubscribe");
        let note = mail_parser::MessageParser::new()
            .header_text(mail_parser::HeaderName::Other("X-Note".into()))
            .parse(raw)
            .unwrap();
        assert!(
            note.header("X-Note").and_then(|h| h.as_text()) == Some(v.note.as_str()),
            "row {row}: X-Note"
        );
        assert_eq!(
            header_names(raw),
            expected_names,
            "row {row}: no extra header"
        );

        // Python's email package.
        let p = &py[i];
        assert_eq!(p["defects"], serde_json::json!([]), "row {row}");
        assert_eq!(p["names"], serde_json::json!(expected_names), "row {row}");
        assert!(p["subject"] == v.subj.as_str(), "row {row}: python subject");
        // Python keeps the space between the encoded-words of a display
        // name too long for one word (RFC 2047 §6.2 says to drop it), so
        // spaces are not compared for such a name.
        let spaceless = |s: &str| s.split_whitespace().collect::<String>();
        let py_name = p["to"][0][0].as_str().unwrap_or_default();
        assert!(
            spaceless(py_name) == spaceless(&v.name) && (v.name.len() > 45 || py_name == v.name),
            "row {row}: python display name"
        );
        assert_eq!(p["to"][0][1], v.email, "row {row}: python address");
        assert!(p["note"] == v.note.as_str(), "row {row}: python X-Note");
        assert!(
            p["unsubscribe"] == unsubscribe.as_str(),
            "row {row}: python unsubscribe"
        );
        assert!(
            p["attachments"] == serde_json::json!([v.fname]),
            "row {row}: python file name"
        );
    }
}

/// The last bytes of a message whose body is `body.txt` = "Hi {{ name }}\n".
const ENDING: &[u8] = b"\r\n\r\nHi Ann\r\n";

#[test]
fn the_template_final_newline_ends_the_message_in_files_and_on_the_wire() {
    let jd = JobDir::new();
    jd.csv("email,name\nann@example.com,Ann\n");
    jd.job(&simple_job(""));
    let dry = jd.dry_run();
    assert!(
        dry[&1].ends_with(ENDING),
        "dry run ends with {:?}",
        String::from_utf8_lossy(&dry[&1][dry[&1].len().saturating_sub(12)..])
    );

    // BDAT carries the bytes as they are; DATA as the client ends them.
    for chunking in [true, false] {
        let server = FaultServer::builder().chunking(chunking).start();
        let jd = JobDir::new();
        jd.csv("email,name\nann@example.com,Ann\n");
        jd.job(&simple_job(&format!(
            "smtp: {{ url: \"smtp+plain://127.0.0.1:{}\", timeout: 5s }}",
            server.port()
        )));
        jd.run(&["run", "job.yaml", "--quiet"]).expect_code(0);
        let got = server.wait_for_messages(1, Duration::from_secs(10));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].bdat, chunking);
        let data = &got[0].data;
        assert!(
            data.ends_with(ENDING) && !data.ends_with(b"\r\n\r\n"),
            "chunking {chunking}: received data ends with {:?}",
            String::from_utf8_lossy(&data[data.len().saturating_sub(12)..])
        );
    }

    // The built-in capture server, where a job without smtp: sends.
    let jd = JobDir::new();
    jd.csv("email,name\nann@example.com,Ann\n");
    jd.job(&simple_job(""));
    jd.run(&["run", "job.yaml", "--quiet"]).expect_code(0);
    let files = jd.dir.files_with_suffix("outbox", ".eml");
    assert_eq!(files.len(), 1, "{files:?}");
    let stored = std::fs::read(&files[0]).unwrap();
    assert!(
        stored.ends_with(ENDING),
        "capture stored {:?}",
        String::from_utf8_lossy(&stored[stored.len().saturating_sub(12)..])
    );
}
