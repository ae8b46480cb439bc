//! Cloud Storage's object data (API floor, an extension of the `App`): bytes by `(bucket,
//! generation)`, in memory and written through to files beside the state when persisting.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::app::lock;
use crate::error::ApiError;

/// Object data by `(bucket, generation)`.
type BlobMap = HashMap<(String, i64), Arc<Vec<u8>>>;

/// Object data by `(bucket, generation)`: in memory, written through to files when persisting.
#[derive(Debug, Default)]
pub struct Blobs {
    dir: Option<PathBuf>,
    mem: Mutex<BlobMap>,
}

impl Blobs {
    /// Data kept under `dir` (`None`: in memory only).
    pub fn new(dir: Option<PathBuf>) -> Self {
        Blobs { dir, mem: Mutex::default() }
    }

    fn path(&self, bucket: &str, generation: i64) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(bucket).join(generation.to_string()))
    }

    pub(super) fn put(&self, bucket: &str, generation: i64, data: Vec<u8>) -> Result<(), ApiError> {
        if let Some(p) = self.path(bucket, generation) {
            let write = || -> std::io::Result<()> {
                std::fs::create_dir_all(p.parent().expect("a bucket directory"))?;
                let tmp = p.with_extension("tmp");
                std::fs::write(&tmp, &data)?;
                std::fs::rename(&tmp, &p)
            };
            write().map_err(|e| ApiError::internal(format!("cannot store the object's data: {e}")))?;
        }
        lock(&self.mem).insert((bucket.to_string(), generation), Arc::new(data));
        Ok(())
    }

    pub(super) fn get(&self, bucket: &str, generation: i64) -> Option<Arc<Vec<u8>>> {
        if let Some(b) = lock(&self.mem).get(&(bucket.to_string(), generation)) {
            return Some(b.clone());
        }
        let data = Arc::new(std::fs::read(self.path(bucket, generation)?).ok()?);
        lock(&self.mem).insert((bucket.to_string(), generation), data.clone());
        Some(data)
    }

    pub(super) fn remove(&self, bucket: &str, generation: i64) {
        lock(&self.mem).remove(&(bucket.to_string(), generation));
        if let Some(p) = self.path(bucket, generation) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Forgets every object's data (admin reset).
    pub fn clear(&self) {
        lock(&self.mem).clear();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
