//! The edge's protections, over real HTTP: security headers on every answer, CORS for
//! configured origins only, and rate limits per token subject and per client IP, in one
//! process and shared by two instances through a real Redis.

#![allow(clippy::unwrap_used)]

use testkit::{TestApp, json};

const SEARCH: &str = "/api/v1/patients/search?lastName=Any";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers() {
    let app = TestApp::sqlite().await;
    let bare = reqwest::Client::new();
    for answer in [
        app.get(SEARCH).await,
        app.get("/api/v1/patients/nope").await,
        bare.get(app.url(SEARCH)).send().await.unwrap(),
        app.get("/no/such/route").await,
    ] {
        let h = answer.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store", "PHI is never cached");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_the_configured_origins_and_no_others() {
    let app = TestApp::sqlite_with(|c| {
        c.cors_allowed_origins = vec!["https://portal.example".to_owned()];
    })
    .await;
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, app.url(SEARCH))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://portal.example").await.unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://portal.example"
    );
    assert!(
        allowed.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let call = app
        .client
        .get(app.url(SEARCH))
        .header("origin", "https://portal.example")
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 200);
    assert_eq!(
        call.headers()["access-control-allow-origin"],
        "https://portal.example"
    );
    assert!(
        call.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("etag")
    );
}

/// Sends `n` requests with `client` to `url` one after another; the statuses.
async fn burst(client: &reqwest::Client, url: &str, n: usize) -> Vec<reqwest::Response> {
    let mut answers = Vec::new();
    for _ in 0..n {
        answers.push(client.get(url).send().await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_one_subject_is_limited_and_told_when_to_retry() {
    let app = TestApp::sqlite_with(|c| c.rate_limit_per_subject = 2.0).await;
    let answers = burst(&app.client, &app.url(SEARCH), 8).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
    assert_eq!(
        &statuses[..4],
        &[200, 200, 200, 200],
        "a burst of twice the rate"
    );
    let limited = answers.into_iter().find(|a| a.status() == 429).unwrap();
    assert_eq!(limited.headers()["retry-after"], "1");
    let (_, problem) = json(limited).await;
    assert_eq!(problem["code"], "request.rate_limited");
    // Another user is not held back by the first; health checks never are.
    let other = app.client_with(&app.token(&["NURSE"], testkit::TEST_TENANT, None));
    assert_eq!(
        other.get(app.url(SEARCH)).send().await.unwrap().status(),
        200
    );
    for answer in burst(&reqwest::Client::new(), &app.url("/health/live"), 20).await {
        assert_eq!(answer.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_enforce_one_limit_per_client_ip() {
    let Some(redis) = testkit::redis_url() else {
        return;
    };
    let prefix = format!("meditrack-test-{}:", uuid::Uuid::now_v7().simple());
    let limited = |redis: String, prefix: String| {
        move |c: &mut meditrack::Config| {
            c.rate_limit_per_ip = 3.0;
            c.redis_url = Some(redis);
            c.redis_prefix = prefix;
        }
    };
    let a = TestApp::sqlite_with(limited(redis.clone(), prefix.clone())).await;
    let b = TestApp::sqlite_with(limited(redis, prefix)).await;
    // Six from this address through A use up the burst; B, sharing the bucket, refuses.
    let from_a = burst(&a.client, &a.url(SEARCH), 6).await;
    assert!(from_a.iter().all(|r| r.status() == 200));
    let from_b = burst(&b.client, &b.url(SEARCH), 3).await;
    let statuses: Vec<u16> = from_b.iter().map(|r| r.status().as_u16()).collect();
    assert!(
        statuses.contains(&429),
        "one limit across instances: {statuses:?}"
    );
    // And it refills: after a second, both answer again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(b.get(SEARCH).await.status(), 200);
    assert_eq!(a.get(SEARCH).await.status(), 200);
}
