//! The printer every command writes through (never `println!` deep inside), and
//! the hook that renders apply events.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex};

use crate::diag::Diagnostics;
use crate::engine::{Event, Hook};
use crate::mask::Mask;
use crate::ops::OpError;
use crate::plan::Action;

/// Where output goes: standard streams, or buffers in tests.
#[derive(Clone)]
pub struct Printer {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    err: Arc<Mutex<Box<dyn Write + Send>>>,
    /// Every line passes through it: the run's secrets masked, control characters removed.
    mask: Arc<std::sync::RwLock<Mask>>,
    /// Colour standard output / standard error.
    color: (bool, bool),
}

impl Printer {
    /// Standard output and error, each coloured when it is a terminal, unless `no_color` or the
    /// `NO_COLOR` environment variable (any value) says otherwise; `CLICOLOR_FORCE=1` colours even
    /// into a pipe.
    pub fn stdio(no_color: bool) -> Self {
        let off = no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let force = std::env::var("CLICOLOR_FORCE").is_ok_and(|v| !v.is_empty() && v != "0");
        Printer {
            out: Arc::new(Mutex::new(Box::new(std::io::stdout()))),
            err: Arc::new(Mutex::new(Box::new(std::io::stderr()))),
            mask: Default::default(),
            color: (
                !off && (force || std::io::stdout().is_terminal()),
                !off && (force || std::io::stderr().is_terminal()),
            ),
        }
    }

    /// Custom sinks (no colour).
    pub fn new(out: Box<dyn Write + Send>, err: Box<dyn Write + Send>) -> Self {
        Printer {
            out: Arc::new(Mutex::new(out)),
            err: Arc::new(Mutex::new(err)),
            mask: Default::default(),
            color: (false, false),
        }
    }

    /// From now on, masks these secrets in everything printed (set once the spec's variables
    /// are known).
    pub fn set_mask(&self, mask: Mask) {
        *self.mask.write().unwrap_or_else(|e| e.into_inner()) = mask;
    }

    fn masked(&self, text: &str) -> String {
        self.mask.read().unwrap_or_else(|e| e.into_inner()).apply(text)
    }

    /// A line on standard output.
    pub fn out(&self, line: &str) {
        let line = self.masked(line);
        let mut o = self.out.lock().expect("stdout lock");
        let _ = writeln!(o, "{}", paint(&line, self.color.0));
        let _ = o.flush();
    }

    /// Text on standard output, as is (coloured line by line on a terminal).
    pub fn out_raw(&self, text: &str) {
        let text = self.masked(text);
        let mut o = self.out.lock().expect("stdout lock");
        let text = if self.color.0 {
            text.split_inclusive('\n').map(|l| paint(l, true)).collect::<String>()
        } else {
            text.to_string()
        };
        let _ = write!(o, "{text}");
        let _ = o.flush();
    }

    /// A line on standard error.
    pub fn err(&self, line: &str) {
        let line = self.masked(line);
        let mut e = self.err.lock().expect("stderr lock");
        let _ = writeln!(e, "{}", paint(&line, self.color.1));
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

/// A line coloured as Terraform users expect: what is created green, changed yellow, destroyed red,
/// warnings yellow, errors red; anything else (JSON included) as is.
fn paint(line: &str, color: bool) -> String {
    if !color {
        return line.to_string();
    }
    let (body, nl) = match line.strip_suffix('\n') {
        Some(b) => (b, "\n"),
        None => (line, ""),
    };
    let t = body.trim_start();
    if t.starts_with('{') {
        return line.to_string();
    }
    let code = if t.starts_with("error") || (t.contains(" failed: ") && !t.starts_with('#')) {
        "1;31"
    } else if t.starts_with("warning")
        || t.starts_with("-/+ ")
        || t.starts_with("+/- ")
        || t.starts_with("~ ")
        || t.contains(" will be updated")
    {
        "33"
    } else if t.starts_with("+ ") || t.contains(" will be created") || t.contains(" complete") {
        "32"
    } else if t.starts_with("- ") || t.contains(" will be destroyed") || t.contains(" must be replaced") {
        "31"
    } else {
        return line.to_string();
    };
    format!("\x1b[{code}m{body}\x1b[0m{nl}")
}

/// Renders engine events as progress lines, or as a JSON stream.
pub struct EventPrinter {
    p: Printer,
    json: bool,
    /// How long each finished step took (address, milliseconds).
    took: Mutex<Vec<(String, u64)>>,
}

impl EventPrinter {
    /// A hook printing through `p`.
    pub fn new(p: Printer, json: bool) -> Self {
        EventPrinter { p, json, took: Mutex::new(Vec::new()) }
    }

    /// `Longest steps: a 41s, b 12s, c 3s`: the `n` longest finished steps that took a second or more.
    pub fn longest(&self, n: usize) -> Option<String> {
        let mut took = self.took.lock().expect("took lock").clone();
        took.retain(|(_, ms)| *ms >= 1000);
        took.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        took.truncate(n);
        (!took.is_empty()).then(|| {
            let parts: Vec<String> = took.iter().map(|(a, ms)| format!("{a} {}", dur(*ms))).collect();
            format!("Longest steps: {}", parts.join(", "))
        })
    }
}

fn dur(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 60 { format!("{}m{}s", s / 60, s % 60) } else { format!("{s}s") }
}

impl Hook for EventPrinter {
    fn event(&self, e: &Event) {
        if let Event::Finished { address, elapsed_ms, .. } = e {
            self.took.lock().expect("took lock").push((address.to_string(), *elapsed_ms));
        }
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
            Event::CheckStarted { name } => self.p.out(&format!("check.{name}: Checking...")),
            Event::CheckProgress { name, elapsed_secs, detail } => self.p.out(&format!(
                "check.{name}: Still checking... last: {detail} [{} elapsed]",
                dur(elapsed_secs * 1000)
            )),
            Event::CheckPassed { name, elapsed_ms, status } => {
                self.p.out(&format!("check.{name}: Check passed after {} (status {status})", dur(*elapsed_ms)))
            }
            Event::CheckFailed { name, message } => self.p.err(&format!("check.{name}: Check failed: {message}")),
            Event::CheckSkipped { name, because_of } => {
                self.p.err(&format!("check.{name}: skipped because {because_of} failed"))
            }
            Event::StateFailed { message } => self.p.err(&format!("error: {message}")),
            Event::Warning { message } => self.p.err(&format!("warning: {message}")),
            Event::Complete { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::paint;

    #[test]
    fn colours_follow_the_change() {
        assert_eq!(paint("  + name = \"a\"\n", true), "\x1b[32m  + name = \"a\"\x1b[0m\n");
        assert_eq!(paint("  ~ value = 1 -> 2", true), "\x1b[33m  ~ value = 1 -> 2\x1b[0m");
        assert_eq!(paint("  - resource \"x\" \"y\" {", true), "\x1b[31m  - resource \"x\" \"y\" {\x1b[0m");
        assert_eq!(paint("error: boom", true), "\x1b[1;31merror: boom\x1b[0m");
        assert_eq!(paint("x: Creating failed: no", true), "\x1b[1;31mx: Creating failed: no\x1b[0m");
        assert_eq!(paint("{\"type\":\"failed\"}", true), "{\"type\":\"failed\"}", "JSON stays as is");
        assert_eq!(paint("Outputs:", true), "Outputs:");
        assert_eq!(paint("  + name", false), "  + name", "no colour when off");
    }

    #[test]
    fn the_longest_steps_are_summed_up() {
        use crate::engine::{Event, Hook};
        use crate::plan::Action;
        let hook =
            super::EventPrinter::new(super::Printer::new(Box::new(std::io::sink()), Box::new(std::io::sink())), false);
        assert_eq!(hook.longest(3), None);
        for (name, ms) in [("a", 41_000), ("b", 500), ("c", 12_000), ("d", 2_000), ("e", 3_000)] {
            hook.event(&Event::Finished {
                address: format!("test_object.{name}").parse().unwrap(),
                action: Action::Create,
                elapsed_ms: ms,
                id: None,
            });
        }
        assert_eq!(
            hook.longest(3).as_deref(),
            Some("Longest steps: test_object.a 41s, test_object.c 12s, test_object.e 3s")
        );
    }
}
