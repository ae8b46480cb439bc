//! Reading a snapshot's bytes, whichever backend stored them: the format check first, then the
//! journal epoch, then the state.

use super::State;
use super::model::{OLDEST_STATE_FORMAT, STATE_FORMAT};

/// What is wrong with a snapshot's bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Not JSON at all.
    #[error("not valid JSON: {0}")]
    NotJson(serde_json::Error),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotObject,
    /// No numeric `format` field.
    #[error("missing or non-numeric `format` field")]
    NoFormat,
    /// A format this build does not read.
    #[error(
        "unsupported state format {found}: this skyform reads formats {OLDEST_STATE_FORMAT} to {STATE_FORMAT}{}",
        if *found > u64::from(STATE_FORMAT) { " (written by a newer skyform; upgrade)" } else { "" }
    )]
    Format {
        /// The format found.
        found: u64,
    },
    /// `journal_epoch` is there but not a number.
    #[error("`journal_epoch` is not a number")]
    Epoch,
    /// The fields do not make a state (with the line and column of the first that does not).
    #[error("{0}")]
    Fields(serde_json::Error),
}

/// The state and journal epoch of a snapshot's bytes; a state of an older format is upgraded in
/// memory ([`State::upgrade`]).
pub fn parse(bytes: &[u8]) -> Result<(State, u64), SnapshotError> {
    let mut json: serde_json::Value = serde_json::from_slice(bytes).map_err(SnapshotError::NotJson)?;
    let obj = json.as_object_mut().ok_or(SnapshotError::NotObject)?;
    // Refuses a format this build does not know, before reading anything else.
    match obj.get("format").and_then(serde_json::Value::as_u64) {
        Some(f) if (u64::from(OLDEST_STATE_FORMAT)..=u64::from(STATE_FORMAT)).contains(&f) => {}
        Some(found) => return Err(SnapshotError::Format { found }),
        None => return Err(SnapshotError::NoFormat),
    }
    let epoch = match obj.remove("journal_epoch") {
        None => 0,
        Some(v) => v.as_u64().ok_or(SnapshotError::Epoch)?,
    };
    let mut state: State = match serde_json::from_value(json) {
        Ok(state) => state,
        // A value knows no positions: the same fields read again from the text say where (line
        // and column). Only on this error path is the text parsed twice.
        Err(e) => return Err(SnapshotError::Fields(serde_json::from_slice::<State>(bytes).err().unwrap_or(e))),
    };
    state.upgrade();
    Ok((state, epoch))
}
