//! The OpenAPI document and the router describe the same routes.

mod common;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use common::*;

fn doc_routes() -> BTreeSet<(String, String)> {
    let doc = suiftly_api::openapi::document();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[test]
fn document_lists_exactly_the_route_table() {
    let table: BTreeSet<(String, String)> = suiftly_api::route_table()
        .into_iter()
        .map(|(m, p)| (m.as_str().to_string(), p.to_string()))
        .collect();
    assert_eq!(doc_routes(), table);
    assert_eq!(table.len(), 37);
}

#[tokio::test]
async fn every_documented_route_is_served_and_nothing_else() {
    let t = test_app().await;
    let s = t.login(1).await;
    for (method, path) in doc_routes() {
        let concrete = path
            .replace("{service}", "seal")
            .replace("{key_id}", "1")
            .replace("{seal_key_id}", "1")
            .replace("{package_id}", &format!("0x{}", "a".repeat(64)))
            .replace("{invoice_id}", "1");
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let r = t.call(m.clone(), &concrete, Some(&s.token), None).await;
        assert_ne!(r.code(), "route_not_found", "{method} {path}");
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        // A method the document does not list for this path is not served.
        for other in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            if doc_routes().contains(&(other.as_str().to_string(), path.clone())) {
                continue;
            }
            let r = t.call(other.clone(), &concrete, Some(&s.token), None).await;
            assert!(
                r.status == StatusCode::METHOD_NOT_ALLOWED || r.code() == "route_not_found",
                "{other} {path} is served but undocumented"
            );
        }
    }
    // Documented error responses use the documented error codes.
    let doc = suiftly_api::openapi::document();
    let codes = doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .clone();
    for code in [
        "insufficient_balance",
        "monthly_limit_exceeded",
        "api_key_limit_reached",
        "unknown_service",
        "service_not_available",
    ] {
        assert!(codes.contains(&serde_json::json!(code)));
    }
}

#[test]
fn links_point_at_existing_operations() {
    let doc = suiftly_api::openapi::document();
    let mut ids = BTreeSet::new();
    let mut targets = Vec::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            ids.insert(op["operationId"].as_str().unwrap().to_string());
            for resp in op["responses"].as_object().unwrap().values() {
                if let Some(links) = resp.get("links") {
                    for l in links.as_object().unwrap().values() {
                        targets.push(l["operationId"].as_str().unwrap().to_string());
                    }
                }
            }
        }
    }
    assert_eq!(
        ids.len(),
        suiftly_api::route_table().len(),
        "operation ids are unique"
    );
    assert!(targets.len() >= 7);
    for t in targets {
        assert!(ids.contains(&t), "{t}");
    }
}
