//! `org.eventpds.*`: this server's own methods (the operator's event-log API, the outbox, an
//! account's notification channels).

pub mod account;
pub mod admin;
pub mod notifications;
