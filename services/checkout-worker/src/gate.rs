//! At most `ICON_RETAILER_MAX_IN_FLIGHT` calls from this worker to one retailer at once.
//!
//! A pass waits for a slot at most [`SLOT_WAIT`]: a retailer that answers quickly frees one
//! well within it, so a burst for one retailer queues here for a moment instead of taking the
//! long way through a delay tier. An order whose retailer stays full is postponed through a
//! delay tier, so a retailer that hangs holds a few calls and its other messages hold prefetch
//! slots only that moment, and checkouts for every other retailer go on.

use icon_domain::RetailerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The longest a pass waits for a free slot before postponing the order.
pub const SLOT_WAIT: Duration = Duration::from_millis(100);

pub struct RetailerGate {
    limit: usize,
    open: Mutex<HashMap<RetailerId, Arc<Semaphore>>>,
}

impl RetailerGate {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Mutex::default(),
        }
    }

    /// A slot for one call to `retailer`, or `None` if it already has `limit` calls out.
    pub fn try_enter(&self, retailer: &RetailerId) -> Option<OwnedSemaphorePermit> {
        self.semaphore(retailer).try_acquire_owned().ok()
    }

    /// A slot for one call to `retailer`, waiting up to `wait` for one to free up; `None` if
    /// none did.
    pub async fn enter(
        &self,
        retailer: &RetailerId,
        wait: Duration,
    ) -> Option<OwnedSemaphorePermit> {
        let semaphore = self.semaphore(retailer);
        if let Ok(slot) = semaphore.clone().try_acquire_owned() {
            return Some(slot);
        }
        tokio::time::timeout(wait, semaphore.acquire_owned())
            .await
            .ok()?
            .ok()
    }

    fn semaphore(&self, retailer: &RetailerId) -> Arc<Semaphore> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(retailer.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.limit)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_each_retailer_on_its_own() {
        let gate = RetailerGate::new(2);
        let slow = RetailerId::parse("slow".to_owned()).unwrap();
        let fast = RetailerId::parse("fast".to_owned()).unwrap();
        let a = gate.try_enter(&slow);
        let b = gate.try_enter(&slow);
        assert!(a.is_some() && b.is_some());
        assert!(gate.try_enter(&slow).is_none());
        assert!(gate.try_enter(&fast).is_some());
        drop(a);
        assert!(gate.try_enter(&slow).is_some());
    }

    #[tokio::test]
    async fn waits_a_moment_for_a_slot_then_gives_up() {
        let gate = Arc::new(RetailerGate::new(1));
        let r = RetailerId::parse("r".to_owned()).unwrap();
        let held = gate.try_enter(&r).unwrap();
        // Nobody frees the slot: `enter` gives up after its wait.
        assert!(gate.enter(&r, Duration::from_millis(10)).await.is_none());
        // A slot freed while waiting is taken.
        let waiting = {
            let (gate, r) = (gate.clone(), r.clone());
            tokio::spawn(async move { gate.enter(&r, Duration::from_secs(30)).await.is_some() })
        };
        tokio::task::yield_now().await;
        drop(held);
        assert!(waiting.await.unwrap());
    }
}
