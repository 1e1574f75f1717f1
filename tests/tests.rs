//! All integration tests in one binary (one link, one run).
#![allow(clippy::result_large_err)]

mod support;

mod api;
mod base64;
mod dkim;
mod forms;
mod openapi;
mod queue;
mod relay_check;
mod resend;
mod smtp_session;
mod warm;
mod www;
