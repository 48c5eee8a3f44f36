//! The queue type every ICON queue is declared with (`ICON_AMQP_QUEUE_TYPE`), parsed once in
//! each service's settings. Why quorum is the default: see [`crate::topology`].

use icon_runtime::{Env, SettingsError};
use std::fmt;
use std::str::FromStr;

/// The variable every service reads the queue type from.
pub const QUEUE_TYPE_VAR: &str = "ICON_AMQP_QUEUE_TYPE";

/// How RabbitMQ stores a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Replicated Raft log, confirms dead-lettering (RabbitMQ 3.10+). The default.
    #[default]
    Quorum,
    /// The classic queue, for brokers older than 3.10. Dead-lettering is at most once.
    Classic,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }

    pub(crate) fn other(self) -> Self {
        match self {
            QueueType::Quorum => QueueType::Classic,
            QueueType::Classic => QueueType::Quorum,
        }
    }

    /// Reads [`QUEUE_TYPE_VAR`], so every service parses it the same way; a bad value names the
    /// variable.
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        env.parse(QUEUE_TYPE_VAR, QueueType::default())
    }
}

impl fmt::Display for QueueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a queue type: expected `quorum` (the default, RabbitMQ 3.10 or later) or \
     `classic` (for older brokers)"
)]
pub struct ParseQueueTypeError(String);

impl FromStr for QueueType {
    type Err = ParseQueueTypeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "quorum" => Ok(QueueType::Quorum),
            "classic" => Ok(QueueType::Classic),
            _ => Err(ParseQueueTypeError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_queue_types() {
        assert_eq!("quorum".parse(), Ok(QueueType::Quorum));
        assert_eq!(" Classic ".parse(), Ok(QueueType::Classic));
        let err = "stream".parse::<QueueType>().unwrap_err().to_string();
        assert!(err.contains("`stream`") && err.contains("quorum"), "{err}");
        assert_eq!(QueueType::default(), QueueType::Quorum);
        let env = Env::from_pairs([(QUEUE_TYPE_VAR, "lazy")]);
        let err = QueueType::from_env(&env).unwrap_err().to_string();
        assert!(err.starts_with("ICON_AMQP_QUEUE_TYPE="), "{err}");
        assert_eq!(
            QueueType::from_env(&Env::default()).unwrap(),
            QueueType::Quorum
        );
    }
}
