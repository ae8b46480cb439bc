//! Signals, for every command: SIGTERM and SIGHUP end the process after removing its temporary
//! files (a kubeconfig holding a token, helm's values: [`crate::foundation::files::TempFile`]);
//! so does SIGINT, except while an apply handles it itself (the first interrupt stops starting new
//! work and saves state, see [`graceful`]), where a second interrupt ends it the same way.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::signal::unix::{SignalKind, signal};

use crate::foundation::files::remove_temporaries;

/// Whether a command is handling SIGINT itself now.
static GRACEFUL: AtomicBool = AtomicBool::new(false);

/// While `on`, the first SIGINT is left to the command (an apply saving its state).
pub fn graceful(on: bool) {
    GRACEFUL.store(on, Ordering::SeqCst);
}

/// Starts watching, on the current runtime.
pub fn watch() {
    let mut handlers = Vec::new();
    for (kind, code) in [(SignalKind::terminate(), 143), (SignalKind::hangup(), 129), (SignalKind::interrupt(), 130)] {
        match signal(kind) {
            Ok(s) => handlers.push((s, code)),
            // Without a handler the signal keeps its default action: the process ends, as before.
            Err(e) => eprintln!("warning: cannot watch signals ({e}); temporary files may stay behind if interrupted"),
        }
    }
    for (mut s, code) in handlers {
        tokio::spawn(async move {
            let mut interrupts = 0;
            while s.recv().await.is_some() {
                if code == 130 {
                    interrupts += 1;
                    if GRACEFUL.load(Ordering::SeqCst) && interrupts == 1 {
                        continue;
                    }
                }
                end(code);
            }
        });
    }
}

fn end(code: i32) -> ! {
    let removed = remove_temporaries();
    if removed > 0 {
        eprintln!("\nInterrupted: removed {removed} temporary file(s).");
    } else {
        eprintln!("\nInterrupted.");
    }
    std::process::exit(code)
}
