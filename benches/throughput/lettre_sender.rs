//! The Rust contender: lettre's pooled `SmtpTransport` (no TLS), sending
//! builder-made personalised text + HTML messages, one worker thread per
//! pooled session. It runs as a child process of the harness (the harness
//! re-executes itself with `--lettre-worker`), so its CPU time and peak RSS
//! are measured by `wait4` like every other contender's.

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::{Message, SmtpTransport, Transport};

use crate::data;

/// Builds one personalised message from a CSV line.
fn build(line: &str, from: &Mailbox) -> Result<Message, String> {
    let fields: Vec<&str> = line.split(',').collect();
    let to = Mailbox::new(
        Some(fields[1].to_string()),
        fields[0].parse().map_err(|e| format!("{e}"))?,
    );
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(data::fill(data::SUBJECT, &fields))
        .multipart(MultiPart::alternative_plain_html(
            data::fill(data::TEXT, &fields),
            data::fill(data::HTML, &fields),
        ))
        .map_err(|e| e.to_string())
}

/// `--lettre-worker PORT CSV N SESSIONS`: sends the first N rows of CSV to
/// 127.0.0.1:PORT; prints `sent=K failed=F`; exit status 0 only if K == N.
pub fn main(args: &[String]) -> i32 {
    let [port, csv, n, sessions] = args else {
        eprintln!("usage: --lettre-worker PORT CSV N SESSIONS");
        return 64;
    };
    let (Ok(port), Ok(n), Ok(sessions)) = (
        port.parse::<u16>(),
        n.parse::<usize>(),
        sessions.parse::<u32>(),
    ) else {
        eprintln!("lettre worker: bad numbers");
        return 64;
    };
    let text = match fs::read_to_string(csv) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("lettre worker: {csv}: {e}");
            return 66;
        }
    };
    let lines: Arc<Vec<String>> =
        Arc::new(text.lines().skip(1).take(n).map(String::from).collect());
    if lines.len() < n {
        eprintln!("lettre worker: only {} rows", lines.len());
        return 65;
    }
    let transport = SmtpTransport::builder_dangerous("127.0.0.1")
        .port(port)
        .pool_config(PoolConfig::new().max_size(sessions))
        .build();
    let from: Mailbox = data::FROM.parse().expect("FROM parses");
    let next = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..sessions)
        .map(|_| {
            let (transport, lines, next, sent, from) = (
                transport.clone(),
                lines.clone(),
                next.clone(),
                sent.clone(),
                from.clone(),
            );
            thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(line) = lines.get(i) else { break };
                match build(line, &from).and_then(|m| transport.send(&m).map_err(|e| e.to_string()))
                {
                    Ok(_) => {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => eprintln!("lettre worker: row {}: {e}", i + 1),
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let sent = sent.load(Ordering::Relaxed);
    println!("sent={sent} failed={}", n - sent);
    if sent == n {
        0
    } else {
        1
    }
}
