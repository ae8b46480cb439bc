//! In-memory provider for tests (to be written).
