//! The table itself: first match wins, so specific provider texts come
//! before the general rules at the end. Every entry carries an example reply
//! (which it must recognise) and its source; `docs/providers.md` shows the
//! same rows.

use super::{Entry, Known, Meaning};

const GMAIL_ERRORS: &str = "Google Workspace Admin Help: Gmail SMTP errors and codes";
const GMAIL_LIMITS: &str = "Google Workspace Admin Help: Gmail sending limits in Google Workspace";
const QQ_BOUNCES: &str = "QQ邮箱帮助中心: 退信代码说明 (550 频率限制 / 内容拒绝)";
const NETEASE_BOUNCES: &str = "网易邮箱帮助: 企业退信的常见问题 (退信代码说明)";
const NETEASE_SMTP: &str = "网易邮箱帮助: 客户端设置 POP3/SMTP/IMAP 与授权码";
const EXO_LIMITS: &str = "Microsoft Learn: Exchange Online limits (sending limits)";

const LOGIN_ONLY: &str = "the provider accepts only the login's own address as sender: set `from` \
                          and `return_path` to the address of smtp.username";

/// The known replies, most specific first.
pub(super) static TABLE: &[Entry] = &[
    // ---- Gmail / Google Workspace
    Entry {
        provider: "Gmail",
        example: "550 5.4.5 Daily user sending quota exceeded.",
        codes: &[550],
        enhanced: Some("5.4.5"),
        texts: &[],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "the account's daily sending quota is used up; the rest waits for \
                          another relay or a later run",
            source: GMAIL_LIMITS,
        },
    },
    Entry {
        provider: "Gmail",
        example: "450 4.2.1 Peak SMTP relay limit exceeded for customer.",
        codes: &[450],
        enhanced: Some("4.2.1"),
        texts: &["relay limit"],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "the account is over the SMTP relay's short-term peak rate; \
                          the message is sent later",
            source: GMAIL_ERRORS,
        },
    },
    Entry {
        provider: "Gmail",
        example: "450 4.2.1 The user you are trying to contact is receiving mail too quickly.",
        codes: &[450],
        enhanced: Some("4.2.1"),
        texts: &["receiving mail"],
        known: Known {
            meaning: Meaning::Other,
            explanation: "this recipient is receiving mail too fast (a limit on the recipient, \
                          not on the sender); retried later",
            source: GMAIL_ERRORS,
        },
    },
    Entry {
        provider: "Gmail",
        example: "421 4.7.28 Our system has detected an unusual rate of unsolicited mail \
                  originating from your IP address.",
        codes: &[421, 450, 451],
        enhanced: Some("4.7.28"),
        texts: &[],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "Gmail is rate-limiting mail from this IP address or DKIM domain; \
                          lower `rate`, the message is sent later",
            source: GMAIL_ERRORS,
        },
    },
    Entry {
        provider: "Gmail",
        example: "421 4.7.0 Try again later, closing connection.",
        codes: &[421],
        enhanced: Some("4.7.0"),
        texts: &["try again later, closing connection", "unusual rate"],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "Gmail is throttling this sender's connections; the message is sent \
                          later",
            source: GMAIL_ERRORS,
        },
    },
    Entry {
        provider: "Gmail",
        example: "452 4.2.2 The email account that you tried to reach is over quota.",
        codes: &[452],
        enhanced: Some("4.2.2"),
        texts: &[],
        known: Known {
            meaning: Meaning::Other,
            explanation: "the recipient's mailbox is full (about the recipient, not a limit \
                          on the sender); retried later",
            source: GMAIL_ERRORS,
        },
    },
    // ---- Yahoo
    Entry {
        provider: "Yahoo",
        example: "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to \
                  unexpected volume or user complaints",
        codes: &[421],
        enhanced: None,
        texts: &["[tss0", "[ts0"],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "Yahoo defers mail from this IP address for its volume or user \
                          complaints; the message is sent later (Yahoo suggests hours)",
            source: "Yahoo Sender Hub: SMTP error codes",
        },
    },
    // ---- Outlook.com / Microsoft 365
    Entry {
        provider: "Outlook / Microsoft 365",
        example: "451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (AS770)",
        codes: &[451],
        enhanced: Some("4.7."),
        texts: &["server busy"],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "Microsoft is throttling mail from this IP address (often a new or \
                          unknown sender); the message is sent later",
            source: "Microsoft Learn: Fix email delivery issues for error code 451 \
                     4.7.500-699 (ASxxx) in Exchange Online",
        },
    },
    Entry {
        provider: "Outlook / Microsoft 365",
        example: "550 5.7.520 Message blocked because it contains content identified as spam. \
                  AS(4810)",
        codes: &[550, 554],
        enhanced: Some("5.7.520"),
        texts: &["spam"],
        known: Known {
            meaning: Meaning::Content,
            explanation: "content flagged as spam: change the content, retrying will not help",
            source: "Microsoft Q&A: Outlook.com: Legitimate Receipt Forwards Now Blocked with \
                     550 5.7.520 \"Content Identified as Spam\"",
        },
    },
    Entry {
        provider: "Outlook / Microsoft 365",
        example: "550 5.7.520 Access denied, Your organization does not allow external \
                  forwarding. AS(7555)",
        codes: &[550],
        enhanced: Some("5.7.520"),
        texts: &["forwarding"],
        known: Known {
            meaning: Meaning::Other,
            explanation: "the Microsoft 365 organisation does not allow mail to be forwarded \
                          to outside addresses; its admin must allow it",
            source: "Microsoft Learn: Configuring and controlling external email forwarding \
                     in Microsoft 365",
        },
    },
    Entry {
        provider: "Outlook / Microsoft 365",
        example: "554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.\
                  MapiExceptionSendAsDenied; Failed to process message",
        codes: &[550, 554],
        enhanced: None,
        texts: &["sendasdenied"],
        known: Known {
            meaning: Meaning::Other,
            explanation: "the login may not send as this From address: use the account's own \
                          address, or give the login Send As rights",
            source: "Microsoft Learn: Manage permissions for recipients in Exchange Online \
                     (Send As)",
        },
    },
    Entry {
        provider: "Outlook / Microsoft 365",
        example: "554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; WASCL \
                  UserAction verdict is not None. Actual verdict is RefuseQuota",
        codes: &[550, 554],
        enhanced: None,
        texts: &["outboundspamexception", "refusequota"],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "Outlook.com stopped this account's sending (daily sending limit \
                          reached, or suspected spam); verify the account and send later",
            source: "Microsoft Support: Sending limits in Outlook.com",
        },
    },
    Entry {
        provider: "Outlook / Microsoft 365",
        example: "550 5.2.2 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; \
                  Failed to process message",
        codes: &[550, 554],
        enhanced: None,
        texts: &["submissionquotaexceeded"],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "the mailbox is over Exchange Online's recipient rate limit \
                          (recipients per day); the rest is sent later",
            source: EXO_LIMITS,
        },
    },
    Entry {
        provider: "Outlook / Microsoft 365",
        example: "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
        codes: &[432, 451, 452],
        enhanced: None,
        texts: &["sender thread limit"],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "too many simultaneous sessions for this account; lower \
                          smtp.sessions, the message is sent later",
            source: EXO_LIMITS,
        },
    },
    Entry {
        provider: "Outlook / Microsoft 365",
        example: "550 5.1.8 Access denied, bad outbound sender AS(42004)",
        codes: &[550],
        enhanced: Some("5.1.8"),
        texts: &["bad outbound sender"],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "Exchange Online blocked this account as a suspected spam source \
                          after it exceeded sending limits; an admin must unblock it",
            source: "Microsoft Learn: Remove blocked users from the Restricted entities page",
        },
    },
    // ---- QQ Mail
    Entry {
        provider: "QQ",
        example: "550 Ip frequency limited. http://service.mail.qq.com/cgi-bin/help?\
                  subtype=1&&id=20022&&no=1000725",
        codes: &[421, 450, 451, 550, 554],
        enhanced: None,
        texts: &["frequency limited"],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "QQ Mail limits how much one IP address, domain or sender sends per \
                          minute, hour and day; the message is sent later",
            source: QQ_BOUNCES,
        },
    },
    Entry {
        provider: "QQ",
        example: "550 Mail content denied. http://service.mail.qq.com/cgi-bin/help?\
                  subtype=1&&id=20022&&no=1000726",
        codes: &[550, 554],
        enhanced: None,
        texts: &["content denied"],
        known: Known {
            meaning: Meaning::Content,
            explanation: "content flagged as spam: change the content, retrying will not help",
            source: QQ_BOUNCES,
        },
    },
    Entry {
        provider: "QQ",
        example: "550 Mailbox unavailable or access denied",
        codes: &[550],
        enhanced: None,
        texts: &["mailbox unavailable or access denied"],
        known: Known {
            meaning: Meaning::Other,
            explanation: "this recipient is receiving too much mail right now and QQ Mail \
                          blocks mail to it for a while",
            source: QQ_BOUNCES,
        },
    },
    Entry {
        provider: "QQ",
        example: "501 mail from address must be same as authorization user",
        codes: &[501, 550, 553],
        enhanced: None,
        texts: &["must be same as authorization user"],
        known: Known {
            meaning: Meaning::Other,
            explanation: LOGIN_ONLY,
            source: "QQ Mail's SMTP reply, as reported in nodeSolidServer/node-solid-server#1281 \
                     and fisharebest/webtrees#2370",
        },
    },
    // ---- NetEase: 163, 126, yeah.net
    Entry {
        provider: "163 / 126 (NetEase)",
        example: "553 Mail from must equal authorized user",
        codes: &[553, 550, 501],
        enhanced: None,
        texts: &["must equal authorized user"],
        known: Known {
            meaning: Meaning::Other,
            explanation: LOGIN_ONLY,
            source: "NetEase's SMTP reply (163 and 126), as reported in \
                     miguelgrinberg/flasky#540 and xuxueli/xxl-job#3858",
        },
    },
    Entry {
        provider: "163 / 126 (NetEase)",
        example: "553 Local user only,163 smtp5,HdxpCgA3f+63sTNhtiNZDA--.2001S2 1630777785",
        codes: &[553, 550],
        enhanced: None,
        texts: &["local user only"],
        known: Known {
            meaning: Meaning::Other,
            explanation: LOGIN_ONLY,
            source: "NetEase's SMTP reply, as reported in ruanyf/weather-action#5 (Coremail: \
                     \"Requested action not taken: Local user only\")",
        },
    },
    Entry {
        provider: "163 / 126 (NetEase)",
        example: "550 User has no permission",
        codes: &[550, 553],
        enhanced: None,
        texts: &["user has no permission"],
        known: Known {
            meaning: Meaning::Other,
            explanation: "the SMTP service is not enabled for this account: turn on POP3/SMTP \
                          in the web mail's settings and log in with the authorization code",
            source: NETEASE_SMTP,
        },
    },
    Entry {
        provider: "163 / 126 (NetEase)",
        example: "554 DT:SPM 163 smtp14,EsCowAD3pVdTrmBnSU2hAA--.5401S2 1734389331,please see \
                  http://mail.163.com/help/help_spam_16.htm?ip=192.0.2.1",
        codes: &[451, 550, 554],
        enhanced: None,
        texts: &["dt:spm"],
        known: Known {
            meaning: Meaning::Content,
            explanation: "content flagged as spam: change the content, retrying will not help",
            source: NETEASE_BOUNCES,
        },
    },
    Entry {
        provider: "163 / 126 (NetEase)",
        example: "554 DT:SUM envelope sender does not match the From header",
        codes: &[550, 554],
        enhanced: None,
        texts: &["dt:sum"],
        known: Known {
            meaning: Meaning::Other,
            explanation: "the envelope sender (`return_path`) differs from the From address; \
                          NetEase wants them equal",
            source: NETEASE_BOUNCES,
        },
    },
    Entry {
        provider: "163 / 126 (NetEase)",
        example: "421 HL:IFC 该IP短期内发送了大量信件，超过了网易的限制，被临时禁止连接",
        codes: &[421, 450, 451],
        enhanced: None,
        texts: &["hl:ifc", "hl:icc", "hl:rep", "hl:mep"],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "NetEase blocks connections from this IP address for a while (too \
                          many connections, too much mail, or many unknown recipients)",
            source: NETEASE_BOUNCES,
        },
    },
    Entry {
        provider: "163 / 126 (NetEase)",
        example: "450 MI:CEL 发送方出现过多的错误指令",
        codes: &[450, 451],
        enhanced: None,
        texts: &["mi:cel", "rp:cel", "mi:ccl", "rp:ccl"],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "NetEase saw too many failed commands from this sender (often \
                          invalid recipients) and refuses more for a while",
            source: NETEASE_BOUNCES,
        },
    },
    Entry {
        provider: "163 / 126 (NetEase)",
        example: "450 MI:DMC 当前连接发送的邮件数量超出限制",
        codes: &[450, 451],
        enhanced: None,
        texts: &["mi:dmc", "rp:drc"],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "too many messages or recipients on one connection; lower \
                          smtp.max_messages_per_session, the message is sent later",
            source: NETEASE_BOUNCES,
        },
    },
    Entry {
        provider: "163 / 126 (NetEase)",
        example: "451 RP:QRC 发信方短期内累计的收件人数量超过限制，该发件人被临时禁止发信",
        codes: &[450, 451],
        enhanced: None,
        texts: &["rp:qrc", "mi:sfq"],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "the sender reached too many recipients in a short time (NetEase \
                          counts per 15 minutes); the message is sent later",
            source: NETEASE_BOUNCES,
        },
    },
    Entry {
        provider: "163 / 126 (NetEase)",
        example: "550 MI:STC 发件人当天的连接数量超出了限定数量，当天不再接受该发件人的邮件",
        codes: &[450, 451, 550, 554],
        enhanced: None,
        texts: &["mi:stc", "rp:trc"],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "the sender is over NetEase's daily limit; no more of its mail is \
                          accepted today",
            source: NETEASE_BOUNCES,
        },
    },
    // ---- Any server
    Entry {
        provider: "any server",
        example: "530 5.7.0 Must issue a STARTTLS command first",
        codes: &[530],
        enhanced: None,
        texts: &["starttls", "secure connection"],
        known: Known {
            meaning: Meaning::Other,
            explanation: "the server wants TLS before anything else: use `security: tls` or \
                          `starttls`",
            source: "RFC 3207 §4 (530 5.7.0 Must issue a STARTTLS command first)",
        },
    },
    Entry {
        provider: "any server",
        example: "530 5.7.0 Authentication required",
        codes: &[530],
        enhanced: None,
        texts: &[],
        known: Known {
            meaning: Meaning::Other,
            explanation: "the server wants a login: set smtp.username and a password; on QQ, \
                          163 and 126 the SMTP service must also be enabled in the web mail's \
                          settings",
            source: "RFC 4954 §6 (530 5.7.0 Authentication required)",
        },
    },
    Entry {
        provider: "any server",
        example: "450 4.7.1 <a@example.org>: Recipient address rejected: Greylisted, see \
                  http://postgrey.schweikert.ch/help/example.org.html",
        codes: &[450, 451],
        enhanced: None,
        texts: &["greylist", "graylist"],
        known: Known {
            meaning: Meaning::Other,
            explanation: "greylisted: the server defers a first attempt from an unknown sender; \
                          retried after retry_delay",
            source: "RFC 6647 §2 (Email Greylisting)",
        },
    },
    Entry {
        provider: "any server",
        example: "450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.1]",
        codes: &[421, 450, 451],
        enhanced: Some("4.7."),
        texts: &[
            "client host rejected",
            "helo command rejected",
            "sender address rejected",
            "recipient address rejected",
            "tls required",
            "not in whitelist",
        ],
        known: Known {
            meaning: Meaning::Other,
            explanation: "a policy check of the receiving server deferred the message (host \
                          name, sender or recipient address, TLS), not a rate limit; retried \
                          later",
            source: "Postfix postconf(5): access restrictions and their 450 4.7.1 soft \
                     reject codes",
        },
    },
    Entry {
        provider: "any server",
        example: "451 4.7.1 Please try again later: too many messages from this sender",
        codes: &[421, 450, 451, 452],
        enhanced: Some("4.7."),
        texts: &[],
        known: Known {
            meaning: Meaning::Limit,
            explanation: "the server is rate-limiting this sender; the message is sent later",
            source: "RFC 3463 §3.8 (X.7.X security or policy status), as Gmail and Outlook \
                     use it",
        },
    },
];
