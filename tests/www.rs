//! `www/v1/errors`, the file the static assets answer `GET /v1/errors` with, is the error
//! table of this build: written from `edge_mailer::http::meta::errors_table()` and held to it
//! here. After a change to the table, `EDGE_MAILER_WRITE_WWW=1 cargo test www` writes it again.

use edge_mailer::error::{ErrorCode, ERROR_TABLE_LEN};
use edge_mailer::http::meta::errors_table;
use edge_mailer::http::STATIC_ROUTES;
use serde_json::Value;

const ERRORS_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/www/v1/errors");

fn table() -> Value {
    errors_table()
}

#[test]
fn www_v1_errors_is_the_error_table() {
    let expected = table();
    if std::env::var_os("EDGE_MAILER_WRITE_WWW").is_some() {
        let text = serde_json::to_string_pretty(&expected).unwrap() + "\n";
        std::fs::write(ERRORS_FILE, text).expect("write www/v1/errors");
    }
    let file = std::fs::read_to_string(ERRORS_FILE).expect("www/v1/errors");
    let served: Value = serde_json::from_str(&file).expect("www/v1/errors is JSON");
    assert!(
        served == expected,
        "www/v1/errors is not the error table of this build: run EDGE_MAILER_WRITE_WWW=1 cargo test www"
    );
}

#[test]
fn the_table_has_every_code_with_its_status_and_prose() {
    let table = table();
    let rows = table["errors"].as_array().unwrap();
    assert_eq!(rows.len(), ERROR_TABLE_LEN);
    for (row, code) in rows.iter().zip(ErrorCode::ALL) {
        assert_eq!(row["code"], code.as_str());
        assert_eq!(row["status"], code.status());
        assert_eq!(row["retryable"], code.retryable());
        assert!(!row["meaning"].as_str().unwrap().is_empty() && !row["remedy"].as_str().unwrap().is_empty());
    }
    assert!(!table["steps"].as_array().unwrap().is_empty());
    assert!(!table["statuses"].as_array().unwrap().is_empty());
}

/// The assets answer a path with the file of that name, and `www/_headers` gives a file without
/// an extension its content type.
#[test]
fn every_static_route_is_a_file_with_its_content_type() {
    let headers = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/www/_headers")).unwrap();
    for (method, path) in STATIC_ROUTES {
        assert_eq!(*method, "GET");
        let file = format!("{}/www{path}", env!("CARGO_MANIFEST_DIR"));
        assert!(std::path::Path::new(&file).is_file(), "{path}: no file {file}");
        let rule = format!("{path}\n  Content-Type: application/json; charset=utf-8\n");
        assert!(headers.contains(&rule), "www/_headers has no content type for {path}");
    }
}
