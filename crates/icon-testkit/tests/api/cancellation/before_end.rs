//! Cancelling a checkout before it ended.
