//! All integration tests in one binary (one link, one run).

mod support;

mod smtp_session;
