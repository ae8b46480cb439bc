//! Test support for the local testbed (placeholder; see issue 4).
