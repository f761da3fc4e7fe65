//! minijinja rendering (strict undefined): one [`Draft`] per recipient.

use crate::error::{Diagnostic, Result};
use crate::job::Job;
use crate::message::Draft;
use crate::recipients::Recipient;

/// The job's templates, compiled once.
pub struct Renderer {
    _private: (),
}

impl Renderer {
    /// Compile every template of the job (syntax errors name file, line and column).
    pub fn new(job: &Job) -> Result<Self> {
        let _ = job;
        todo!("render helper")
    }

    /// Render one recipient; every problem in the row is reported.
    pub fn render(&self, recipient: &Recipient) -> std::result::Result<Draft, Vec<Diagnostic>> {
        let _ = recipient;
        todo!("render helper")
    }
}
