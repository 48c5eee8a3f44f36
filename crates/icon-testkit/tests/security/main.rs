//! Security checks that need the services as processes, with their real logs.

mod secrets_in_logs;
