//! The SMTP submission client. It imports nothing from the crate but `address`.
//!
//! Everything but `client.rs` is free of I/O: replies are parsed from bytes, commands render
//! to bytes, capabilities, settings and errors are plain data. `client.rs` is the one async
//! driver that moves those bytes over a [`client::Network`] connection.

pub mod auth;
pub mod capabilities;
pub mod check;
pub mod client;
pub mod command;
pub mod data;
pub mod envelope;
pub mod error;
pub mod outcome;
pub mod reply;
pub mod settings;
pub mod transcript;
