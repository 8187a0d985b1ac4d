//! Reads at a resourceVersion newer than the store's: the apiserver's watch cache waits for it
//! (`cacher.go` `waitUntilFreshAndBlock`, 3 s), then answers 504 `Timeout` with the cause
//! `ResourceVersionTooLarge` (`storage.NewTooLargeResourceVersionError`, retry after 1 s).
//! A watch from a future resourceVersion needs no special case: it delivers the events after
//! that version once they happen, as the watch cache does.

use super::SimState;
use super::errors::ApiError;
use serde_json::json;
use std::time::Duration;

/// How long a read waits for the store to reach the requested resourceVersion.
pub const BLOCK_TIMEOUT: Duration = Duration::from_secs(3);

/// The 504 for a read at `requested` when the store is at `current`.
pub fn too_large_resource_version(requested: u64, current: u64) -> ApiError {
    ApiError::from_status(json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("Timeout: Too large resource version: {requested}, current: {current}"),
        "reason": "Timeout",
        "details": {
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1
        },
        "code": 504
    }))
}

impl SimState {
    /// Waits until the store reaches `rv` (at most `BLOCK_TIMEOUT`); the 504 when it does not.
    pub(super) async fn wait_until_fresh(&self, rv: u64) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + BLOCK_TIMEOUT;
        loop {
            let current = self.store.current_rv();
            if current >= rv {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(too_large_resource_version(rv, current));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
