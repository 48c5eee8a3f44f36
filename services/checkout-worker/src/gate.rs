//! At most `ICON_RETAILER_MAX_IN_FLIGHT` calls from this worker to one retailer at once.
//!
//! A pass never waits for a slot: an order whose retailer is full is postponed through a delay
//! tier, so a retailer that hangs holds a few calls and no prefetch slots, and checkouts for
//! every other retailer go on at their normal speed.

use icon_domain::RetailerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
        let semaphore = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(retailer.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.limit)))
            .clone();
        semaphore.try_acquire_owned().ok()
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
}
