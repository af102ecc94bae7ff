//! The real fleetctl binary against a real tenantd (real HTTPS, real SQLite): a fleet admin's
//! session with an API token, output forms, and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;

use serde_json::{json, Value};
use tenantd::auth::password::{HashCost, Password};
use tenantd::store::SqliteStore;
use tenantd::{ServeConfig, Server};

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn fleetctl(url: &str, token: &str, ca: &std::path::Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetctl"))
        .args(["--url", url, "--token", token, "--ca"])
        .arg(ca)
        .args(args)
        .env_remove("FLEETCTL_ORG")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).to_string(),
        err: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_admin_session_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    tenantd::bootstrap(
        &data,
        "ops@p.example",
        "Ops",
        Some(Password::new("platform operations secret")),
        HashCost::default(),
    )
    .unwrap();
    let server = Server::start(ServeConfig::new(
        &data,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    ))
    .await
    .unwrap();
    let ca = server.ca_file.clone().unwrap();
    let url = format!("https://localhost:{}", server.addr.port());
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .cookie_store(true)
        .build()
        .unwrap();
    let post = |path: &str, body: Value| {
        let (http, url) = (http.clone(), url.clone());
        let path = path.to_string();
        async move {
            let r = http
                .post(format!("{url}{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // The platform makes an org; its admin signs in, sets a password, makes a site and a token.
    post(
        "/api/v1/auth/login",
        json!({ "email": "ops@p.example", "password": "platform operations secret" }),
    )
    .await;
    let (_, org) = post("/api/v1/orgs", json!({ "slug": "shop", "name": "Shop", "admin_email": "boss@shop.example", "admin_name": "Boss" })).await;
    post("/api/v1/auth/logout", json!({})).await;
    let initial = org["admin_password"].as_str().unwrap().to_string();
    post(
        "/api/v1/auth/login",
        json!({ "email": "boss@shop.example", "password": initial }),
    )
    .await;
    let (status, _) = post(
        "/api/v1/auth/password",
        json!({ "current_password": initial, "new_password": "a private shop secret" }),
    )
    .await;
    assert_eq!(status, 204);
    let (_, site) = post("/api/v1/orgs/shop/sites", json!({ "name": "Lyon", "timezone": "Europe/Paris",
        "business_hours": { "mon": [], "tue": [], "wed": [], "thu": [], "fri": [], "sat": [], "sun": [] } })).await;
    let site = site["id"].as_i64().unwrap().to_string();
    let (_, token) = post(
        "/api/v1/orgs/shop/api-tokens",
        json!({ "name": "fleet automation", "role": "org_admin" }),
    )
    .await;
    let token = token["secret"].as_str().unwrap().to_string();

    // A kiosk is waiting with an activation code.
    let store = SqliteStore::open(&data).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let code = tenantd::fleet::service::new_activation_code();
    let digest = tenantd::fleet::service::activation_code_digest(&code);
    let now = tenantd::store::now_unix();
    store
        .blocking(|db| {
            db.create_activation_code(
                &digest,
                "claim-b1",
                "req-1",
                &csr,
                &json!({ "board": "qemu", "serial": "Q1", "firmware": "0.1.0" }),
                now + 600,
                now,
            )
        })
        .unwrap();

    let r = fleetctl(
        &url,
        &token,
        &ca,
        &["enroll-token", "create", "--site", &site, "--uses", "5"],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.contains("secret (shown once): ket_"), "{}", r.out);
    let r = fleetctl(&url, &token, &ca, &["--json", "enroll-token", "list"]);
    let tokens: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(tokens["tokens"].as_array().unwrap().len(), 1);

    let r = fleetctl(
        &url,
        &token,
        &ca,
        &["claim", &code.to_lowercase(), "--site", &site],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let device = r.out.split_whitespace().nth(1).unwrap().to_string();
    assert!(device.starts_with("kiosk-"), "{}", r.out);
    let r = fleetctl(&url, &token, &ca, &["devices", "list"]);
    assert!(r.out.lines().next().unwrap().starts_with("id"));
    assert!(r.out.contains(&device));

    let r = fleetctl(
        &url,
        &token,
        &ca,
        &[
            "config",
            "set",
            &device,
            "--language",
            "fr",
            "--languages",
            "fr,en",
            "--idle",
            "90",
        ],
    );
    assert_eq!(
        (r.code, r.out.trim()),
        // Version 1 came with the claim.
        (0, "config version 2 sent"),
        "{}",
        r.err
    );
    let r = fleetctl(
        &url,
        &token,
        &ca,
        &["config", "set", &device, "--warning", "25"],
    );
    assert_eq!(r.out.trim(), "config version 3 sent", "{}", r.err);
    let r = fleetctl(&url, &token, &ca, &["--json", "config", "get", &device]);
    let cfg: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(
        (
            cfg["settings"]["default_language"].as_str(),
            cfg["settings"]["idle_s"].as_u64(),
            cfg["settings"]["warning_s"].as_u64()
        ),
        (Some("fr"), Some(90), Some(25))
    );
    // A bad value is the API's refusal: exit code 1 and its code on stderr.
    let r = fleetctl(
        &url,
        &token,
        &ca,
        &["config", "set", &device, "--telemetry", "1"],
    );
    assert_eq!(r.code, 1);
    assert!(r.err.contains("invalid_input"), "{}", r.err);

    let r = fleetctl(
        &url,
        &token,
        &ca,
        &[
            "cmd",
            &device,
            "restart",
            "kiosk-media",
            "--expires-in",
            "600",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.starts_with("command cmd-"), "{}", r.out);
    let r = fleetctl(&url, &token, &ca, &["cmds", &device]);
    assert!(r.out.contains("sent"), "{}", r.out);

    let r = fleetctl(&url, &token, &ca, &["revoke", &device]);
    assert_eq!(
        (r.code, r.out.trim()),
        (0, "revoked (1 certificate(s))"),
        "{}",
        r.err
    );

    // Errors: unknown device, bad token, nobody listening.
    let r = fleetctl(&url, &token, &ca, &["devices", "show", "kiosk-nobody"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("not_found"));
    let r = fleetctl(&url, "kct_not-a-real-token", &ca, &["devices", "list"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("unauthenticated"));
    let r = fleetctl(&url, "no-prefix", &ca, &["devices", "list"]);
    assert_eq!(r.code, 2);
    let r = fleetctl("https://localhost:1", &token, &ca, &["devices", "list"]);
    assert_eq!(r.code, 3, "{}", r.err);
    server.shutdown().await.unwrap();
}
