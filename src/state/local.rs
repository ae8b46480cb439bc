//! The local file backend (to be written).
