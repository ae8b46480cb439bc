//! Local GCP emulator (placeholder; see issue 3).
