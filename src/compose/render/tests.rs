//! Rendering whole jobs: templates, escaping, addresses, files and the samples.

use super::*;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::job::{AttachmentSpec, RecipientsSpec};
use std::path::Path;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }
    /// A job in `sub` (relative to the fixture root) whose YAML text is `yaml`.
    fn job(&self, sub: &str, yaml: &str) -> Job {
        let path = self.write(&format!("{sub}/job.yaml"), yaml);
        let dir = path.parent().unwrap().to_path_buf();
        Job {
            path,
            dir: dir.clone(),
            smtp: None,
            from: "News <news@example.com>".into(),
            reply_to: None,
            to: None,
            cc: None,
            bcc: None,
            subject: "Hello {{ email }}".into(),
            text: None,
            html: None,
            markdown: None,
            attachments: vec![],
            max_attachment_size: crate::job::manifest::DEFAULT_MAX_ATTACHMENT_SIZE,
            headers: vec![],
            list_unsubscribe: None,
            vars: serde_yaml::from_str("campaign: November").unwrap(),
            dkim: None,
            recipients: RecipientsSpec {
                file: dir.join("recipients.csv"),
                email_column: "email".into(),
                delimiter: b',',
                encoding: encoding_rs::UTF_8,
                allow_duplicates: false,
            },
            suppress: vec![],
            return_path: None,
            bounces: None,
            domains: vec![],
        }
    }
}

fn recipient(row: u64, pairs: &[(&str, &str)]) -> Recipient {
    let headers: Vec<String> = pairs.iter().map(|(h, _)| h.to_string()).collect();
    let values: Vec<String> = pairs.iter().map(|(_, v)| v.to_string()).collect();
    let email = pairs
        .iter()
        .find(|(h, _)| *h == "email")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    Recipient {
        row,
        line: row + 1,
        email,
        headers: Arc::new(headers),
        values: values.into(),
        duplicate_of: None,
    }
}

fn invalid(r: Result<Renderer>) -> Vec<Diagnostic> {
    match r {
        Err(Error::Invalid(d)) => d,
        Err(e) => panic!("expected Invalid, got {e:?}"),
        Ok(_) => panic!("expected Invalid, got a renderer"),
    }
}

#[test]
fn renders_text_html_subject_with_html_escaping_only_in_html() {
    let fx = Fixture::new();
    fx.write(
        "job/body.txt",
        "Hi {{ name }}, row {{ row }} of {{ job.campaign }}.",
    );
    fx.write("job/body.html", "<p>Hi {{ name }}</p>");
    let mut job = fx.job("job", "subject: x\n");
    job.text = Some("body.txt".into());
    job.html = Some(job.dir.join("body.html"));
    job.headers = vec![("X-Campaign".into(), "{{ job.campaign }}-{{ row }}".into())];
    job.subject = "Hello {{ name }}".into();
    let r = Renderer::new(&job).unwrap();
    let d = r
        .render(&recipient(
            3,
            &[("email", "a@example.com"), ("name", "<script>")],
        ))
        .unwrap();
    assert_eq!(d.subject, "Hello <script>");
    assert_eq!(d.text.as_deref(), Some("Hi <script>, row 3 of November."));
    assert_eq!(d.html.as_deref(), Some("<p>Hi &lt;script&gt;</p>"));
    assert_eq!(
        d.headers,
        vec![("X-Campaign".to_string(), "November-3".to_string())]
    );
    assert_eq!(d.row, 3);
    assert_eq!(
        d.to,
        vec![Mailbox {
            name: None,
            addr: "a@example.com".into()
        }]
    );
    assert_eq!(d.from.unwrap().addr, "news@example.com");
}

#[test]
fn columns_map_reaches_names_that_are_not_identifiers() {
    let fx = Fixture::new();
    let mut job = fx.job("job", "subject: x\n");
    job.subject = "{{ columns[\"first name\"] }} / {{ columns.row }} / {{ row }}".into();
    let r = Renderer::new(&job).unwrap();
    let d = r
        .render(&recipient(
            2,
            &[
                ("email", "a@example.com"),
                ("first name", "Ann"),
                ("row", "x"),
            ],
        ))
        .unwrap();
    assert_eq!(d.subject, "Ann / x / 2");
}

#[test]
fn html_extends_a_layout_from_an_ancestor_templates_folder() {
    let fx = Fixture::new();
    fx.write(
        "templates/layout.html",
        "<html>{% block body %}{% endblock %}{% include \"footer.txt\" %}</html>",
    );
    fx.write("templates/footer.txt", "[{{ job.campaign }}]");
    fx.write(
        "samples/news/body.html",
        "{% extends \"layout.html\" %}{% block body %}<b>{{ name }}</b>{% endblock %}",
    );
    fx.write(
        "samples/news/alt.txt",
        "{% extends \"templates/layout.html\" %}{% block body %}{{ name }}{% endblock %}",
    );
    let mut job = fx.job("samples/news", "subject: x\n");
    job.html = Some("body.html".into());
    job.text = Some("alt.txt".into());
    let r = Renderer::new(&job).unwrap();
    let d = r
        .render(&recipient(
            1,
            &[("email", "a@example.com"), ("name", "A&B")],
        ))
        .unwrap();
    assert_eq!(
        d.html.as_deref(),
        Some("<html><b>A&amp;B</b>[November]</html>")
    );
    assert_eq!(d.text.as_deref(), Some("<html>A&B[November]</html>"));
}

#[test]
fn all_syntax_errors_are_reported_with_file_and_line() {
    let fx = Fixture::new();
    fx.write("templates/bad_layout.html", "ok\n{% block x %}\n{{ }}\n");
    fx.write(
        "job/body.html",
        "line1\nline2\n{% extends \"bad_layout.html\" %}\n",
    );
    fx.write("job/body.txt", "a\n\n{{ name \n");
    let mut job = fx.job(
        "job",
        "from: x\n# comment\nsubject: \"Hi {{ name\"\nheaders:\n  X-Ok: a\n  Bad Name: b\n",
    );
    job.subject = "Hi {{ name".into();
    job.text = Some("body.txt".into());
    job.html = Some("body.html".into());
    job.headers = vec![("X-Ok".into(), "a".into()), ("Bad Name".into(), "b".into())];
    let diags = invalid(Renderer::new(&job));
    let subject = diags
        .iter()
        .find(|d| d.message.starts_with("subject:"))
        .unwrap();
    assert_eq!(subject.location.file, job.path);
    assert_eq!(subject.location.line, Some(3));
    let text = diags
        .iter()
        .find(|d| d.location.file.ends_with("body.txt"))
        .expect("body.txt syntax error");
    assert_eq!(text.location.line, Some(3));
    let layout = diags
        .iter()
        .find(|d| d.location.file.ends_with("bad_layout.html"))
        .expect("layout syntax error found before any row");
    assert_eq!(layout.location.line, Some(3));
    let header = diags
        .iter()
        .find(|d| d.message.contains("Bad Name"))
        .unwrap();
    assert_eq!(header.location.line, Some(6));
    assert_eq!(diags.len(), 4, "{diags:#?}");
}

#[test]
fn reserved_header_names_are_refused() {
    let fx = Fixture::new();
    let mut job = fx.job("job", "subject: x\n");
    job.headers = vec![
        ("bcc".into(), "x@example.com".into()),
        ("Content-Type".into(), "text/plain".into()),
        ("X-Fine".into(), "ok".into()),
    ];
    let diags = invalid(Renderer::new(&job));
    assert_eq!(diags.len(), 2, "{diags:#?}");
}

#[test]
fn missing_template_file_is_no_input() {
    let fx = Fixture::new();
    let mut job = fx.job("job", "subject: x\n");
    job.text = Some("nope.txt".into());
    assert!(matches!(Renderer::new(&job), Err(Error::NoInput { .. })));
}

#[test]
fn every_undefined_variable_in_a_row_is_reported() {
    let fx = Fixture::new();
    fx.write("job/body.txt", "Dear {{ nmae }},\n{{ city }} {{ zip }}\n");
    let mut job = fx.job("job", "from: x\nsubject: \"Hi {{ frist }}\"\n");
    job.subject = "Hi {{ frist }}".into();
    job.text = Some("body.txt".into());
    let r = Renderer::new(&job).unwrap();
    let diags = r
        .render(&recipient(5, &[("email", "a@example.com"), ("name", "A")]))
        .unwrap_err();
    let fields: HashSet<_> = diags
        .iter()
        .filter_map(|d| d.location.field.clone())
        .collect();
    let want: HashSet<String> = ["frist", "nmae", "city", "zip"].map(String::from).into();
    assert_eq!(fields, want, "{diags:#?}");
    assert!(diags.iter().all(|d| d.location.row == Some(5)));
    let subject = diags
        .iter()
        .find(|d| d.location.field.as_deref() == Some("frist"))
        .unwrap();
    assert_eq!(subject.location.file, job.path);
    assert_eq!(subject.location.line, Some(2));
    let nmae = diags
        .iter()
        .find(|d| d.location.field.as_deref() == Some("nmae"))
        .unwrap();
    assert!(nmae.location.file.ends_with("body.txt"));
    assert_eq!(nmae.location.line, Some(1));
    assert!(
        nmae.message.contains("columns are: email, name"),
        "{}",
        nmae.message
    );
}

#[test]
fn crlf_in_a_csv_value_cannot_reach_a_header() {
    let fx = Fixture::new();
    let mut job = fx.job("job", "to: x\nsubject: x\n");
    job.to = Some("{{ name }} <{{ email }}>".into());
    job.subject = "Hi {{ name }}".into();
    let r = Renderer::new(&job).unwrap();
    let evil = "Eve\r\nBcc: victim@example.com";
    let diags = r
        .render(&recipient(
            7,
            &[("email", "eve@example.com"), ("name", evil)],
        ))
        .unwrap_err();
    assert_eq!(diags.len(), 2, "to and subject both rejected: {diags:#?}");
    for d in &diags {
        assert_eq!(d.location.row, Some(7));
        assert_eq!(d.location.field.as_deref(), Some("name"));
        assert!(d.message.contains("U+000D"), "{}", d.message);
    }
    assert!(diags.iter().any(|d| d.message.starts_with("to:")));
    assert!(diags.iter().any(|d| d.message.starts_with("subject:")));
}

#[test]
fn a_csv_value_cannot_add_a_recipient_through_commas_or_brackets() {
    let fx = Fixture::new();
    let mut job = fx.job("job", "subject: x\n");
    job.to = Some("{{ name }} <{{ email }}>".into());
    job.cc = Some("{{ manager }}".into());
    let r = Renderer::new(&job).unwrap();
    let render = |name: &str, manager: &str| {
        r.render(&recipient(
            1,
            &[
                ("email", "eve@example.com"),
                ("name", name),
                ("manager", manager),
            ],
        ))
    };
    // A comma in a name is a name, not a second address.
    let d = render("Smith, John", "").unwrap();
    assert_eq!(d.to.len(), 1);
    assert_eq!(d.to[0].name.as_deref(), Some("Smith, John"));
    assert_eq!(d.to[0].addr, "eve@example.com");
    // Text that would smuggle in another address stays inside the name.
    let d = render("Eve <victim@example.com>, X", "").unwrap();
    assert_eq!(d.envelope_recipients(), ["eve@example.com"]);
    // One address in a column is still an address.
    let d = render("Eve", "Boss <boss@example.com>").unwrap();
    assert_eq!(d.cc.len(), 1);
    assert_eq!(d.cc[0].addr, "boss@example.com");
    // A list in one cell is refused rather than fanned out.
    let err = render("Eve", "a@example.com, victim@example.com").unwrap_err();
    assert!(err.iter().any(|e| e.message.starts_with("cc:")), "{err:#?}");
}

#[test]
fn addresses_lists_and_blank_cc() {
    let fx = Fixture::new();
    let mut job = fx.job("job", "subject: x\n");
    job.cc = Some("{{ manager }}".into());
    job.bcc = Some("audit@example.com".into());
    job.reply_to = Some("Help <help@example.com>".into());
    job.list_unsubscribe =
        Some("https://example.com/u?e={{ email | urlencode }}, mailto:u@example.com".into());
    let r = Renderer::new(&job).unwrap();
    let with = r
        .render(&recipient(
            1,
            &[
                ("email", "a+b@example.com"),
                ("manager", "Boss <boss@example.com>"),
            ],
        ))
        .unwrap();
    assert_eq!(with.cc[0].addr, "boss@example.com");
    assert_eq!(with.bcc[0].addr, "audit@example.com");
    assert_eq!(with.reply_to[0].addr, "help@example.com");
    assert_eq!(
        with.list_unsubscribe,
        vec![
            "https://example.com/u?e=a%2Bb%40example.com",
            "mailto:u@example.com"
        ]
    );
    let without = r
        .render(&recipient(
            2,
            &[("email", "c@example.com"), ("manager", "  ")],
        ))
        .unwrap();
    assert!(without.cc.is_empty());
}

#[test]
fn partial_addresses_take_their_values_in_place() {
    let fx = Fixture::new();
    let mut job = fx.job("job", "subject: x\n");
    job.to = Some("{{ user }}@example.com".into());
    job.cc = Some("Manager <mgr+{{ id }}@example.com>, {{ boss }}".into());
    job.bcc = Some("archive+{{ id }}@{{ host }}.example.com".into());
    job.reply_to = Some("\"{{ name }} (help)\" <help@example.com>".into());
    let r = Renderer::new(&job).unwrap();
    let d = r
        .render(&recipient(
            1,
            &[
                ("email", "ann@example.org"),
                ("user", "ann.b"),
                ("id", "x-4"),
                ("host", "eu"),
                ("name", "Ann \"A\" B"),
                ("boss", ""),
            ],
        ))
        .unwrap();
    let mb = |name: Option<&str>, addr: &str| Mailbox {
        name: name.map(str::to_string),
        addr: addr.to_string(),
    };
    assert_eq!(d.to, [mb(None, "ann.b@example.com")]);
    assert_eq!(d.cc, [mb(Some("Manager"), "mgr+x-4@example.com")]);
    assert_eq!(d.bcc, [mb(None, "archive+x-4@eu.example.com")]);
    assert_eq!(
        d.reply_to,
        [mb(Some("Ann \"A\" B (help)"), "help@example.com")]
    );
}

#[test]
fn a_bad_value_names_its_column_row_and_key() {
    let fx = Fixture::new();
    let mut job = fx.job("job", "subject: x\nbcc: y\n");
    job.bcc = Some("archive+{{ id }}@example.com".into());
    let r = Renderer::new(&job).unwrap();
    let diags = r
        .render(&recipient(
            9,
            &[("email", "a@example.org"), ("id", "4, evil@x.example")],
        ))
        .unwrap_err();
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert_eq!(d.location.row, Some(9));
    assert_eq!(d.location.field.as_deref(), Some("id"));
    assert_eq!(d.location.line, Some(2));
    assert!(d.message.starts_with("bcc: "), "{}", d.message);
    assert_eq!(
        d.message
            .matches("archive+4, evil@x.example@example.com")
            .count(),
        1,
        "{}",
        d.message
    );
}

/// For arbitrary values in each partial-address template, a row renders
/// exactly the one address the template spells with the value in its
/// place (fixed parts and literal domain unchanged), and the message
/// built from it has one such recipient header, or the row is refused.
#[test]
fn any_value_fills_one_address_or_fails_the_row() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    let fx = Fixture::new();
    let templates = [
        ("to", "{{ user }}@example.com"),
        ("bcc", "archive+{{ id }}@example.com"),
        ("cc", "Manager <mgr+{{ id }}@example.com>"),
        ("to", "{{ name }} <{{ email }}>"),
    ];
    let renderers: Vec<Renderer> = templates
        .iter()
        .enumerate()
        .map(|(i, (key, template))| {
            let mut job = fx.job(&format!("job{i}"), "subject: x\n");
            let slot = match *key {
                "to" => &mut job.to,
                "cc" => &mut job.cc,
                _ => &mut job.bcc,
            };
            *slot = Some(template.to_string());
            Renderer::new(&job).unwrap()
        })
        .collect();
    let value = || {
        prop_oneof![
                "[a-z0-9]{1,8}",
                "[a-z0-9.+@<>,;:\"\\()\\[\\] %!\t\r\n\u{feff}\u{200b}\u{202e}\u{2028}\u{E000}\u{E001}\u{E002}-]{0,12}",
                any::<String>(),
                "[a-z]{1,4}@[a-z]{1,4}\\.example",
            ]
    };
    let mut runner = TestRunner::new(Config {
        cases: 512,
        ..Config::default()
    });
    runner
        .run(&(0..templates.len(), value(), value()), |(t, a, b)| {
            let email_col = if t == 3 {
                b.as_str()
            } else {
                "rcpt@example.org"
            };
            let rec = recipient(
                3,
                &[("email", email_col), ("user", &a), ("id", &a), ("name", &a)],
            );
            // Ordinary values must work: letters and digits, and for the
            // name template a plain address.
            let plain = |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric());
            let ordinary = plain(&a)
                && (t != 3
                    || b.split_once('@').is_some_and(|(l, d)| {
                        plain(l) && d.ends_with(".example") && plain(&d[..d.len() - 8])
                    }));
            let d = match renderers[t].render(&rec) {
                Ok(d) => d,
                Err(diags) if ordinary => {
                    return Err(TestCaseError::fail(format!(
                        "{a:?} {b:?} refused: {diags:?}"
                    )));
                }
                Err(diags) => {
                    prop_assert!(!diags.is_empty());
                    prop_assert!(diags.iter().all(|d| d.location.row == Some(3)));
                    return Ok(());
                }
            };
            let (key, expected) = match t {
                0 => (
                    "to",
                    Mailbox {
                        name: None,
                        addr: format!("{a}@example.com"),
                    },
                ),
                1 => (
                    "bcc",
                    Mailbox {
                        name: None,
                        addr: format!("archive+{a}@example.com"),
                    },
                ),
                2 => (
                    "cc",
                    Mailbox {
                        name: Some("Manager".into()),
                        addr: format!("mgr+{a}@example.com"),
                    },
                ),
                _ => (
                    "to",
                    Mailbox {
                        name: Some(a.trim().to_string()).filter(|n| !n.is_empty()),
                        addr: b.trim().to_string(),
                    },
                ),
            };
            prop_assert!(crate::address::check_addr_spec(&expected.addr).is_ok());
            let list = match key {
                "to" => &d.to,
                "cc" => &d.cc,
                _ => &d.bcc,
            };
            prop_assert_eq!(list, &vec![expected.clone()]);
            let mut envelope = vec![expected.addr.clone()];
            if t == 1 || t == 2 {
                envelope.insert(0, "rcpt@example.org".into());
            }
            prop_assert_eq!(d.envelope_recipients(), envelope);
            // The message: one header per key, no Bcc, one recipient there.
            let raw = parse_back(&d);
            let msg = mail_parser::MessageParser::default()
                .parse(&raw)
                .ok_or_else(|| TestCaseError::fail("unparsable message"))?;
            let names: Vec<String> = msg
                .headers()
                .iter()
                .map(|h| h.name().to_ascii_lowercase())
                .collect();
            prop_assert!(!names.contains(&"bcc".to_string()), "{:?}", names);
            for field in ["from", "to", "cc", "subject"] {
                prop_assert!(
                    names.iter().filter(|n| *n == field).count() <= 1,
                    "{:?}",
                    names
                );
            }
            let shown = match key {
                "cc" => msg.cc(),
                _ => msg.to(),
            };
            if key != "bcc" {
                prop_assert_eq!(shown.map(|a| a.iter().count()), Some(1));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn attachments_are_read_named_and_typed() {
    let fx = Fixture::new();
    fx.write("job/reports/7.pdf", "%PDF-1.4 fake");
    let mut job = fx.job(
        "job",
        "subject: x\nattachments:\n  - path: a\n  - path: \"reports/{{ id }}.pdf\"\n    name: n\n",
    );
    job.attachments = vec![
        AttachmentSpec {
            path: "reports/{{ id }}.pdf".into(),
            name: None,
        },
        AttachmentSpec {
            path: "reports/{{ id }}.pdf".into(),
            name: Some("报告-{{ id }}.pdf".into()),
        },
        AttachmentSpec {
            path: "{% if extra %}x.pdf{% endif %}".into(),
            name: None,
        },
    ];
    let r = Renderer::new(&job).unwrap();
    let d = r
        .render(&recipient(
            1,
            &[("email", "a@example.com"), ("id", "7"), ("extra", "")],
        ))
        .unwrap();
    assert_eq!(d.attachments.len(), 2);
    assert_eq!(d.attachments[0].name, "7.pdf");
    assert_eq!(d.attachments[0].content_type, "application/pdf");
    assert_eq!(d.attachments[0].data.as_bytes(), b"%PDF-1.4 fake");
    assert_eq!(d.attachments[1].name, "报告-7.pdf");

    let diags = r
        .render(&recipient(
            4,
            &[("email", "a@example.com"), ("id", "8"), ("extra", "")],
        ))
        .unwrap_err();
    assert_eq!(diags.len(), 2, "{diags:#?}");
    assert!(diags[0].location.file.ends_with("reports/8.pdf"));
    assert_eq!(diags[0].location.row, Some(4));
    assert!(diags[0].message.starts_with("attachments[0].path:"));
    assert!(diags[1].message.starts_with("attachments[1].path:"));
}

#[test]
fn a_body_file_keeps_its_final_newline_and_a_header_value_gets_none() {
    let fx = Fixture::new();
    // One body the engine-free path renders, one that needs minijinja.
    fx.write("job/plain.txt", "Hi {{ name }}\n\nBye\n");
    fx.write(
        "job/page.html",
        "{% if name %}<p>{{ name }}</p>{% endif %}\r\n",
    );
    let mut job = fx.job("job", "subject: x\n");
    job.text = Some("plain.txt".into());
    job.html = Some("page.html".into());
    job.subject = "Hello {{ name }}\n".into();
    let r = Renderer::new(&job).unwrap();
    let d = r
        .render(&recipient(
            1,
            &[("email", "a@example.com"), ("name", "Ann")],
        ))
        .unwrap();
    assert_eq!(d.text.as_deref(), Some("Hi Ann\n\nBye\n"));
    assert_eq!(d.html.as_deref(), Some("<p>Ann</p>\r\n"));
    assert_eq!(d.subject, "Hello Ann");
    // Without a final newline in the file there is none in the body.
    fx.write("job/plain.txt", "Hi {{ name }}");
    let r = Renderer::new(&job).unwrap();
    let d = r
        .render(&recipient(
            1,
            &[("email", "a@example.com"), ("name", "Ann")],
        ))
        .unwrap();
    assert_eq!(d.text.as_deref(), Some("Hi Ann"));
}

#[test]
fn a_runaway_loop_ends_with_an_error_naming_row_and_template() {
    let fx = Fixture::new();
    fx.write(
            "job/body.txt",
            "Hi {{ name }}\n{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}\n",
        );
    let mut job = fx.job("job", "subject: x\n");
    job.text = Some("body.txt".into());
    let r = Renderer::new(&job).unwrap();
    let started = std::time::Instant::now();
    let diags = r
        .render(&recipient(
            7,
            &[("email", "a@example.com"), ("name", "Ann")],
        ))
        .unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].location.row, Some(7));
    assert!(diags[0].location.file.ends_with("body.txt"), "{}", diags[0]);
    assert!(
        diags[0].message.contains("\"body.txt\" did not finish"),
        "{}",
        diags[0]
    );
}

#[test]
fn markdown_renders_to_both_parts_without_escaping() {
    let fx = Fixture::new();
    fx.write("job/letter.md", "# Hello {{ name }}\n\n* one\n* two\n");
    let mut job = fx.job("job", "subject: x\n");
    job.markdown = Some("letter.md".into());
    let r = Renderer::new(&job).unwrap();
    let d = r
        .render(&recipient(
            1,
            &[("email", "a@example.com"), ("name", "Ann & Bob")],
        ))
        .unwrap();
    assert_eq!(
        d.text.as_deref(),
        Some("# Hello Ann & Bob\n\n* one\n* two\n")
    );
    let html = d.html.unwrap();
    assert!(html.contains("<h1>Hello Ann &amp; Bob</h1>"), "{html}");
    assert!(html.contains("<li>one</li>"), "{html}");
}

#[test]
fn local_images_become_inline_parts() {
    let fx = Fixture::new();
    fx.write("job/img/logo.png", "PNGDATA");
    fx.write(
            "job/body.html",
            "<img alt=x src=\"img/logo.png\"><img src='img/logo.png'><img src=\"https://e.com/a.png\"><img src=\"cid:k\">",
        );
    let mut job = fx.job("job", "subject: x\n");
    job.html = Some("body.html".into());
    let r = Renderer::new(&job).unwrap();
    let d = r
        .render(&recipient(2, &[("email", "a@example.com")]))
        .unwrap();
    assert_eq!(d.attachments.len(), 1);
    let a = &d.attachments[0];
    assert_eq!(a.content_id.as_deref(), Some("img1.row2@mailshot"));
    assert_eq!(a.content_type, "image/png");
    assert_eq!(a.data.as_bytes(), b"PNGDATA");
    assert_eq!(
            d.html.as_deref(),
            Some("<img alt=x src=\"cid:img1.row2@mailshot\"><img src='cid:img1.row2@mailshot'><img src=\"https://e.com/a.png\"><img src=\"cid:k\">")
        );
}

/// An attachment path made from a value must stay inside the job folder;
/// the same path written literally in the job may leave it.
#[test]
fn rendered_attachment_paths_stay_in_the_job_folder() {
    let fx = Fixture::new();
    fx.write("secret.txt", "SECRET");
    fx.write("job/docs/a.txt", "A");
    let mut job = fx.job("job", "subject: x\n");
    std::os::unix::fs::symlink(fx.dir.path().join("secret.txt"), job.dir.join("link")).unwrap();
    job.attachments = vec![AttachmentSpec {
        path: "{{ file }}".into(),
        name: None,
    }];
    let r = Renderer::new(&job).unwrap();
    let row =
        |n, file: &str| r.render(&recipient(n, &[("email", "a@example.com"), ("file", file)]));
    assert_eq!(
        row(1, "docs/a.txt").unwrap().attachments[0].data.as_bytes(),
        b"A"
    );
    for (n, bad) in [
        (2, "../secret.txt"),
        (3, "docs/../../secret.txt"),
        (4, "/etc/passwd"),
        (5, "link"),
    ] {
        let diags = row(n, bad).unwrap_err();
        assert_eq!(diags.len(), 1, "{bad}: {diags:#?}");
        let d = &diags[0];
        assert_eq!(d.location.row, Some(n));
        assert!(d.message.contains(bad), "{}", d.message);
        assert!(
            d.message.contains("outside the job's folder"),
            "{}",
            d.message
        );
    }

    job.attachments[0].path = "../secret.txt".into();
    let r = Renderer::new(&job).unwrap();
    let d = r
        .render(&recipient(1, &[("email", "a@example.com")]))
        .unwrap();
    assert_eq!(d.attachments[0].data.as_bytes(), b"SECRET");
}

#[test]
fn values_in_markdown_cannot_make_images_links_or_html() {
    let fx = Fixture::new();
    fx.write(
        "job/letter.md",
        "Hello {{ name }}\n\n![logo](img/logo.png)\n",
    );
    fx.write("job/img/logo.png", "PNG");
    let mut job = fx.job("job", "subject: x\n");
    job.markdown = Some("letter.md".into());
    let r = Renderer::new(&job).unwrap();
    for evil in [
        "![x](/proc/self/environ)",
        "<img src=\"/etc/passwd\">",
        "[a](img/logo.png) ![b](img/logo.png)",
        "\n\n<img src='/etc/hostname'>",
        "&lt;img src=/etc/passwd&gt;",
    ] {
        let d = r
            .render(&recipient(1, &[("email", "a@example.com"), ("name", evil)]))
            .unwrap_or_else(|e| panic!("{evil}: {e:#?}"));
        // Only the template's own image is attached.
        assert_eq!(d.attachments.len(), 1, "{evil}: {:#?}", d.attachments);
        assert_eq!(d.attachments[0].data.as_bytes(), b"PNG");
        let html = d.html.unwrap();
        assert_eq!(html.matches("<img").count(), 1, "{evil}: {html}");
        assert!(!html.contains("<a "), "{evil}: {html}");
        // The text part shows the value as it is.
        let text = d.text.unwrap();
        assert!(text.contains(evil.trim_start()), "{evil}: {text}");
    }
}

#[test]
fn markdown_escaping_keeps_ordinary_merges_and_safe_opts_out() {
    let fx = Fixture::new();
    fx.write(
            "job/letter.md",
            "Dear {{ name }}, see [your page](https://example.com/u/{{ id }}?e={{ email | urlencode }}).\n\n{{ extra | safe }}\n",
        );
    let mut job = fx.job("job", "subject: x\n");
    job.markdown = Some("letter.md".into());
    let r = Renderer::new(&job).unwrap();
    let d = r
        .render(&recipient(
            1,
            &[
                ("email", "a+b@example.com"),
                ("name", "O'Neil *Jr.*"),
                ("id", "7-b"),
                ("extra", "**bold**"),
            ],
        ))
        .unwrap();
    let html = d.html.unwrap();
    assert!(html.contains("Dear O'Neil *Jr.*,"), "{html}");
    assert!(
        html.contains("href=\"https://example.com/u/7-b?e=a%2Bb%40example.com\""),
        "{html}"
    );
    assert!(html.contains("<strong>bold</strong>"), "{html}");
    assert!(d.text.unwrap().starts_with("Dear O'Neil *Jr.*, see"));
}

#[test]
fn img_src_values_are_entity_decoded_and_confined() {
    let fx = Fixture::new();
    fx.write("job/img/logo.png", "LOGO");
    fx.write("job/img/o'brien.png", "OB");
    fx.write("shared.png", "SHARED");
    fx.write("secret.png", "SECRET");
    fx.write(
        "job/body.html",
        "<img src=\"{{ pic }}\"><img src=\"../shared.png\"><img src=\"img&#x2f;logo&period;png\">",
    );
    let mut job = fx.job("job", "subject: x\n");
    job.html = Some("body.html".into());
    let r = Renderer::new(&job).unwrap();
    let row = |n, pic: &str| r.render(&recipient(n, &[("email", "a@example.com"), ("pic", pic)]));
    let d = row(1, "img/logo.png").unwrap();
    let data: Vec<&[u8]> = d.attachments.iter().map(|a| a.data.as_bytes()).collect();
    assert_eq!(data, [&b"LOGO"[..], b"SHARED", b"LOGO"]);
    assert_eq!(
        row(2, "img/o'brien.png").unwrap().attachments[0]
            .data
            .as_bytes(),
        b"OB"
    );
    // The literal `../shared.png` is the job's own (a value that repeats
    // it gets that same file); any other path out is refused.
    assert!(row(3, "../shared.png").is_ok());
    for (n, bad) in [
        (4, "../secret.png"),
        (5, "/etc/passwd"),
        (6, "img/../../secret.png"),
    ] {
        let diags = row(n, bad).unwrap_err();
        assert_eq!(diags.len(), 1, "{diags:#?}");
        assert!(diags[0].message.contains(bad), "{}", diags[0].message);
        assert!(diags[0].message.contains("outside"), "{}", diags[0].message);
        assert_eq!(diags[0].location.row, Some(n));
    }
}

#[test]
fn template_names_stay_in_the_job_folder_and_nearby_templates_folders() {
    let fx = Fixture::new();
    fx.write("a/templates/far.txt", "far");
    fx.write("a/b/templates/near.txt", "near");
    fx.write("a/b/c/secret.txt", "secret");
    fx.write("a/b/c/job/body.txt", "{% include \"near.txt\" %}");
    let mut job = fx.job("a/b/c/job", "subject: x\n");
    job.text = Some("body.txt".into());
    let r = Renderer::new(&job).unwrap();
    let d = r
        .render(&recipient(1, &[("email", "a@example.com")]))
        .unwrap();
    assert_eq!(d.text.as_deref(), Some("near"));

    for (include, want) in [
        ("far.txt", "not found"),
        ("../secret.txt", "refused"),
        ("/etc/hostname", "refused"),
        ("templates/../../secret.txt", "refused"),
    ] {
        fx.write(
            "a/b/c/job/body.txt",
            &format!("{{% include \"{include}\" %}}"),
        );
        let diags = invalid(Renderer::new(&job));
        assert_eq!(diags.len(), 1, "{include}: {diags:#?}");
        assert!(diags[0].message.contains(include), "{}", diags[0].message);
        assert!(diags[0].message.contains(want), "{}", diags[0].message);
        assert!(diags[0].location.file.ends_with("body.txt"), "{diags:#?}");
    }
}

#[test]
fn a_file_every_row_attaches_is_read_once() {
    let fx = Fixture::new();
    fx.write("job/terms.pdf", "%PDF terms");
    fx.write("job/logo.png", "PNG");
    fx.write(
        "job/body.html",
        "<img src=\"logo.png\"><img src=\"{{ pic }}\">",
    );
    let mut job = fx.job("job", "subject: x\n");
    job.html = Some("body.html".into());
    job.attachments = vec![
        AttachmentSpec {
            path: "terms.pdf".into(),
            name: None,
        },
        AttachmentSpec {
            path: "{{ doc }}".into(),
            name: None,
        },
    ];
    let r = Renderer::new(&job).unwrap();
    let rows = r.rows();
    let drafts: Vec<Draft> = (1..=50)
        .map(|n| {
            rows.render(&recipient(
                n,
                &[
                    ("email", "a@example.com"),
                    ("doc", "terms.pdf"),
                    ("pic", "logo.png"),
                ],
            ))
            .unwrap()
        })
        .collect();
    assert_eq!(r.disk.reads(), 2, "terms.pdf and logo.png, once each");
    let first = &drafts[0].attachments;
    // The value repeats the literal image, which is one part per message.
    assert_eq!(first.len(), 3);
    for d in &drafts {
        for (a, b) in d.attachments.iter().zip(first) {
            assert!(Arc::ptr_eq(&a.data, &b.data), "the bytes are shared");
        }
    }
}

#[test]
fn max_attachment_size_refuses_larger_files_and_non_regular_ones() {
    let fx = Fixture::new();
    fx.write("job/big.bin", &"x".repeat(2_000));
    fx.write("job/small.bin", "ok");
    fx.write("job/body.html", "<img src=\"big.bin\">");
    let mut job = fx.job("job", "subject: x\n");
    job.max_attachment_size = 1_000;
    job.attachments = vec![AttachmentSpec {
        path: "{{ f }}".into(),
        name: None,
    }];
    let r = Renderer::new(&job).unwrap();
    let row = |f: &str| r.render(&recipient(3, &[("email", "a@example.com"), ("f", f)]));
    assert!(row("small.bin").is_ok());
    let diags = row("big.bin").unwrap_err();
    assert!(diags[0].message.contains("big.bin"), "{}", diags[0].message);
    assert!(
        diags[0].message.contains("max_attachment_size (1KB)"),
        "{}",
        diags[0].message
    );
    assert_eq!(r.disk.reads(), 1, "the big file was never read");

    job.attachments[0].path = "/dev/zero".into();
    let r = Renderer::new(&job).unwrap();
    let diags = r
        .render(&recipient(1, &[("email", "a@example.com")]))
        .unwrap_err();
    assert!(
        diags[0].message.contains("/dev/zero"),
        "{}",
        diags[0].message
    );
    assert!(
        diags[0].message.contains("not a regular file"),
        "{}",
        diags[0].message
    );

    job.attachments.clear();
    job.html = Some("body.html".into());
    let r = Renderer::new(&job).unwrap();
    let diags = r
        .render(&recipient(1, &[("email", "a@example.com")]))
        .unwrap_err();
    assert!(
        diags[0].message.contains("max_attachment_size"),
        "{}",
        diags[0].message
    );
}

#[test]
fn renderer_can_move_to_a_render_thread() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Renderer>();
}

/// its CSV with the real reader.
fn render_sample(name: &str) -> Vec<Draft> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name)
        .join("job.yaml");
    let job = crate::job::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
    let renderer = Renderer::new(&job).unwrap_or_else(|e| panic!("{e}"));
    crate::compose::recipients::RecipientReader::open(&job.recipients)
        .unwrap()
        .map(|rec| {
            let rec = rec.unwrap_or_else(|d| panic!("{d}"));
            renderer
                .render(&rec)
                .unwrap_or_else(|d| panic!("row {}: {d:#?}", rec.row))
        })
        .collect()
}

fn parse_back(d: &Draft) -> Vec<u8> {
    let opts = crate::compose::mime::MimeOptions {
        date: 1_793_611_800,
        message_id: crate::compose::mime::message_id("sample", d.row, d.from.as_ref().unwrap()),
    };
    crate::compose::mime::build(d, &opts).to_vec()
}

#[test]
fn sample_newsletter_renders_every_row_in_its_language() {
    use mail_parser::MessageParser;
    let drafts = render_sample("newsletter");
    assert!(drafts.len() >= 6);
    let zh = drafts
        .iter()
        .find(|d| d.email == "li.lei@example.com")
        .unwrap();
    assert!(zh.subject.contains("李雷，本月新茶到了"), "{}", zh.subject);
    assert!(zh.html.as_deref().unwrap().contains("lang=\"zh-CN\""));
    assert!(zh
        .html
        .as_deref()
        .unwrap()
        .contains("Acme Tea Club, 12 Harbour Road"));
    assert!(zh.text.as_deref().unwrap().contains("龙井"));
    let en = drafts
        .iter()
        .find(|d| d.email == "alice@example.org")
        .unwrap();
    assert!(en
        .subject
        .starts_with("Tea Letter, November 2026: Alice Walker"));
    assert!(en
        .text
        .as_deref()
        .unwrap()
        .starts_with("Hello Alice Walker,"));
    assert_eq!(
        en.headers,
        vec![("X-Campaign".to_string(), "2026-11".to_string())]
    );
    assert!(en.list_unsubscribe[0].starts_with("https://"));
    let bytes = parse_back(zh);
    let m = MessageParser::new().parse(&bytes).unwrap();
    assert_eq!(m.subject(), Some(zh.subject.as_str()));
    assert!(String::from_utf8_lossy(&bytes).contains("List-Unsubscribe-Post"));
}

#[test]
fn sample_merge_attaches_each_statement() {
    use mail_parser::{MessageParser, MimeHeaders};
    let drafts = render_sample("merge");
    assert_eq!(drafts.len(), 4);
    assert_eq!(drafts[0].attachments[0].name, "statement-1001.pdf");
    assert_eq!(drafts[0].cc[0].addr, "tom.ellis@northwind.example");
    assert!(drafts[1].cc.is_empty());
    let chinese = &drafts[2];
    assert_eq!(
        chinese.attachments[0].name,
        "对账单-东海贸易-2026年10月.pdf"
    );
    let m_bytes = parse_back(chinese);
    let m = MessageParser::new().parse(&m_bytes).unwrap();
    let a = m.attachment(0).unwrap();
    assert_eq!(a.attachment_name(), Some("对账单-东海贸易-2026年10月.pdf"));
    assert!(a.contents().starts_with(b"%PDF-1.4"));
}

#[test]
fn sample_notify_is_text_only() {
    let drafts = render_sample("notify");
    assert_eq!(drafts.len(), 3);
    assert!(drafts
        .iter()
        .all(|d| d.html.is_none() && d.attachments.is_empty()));
    assert_eq!(drafts[0].subject, "[mailshot] FAILED: nightly #412");
    assert!(drafts[0].text.as_deref().unwrap().contains("/builds/412\n"));
}
