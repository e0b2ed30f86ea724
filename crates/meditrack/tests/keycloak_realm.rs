//! The Keycloak realm export in `deploy/keycloak` issues what the hub reads: our roles in
//! `realm_access.roles`, our audience, and the tenant, patient and provider claims.

#![allow(clippy::unwrap_used)]

use serde_json::Value;

fn realm() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/keycloak/meditrack-realm.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_realm_has_every_role_the_matrix_knows() {
    let realm = realm();
    let names: Vec<&str> = realm["roles"]["realm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for role in kernel::Role::ALL {
        assert!(names.contains(&role.name()), "{}", role.name());
    }
    assert!(names.contains(&kernel::role::SUPERVISOR_ROLE));
}

#[test]
fn the_client_puts_our_audience_and_claims_in_access_tokens() {
    let realm = realm();
    let config = meditrack::Config::default();
    let client = realm["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientId"] == config.oidc_audience.as_str())
        .expect("a client named like the audience the hub expects");
    let mappers = client["protocolMappers"].as_array().unwrap();
    let audience = mappers
        .iter()
        .find(|m| m["protocolMapper"] == "oidc-audience-mapper")
        .unwrap();
    assert_eq!(
        audience["config"]["included.client.audience"],
        config.oidc_audience.as_str()
    );
    assert_eq!(audience["config"]["access.token.claim"], "true");
    for claim in ["tenant_id", "patient_id", "provider_id"] {
        let mapper = mappers
            .iter()
            .find(|m| m["config"]["claim.name"] == claim)
            .unwrap_or_else(|| panic!("a mapper for {claim}"));
        assert_eq!(mapper["config"]["access.token.claim"], "true", "{claim}");
    }
    assert_eq!(realm["accessTokenLifespan"], 300, "5 minutes (000 §5.1)");
    assert_eq!(realm["ssoSessionMaxLifespan"], 36000, "10 hours");
}
