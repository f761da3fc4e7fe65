//! A row whose recipients span several domains under `smtp.mx: true` (a
//! To at one company, a Cc at another): it is split into one part per
//! recipient domain, each the row's same message (same data, so the headers
//! show To and Cc as written and never the Bcc) with its envelope cut down
//! to that domain's recipients, and each part goes to its domain's
//! destination like any other message there, with that destination's
//! sessions, limits, retries and MX fallback. [`Joins`] then joins the
//! parts back into one row as the ledger sees it: every part's recipients
//! are recorded as they settle (the journal's `rcpt` records, the same as
//! after a 452), but the row's outcome waits until its last part is
//! decided and is then computed from all its recipients (`sent` only when
//! each accepted; otherwise the first refusal's status, naming each).
//!
//! Split works rather than one work walked from destination to destination:
//! the domains are delivered at once and a slow or unreachable domain holds
//! up no other one, and the worker, dispatcher and settle rules stay as
//! they are. A rerun resumes from the `rcpt` records, so only recipients
//! that have not accepted are sent to; when they are all at one domain the
//! row is no longer split.
//!
//! The journal knows one in-flight entry per row, so the joins keep it
//! honest for the parts: while one part's final dot may be on its way
//! (`committing` seen, no reply yet) the row stays marked so (a crash then
//! makes the row `uncertain`, never sent twice); once a part is decided and
//! no other part is between its dot and its reply, the row is marked in
//! flight but not committed again, so that a crash or an unreachable domain
//! leaves the rest of the row to the rerun instead of making it uncertain.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;

use super::dispatch::Work;
use super::ledger::{Ledger, Settled};
use super::outcome::{Outcome, Status};
use super::settle::row_outcome;
use crate::compose::message::Outgoing;
use crate::smtp::reply::Reply;

/// The recipient domain of an address (lower case), `None` without `@`.
pub(super) fn domain_of(address: &str) -> Option<String> {
    let at = address.rfind('@')?;
    let domain = address[at + 1..].trim_end_matches('>').to_lowercase();
    (!domain.is_empty()).then_some(domain)
}

/// `work`'s remaining recipients grouped by domain, in the order each
/// domain first appears (an address without a domain goes with the first).
fn by_domain(rcpts: &[String]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut loose = Vec::new();
    for r in rcpts {
        let Some(d) = domain_of(r) else {
            loose.push(r.clone());
            continue;
        };
        match groups.iter_mut().find(|(g, _)| *g == d) {
            Some((_, list)) => list.push(r.clone()),
            None => groups.push((d, vec![r.clone()])),
        }
    }
    match groups.first_mut() {
        Some((_, list)) => list.extend(loose),
        None => groups.push((String::new(), loose)),
    }
    groups
}

/// One domain's part of a split row.
struct Part {
    /// Its recipients still to deliver to when the row was split.
    rcpts: Vec<String>,
    /// Its transaction's final dot may be on its way (no reply yet).
    committed: bool,
    /// Its outcome was decided.
    done: bool,
}

/// A split row, until its last part is decided.
struct Join {
    /// The row's message with its whole envelope.
    out: Outgoing,
    /// The most attempts any part made.
    attempts: u32,
    /// Every recipient settled so far (earlier runs and the parts).
    settled: Vec<(String, Reply)>,
    /// The parts by domain.
    parts: HashMap<String, Part>,
    /// The last end-of-data reply of an accepting part.
    last_accept: Option<Reply>,
    /// A part's outcome that its recipients' replies cannot express
    /// (uncertain, or refused for what the message is): the row's outcome.
    whole: Option<Outcome>,
    /// The destinations that decided parts.
    relays: Vec<String>,
}

/// The split rows of a run, joined as their parts settle.
#[derive(Default)]
pub(super) struct Joins {
    rows: Mutex<HashMap<u64, Join>>,
}

impl Joins {
    /// Split `work` by recipient domain: one `(domain, work)` per domain.
    /// A row at several domains is remembered, to be joined.
    pub(super) fn split(&self, work: Work) -> Vec<(String, Work)> {
        let groups = by_domain(&work.rcpts);
        if groups.len() == 1 {
            let domain = groups.into_iter().next().map(|(d, _)| d).unwrap();
            let mut work = work;
            // It counts under the domain it goes to, also when its first
            // recipient (another domain's) accepted in an earlier run.
            if !domain.is_empty() {
                work.domain = domain.clone();
            }
            return vec![(domain, work)];
        }
        let mut parts = HashMap::new();
        let mut works = Vec::new();
        for (domain, rcpts) in groups {
            let mine = |a: &String| domain_of(a).as_deref() == Some(domain.as_str());
            let mut out = work.out.clone();
            out.envelope
                .rcpt_to
                .retain(|a| mine(a) || rcpts.contains(a));
            works.push((
                domain.clone(),
                Work {
                    out,
                    attempts: work.attempts,
                    rcpts: rcpts.clone(),
                    settled_rcpts: work
                        .settled_rcpts
                        .iter()
                        .filter(|(a, _)| mine(a))
                        .cloned()
                        .collect(),
                    domain: domain.clone(),
                    carrier: None,
                },
            ));
            parts.insert(
                domain,
                Part {
                    rcpts,
                    committed: false,
                    done: false,
                },
            );
        }
        let join = Join {
            attempts: work.attempts,
            settled: work.settled_rcpts,
            out: work.out,
            parts,
            last_accept: None,
            whole: None,
            relays: Vec::new(),
        };
        self.rows.lock().unwrap().insert(join.out.row, join);
        works
    }

    /// `domain`'s part of these rows is about to be handed to a server.
    pub(super) fn inflight(
        &self,
        domain: &str,
        inner: &dyn Ledger,
        batch: &[(u64, &str, u32)],
    ) -> io::Result<()> {
        let rows = self.rows.lock().unwrap();
        if !batch.iter().any(|b| rows.contains_key(&b.0)) {
            drop(rows);
            return inner.inflight(batch);
        }
        inner.inflight(batch)?;
        // Another part's dot may still be on its way: the row stays committed.
        let busy: Vec<u64> = batch
            .iter()
            .map(|b| b.0)
            .filter(|row| {
                rows.get(row).is_some_and(|j| {
                    j.parts
                        .iter()
                        .any(|(d, p)| d.as_str() != domain && p.committed)
                })
            })
            .collect();
        if busy.is_empty() {
            Ok(())
        } else {
            inner.committing(&busy)
        }
    }

    /// `domain`'s part of these rows is about to write its final dot.
    pub(super) fn committing(
        &self,
        domain: &str,
        inner: &dyn Ledger,
        rows: &[u64],
    ) -> io::Result<()> {
        let mut joins = self.rows.lock().unwrap();
        if !rows.iter().any(|r| joins.contains_key(r)) {
            drop(joins);
            return inner.committing(rows);
        }
        for row in rows {
            if let Some(p) = joins.get_mut(row).and_then(|j| j.parts.get_mut(domain)) {
                p.committed = true;
            }
        }
        inner.committing(rows)
    }

    /// What `domain`'s sessions decided: the recipients are recorded at
    /// once; a split row's outcome only once its last part is decided.
    pub(super) fn settled(
        &self,
        domain: &str,
        inner: &dyn Ledger,
        batch: &[Settled],
    ) -> io::Result<()> {
        let mut joins = self.rows.lock().unwrap();
        if !batch.iter().any(|s| joins.contains_key(&s.row)) {
            drop(joins);
            return inner.settled_rcpts(batch);
        }
        let mut records = Vec::with_capacity(batch.len());
        let mut uncommit = Vec::new();
        for s in batch {
            let Some(join) = joins.get_mut(&s.row) else {
                records.push(s.clone());
                continue;
            };
            match join.fold(domain, s) {
                Some(outcome) => {
                    let open = outcome.status != Status::Uncertain && join.open();
                    joins.remove(&s.row);
                    records.push(Settled {
                        row: s.row,
                        rcpts: s.rcpts.clone(),
                        outcome: Some(outcome),
                        open,
                    });
                }
                None => {
                    if !join.parts.values().any(|p| p.committed) {
                        uncommit.push((s.row, join.out.message_id.clone(), join.attempts.max(1)));
                    }
                    records.push(Settled {
                        row: s.row,
                        rcpts: s.rcpts.clone(),
                        outcome: None,
                        open: false,
                    });
                }
            }
        }
        inner.settled_rcpts(&records)?;
        if uncommit.is_empty() {
            return Ok(());
        }
        // The rest of the row is not on its way: after a crash the rerun
        // sends it (the journal takes this attempt back), not `uncertain`.
        let entries: Vec<(u64, &str, u32)> = uncommit
            .iter()
            .map(|(row, id, attempt)| (*row, id.as_str(), *attempt))
            .collect();
        inner.inflight(&entries)
    }
}

impl Join {
    /// Take in what `domain`'s part settled; the row's outcome once this
    /// was its last part.
    fn fold(&mut self, domain: &str, s: &Settled) -> Option<Outcome> {
        for (rcpt, reply) in &s.rcpts {
            self.settled.retain(|(a, _)| !a.eq_ignore_ascii_case(rcpt));
            self.settled.push((rcpt.clone(), reply.clone()));
        }
        let part = self.parts.get_mut(domain)?;
        part.committed = false;
        let o = s.outcome.as_ref()?;
        part.done = true;
        let rcpts = part.rcpts.clone();
        self.attempts = self.attempts.max(o.attempts);
        self.relays.extend(o.relay.clone());
        if o.status == Status::Sent {
            self.last_accept = s
                .rcpts
                .iter()
                .rev()
                .find(|(_, r)| r.is_positive())
                .map(|(_, r)| r.clone())
                .or_else(|| self.last_accept.take());
        }
        // Recipients of the part still without an answer for good were
        // refused with 4xx to the end (or never reached a server).
        let open: Vec<String> = rcpts
            .iter()
            .filter(|a| !self.settled.iter().any(|(s, _)| s.eq_ignore_ascii_case(a)))
            .cloned()
            .collect();
        if !open.is_empty() {
            match o.code {
                Some(code) if o.status != Status::Uncertain => {
                    let code = if (400..500).contains(&code) {
                        code
                    } else {
                        451
                    };
                    let text = match &o.enhanced {
                        Some(e) => format!("{e} {}", o.reply),
                        None => o.reply.clone(),
                    };
                    for a in open {
                        self.settled.push((a, Reply::new(code, text.clone())));
                    }
                }
                _ if self.whole.is_none() => self.whole = Some(o.clone()),
                _ => {}
            }
        }
        if self.parts.values().any(|p| !p.done) {
            return None;
        }
        Some(self.outcome())
    }

    /// The row's outcome once every part is decided.
    fn outcome(&self) -> Outcome {
        let mut row = match &self.whole {
            Some(whole) => Outcome {
                row: self.out.row,
                email: self.out.email.clone(),
                message_id: Some(self.out.message_id.clone()),
                ..whole.clone()
            },
            None => {
                let work = Work {
                    out: self.out.clone(),
                    attempts: self.attempts,
                    rcpts: Vec::new(),
                    settled_rcpts: self.settled.clone(),
                    domain: String::new(),
                    carrier: None,
                };
                row_outcome(&work, self.last_accept.as_ref())
            }
        };
        row.attempts = self.attempts;
        let mut relays = self.relays.clone();
        relays.dedup();
        row.relay = (!relays.is_empty()).then(|| relays.join(", "));
        row
    }

    /// Settled with recipients a rerun tries again: some got only 4xx,
    /// though the row's first refusal is for good.
    fn open(&self) -> bool {
        let envelope = &self.out.envelope.rcpt_to;
        let place = |a: &str| {
            envelope
                .iter()
                .position(|r| r.eq_ignore_ascii_case(a))
                .unwrap_or(usize::MAX)
        };
        let first_refusal = self
            .settled
            .iter()
            .filter(|(_, r)| !r.is_positive())
            .min_by_key(|(a, _)| place(a));
        first_refusal.is_some_and(|(_, r)| r.is_permanent())
            && self.settled.iter().any(|(_, r)| r.is_transient())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lower_case() {
        assert_eq!(
            domain_of("Ann@Example.TEST").as_deref(),
            Some("example.test")
        );
        assert_eq!(domain_of("\"a@b\"@c.test").as_deref(), Some("c.test"));
        assert_eq!(domain_of("nobody"), None);
    }

    /// What the journal would be told, in order.
    #[derive(Default)]
    struct Journal(Mutex<Vec<String>>);

    impl Ledger for Journal {
        fn inflight(&self, batch: &[(u64, &str, u32)]) -> io::Result<()> {
            let mut j = self.0.lock().unwrap();
            j.extend(batch.iter().map(|(row, _, _)| format!("inflight {row}")));
            Ok(())
        }
        fn committing(&self, rows: &[u64]) -> io::Result<()> {
            let mut j = self.0.lock().unwrap();
            j.extend(rows.iter().map(|row| format!("commit {row}")));
            Ok(())
        }
        fn settled(&self, _: &[Outcome]) -> io::Result<()> {
            Ok(())
        }
        fn settled_rcpts(&self, batch: &[Settled]) -> io::Result<()> {
            let mut j = self.0.lock().unwrap();
            for s in batch {
                for (a, r) in &s.rcpts {
                    j.push(format!("rcpt {} {a} {}", s.row, r.code));
                }
                if let Some(o) = &s.outcome {
                    j.push(format!("outcome {} {:?} {}", s.row, o.status, o.reply));
                }
            }
            Ok(())
        }
    }

    fn spanning() -> Work {
        let out = Outgoing {
            row: 7,
            email: "ann@one.test".into(),
            message_id: "<7@run>".into(),
            envelope: crate::compose::message::Envelope {
                mail_from: "me@x.test".into(),
                rcpt_to: vec!["ann@one.test".into(), "cy@two.test".into()],
            },
            data: std::sync::Arc::new(
                b"To: ann@one.test\r\nCc: cy@two.test\r\n\r\nhi\r\n"
                    .to_vec()
                    .into(),
            ),
            eight_bit: false,
            smtputf8: false,
        };
        Work::new(out, 0)
    }

    fn decided(row: u64, rcpt: &str, reply: Reply, status: Status) -> Settled {
        Settled {
            row,
            rcpts: vec![(rcpt.into(), reply.clone())],
            outcome: Some(Outcome {
                row,
                email: rcpt.into(),
                status,
                code: Some(reply.code),
                enhanced: None,
                reply: reply.text(),
                message_id: None,
                attempts: 1,
                relay: None,
            }),
            open: false,
        }
    }

    #[test]
    fn a_split_row_keeps_its_message_and_has_one_outcome_from_every_part() {
        let joins = Joins::default();
        let journal = Journal::default();
        let parts = joins.split(spanning());
        let domains: Vec<&str> = parts.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(domains, ["one.test", "two.test"]);
        for (d, w) in &parts {
            assert_eq!(w.rcpts.len(), 1);
            assert!(w.rcpts[0].ends_with(d.as_str()));
            assert_eq!(w.out.data, parts[0].1.out.data, "the same message");
        }
        let ok = Reply::new(250, "queued");
        joins
            .settled(
                "one.test",
                &journal,
                &[decided(7, "ann@one.test", ok, Status::Sent)],
            )
            .unwrap();
        let no = Reply::new(550, "no such user");
        joins
            .settled(
                "two.test",
                &journal,
                &[decided(7, "cy@two.test", no, Status::Rejected)],
            )
            .unwrap();
        let got = journal.0.into_inner().unwrap();
        let outcomes: Vec<&String> = got.iter().filter(|l| l.starts_with("outcome")).collect();
        assert_eq!(
            outcomes,
            ["outcome 7 Rejected cy@two.test: 550 no such user; accepted by ann@one.test"]
        );
    }

    #[test]
    fn a_part_refused_with_4xx_to_the_end_fails_the_row_and_names_its_recipient() {
        let joins = Joins::default();
        let journal = Journal::default();
        joins.split(spanning());
        let ok = Reply::new(250, "queued");
        joins
            .settled(
                "one.test",
                &journal,
                &[decided(7, "ann@one.test", ok, Status::Sent)],
            )
            .unwrap();
        // What settle hands over when the attempts are used up: no
        // recipient settled for good (a rerun tries it), the row failed.
        let mut later = decided(
            7,
            "cy@two.test",
            Reply::new(451, "try later"),
            Status::Failed,
        );
        later.rcpts.clear();
        joins.settled("two.test", &journal, &[later]).unwrap();
        let got = journal.0.into_inner().unwrap();
        assert_eq!(
            got.last().map(String::as_str),
            Some("outcome 7 Failed cy@two.test: 451 try later; accepted by ann@one.test")
        );
        assert!(!got.iter().any(|l| l.starts_with("rcpt 7 cy@")), "{got:?}");
    }

    #[test]
    fn a_row_stays_committed_while_any_parts_dot_may_be_on_its_way() {
        let joins = Joins::default();
        let journal = Journal::default();
        joins.split(spanning());
        joins
            .inflight("one.test", &journal, &[(7, "<7@run>", 1)])
            .unwrap();
        joins.committing("one.test", &journal, &[7]).unwrap();
        // two.test's part starts while one.test's dot awaits its reply: a
        // crash now must leave the row uncertain, not unsent.
        joins
            .inflight("two.test", &journal, &[(7, "<7@run>", 1)])
            .unwrap();
        let ok = Reply::new(250, "queued");
        joins
            .settled(
                "one.test",
                &journal,
                &[decided(7, "ann@one.test", ok, Status::Sent)],
            )
            .unwrap();
        let got = journal.0.into_inner().unwrap();
        assert_eq!(
            got,
            [
                "inflight 7",
                "commit 7",
                "inflight 7",
                "commit 7",
                "rcpt 7 ann@one.test 250",
                // Nothing is on its way any more: the rest goes on a rerun.
                "inflight 7",
            ]
        );
    }

    #[test]
    fn recipients_group_by_domain_in_first_appearance() {
        let rcpts: Vec<String> = ["a@one.test", "b@Two.test", "c@one.test", "d"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let groups = by_domain(&rcpts);
        assert_eq!(
            groups,
            [
                (
                    "one.test".to_string(),
                    vec!["a@one.test".to_string(), "c@one.test".into(), "d".into()]
                ),
                ("two.test".to_string(), vec!["b@Two.test".to_string()]),
            ]
        );
    }
}
