//! Opportunistic STARTTLS (RFC 3207 as MX-to-MX mail uses it): upgrade when
//! the server offers it, go on in plain text when it does not, and when it
//! refuses the command.

use super::*;

fn feed(c: &mut Client, server: &str) -> String {
    c.feed(server.as_bytes());
    String::from_utf8(c.take_output()).unwrap()
}

fn events(c: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn client() -> Client {
    let mut c = Client::new(SessionConfig::new("client.test", TlsMode::Opportunistic));
    assert_eq!(feed(&mut c, "220 mx\r\n"), "EHLO client.test\r\n");
    c
}

#[test]
fn opportunistic_upgrades_when_offered() {
    let mut c = client();
    assert_eq!(feed(&mut c, "250-mx\r\n250 STARTTLS\r\n"), "STARTTLS\r\n");
    assert_eq!(feed(&mut c, "220 go ahead\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::StartTls]);
    c.tls_started();
    assert_eq!(
        String::from_utf8(c.take_output()).unwrap(),
        "EHLO client.test\r\n"
    );
    assert_eq!(feed(&mut c, "250-mx\r\n250 STARTTLS\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::Ready]);
    assert!(c.is_tls());
}

#[test]
fn opportunistic_goes_on_in_plain_text_when_not_offered() {
    let mut c = client();
    assert_eq!(feed(&mut c, "250-mx\r\n250 PIPELINING\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::Ready]);
    assert!(!c.is_tls());
}

#[test]
fn opportunistic_goes_on_in_plain_text_when_refused() {
    let mut c = client();
    assert_eq!(feed(&mut c, "250-mx\r\n250 STARTTLS\r\n"), "STARTTLS\r\n");
    assert_eq!(feed(&mut c, "454 4.7.0 TLS not available\r\n"), "");
    assert_eq!(events(&mut c), vec![Event::Ready]);
    assert!(!c.is_tls());
}
