//! All integration tests in one binary (one link, one run).
#![allow(clippy::result_large_err)]

mod support;

#[global_allocator]
static ALLOCATOR: support::alloc::Counting = support::alloc::Counting;

mod api;
mod dkim;
mod forms;
mod limits;
mod local;
mod openapi;
mod queue;
mod quota;
mod records;
mod relay_check;
mod reports;
mod resend;
mod smtp_session;
mod suppressions;
mod timeline;
mod warm;
mod www;
