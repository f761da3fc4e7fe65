//! The table's promises: each example reply finds its own entry, the
//! families mean what their providers say, every entry is explained and
//! sourced, and `docs/providers.md` shows every entry.

use super::table::TABLE;
use super::*;
use crate::smtp::reply::ReplyParser;

/// `line` as the client would parse it off the wire.
fn reply(line: &str) -> Reply {
    let mut p = ReplyParser::new();
    p.feed(line.as_bytes());
    p.feed(b"\r\n");
    p.next_reply().unwrap().expect("a whole reply")
}

fn meaning(line: &str) -> Option<Meaning> {
    explain(&reply(line)).map(|k| k.meaning)
}

#[test]
fn every_example_is_recognised_by_its_own_entry() {
    for (i, entry) in TABLE.iter().enumerate() {
        let r = reply(entry.example);
        let enhanced = r.enhanced.map(|e| e.to_string());
        let first = TABLE
            .iter()
            .position(|e| e.matches(Some(r.code), enhanced.as_deref(), &r.text().to_lowercase()));
        assert_eq!(
            first,
            Some(i),
            "{:?} is taken by another entry",
            entry.example
        );
        assert_eq!(explain(&r), Some(entry.known));
    }
}

#[test]
fn no_entry_lacks_an_explanation_or_a_source() {
    for entry in TABLE {
        assert!(
            !entry.known.explanation.trim().is_empty(),
            "{}",
            entry.example
        );
        assert!(!entry.known.source.trim().is_empty(), "{}", entry.example);
        assert!(!entry.provider.trim().is_empty(), "{}", entry.example);
        // One line: it goes next to the server's text in a summary line.
        assert!(!entry.known.explanation.contains('\n'), "{}", entry.example);
        // Texts are matched against the lowercased reply.
        for t in entry.texts {
            assert_eq!(*t, t.to_lowercase(), "{}", entry.example);
        }
    }
}

/// The row `docs/providers.md` shows for an entry.
fn doc_row((provider, example, known): (&str, &str, Known)) -> String {
    format!(
        "| {provider} | `{example}` | {} | {} | {} |",
        known.meaning.as_str(),
        known.explanation,
        known.source
    )
}

#[test]
fn the_providers_doc_shows_every_entry() {
    let doc = include_str!("../../../docs/providers.md");
    let missing: Vec<String> = entries()
        .map(doc_row)
        .filter(|row| !doc.lines().any(|l| l == row))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/providers.md lacks these rows:\n{}",
        missing.join("\n")
    );
    // Nor does the doc keep a row the table no longer has.
    let rows = doc
        .lines()
        .skip_while(|l| !l.starts_with("| provider | reply (example) |"))
        .skip(2)
        .take_while(|l| l.starts_with("| "))
        .count();
    assert_eq!(rows, entries().count());
}

#[test]
fn gmail_quota_and_rate_replies_are_limits() {
    for line in [
        "550 5.4.5 Daily user sending quota exceeded. abc.123 - gsmtp",
        "550 5.4.5 Daily SMTP relay limit exceeded for user. - gsmtp",
        "421 4.7.28 [192.0.2.1] Gmail has detected an unusual rate of mail originating from \
         your DKIM domain - gsmtp",
        "421 4.7.0 Try again later, closing connection. (EHLO) - gsmtp",
        "450 4.2.1 Peak SMTP relay limit exceeded for customer. - gsmtp",
    ] {
        assert!(is_limit(&reply(line)), "{line}");
    }
}

#[test]
fn replies_about_the_recipient_are_not_sender_limits() {
    for line in [
        "452 4.2.2 The email account that you tried to reach is over quota. - gsmtp",
        "450 4.2.1 The user you are trying to contact is receiving mail too quickly. - gsmtp",
        "550 Mailbox unavailable or access denied",
        "550 5.1.1 The email account that you tried to reach does not exist.",
    ] {
        assert!(!is_limit(&reply(line)), "{line}");
    }
    // A full mailbox is still explained.
    assert_eq!(
        meaning("452 4.2.2 The email account that you tried to reach is over quota."),
        Some(Meaning::Other)
    );
    assert_eq!(meaning("550 5.1.1 No such user"), None);
}

#[test]
fn policy_4_7_replies_from_any_server_are_limits_but_greylisting_is_not() {
    assert!(is_limit(&reply(
        "421 4.7.0 Too many connections from your host"
    )));
    assert!(is_limit(&reply(
        "452 4.7.1 Rate limit reached for this sender"
    )));
    // The same class of code on a different reply is not a limit.
    assert!(!is_limit(&reply(
        "454 4.7.0 Temporary authentication failure"
    )));
    assert!(!is_limit(&reply("550 5.7.1 Relaying denied")));
    assert_eq!(
        meaning(
            "450 4.7.1 <a@example.org>: Recipient address rejected: Greylisted for 300 seconds"
        ),
        Some(Meaning::Other)
    );
    // Policy checks that defer are not rate limits either.
    for line in [
        "450 4.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.1]",
        "450 4.7.1 <x@example.org>: Sender address rejected: Domain not found",
        "421 4.7.0 TLS required for RCPT domain, closing connection.",
        "421 4.7.0 IP not in whitelist for RCPT domain, closing connection.",
    ] {
        assert_eq!(meaning(line), Some(Meaning::Other), "{line}");
    }
}

#[test]
fn qq_frequency_replies_are_limits_and_its_content_refusal_is_content() {
    for line in [
        "550 Ip frequency limited. http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022",
        "550 Connection frequency limited",
        "550 Sender frequency limited. http://service.exmail.qq.com/cgi-bin/help?no=1000723",
        "550 Domain frequency limited",
    ] {
        assert!(is_limit(&reply(line)), "{line}");
    }
    assert_eq!(meaning("550 Mail content denied."), Some(Meaning::Content));
}

#[test]
fn netease_codes_mean_what_netease_says() {
    for line in [
        "450 MI:CEL 发送方出现过多的错误指令。请检查发信程序",
        "451 RP:QRC 163 smtp9,DcCowAD3,1 please see http://mail.163.com/help/help_spam_16.htm",
        "550 MI:STC 163 smtp3 please see http://mail.163.com/help/help_spam_16.htm",
        "550 RP:TRC 发件人当天内累计邮件数量超过限制",
        "421 HL:ICC 该IP同时并发连接数过大",
        "451 MI:DMC 当前连接发送的邮件数量超出限制",
    ] {
        assert!(is_limit(&reply(line)), "{line}");
    }
    let spm = explain(&reply(
        "554 DT:SPM 163 smtp14,EsCowAD3 please see help_spam_16.htm",
    ))
    .unwrap();
    assert_eq!(spm.meaning, Meaning::Content);
    assert_eq!(
        spm.explanation,
        "content flagged as spam: change the content, retrying will not help"
    );
    // Case does not matter.
    assert_eq!(meaning("554 dt:spm"), Some(Meaning::Content));
}

#[test]
fn sender_and_service_rules_are_explained_not_limits() {
    for line in [
        "553 Mail from must equal authorized user",
        "501 mail from address must be same as authorization user",
        "553 Local user only,163 smtp5,HdxpCgA3f+63sTNhtiNZDA--.2001S2 1630777785",
        "550 User has no permission",
        "530 5.7.0 Authentication required",
        "530 Error: A secure connection is requiered(such as ssl).",
        "554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied",
    ] {
        assert_eq!(meaning(line), Some(Meaning::Other), "{line}");
    }
    let login = explain(&reply("553 Mail from must equal authorized user")).unwrap();
    assert!(
        login.explanation.contains("smtp.username"),
        "{}",
        login.explanation
    );
    let service = explain(&reply("530 5.7.0 Authentication required")).unwrap();
    assert!(
        service.explanation.contains("enabled"),
        "{}",
        service.explanation
    );
}

#[test]
fn outlook_and_yahoo_replies() {
    for line in [
        "451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77719)",
        "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected \
         volume or user complaints - 4.16.55.1",
        "554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; WASCL UserAction \
         verdict is not None. Actual verdict is RefuseQuota",
        "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
        "550 5.1.8 Access denied, bad outbound sender AS(42004)",
    ] {
        assert!(is_limit(&reply(line)), "{line}");
    }
    assert_eq!(
        meaning(
            "550 5.7.520 Message blocked because it contains content identified as spam. AS(4810)"
        ),
        Some(Meaning::Content)
    );
    assert_eq!(
        meaning("550 5.7.520 Access denied, Your organization does not allow external forwarding."),
        Some(Meaning::Other)
    );
}

#[test]
fn explain_parts_reads_what_the_report_keeps() {
    let k = explain_parts(
        Some(550),
        Some("5.4.5"),
        "Daily user sending quota exceeded.",
    )
    .unwrap();
    assert_eq!(k.meaning, Meaning::Limit);
    assert_eq!(
        explain_parts(Some(554), None, "DT:SPM 163 smtp14").map(|k| k.meaning),
        Some(Meaning::Content)
    );
    // No code (a lost connection) matches only entries that need none: none do.
    assert_eq!(explain_parts(None, None, "connection lost"), None);
    assert_eq!(explain_parts(None, None, "DT:SPM"), None);
}
