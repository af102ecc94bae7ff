//! Sign-in, sessions, passwords, API tokens, audit chain and transport, against a real tenantd
//! over HTTPS with a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{session_from, Cred, TestCloud, ROOT_EMAIL, ROOT_PASSWORD, STAFF_PASSWORD};
use reqwest::Method;
use serde_json::json;
use tenantd::auth::password::{stored_cost, HashCost};
use tenantd::auth::throttle::ThrottlePolicy;
use tenantd::tenancy::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_ends_other_sessions_only() {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    let first = cloud.staff(&org, "ana@shop.example", Role::Agent).await;
    let second = cloud.login("ana@shop.example", STAFF_PASSWORD).await;

    // Wrong current password, then a common new one, are refused and change nothing.
    let (status, body) = cloud
        .call(Method::POST, "/api/v1/auth/password", &first,
              Some(json!({ "current_password": "not my password", "new_password": "a fine new secret" })))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("wrong_current_password"))
    );
    let (status, body) = cloud
        .call(
            Method::POST,
            "/api/v1/auth/password",
            &first,
            Some(json!({ "current_password": STAFF_PASSWORD, "new_password": "password123" })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("weak_password"))
    );
    assert_eq!(
        cloud.call(Method::GET, "/api/v1/me", &second, None).await.0,
        200
    );

    let (status, _) = cloud
        .call(
            Method::POST,
            "/api/v1/auth/password",
            &first,
            Some(
                json!({ "current_password": STAFF_PASSWORD, "new_password": "a fine new secret" }),
            ),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        cloud.call(Method::GET, "/api/v1/me", &first, None).await.0,
        200
    );
    assert_eq!(
        cloud.call(Method::GET, "/api/v1/me", &second, None).await.0,
        401,
        "old session must end"
    );
    let (status, _) = cloud
        .call(
            Method::POST,
            "/api/v1/auth/login",
            &Cred::None,
            Some(json!({ "email": "ana@shop.example", "password": STAFF_PASSWORD })),
        )
        .await;
    assert_eq!(status, 401);
    cloud.login("ana@shop.example", "a fine new secret").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_user_ends_their_sessions_and_sign_in() {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    let admin = cloud.staff(&org, "boss@shop.example", Role::OrgAdmin).await;
    let agent_id = cloud.add_user(&org, "tech@shop.example", Role::Agent);
    let agent = cloud.login("tech@shop.example", STAFF_PASSWORD).await;
    assert_eq!(
        cloud.call(Method::GET, "/api/v1/me", &agent, None).await.0,
        200
    );

    let (status, body) = cloud
        .call(
            Method::PATCH,
            &format!("/api/v1/orgs/shop/users/{agent_id}"),
            &admin,
            Some(json!({ "disabled": true })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["disabled"], true);
    assert_eq!(
        cloud.call(Method::GET, "/api/v1/me", &agent, None).await.0,
        401
    );
    let (status, body) = cloud
        .call(
            Method::POST,
            "/api/v1/auth/login",
            &Cred::None,
            Some(json!({ "email": "tech@shop.example", "password": STAFF_PASSWORD })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_credentials"))
    );

    // An admin cannot disable themselves, and the last enabled admin cannot be demoted.
    let me = cloud.call(Method::GET, "/api/v1/me", &admin, None).await.1;
    let my_id = me["user"]["id"].as_i64().unwrap();
    let (status, body) = cloud
        .call(
            Method::PATCH,
            &format!("/api/v1/orgs/shop/users/{my_id}"),
            &admin,
            Some(json!({ "disabled": true })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("disabled"))
    );
    let first_admin = cloud
        .call(Method::GET, "/api/v1/orgs/shop/users", &admin, None)
        .await
        .1["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "first-admin@shop.example")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, _) = cloud
        .call(
            Method::PATCH,
            &format!("/api/v1/orgs/shop/users/{first_admin}"),
            &admin,
            Some(json!({ "role": "agent" })),
        )
        .await;
    assert_eq!(status, 200, "two admins: one may be demoted");

    // Disabling the organization ends every session of its users.
    let (status, _) = cloud
        .call(
            Method::PATCH,
            "/api/v1/orgs/shop",
            &root,
            Some(json!({ "disabled": true })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        cloud.call(Method::GET, "/api/v1/me", &admin, None).await.0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_hashes_are_argon2id_with_the_minimum_cost_and_no_plain_text_is_stored() {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    let admin = cloud.staff(&org, "boss@shop.example", Role::OrgAdmin).await;
    let (status, body) = cloud
        .call(
            Method::POST,
            "/api/v1/orgs/shop/users",
            &admin,
            Some(
                json!({ "email": "new@shop.example", "name": "New", "role": "agent",
                           "password": "chosen by the admin 7" }),
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let ids: Vec<i64> = cloud
        .call(Method::GET, "/api/v1/orgs/shop/users", &admin, None)
        .await
        .1["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    for id in ids.into_iter().chain([1]) {
        let stored = cloud.store.blocking(|db| db.password_hash(id)).unwrap();
        let (algorithm, cost) = stored_cost(&stored).expect("a PHC string");
        assert_eq!(algorithm, "argon2id");
        assert!(cost.memory_kib >= HashCost::MINIMUM.memory_kib, "{stored}");
        assert!(cost.iterations >= 2 && cost.parallelism >= 1, "{stored}");
    }
    // No password in plain text anywhere in the database files.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(cloud.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    for secret in [ROOT_PASSWORD, STAFF_PASSWORD, "chosen by the admin 7"] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} found in the data dir"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_email_and_wrong_password_answer_alike() {
    // Throttling is relaxed here so that only the answers are compared.
    let cloud = TestCloud::start_with(|c| {
        c.throttle = ThrottlePolicy {
            account_free_failures: 1000,
            address_free_failures: 1000,
            ..ThrottlePolicy::default()
        }
    })
    .await;
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    let mut answers = std::collections::BTreeSet::new();
    for i in 0..9 {
        for (email, times) in [
            (format!("nobody{i}@nowhere.example"), &mut unknown),
            (ROOT_EMAIL.to_string(), &mut wrong),
        ] {
            let start = Instant::now();
            let r = cloud
                .request(
                    Method::POST,
                    "/api/v1/auth/login",
                    &Cred::None,
                    Some(&json!({ "email": email, "password": "not the password" })),
                )
                .await;
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            times.push(start.elapsed());
            answers.insert((status, body));
        }
    }
    assert_eq!(answers.len(), 1, "one answer for both: {answers:?}");
    let (status, body) = answers.into_iter().next().unwrap();
    assert_eq!(status, 401);
    assert!(body.contains("invalid_credentials"));
    unknown.sort();
    wrong.sort();
    let (u, w) = (unknown[4].as_secs_f64(), wrong[4].as_secs_f64());
    println!("median sign-in time: unknown email {u:.4} s, wrong password {w:.4} s");
    // Both spend one argon2 verification; a missing one would be a 10x difference.
    assert!(
        u / w < 3.0 && w / u < 3.0,
        "unknown {u:.4} s vs wrong {w:.4} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_are_throttled_with_growing_delays() {
    let cloud = TestCloud::start().await;
    let attempt = |email: &'static str| {
        let cloud = &cloud;
        async move {
            cloud
                .call(
                    Method::POST,
                    "/api/v1/auth/login",
                    &Cred::None,
                    Some(json!({ "email": email, "password": "wrong password here" })),
                )
                .await
        }
    };
    for _ in 0..5 {
        assert_eq!(attempt(ROOT_EMAIL).await.0, 401);
    }
    assert_eq!(
        attempt(ROOT_EMAIL).await.0,
        401,
        "the sixth failure starts the delay"
    );
    let r = cloud
        .request(
            Method::POST,
            "/api/v1/auth/login",
            &Cred::None,
            Some(&json!({ "email": ROOT_EMAIL, "password": ROOT_PASSWORD })),
        )
        .await;
    assert_eq!(r.status(), 429, "even the right password waits");
    assert!(r.headers().get("retry-after").is_some());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_attempts");
    // An unknown account is throttled the same way.
    for _ in 0..6 {
        attempt("ghost@nowhere.example").await;
    }
    assert_eq!(attempt("ghost@nowhere.example").await.0, 429);
    // After the delay the right password works and clears the account.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cloud.login_root().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_flags_and_security_headers() {
    let cloud = TestCloud::start().await;
    let r = cloud
        .request(
            Method::POST,
            "/api/v1/auth/login",
            &Cred::None,
            Some(&json!({ "email": ROOT_EMAIL, "password": ROOT_PASSWORD })),
        )
        .await;
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(attrs[0].starts_with("__Host-kc_session="));
    for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(&flag), "{flag} missing in {cookie}");
    }
    assert!(!cookie.to_lowercase().contains("domain="));
    let token = session_from(&r);
    assert!(token.len() >= 22, "at least 128 bits");
    // A new token on every sign-in.
    let again = cloud.login_root().await;
    assert!(matches!(again, Cred::Cookie(ref t) if *t != token));

    for path in [
        "/api/v1/health",
        "/api/v1/nowhere",
        "/console/",
        "/",
        "/api/v1/me",
    ] {
        let r = cloud.request(Method::GET, path, &Cred::None, None).await;
        assert_eq!(
            r.headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=31536000"),
            "HSTS on {path}"
        );
    }
    let console = cloud
        .request(Method::GET, "/console/", &Cred::None, None)
        .await;
    assert!(console.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));

    // Logout ends the session and clears the cookie.
    let r = cloud
        .request(
            Method::POST,
            "/api/v1/auth/logout",
            &Cred::Cookie(token.clone()),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        cloud
            .call(Method::GET, "/api/v1/me", &Cred::Cookie(token), None)
            .await
            .0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_not_served() {
    let cloud = TestCloud::start().await;
    let addr = cloud.server.as_ref().unwrap().addr;
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf
    })
    .await
    .unwrap();
    assert!(
        !reply.starts_with(b"HTTP/"),
        "plain HTTP answered: {:?}",
        String::from_utf8_lossy(&reply)
    );
    // And over TLS the same request works.
    assert_eq!(
        cloud
            .call(Method::GET, "/api/v1/health", &Cred::None, None)
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_act_with_their_role_and_stop_when_revoked() {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    let admin = cloud.staff(&org, "boss@shop.example", Role::OrgAdmin).await;
    let (id, token) = cloud.token(&admin, &org, "org_admin").await;
    let (_, agent_token) = cloud.token(&admin, &org, "agent").await;
    let (status, me) = cloud.call(Method::GET, "/api/v1/me", &token, None).await;
    assert_eq!((status, me["kind"].as_str()), (200, Some("api_token")));
    assert_eq!(
        cloud
            .call(Method::GET, "/api/v1/orgs/shop/users", &token, None)
            .await
            .0,
        200
    );
    assert_eq!(
        cloud
            .call(Method::GET, "/api/v1/orgs/shop/users", &agent_token, None)
            .await
            .0,
        403
    );
    let (status, _) = cloud
        .call(
            Method::POST,
            "/api/v1/auth/password",
            &token,
            Some(json!({ "current_password": "x", "new_password": "y" })),
        )
        .await;
    assert_eq!(status, 403, "a token has no password");
    let listed = cloud
        .call(Method::GET, "/api/v1/orgs/shop/api-tokens", &admin, None)
        .await
        .1;
    let text = listed.to_string();
    let Cred::Bearer(secret) = &token else {
        unreachable!()
    };
    assert!(
        !text.contains(secret.as_str()),
        "secrets are shown once only"
    );
    assert_eq!(
        cloud
            .call(
                Method::DELETE,
                &format!("/api/v1/orgs/shop/api-tokens/{id}"),
                &admin,
                None
            )
            .await
            .0,
        204
    );
    assert_eq!(
        cloud.call(Method::GET, "/api/v1/me", &token, None).await.0,
        401
    );
    // A malformed Authorization header is refused, not ignored in favour of a cookie.
    let r = cloud
        .client
        .get(format!("{}/api/v1/me", cloud.base))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_users_must_choose_their_own_password_first() {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    let admin = cloud.staff(&org, "boss@shop.example", Role::OrgAdmin).await;
    let (status, body) = cloud
        .call(
            Method::POST,
            "/api/v1/orgs/shop/users",
            &admin,
            Some(json!({ "email": "newbie@shop.example", "name": "Newbie", "role": "org_admin" })),
        )
        .await;
    assert_eq!(status, 201);
    let initial = body["initial_password"].as_str().unwrap().to_string();
    let newbie = cloud.login("newbie@shop.example", &initial).await;
    let me = cloud.call(Method::GET, "/api/v1/me", &newbie, None).await.1;
    assert_eq!(me["user"]["must_change_password"], true);
    let (status, body) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/users", &newbie, None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("password_change_required"))
    );
    let (status, _) = cloud
        .call(
            Method::POST,
            "/api/v1/auth/password",
            &newbie,
            Some(json!({ "current_password": initial, "new_password": "my very own secret" })),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        cloud
            .call(Method::GET, "/api/v1/orgs/shop/users", &newbie, None)
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_json_errors() {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    let admin = cloud.staff(&org, "boss@shop.example", Role::OrgAdmin).await;
    let Cred::Cookie(c) = &admin else {
        unreachable!()
    };
    let r = cloud
        .client
        .post(format!("{}/api/v1/orgs/shop/sites", cloud.base))
        .header("cookie", format!("__Host-kc_session={c}"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");

    let mut site = common::site_body("Lyon");
    site["business_hours"]["mon"] = json!([{ "open": "18:00", "close": "09:00" }]);
    let (status, body) = cloud
        .call(Method::POST, "/api/v1/orgs/shop/sites", &admin, Some(site))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("business_hours"))
    );
    let mut site = common::site_body("Lyon");
    site["timezone"] = json!("Mars/Olympus");
    let (status, body) = cloud
        .call(Method::POST, "/api/v1/orgs/shop/sites", &admin, Some(site))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("timezone"))
    );
    let (status, _) = cloud
        .call(
            Method::POST,
            "/api/v1/orgs/shop/sites",
            &admin,
            Some(common::site_body("Lyon")),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = cloud
        .call(
            Method::POST,
            "/api/v1/orgs/shop/sites",
            &admin,
            Some(common::site_body("Lyon")),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    let (status, body) = cloud
        .call(Method::PUT, "/api/v1/orgs/shop/settings", &admin,
              Some(json!({ "recording": "always", "retention_days": 30, "technicians_may_review_recordings": false })))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let (status, body) = cloud
        .call(Method::PUT, "/api/v1/orgs/shop/settings", &admin,
              Some(json!({ "recording": "off", "retention_days": 0, "technicians_may_review_recordings": false })))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("retention_days"))
    );
    // Nothing was lost: the settings are still the defaults.
    let settings = cloud
        .call(Method::GET, "/api/v1/orgs/shop/settings", &admin, None)
        .await
        .1;
    assert_eq!(
        (
            settings["recording"].as_str(),
            settings["retention_days"].as_u64()
        ),
        (Some("off"), Some(90))
    );

    // A cookie-authenticated change that the browser marks cross-site is refused.
    let r = cloud
        .client
        .put(format!("{}/api/v1/orgs/shop/settings", cloud.base))
        .header("cookie", format!("__Host-kc_session={c}"))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({ "recording": "on_with_consent", "retention_days": 30, "technicians_may_review_recordings": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_records_admin_actions_and_the_verify_command_catches_tampering() {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    let admin = cloud.staff(&org, "boss@shop.example", Role::OrgAdmin).await;
    cloud
        .call(Method::PUT, "/api/v1/orgs/shop/settings", &admin,
              Some(json!({ "recording": "on_with_consent", "retention_days": 30, "technicians_may_review_recordings": true })))
        .await;
    cloud.token(&admin, &org, "agent").await;
    cloud
        .call(
            Method::POST,
            "/api/v1/orgs/shop/users",
            &admin,
            Some(json!({ "email": "t@shop.example", "name": "T", "role": "agent" })),
        )
        .await;
    let (status, page) = cloud
        .call(
            Method::GET,
            "/api/v1/orgs/shop/audit?limit=100",
            &admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "org.create",
        "user.create",
        "auth.sign_in",
        "settings.update",
        "api_token.create",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let (_, verify) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/audit/verify", &admin, None)
        .await;
    assert_eq!(verify["ok"], true);
    // Paging: newest first, `next_before` continues.
    let (_, first) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/audit?limit=2", &admin, None)
        .await;
    let next = first["next_before"].as_i64().unwrap();
    let (_, second) = cloud
        .call(
            Method::GET,
            &format!("/api/v1/orgs/shop/audit?limit=2&before={next}"),
            &admin,
            None,
        )
        .await;
    assert!(second["entries"][0]["seq"].as_i64().unwrap() < next);

    let bin = env!("CARGO_BIN_EXE_tenantd");
    let data = cloud.data_dir();
    let ok = std::process::Command::new(bin)
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("org/"));

    // Someone edits an entry behind the service's back.
    let conn = rusqlite::Connection::open(data.join(tenantd::store::DB_FILE)).unwrap();
    conn.execute(
        "UPDATE audit_log SET detail = '{\"recording\":\"off\"}' WHERE action = 'settings.update'",
        [],
    )
    .unwrap();
    drop(conn);
    let bad = std::process::Command::new(bin)
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
    assert!(String::from_utf8_lossy(&bad.stdout).contains("BROKEN"));
    let (_, verify) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/audit/verify", &admin, None)
        .await;
    assert_eq!(verify["ok"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_every_route() {
    let cloud = TestCloud::start().await;
    let (status, doc) = cloud
        .call(Method::GET, "/api/v1/openapi.json", &Cred::None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for route in tenantd::api::route_table() {
        assert!(
            doc["paths"][route.path][route.method.as_str().to_lowercase()].is_object(),
            "{} {}",
            route.method,
            route.path
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stops_on_shutdown() {
    let mut cloud = TestCloud::start().await;
    let server = cloud.server.take().unwrap();
    let addr = server.addr;
    tokio::time::timeout(Duration::from_secs(15), server.shutdown())
        .await
        .expect("stops in time")
        .unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "nothing listens any more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls_1_2_and_1_3_are_offered() {
    let cloud = TestCloud::start().await;
    let port = cloud.server.as_ref().unwrap().addr.port();
    let ca = cloud.ca_file().to_path_buf();
    let outcome = |version: &'static str| {
        let ca = ca.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut child = std::process::Command::new("openssl")
                    .args([
                        "s_client",
                        "-connect",
                        &format!("127.0.0.1:{port}"),
                        version,
                    ])
                    .arg("-CAfile")
                    .arg(&ca)
                    .args(["-servername", "localhost", "-verify_return_error"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("openssl is installed by scripts/test");
                drop(child.stdin.take());
                let out = child.wait_with_output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                text.contains("Verify return code: 0 (ok)") && !text.contains("Cipher is (NONE)")
            })
            .await
            .unwrap()
        }
    };
    assert!(outcome("-tls1_3").await, "TLS 1.3 with the local CA");
    assert!(outcome("-tls1_2").await, "TLS 1.2 with the local CA");
    assert!(!outcome("-tls1_1").await, "TLS 1.1 must be refused");
    assert!(!outcome("-tls1").await, "TLS 1.0 must be refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_after_their_idle_and_absolute_time_outs() {
    use tenantd::auth::tokens::{new_session_token, SessionPolicy};
    use tenantd::store::By;
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    cloud.add_user(&org, "tech@shop.example", Role::Agent);
    let policy = SessionPolicy::default();
    let agent = policy.for_role(Role::Agent);
    let account = cloud
        .store
        .blocking(|db| db.login_record("tech@shop.example"))
        .unwrap()
        .unwrap();
    let t0 = 1_900_000_000;
    let sign_in = |at: i64| {
        let s = new_session_token();
        let by = By {
            actor: "tech@shop.example".into(),
            now: at,
        };
        cloud
            .store
            .blocking(|db| db.record_sign_in(&account, &s.digest, &by, "127.0.0.1"))
            .unwrap();
        s.digest
    };
    let alive = |digest: [u8; 32], at: i64| {
        cloud
            .store
            .blocking(|db| db.principal_for_session(&digest, at, &policy))
            .unwrap()
            .is_some()
    };
    let idle = agent.idle.as_secs() as i64;
    let absolute = agent.absolute.as_secs() as i64;

    // Idle: used just before the time-out keeps it alive; silence past it ends it.
    let s = sign_in(t0);
    assert!(alive(s, t0 + idle - 1));
    assert!(
        alive(s, t0 + 2 * idle - 2),
        "activity pushed the idle deadline"
    );
    assert!(!alive(s, t0 + 3 * idle), "idle too long");
    assert!(!alive(s, t0 + 2 * idle - 2), "an ended session stays ended");

    // Absolute: even a busy session ends.
    let s = sign_in(t0);
    let mut at = t0;
    while at + idle / 2 < t0 + absolute {
        at += idle / 2;
        assert!(alive(s, at));
    }
    assert!(!alive(s, t0 + absolute));

    // Shorter for super admins.
    assert!(policy.for_role(Role::SuperAdmin).idle < agent.idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_parallel_guesses_is_held_to_the_free_failures() {
    let cloud = TestCloud::start().await;
    let mut guesses = Vec::new();
    for i in 0..30 {
        let client = cloud.client.clone();
        let url = format!("{}/api/v1/auth/login", cloud.base);
        guesses.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({ "email": ROOT_EMAIL, "password": format!("guess number {i}") }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut checked = 0;
    for g in guesses {
        match g.await.unwrap() {
            401 => checked += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    // Five free failures, and at most one more attempt at a time once they are used.
    assert!(checked <= 6, "{checked} guesses were checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_answer_413_and_commands_refuse_a_mistyped_data_dir() {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let big = json!({ "slug": "x".repeat(300 * 1024), "name": "n", "admin_email": "a@b.example", "admin_name": "n" });
    let (status, body) = cloud
        .call(Method::POST, "/api/v1/orgs", &root, Some(big))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    let missing = cloud.dir.path().join("no-such-dir");
    let bin = env!("CARGO_BIN_EXE_tenantd");
    for args in [
        vec!["audit", "verify"],
        vec!["reset-password", "--email", "x@y.example"],
        vec!["demo"],
    ] {
        let out = std::process::Command::new(bin)
            .args(&args)
            .arg("--data")
            .arg(&missing)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{args:?} succeeded on a missing store"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no tenantd store"),
            "{args:?}"
        );
    }
    assert!(!missing.exists(), "nothing is created at a mistyped path");
    let out = std::process::Command::new(bin)
        .args([
            "reset-password",
            "--email",
            "nobody@nowhere.example",
            "--data",
        ])
        .arg(cloud.data_dir())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user with the email"));
}
