//! Templates from the command line: `{% extends %}` / `{% include %}`
//! of files in the job's folder, strict undefined, HTML autoescape in the
//! HTML part only, `--var` reaching `job.*`, and `preview --row N`.

use super::{parse, JobDir};

#[test]
fn extends_and_include_resolve_in_the_jobs_folder() {
    let jd = JobDir::new();
    jd.dir.write(
        "parts/base.txt",
        "== {% block title %}{% endblock %} ==\n{% block body %}{% endblock %}\n{% include \"parts/sig.txt\" %}\n",
    );
    jd.dir.write("parts/sig.txt", "-- signed for {{ name }}");
    jd.dir.write(
        "body.txt",
        "{% extends \"parts/base.txt\" %}{% block title %}Edition {{ job.edition }}{% endblock %}{% block body %}Dear {{ name }}{% endblock %}",
    );
    jd.dir.write(
        "body.html",
        "{% extends \"parts/base.html\" %}{% block body %}<p>Dear {{ name }}</p>{% endblock %}",
    );
    jd.dir.write(
        "parts/base.html",
        "<html><body>{% block body %}{% endblock %}<footer>{% include \"parts/sig.txt\" %}</footer></body></html>",
    );
    jd.csv("email,name\nann@example.com,Ann\nbob@example.com,Bob\n");
    jd.job(
        "from: \"Sender <sender@example.com>\"\nsubject: S\ntext: body.txt\nhtml: body.html\nvars: { edition: 7 }\nrecipients:\n  file: r.csv\n",
    );
    let msgs = jd.dry_run();
    for (row, name) in [(1, "Ann"), (2, "Bob")] {
        let msg = parse(&msgs[&row]);
        let text = msg.body_text(0).unwrap();
        assert_eq!(
            text.replace("\r\n", "\n").trim_end(),
            format!("== Edition 7 ==\nDear {name}\n-- signed for {name}")
        );
        let html = msg.body_html(0).unwrap();
        assert!(
            html.contains(&format!(
                "<p>Dear {name}</p><footer>-- signed for {name}</footer>"
            )),
            "{html}"
        );
    }
}

#[test]
fn a_missing_include_is_named_with_the_including_file() {
    let jd = JobDir::new();
    jd.dir.write("body.txt", "Hi\n{% include \"nope.txt\" %}\n");
    jd.csv("email,name\nann@example.com,Ann\n");
    jd.job(&super::simple_job(""));
    let check = jd.run(&["check", "job.yaml"]);
    assert!(
        matches!(check.code, 65 | 66),
        "exit {:?}: {}",
        check.code,
        check.stderr
    );
    assert!(check.stderr.contains("nope.txt"), "{}", check.stderr);
}

#[test]
fn html_is_autoescaped_in_the_html_part_only() {
    let jd = JobDir::new();
    jd.dir.write("body.txt", "Hi {{ name }}\n");
    jd.dir.write("body.html", "<p>Hi {{ name }}</p>\n");
    jd.csv("email,name\nann@example.com,\"<b>Tom & \"\"Jerry\"\"</b>\"\n");
    jd.job(
        "from: \"Sender <sender@example.com>\"\nsubject: \"Hi {{ name }}\"\ntext: body.txt\nhtml: body.html\nrecipients:\n  file: r.csv\n",
    );
    let msgs = jd.dry_run();
    let raw = &msgs[&1];
    let msg = parse(raw);
    let value = "<b>Tom & \"Jerry\"</b>";
    assert_eq!(msg.subject(), Some(format!("Hi {value}").as_str()));
    assert_eq!(msg.body_text(0).unwrap().trim_end(), format!("Hi {value}"));
    let html = msg.body_html(0).unwrap();
    assert!(
        !html.contains("<b>"),
        "markup from the CSV must not reach the HTML: {html}"
    );
    assert!(html.contains("&lt;b&gt;Tom &amp; "), "{html}");
    assert!(html.contains("Jerry"), "{html}");
    assert!(!html.contains("</b>"), "{html}");
}

#[test]
fn strict_undefined_rejects_a_typo_even_inside_a_filter_or_condition() {
    // Lenient engines print "" for a typo; strict undefined must stop the job.
    for body in [
        "{{ nmae | upper }}",
        "{% if nmae %}x{% endif %}",
        "{{ job.nope }}",
    ] {
        let jd = JobDir::new();
        jd.dir.write("body.txt", format!("Hi\n{body}\n"));
        jd.csv("email,name\nann@example.com,Ann\n");
        jd.job(&super::simple_job(""));
        let check = jd.run(&["check", "job.yaml"]);
        check.expect_code(65);
        assert!(
            check.stderr.contains("body.txt:2"),
            "{body}: {}",
            check.stderr
        );
        // ...while an explicit `is defined` test is the way to make one optional.
        jd.dir.write(
            "body.txt",
            "Hi\n{% if nmae is defined %}{{ nmae }}{% endif %}\n",
        );
        jd.run(&["check", "job.yaml"]).expect_code(0);
    }
}

#[test]
fn var_option_reaches_job_vars_and_overrides_the_file() {
    let jd = JobDir::new();
    jd.dir.write(
        "body.txt",
        "Campaign {{ job.campaign }} by {{ job.team }}\n",
    );
    jd.csv("email,name\nann@example.com,Ann\n");
    jd.job(&super::simple_job(
        "vars: { campaign: spring, team: sales }",
    ));
    let plain = jd.run(&["preview", "job.yaml"]);
    plain.expect_code(0);
    let text = parse(&plain.raw_stdout).body_text(0).unwrap().into_owned();
    assert_eq!(text.trim_end(), "Campaign spring by sales");

    let with_var = jd.run(&[
        "preview",
        "job.yaml",
        "--var",
        "campaign=autumn 2026",
        "--var",
        "extra=x=y",
    ]);
    with_var.expect_code(0);
    let text = parse(&with_var.raw_stdout)
        .body_text(0)
        .unwrap()
        .into_owned();
    assert_eq!(text.trim_end(), "Campaign autumn 2026 by sales");

    // A variable that only exists through --var.
    jd.dir.write("body.txt", "Extra {{ job.extra }}\n");
    let only = jd.run(&["preview", "job.yaml", "--var", "extra=x=y"]);
    only.expect_code(0);
    let text = parse(&only.raw_stdout).body_text(0).unwrap().into_owned();
    assert_eq!(text.trim_end(), "Extra x=y");
    jd.run(&["check", "job.yaml"]).expect_code(65);

    // --var without '=' is a usage error.
    jd.run(&["preview", "job.yaml", "--var", "extra"])
        .expect_code(64);
}

#[test]
fn preview_row_prints_that_row_and_row_number_is_a_variable() {
    let jd = JobDir::new();
    jd.dir
        .write("body.txt", "You are number {{ row }}, {{ name }}\n");
    jd.csv(
        "email,name\na@example.com,Ann\nb@example.com,Bob\nc@example.com,Cy\nd@example.com,Dee\n",
    );
    jd.job(&super::simple_job(""));
    let p = jd.run(&["preview", "job.yaml", "--row", "3"]);
    p.expect_code(0);
    let msg = parse(&p.raw_stdout);
    assert_eq!(
        msg.to().and_then(|a| a.first()).and_then(|a| a.address()),
        Some("c@example.com")
    );
    assert_eq!(msg.subject(), Some("Hello Cy"));
    assert_eq!(msg.body_text(0).unwrap().trim_end(), "You are number 3, Cy");
    // Default row is 1.
    let p1 = jd.run(&["preview", "job.yaml"]);
    p1.expect_code(0);
    assert_eq!(parse(&p1.raw_stdout).subject(), Some("Hello Ann"));
    // Out of range and zero are usage errors that say how many rows there are.
    let p9 = jd.run(&["preview", "job.yaml", "--row", "9"]);
    p9.expect_code(64);
    assert!(p9.stderr.contains('4'), "{}", p9.stderr);
    jd.run(&["preview", "job.yaml", "--row", "0"])
        .expect_code(64);
}
