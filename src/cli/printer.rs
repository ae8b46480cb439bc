//! The printer every command writes through (never `println!` deep inside), and
//! the hook that renders apply events.

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

use crate::diag::Diagnostics;
use crate::engine::{Event, Hook};
use crate::ops::OpError;
use crate::plan::Action;

/// Where output goes: standard streams, or buffers in tests.
#[derive(Clone)]
pub struct Printer {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    err: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl Printer {
    /// Standard output and error.
    pub fn stdio() -> Self {
        Printer {
            out: Arc::new(Mutex::new(Box::new(std::io::stdout()))),
            err: Arc::new(Mutex::new(Box::new(std::io::stderr()))),
        }
    }

    /// Custom sinks.
    pub fn new(out: Box<dyn Write + Send>, err: Box<dyn Write + Send>) -> Self {
        Printer { out: Arc::new(Mutex::new(out)), err: Arc::new(Mutex::new(err)) }
    }

    /// A line on standard output.
    pub fn out(&self, line: &str) {
        let mut o = self.out.lock().expect("stdout lock");
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    }

    /// Text on standard output, as is.
    pub fn out_raw(&self, text: &str) {
        let mut o = self.out.lock().expect("stdout lock");
        let _ = write!(o, "{text}");
        let _ = o.flush();
    }

    /// A line on standard error.
    pub fn err(&self, line: &str) {
        let mut e = self.err.lock().expect("stderr lock");
        let _ = writeln!(e, "{line}");
        let _ = e.flush();
    }

    /// Diagnostics (warnings) on standard error.
    pub fn diagnostics(&self, d: &Diagnostics) {
        for x in &d.0 {
            self.err(&x.to_string());
        }
    }

    /// An error on standard error.
    pub fn error(&self, e: &OpError) {
        match e {
            OpError::Diagnostics(d) => {
                self.diagnostics(d);
                let n = d.errors().count();
                if n > 1 {
                    self.err(&format!("{n} errors; nothing was changed."));
                }
            }
            e => self.err(&format!("error: {e}")),
        }
    }

    /// Asks a question on the terminal; true only for "yes".
    pub fn confirm(&self, question: &str) -> bool {
        self.out_raw(question);
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        line.trim() == "yes"
    }
}

/// Renders engine events as progress lines, or as a JSON stream.
pub struct EventPrinter {
    p: Printer,
    json: bool,
}

impl EventPrinter {
    /// A hook printing through `p`.
    pub fn new(p: Printer, json: bool) -> Self {
        EventPrinter { p, json }
    }
}

fn dur(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 60 { format!("{}m{}s", s / 60, s % 60) } else { format!("{s}s") }
}

impl Hook for EventPrinter {
    fn event(&self, e: &Event) {
        if self.json {
            self.p.out(&super::json::event(e).to_string());
            return;
        }
        match e {
            Event::Started { address, action } => self.p.out(&format!("{address}: {}...", action.doing_verb())),
            Event::Progress { address, action, elapsed_secs, detail } => self.p.out(&format!(
                "{address}: Still {}...{} [{} elapsed]",
                action.doing_verb().to_lowercase(),
                detail.as_ref().map(|d| format!(" {d}")).unwrap_or_default(),
                dur(elapsed_secs * 1000)
            )),
            Event::Finished { address, action, elapsed_ms, id } => self.p.out(&format!(
                "{address}: {} after {}{}",
                match action {
                    Action::Create => "Creation complete".to_string(),
                    Action::Delete => "Destruction complete".to_string(),
                    Action::Update => "Modifications complete".to_string(),
                    Action::Adopt => "Adoption complete".to_string(),
                    Action::DeleteThenCreate | Action::CreateThenDelete => "Replacement complete".to_string(),
                    a => {
                        let v = a.done_verb();
                        format!("{}{} complete", v[..1].to_uppercase(), &v[1..])
                    }
                },
                dur(*elapsed_ms),
                id.as_ref().map(|i| format!(" [id={i}]")).unwrap_or_default()
            )),
            Event::Failed { address, action, message } => {
                self.p.err(&format!("{address}: {} failed: {message}", action.doing_verb()))
            }
            Event::Skipped { address, because_of } => {
                self.p.err(&format!("{address}: skipped because {because_of} failed"))
            }
            Event::Interrupted { address, action } => self.p.err(&format!(
                "{address}: {} interrupted; its operation goes on and is recorded as pending: the next apply resumes it",
                action.doing_verb()
            )),
            Event::Cancelled { address } => self.p.err(&format!("{address}: not started (interrupted)")),
            Event::Warning { message } => self.p.err(&format!("warning: {message}")),
            Event::Complete { .. } => {}
        }
    }
}
