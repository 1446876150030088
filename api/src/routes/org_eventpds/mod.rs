//! `org.eventpds.*`: this server's own methods (the operator's event-log API).

pub mod admin;
