//! The machine formats (`--json`), documented in `docs/plan-format.md`. The plan's own JSON is
//! [`crate::plan::json`] (it is also the policies' input); here, what only the CLI streams.

use serde_json::Value as J;

use crate::engine::Event;

pub use crate::plan::json::plan;

/// One streamed event.
pub fn event(e: &Event) -> J {
    serde_json::to_value(e).unwrap_or(J::Null)
}
