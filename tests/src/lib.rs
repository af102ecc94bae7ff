//! Shared set-up for the end-to-end tests: a real tenantd (with its managed mosquitto and a
//! real SQLite file) on free loopback ports, and an HTTPS client that trusts its CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod kiosk;
pub mod media;
pub mod stage;
pub mod ui;

use std::net::SocketAddr;

use reqwest::header::{HeaderValue, COOKIE, SET_COOKIE};
use reqwest::{Client, Method};
use serde_json::{json, Value};
use tenantd::auth::password::{HashCost, Password};
use tenantd::fleet::broker::BrokerSettings;
use tenantd::fleet::FleetBroker;
use tenantd::{ServeConfig, Server};

pub const ROOT_EMAIL: &str = "ops@platform.example";
pub const ROOT_PASSWORD: &str = "platform operations secret";

/// Ports for the servers tests start: below the ephemeral range (see kioskcall-testkit).
pub use kioskcall_testkit::free_ports;

/// A running cloud.
#[allow(missing_debug_implementations)]
pub struct Cloud {
    pub dir: tempfile::TempDir,
    pub server: Option<Server>,
    pub base: String,
    pub client: Client,
    pub broker: BrokerSettings,
}

impl Cloud {
    /// Bootstraps a store and serves it with the managed broker.
    pub async fn start() -> Cloud {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        tenantd::bootstrap(
            &data,
            ROOT_EMAIL,
            "Ops",
            Some(Password::new(ROOT_PASSWORD)),
            HashCost::default(),
        )
        .unwrap();
        let [device, provision, service] = free_ports::<3>();
        let broker = BrokerSettings {
            device_listen: SocketAddr::from(([127, 0, 0, 1], device)),
            provision_listen: SocketAddr::from(([127, 0, 0, 1], provision)),
            service_listen: SocketAddr::from(([127, 0, 0, 1], service)),
            ..BrokerSettings::default()
        };
        let mut config = ServeConfig::new(&data, SocketAddr::from(([127, 0, 0, 1], 0)));
        config.fleet = Some(FleetBroker::Managed(broker.clone()));
        let server = Server::start(config).await.unwrap();
        let ca = std::fs::read(server.ca_file.as_ref().unwrap()).unwrap();
        let client = Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap();
        let base = format!("https://localhost:{}", server.addr.port());
        Cloud {
            dir,
            server: Some(server),
            base,
            client,
            broker,
        }
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Calls the API with a session cookie (or none); returns status and JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        session: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(s) = session {
            req = req.header(
                COOKIE,
                HeaderValue::from_str(&format!("__Host-kc_session={s}")).unwrap(),
            );
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Signs in; returns the session token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .client
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "sign-in of {email}");
        let cookie = r.headers()[SET_COOKIE].to_str().unwrap();
        cookie
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_string()
    }
}

/// An organization `shop` with a site and a claim batch, made through the API.
#[derive(Debug, Clone)]
pub struct Shop {
    /// The org admin's session.
    pub admin: String,
    pub site_id: i64,
    /// The claim batch as the API returned it (certificate, key, server CA).
    pub batch: Value,
}

impl Shop {
    pub async fn create(cloud: &Cloud) -> Shop {
        let root = cloud.login(ROOT_EMAIL, ROOT_PASSWORD).await;
        let (status, batch) = cloud
            .call(
                Method::POST,
                "/api/v1/claim-batches",
                Some(&root),
                Some(json!({ "name": "e2e" })),
            )
            .await;
        assert_eq!(status, 201, "{batch}");
        let (status, org) = cloud
            .call(Method::POST, "/api/v1/orgs", Some(&root), Some(json!({
                "slug": "shop", "name": "Shop", "admin_email": "boss@shop.example", "admin_name": "Boss" })))
            .await;
        assert_eq!(status, 201, "{org}");
        let first = org["admin_password"].as_str().unwrap();
        let admin = cloud.login("boss@shop.example", first).await;
        let (status, _) = cloud
            .call(
                Method::POST,
                "/api/v1/auth/password",
                Some(&admin),
                Some(json!({ "current_password": first, "new_password": "a private shop secret" })),
            )
            .await;
        assert_eq!(status, 204);
        let (status, site) = cloud
            .call(Method::POST, "/api/v1/orgs/shop/sites", Some(&admin), Some(json!({
                "name": "Lyon", "timezone": "Europe/Paris",
                "business_hours": { "mon": [], "tue": [], "wed": [], "thu": [], "fri": [], "sat": [], "sun": [] } })))
            .await;
        assert_eq!(status, 201, "{site}");
        Shop {
            admin,
            site_id: site["id"].as_i64().unwrap(),
            batch,
        }
    }

    /// A new single-use enrollment token for the site.
    pub async fn enrollment_token(&self, cloud: &Cloud) -> String {
        let (status, token) = cloud
            .call(
                Method::POST,
                "/api/v1/orgs/shop/enrollment-tokens",
                Some(&self.admin),
                Some(json!({ "site_id": self.site_id })),
            )
            .await;
        assert_eq!(status, 201, "{token}");
        token["secret"].as_str().unwrap().to_string()
    }

    /// What a kiosk-sync needs to reach `cloud` with this shop's claim batch.
    pub fn kiosk_files(&self, cloud: &Cloud) -> kiosk::KioskFiles {
        kiosk::KioskFiles {
            claim_cert_pem: self.batch["certificate_pem"].as_str().unwrap().into(),
            claim_key_pem: self.batch["key_pem"].as_str().unwrap().into(),
            server_ca_pem: self.batch["server_ca_pem"].as_str().unwrap().into(),
            device_port: cloud.broker.device_listen.port(),
            provision_port: cloud.broker.provision_listen.port(),
        }
    }

    /// Creates a staff user of the shop with `role` and the password `password` (already
    /// chosen: the first sign-in's change is done here through the API).
    pub async fn staff(&self, cloud: &Cloud, email: &str, name: &str, role: &str, password: &str) {
        let (status, user) = self
            .api(
                cloud,
                Method::POST,
                "/api/v1/orgs/shop/users",
                Some(json!({ "email": email, "name": name, "role": role })),
            )
            .await;
        assert_eq!(status, 201, "{user}");
        let first = user["initial_password"].as_str().unwrap();
        let session = cloud.login(email, first).await;
        let (status, body) = cloud
            .call(
                Method::POST,
                "/api/v1/auth/password",
                Some(&session),
                Some(json!({ "current_password": first, "new_password": password })),
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }

    /// Calls the API as the org admin.
    pub async fn api(
        &self,
        cloud: &Cloud,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        cloud.call(method, path, Some(&self.admin), body).await
    }
}
