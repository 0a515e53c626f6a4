//! Which region holds the writable database, for apps that let it move
//! (`FLY_POSTGRES_FOLLOW_PRIMARY=true`): `PRIMARY_REGION` is where writes
//! go first; when its instances all answer "not primary" and another
//! region's take the write, writes go there from then on.

use std::sync::Mutex;

/// The region writes are sent to now.
#[derive(Debug)]
pub(crate) struct PrimaryFollower {
    current: Mutex<String>,
}

impl PrimaryFollower {
    pub(crate) fn new(hint: &str) -> Self {
        PrimaryFollower {
            current: Mutex::new(hint.to_owned()),
        }
    }

    pub(crate) fn current(&self) -> String {
        self.lock().clone()
    }

    /// A write was taken by `region`'s primary.
    pub(crate) fn taken_by(&self, region: &str) {
        let mut current = self.lock();
        if *current != region {
            tracing::warn!(from = %*current, to = region, "the primary moved: writes go to the new region");
            metrics::counter!("fly_postgres_primary_moves_total", "to" => region.to_owned())
                .increment(1);
            *current = region.to_owned();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, String> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}
