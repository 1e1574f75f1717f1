//! `www/v1/openapi.json` cannot drift from the Worker: its operations are the route table's
//! and the static assets' (and each route of the Worker is served, not a 404), and its error
//! codes are the error table's.

use serde_json::Value;

use crate::support::{call, relay_vars, Req, ScriptedEnv, ScriptedRelay};
use edge_mailer::error::ErrorCode;
use edge_mailer::http::{ROUTES, STATIC_ROUTES};

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/www/v1/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("www/v1/openapi.json")).expect("valid JSON")
}

#[test]
fn the_documented_operations_are_the_route_table() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete", "options", "head"] {
            if item.get(method).is_some() {
                documented.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    let mut routes: Vec<(String, String)> =
        ROUTES.iter().chain(STATIC_ROUTES).map(|(m, p)| (m.to_string(), p.to_string())).collect();
    documented.sort();
    routes.sort();
    assert_eq!(documented, routes, "www/v1/openapi.json and edge_mailer::http::{{ROUTES, STATIC_ROUTES}} differ");
}

#[test]
fn every_route_is_served() {
    let env = ScriptedEnv::new(
        ScriptedRelay::new(vec![]),
        &relay_vars(&[("FORMS", r#"{"contact": {"to": "o@example.com"}}"#)]),
    );
    for (method, template) in ROUTES {
        let path = template.replace("{id}", "0123456789abcdef0123456789abcdef").replace("{form}", "contact");
        let (response, json) =
            call(&env, Req::new(method, &path, Vec::new()).header("authorization", "Bearer key-one"));
        let unrouted = json["error"]["message"].as_str().is_some_and(|m| m.starts_with("no route"))
            || json["message"]
                .as_str()
                .is_some_and(|m| m.contains("is not part of edge-mailer's Resend-compatible API"));
        assert!(!unrouted && response.status != 405, "{method} {path} is not served: {} {json}", response.status);
    }
}

#[test]
fn the_documented_error_codes_are_the_error_table() {
    let doc = document();
    let documented: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("components.schemas.ErrorCode.enum")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let table: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(documented, table);
}
