//! The built-in issuer as a client meets it, on SQLite and PostgreSQL: accounts log in,
//! refresh with rotation, log out; service accounts use client credentials; bad tokens
//! are refused at the API with the reason.

#![allow(clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use identity::user::{Kind, NewUser};
use serde_json::{Value, json};
use testkit::{TestApp, json};

testkit::on_both_backends!(
    an_account_logs_in_refreshes_with_rotation_and_logs_out,
    wrong_credentials_and_malformed_requests_get_oauth_errors,
    service_accounts_use_client_credentials_and_people_do_not,
    disabled_accounts_can_neither_log_in_nor_refresh,
    the_issuer_publishes_its_configuration_and_keys,
    expired_foreign_forged_and_unsigned_tokens_are_refused,
);

const PASSWORD: &str = "synthetic-password-1234";
const SEARCH: &str = "/api/v1/patients/search?lastName=Any";

async fn add(app: &TestApp, username: &str, kind: Kind, roles: &[&str]) {
    let (service, db) = meditrack::accounts::open_identity(app.config())
        .await
        .unwrap();
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    let new = NewUser::parse(
        username,
        testkit::TEST_TENANT,
        kind,
        &roles,
        None,
        Some("DOC-1"),
    )
    .unwrap();
    service.add_user(new, PASSWORD).await.unwrap();
    db.close().await;
}

async fn token_request(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    let body: Vec<String> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
    reqwest::Client::new()
        .post(app.url("/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .await
        .unwrap()
}

async fn login(app: &TestApp, username: &str) -> Value {
    let answer = token_request(
        app,
        &[
            ("grant_type", "password"),
            ("username", username),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(answer.headers()["cache-control"], "no-store");
    let (status, body) = json(answer).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn refresh(app: &TestApp, token: &Value) -> (u16, Value) {
    json(
        token_request(
            app,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str().unwrap()),
            ],
        )
        .await,
    )
    .await
}

async fn api_status(app: &TestApp, access: &Value) -> u16 {
    app.client_with(access.as_str().unwrap())
        .get(app.url(SEARCH))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn an_account_logs_in_refreshes_with_rotation_and_logs_out(app: TestApp) {
    add(&app, "dr.demo", Kind::Person, &["DOCTOR"]).await;
    let first = login(&app, "dr.demo").await;
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(
        first["expires_in"], 300,
        "5-minute access tokens (000 §5.1)"
    );
    assert_eq!(
        first["refresh_expires_in"], 1800,
        "30-minute refresh tokens"
    );
    assert_eq!(api_status(&app, &first["access_token"]).await, 200);

    let (status, second) = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"], "rotated");
    assert_eq!(api_status(&app, &second["access_token"]).await, 200);

    // The spent token again: someone replayed it, so the whole session ends.
    let (status, problem) = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(
        (status, problem["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = refresh(&app, &second["refresh_token"]).await;
    assert_eq!(status, 400, "the rotated token died with its session");

    // Logout ends a session; unknown tokens get the same 204.
    let third = login(&app, "dr.demo").await;
    for token in [third["refresh_token"].as_str().unwrap(), "never-issued"] {
        let answer = reqwest::Client::new()
            .post(app.url("/auth/logout"))
            .json(&json!({"refresh_token": token}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 204);
    }
    let (status, _) = refresh(&app, &third["refresh_token"]).await;
    assert_eq!(status, 400);
}

async fn wrong_credentials_and_malformed_requests_get_oauth_errors(app: TestApp) {
    add(&app, "nurse.demo", Kind::Person, &["NURSE"]).await;
    let wrong = token_request(
        &app,
        &[
            ("grant_type", "password"),
            ("username", "nurse.demo"),
            ("password", "wrong-password-0000"),
        ],
    )
    .await;
    let (status, wrong) = json(wrong).await;
    let unknown = token_request(
        &app,
        &[
            ("grant_type", "password"),
            ("username", "nobody.here"),
            ("password", PASSWORD),
        ],
    )
    .await;
    let (status_unknown, unknown) = json(unknown).await;
    assert_eq!((status, status_unknown), (400, 400));
    assert_eq!(wrong["code"], "auth.invalid_grant");
    assert_eq!(
        (&wrong["error"], &wrong["detail"]),
        (&unknown["error"], &unknown["detail"]),
        "a wrong password and an unknown user look the same"
    );
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("username", "nurse.demo")], "invalid_request"),
        (
            &[("grant_type", "authorization_code")],
            "unsupported_grant_type",
        ),
        (
            &[("grant_type", "password"), ("username", "nurse.demo")],
            "invalid_request",
        ),
    ];
    for (form, error) in cases {
        let (status, body) = json(token_request(&app, form).await).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(error)),
            "{form:?}"
        );
    }
    let answer = reqwest::Client::new()
        .post(app.url("/auth/token"))
        .header("content-type", "text/plain")
        .body("grant_type=password")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    // The name tried never reaches the log.
    assert!(!testkit::captured_logs().contains("nobody.here"));
}

async fn service_accounts_use_client_credentials_and_people_do_not(app: TestApp) {
    add(&app, "lis-bridge", Kind::Service, &["LAB_TECHNICIAN"]).await;
    add(&app, "person.one", Kind::Person, &["DOCTOR"]).await;
    let basic = |id: &str, secret: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    };
    let answer = reqwest::Client::new()
        .post(app.url("/auth/token"))
        .header("authorization", basic("lis-bridge", PASSWORD))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    let (status, body) = json(answer).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("refresh_token").is_none(),
        "no refresh token for a client"
    );
    // A lab technician may not read patient demographics.
    assert_eq!(api_status(&app, &body["access_token"]).await, 403);

    let (status, body) = json(
        token_request(
            &app,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "lis-bridge"),
                ("client_secret", "wrong-secret-00000"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, _) = json(
        token_request(
            &app,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "person.one"),
                ("client_secret", PASSWORD),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(status, 401, "a person is not a client");
    let (status, _) = json(
        token_request(
            &app,
            &[
                ("grant_type", "password"),
                ("username", "lis-bridge"),
                ("password", PASSWORD),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "a client does not log in with a password");
}

async fn disabled_accounts_can_neither_log_in_nor_refresh(app: TestApp) {
    add(&app, "leaver", Kind::Person, &["NURSE"]).await;
    let tokens = login(&app, "leaver").await;
    let (service, db) = meditrack::accounts::open_identity(app.config())
        .await
        .unwrap();
    assert!(service.disable("leaver").await.unwrap());
    assert!(
        !service.disable("leaver").await.unwrap(),
        "already disabled"
    );
    db.close().await;
    let (status, _) = refresh(&app, &tokens["refresh_token"]).await;
    assert_eq!(status, 400);
    let (status, _) = json(
        token_request(
            &app,
            &[
                ("grant_type", "password"),
                ("username", "leaver"),
                ("password", PASSWORD),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
}

async fn the_issuer_publishes_its_configuration_and_keys(app: TestApp) {
    add(&app, "keys.demo", Kind::Person, &["DOCTOR"]).await;
    let (status, discovery) = json(app.get("/.well-known/openid-configuration").await).await;
    assert_eq!(status, 200);
    let issuer = app.config().public_url();
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(discovery["jwks_uri"], format!("{issuer}/auth/jwks"));
    assert_eq!(discovery["token_endpoint"], format!("{issuer}/auth/token"));
    let (_, jwks) = json(app.get("/auth/jwks").await).await;
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str()),
        (Some("EC"), Some("ES256"))
    );
    assert!(key.get("d").is_none(), "never the private part");

    let tokens = login(&app, "keys.demo").await;
    let access = tokens["access_token"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(access.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], key["kid"]);
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(access.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["tenant_id"], testkit::TEST_TENANT);
    assert_eq!(claims["realm_access"]["roles"], json!(["DOCTOR"]));
    assert_eq!(claims["provider_id"], "DOC-1");
    assert_eq!(claims["aud"], "meditrack-api");
}

async fn expired_foreign_forged_and_unsigned_tokens_are_refused(app: TestApp) {
    let key = meditrack::accounts::signing_key(app.config()).unwrap();
    let base: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(
                app.token(&["DOCTOR"], testkit::TEST_TENANT, None)
                    .split('.')
                    .nth(1)
                    .unwrap(),
            )
            .unwrap(),
    )
    .unwrap();
    let signed = |change: &dyn Fn(&mut Value)| {
        let mut claims = base.clone();
        change(&mut claims);
        key.sign(&claims)
    };
    let now = base["iat"].as_i64().unwrap();
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(base.to_string())
    );
    let forged = auth::keys::SigningKey::generate().sign(&base);
    let cases = [
        (
            signed(&|c| c["exp"] = json!(now - 120)),
            "auth.token_expired",
        ),
        (
            signed(&|c| c["aud"] = json!("another-api")),
            "auth.token_invalid",
        ),
        (
            signed(&|c| c["iss"] = json!("https://elsewhere.example")),
            "auth.token_invalid",
        ),
        (forged, "auth.token_invalid"),
        (unsigned, "auth.token_invalid"),
    ];
    for (token, code) in cases {
        let answer = app
            .client_with(&token)
            .get(app.url(SEARCH))
            .send()
            .await
            .unwrap();
        assert!(
            answer.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token"),
            "{code}"
        );
        let (status, body) = json(answer).await;
        assert_eq!((status, body["code"].as_str()), (401, Some(code)), "{body}");
    }
    let good = signed(&|_| {});
    assert_eq!(
        app.client_with(&good)
            .get(app.url(SEARCH))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
