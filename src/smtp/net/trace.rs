//! The protocol trace (`--trace FILE|-`): the lines each session's core
//! reports (`C: ...`, `S: ...`), prefixed with the session number and written
//! to one shared sink.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Where trace lines go (`--trace FILE|-`); shared by all sessions.
#[derive(Clone)]
pub struct Trace {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
    /// The relay the session goes to, named beside its number (`[2 backup]`).
    label: Option<Arc<str>>,
}

impl Trace {
    /// A trace writing to `sink`.
    pub fn new(sink: Box<dyn Write + Send>) -> Self {
        Trace {
            sink: Arc::new(Mutex::new(sink)),
            label: None,
        }
    }

    /// The same sink, with each line naming `relay` after the session number.
    pub fn labelled(&self, relay: &str) -> Self {
        Trace {
            sink: self.sink.clone(),
            label: Some(relay.into()),
        }
    }

    /// Write lines, each prefixed with the session number.
    pub fn write(&self, session: usize, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        for line in lines {
            let _ = match &self.label {
                Some(relay) => writeln!(sink, "[{session} {relay}] {line}"),
                None => writeln!(sink, "[{session}] {line}"),
            };
        }
        let _ = sink.flush();
    }
}
