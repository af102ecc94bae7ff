//! Test harness: a real tenantd on 127.0.0.1:0 with a real SQLite file in a temp dir, and an
//! HTTPS client that trusts the CA tenantd made.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod crl;
pub mod journey;
pub mod live;
pub mod mqtt;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use reqwest::header::{HeaderMap, HeaderValue, COOKIE, SET_COOKIE};
use reqwest::{Client, Method, Response};
use serde_json::{json, Value};
use tenantd::auth::password::{HashCost, Password, PasswordHasher};
use tenantd::store::{By, NewUser, SqliteStore};
use tenantd::tenancy::{OrgRef, OrgScope, Role};
use tenantd::{ServeConfig, Server};

pub const ROOT_EMAIL: &str = "root@platform.example";
pub const ROOT_PASSWORD: &str = "platform owner secret 2026";
pub const STAFF_PASSWORD: &str = "staff member secret 2026";

/// A data dir with a store and its super admin, not served yet.
pub struct Bootstrapped {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
}

/// A running tenantd and what the tests need to talk to it.
pub struct TestCloud {
    pub dir: tempfile::TempDir,
    pub server: Option<Server>,
    pub base: String,
    pub client: Client,
    pub store: SqliteStore,
    staff_hash: String,
}

/// Credentials a request is made with.
#[derive(Debug, Clone)]
pub enum Cred {
    None,
    Cookie(String),
    Bearer(String),
}

impl TestCloud {
    pub async fn start() -> TestCloud {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut ServeConfig)) -> TestCloud {
        Self::serve(Self::bootstrap(), tune).await
    }

    /// A bootstrapped data dir, not served yet: for tests that prepare files (an export, an
    /// external broker) before `serve` starts.
    pub fn bootstrap() -> Bootstrapped {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        tenantd::bootstrap(
            &data,
            ROOT_EMAIL,
            "Root",
            Some(Password::new(ROOT_PASSWORD)),
            HashCost::default(),
        )
        .unwrap();
        Bootstrapped { dir, data }
    }

    /// Serves a bootstrapped data dir.
    pub async fn serve(prepared: Bootstrapped, tune: impl FnOnce(&mut ServeConfig)) -> TestCloud {
        let Bootstrapped { dir, data } = prepared;
        let (server, base, client) = Self::start_server(&data, tune).await;
        let store = SqliteStore::open(&data).unwrap();
        let staff_hash = PasswordHasher::new(HashCost::default())
            .unwrap()
            .hash(&Password::new(STAFF_PASSWORD))
            .unwrap();
        TestCloud {
            dir,
            server: Some(server),
            base,
            client,
            store,
            staff_hash,
        }
    }

    async fn start_server(
        data: &Path,
        tune: impl FnOnce(&mut ServeConfig),
    ) -> (Server, String, Client) {
        let mut config = ServeConfig::new(data, SocketAddr::from(([127, 0, 0, 1], 0)));
        tune(&mut config);
        let server = Server::start(config).await.unwrap();
        let ca = std::fs::read(server.ca_file.as_ref().unwrap()).unwrap();
        let client = Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let base = format!("https://localhost:{}", server.addr.port());
        (server, base, client)
    }

    /// Stops tenantd and serves the same data dir again (on a new HTTPS port), as after an
    /// operator's restart.
    pub async fn restart(&mut self, tune: impl FnOnce(&mut ServeConfig)) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
        let (server, base, client) = Self::start_server(&self.data_dir(), tune).await;
        self.server = Some(server);
        self.base = base;
        self.client = client;
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn ca_file(&self) -> &Path {
        self.server.as_ref().unwrap().ca_file.as_deref().unwrap()
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        cred: &Cred,
        body: Option<&Value>,
    ) -> Response {
        let mut headers = HeaderMap::new();
        match cred {
            Cred::None => {}
            Cred::Cookie(c) => {
                headers.insert(
                    COOKIE,
                    HeaderValue::from_str(&format!("__Host-kc_session={c}")).unwrap(),
                );
            }
            Cred::Bearer(t) => {
                headers.insert(
                    reqwest::header::AUTHORIZATION,
                    HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
                );
            }
        }
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .headers(headers);
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.unwrap()
    }

    /// Sends and returns status and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        cred: &Cred,
        body: Option<Value>,
    ) -> (u16, Value) {
        let r = self.request(method, path, cred, body.as_ref()).await;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// Waits until the JSON answer to `GET path` satisfies `check`, and returns it.
    pub async fn eventually(
        &self,
        cred: &Cred,
        path: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        tokio::time::timeout(mqtt::WAIT, async {
            loop {
                let (status, body) = self.call(Method::GET, path, cred, None).await;
                if status == 200 && check(&body) {
                    return body;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{path} never matched"))
    }

    /// Signs in and returns the session cookie value.
    pub async fn login(&self, email: &str, password: &str) -> Cred {
        let r = self
            .request(
                Method::POST,
                "/api/v1/auth/login",
                &Cred::None,
                Some(&json!({ "email": email, "password": password })),
            )
            .await;
        assert_eq!(r.status(), 200, "sign-in of {email}");
        Cred::Cookie(session_from(&r))
    }

    pub async fn login_root(&self) -> Cred {
        self.login(ROOT_EMAIL, ROOT_PASSWORD).await
    }

    /// Creates an organization through the API (as the super admin) and returns its ref.
    pub async fn create_org(&self, root: &Cred, slug: &str) -> OrgRef {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/orgs",
                root,
                Some(json!({ "slug": slug, "name": format!("Org {slug}"),
                              "admin_email": format!("first-admin@{slug}.example"),
                              "admin_name": "First Admin" })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        OrgRef {
            id: body["org"]["id"].as_i64().unwrap(),
            slug: slug.into(),
            name: format!("Org {slug}"),
        }
    }

    /// Adds a user straight into the store (known password, no change required): fast fixtures.
    pub fn add_user(&self, org: &OrgRef, email: &str, role: Role) -> i64 {
        let scope = OrgScope::trusted_internal(org.clone());
        let new = NewUser {
            email: email.into(),
            name: "Test User".into(),
            role,
            password_hash: self.staff_hash.clone(),
            must_change_password: false,
        };
        self.store
            .blocking(|db| db.create_user(&scope, &By::new("test"), &new))
            .unwrap()
            .id
    }

    /// Adds a user and signs them in.
    pub async fn staff(&self, org: &OrgRef, email: &str, role: Role) -> Cred {
        self.add_user(org, email, role);
        self.login(email, STAFF_PASSWORD).await
    }

    /// Creates an API token through the API with an admin's credentials.
    pub async fn token(&self, admin: &Cred, org: &OrgRef, role: &str) -> (i64, Cred) {
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/api/v1/orgs/{}/api-tokens", org.slug),
                admin,
                Some(json!({ "name": format!("{role} token"), "role": role })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["token"]["id"].as_i64().unwrap(),
            Cred::Bearer(body["secret"].as_str().unwrap().to_string()),
        )
    }
}

impl TestCloud {
    /// Adds a site straight into the store.
    pub fn add_site(&self, org: &OrgRef, name: &str) -> i64 {
        let scope = OrgScope::trusted_internal(org.clone());
        let input: tenantd::sites::SiteInput = serde_json::from_value(site_body(name)).unwrap();
        let spec = input.validate().unwrap();
        self.store
            .blocking(|db| db.save_site(&scope, &By::new("test"), None, &spec))
            .unwrap()
            .id
    }

    /// Enrolls a device straight into the store (through a one-use token) and returns its id.
    pub fn add_device(&self, org: &OrgRef, site_id: i64) -> String {
        let scope = OrgScope::trusted_internal(org.clone());
        let by = By::new("test");
        let token = tenantd::auth::tokens::new_api_token();
        self.store
            .blocking(|db| {
                db.create_enrollment_token(
                    &scope,
                    &by,
                    site_id,
                    "ket_test",
                    &token.digest,
                    1,
                    by.now + 60,
                )
            })
            .unwrap();
        let id = tenantd::fleet::service::new_device_id()
            .as_str()
            .to_string();
        let device_id = id.clone();
        self.store
            .blocking(|db| {
                db.enroll_with_token(
                    &token.digest,
                    |org_id, site_id| {
                        Ok(tenantd::store::NewDevice {
                            id: device_id.clone(),
                            org_id,
                            site_id,
                            hardware_serial: "HW-1".into(),
                            board: "qemu".into(),
                            firmware: "0.1.0".into(),
                            enrolled_via: "token",
                            cert_serial: hex_serial(),
                            cert_not_after: by.now + 86_400,
                            certificate_pem: "test".into(),
                            provision_key: format!("claim-test/{device_id}"),
                        })
                    },
                    by.now,
                )
            })
            .unwrap()
            .unwrap();
        id
    }

    /// Leaves a provisioning request waiting for an activation code, as a kiosk would, and
    /// returns the code.
    pub fn add_activation_code(&self) -> String {
        let code = tenantd::fleet::service::new_activation_code();
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let hw = json!({ "board": "qemu", "serial": "HW-2", "firmware": "0.1.0" });
        let now = tenantd::store::now_unix();
        let digest = tenantd::fleet::service::activation_code_digest(&code);
        let request_id = format!("req-{}", hex_serial());
        self.store
            .blocking(|db| {
                db.create_activation_code(
                    &digest,
                    "claim-test",
                    &request_id,
                    &csr,
                    &hw,
                    now + 600,
                    now,
                )
            })
            .unwrap();
        code
    }
}

/// A kiosk enrolled over MQTT, and what the API made for it.
pub struct EnrolledKiosk {
    pub root: Cred,
    /// An org admin of "shop".
    pub admin: Cred,
    /// The site "Lyon" it is enrolled into.
    pub site: i64,
    /// The claim batch's `server_ca_pem`: what kiosks trust to reach the broker.
    pub server_ca: String,
    pub device_id: kiosk_protocol::DeviceId,
    pub certificate_pem: String,
    pub key_pem: String,
    /// The claim batch's certificate and key, to enroll more kiosks.
    pub claim_cert_pem: String,
    pub claim_key_pem: String,
}

impl TestCloud {
    /// Through the API: a claim batch `lyon-2026` (as the super admin), an organization "shop"
    /// with an admin and a site "Lyon", and a one-use enrollment token; then a kiosk with its
    /// own key enrolls with them through the broker's provisioning listener on
    /// `provision_port`.
    pub async fn enroll_kiosk(&self, provision_port: u16) -> EnrolledKiosk {
        use kiosk_protocol::provision::ProvisionResult;
        let root = self.login_root().await;
        let (status, batch) = self
            .call(
                Method::POST,
                "/api/v1/claim-batches",
                &root,
                Some(json!({ "name": "lyon-2026", "note": "first run" })),
            )
            .await;
        assert_eq!(status, 201, "{batch}");
        let server_ca = batch["server_ca_pem"].as_str().unwrap().to_string();
        assert!(server_ca.contains("BEGIN CERTIFICATE"));

        let org = self.create_org(&root, "shop").await;
        let admin = self.staff(&org, "boss@shop.example", Role::OrgAdmin).await;
        let site = self.add_site(&org, "Lyon");
        let (status, token) = self
            .call(
                Method::POST,
                "/api/v1/orgs/shop/enrollment-tokens",
                &admin,
                Some(json!({ "site_id": site, "uses": 1 })),
            )
            .await;
        assert_eq!(status, 201, "{token}");
        let secret = token["secret"].as_str().unwrap().to_string();
        assert!(secret.starts_with("ket_"));

        let claim = mqtt::Claim {
            port: provision_port,
            ca_pem: &server_ca,
            cert_pem: batch["certificate_pem"].as_str().unwrap(),
            key_pem: batch["key_pem"].as_str().unwrap(),
            cn: "claim-lyon-2026",
        };
        let (key, mut answers, _client) = mqtt::provision(&claim, "req-1", Some(secret)).await;
        let ProvisionResult::Certificate {
            device_id,
            certificate_pem,
            ..
        } = mqtt::answer(&mut answers, "req-1").await
        else {
            panic!("expected a certificate")
        };
        EnrolledKiosk {
            root,
            admin,
            site,
            server_ca,
            device_id,
            certificate_pem,
            key_pem: key.serialize_pem(),
            claim_cert_pem: batch["certificate_pem"].as_str().unwrap().to_string(),
            claim_key_pem: batch["key_pem"].as_str().unwrap().to_string(),
        }
    }

    /// Enrolls one more kiosk into the first one's organization and site, with a new token;
    /// returns its id, certificate and key.
    pub async fn enroll_another(
        &self,
        first: &EnrolledKiosk,
        provision_port: u16,
        request_id: &str,
    ) -> (kiosk_protocol::DeviceId, String, String) {
        use kiosk_protocol::provision::ProvisionResult;
        let (status, token) = self
            .call(
                Method::POST,
                "/api/v1/orgs/shop/enrollment-tokens",
                &first.admin,
                Some(json!({ "site_id": first.site, "uses": 1 })),
            )
            .await;
        assert_eq!(status, 201, "{token}");
        let claim = mqtt::Claim {
            port: provision_port,
            ca_pem: &first.server_ca,
            cert_pem: &first.claim_cert_pem,
            key_pem: &first.claim_key_pem,
            cn: "claim-lyon-2026",
        };
        let secret = token["secret"].as_str().unwrap().to_string();
        let (key, mut answers, _client) = mqtt::provision(&claim, request_id, Some(secret)).await;
        let ProvisionResult::Certificate {
            device_id,
            certificate_pem,
            ..
        } = mqtt::answer(&mut answers, request_id).await
        else {
            panic!("expected a certificate")
        };
        (device_id, certificate_pem, key.serialize_pem())
    }
}

fn hex_serial() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A bootstrapped store with an organization "shop" and a site, without a server: for tests of
/// the store and the fleet link on their own.
pub struct StoreFixture {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub store: SqliteStore,
    pub scope: OrgScope,
    pub site: i64,
}

pub fn store_fixture() -> StoreFixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    tenantd::bootstrap(
        &data,
        "ops@p.example",
        "Ops",
        Some(Password::new("a long platform secret")),
        HashCost::default(),
    )
    .unwrap();
    let store = SqliteStore::open(&data).unwrap();
    let by = By::new("test");
    let admin = NewUser {
        email: "boss@shop.example".into(),
        name: "Boss".into(),
        role: Role::OrgAdmin,
        password_hash: "x".into(),
        must_change_password: false,
    };
    store
        .blocking(|db| db.create_org(&by, "shop", "Shop", &admin))
        .unwrap();
    let scope =
        OrgScope::trusted_internal(store.blocking(|db| db.org_ref("shop")).unwrap().unwrap());
    let input: tenantd::sites::SiteInput = serde_json::from_value(site_body("Main")).unwrap();
    let spec = input.validate().unwrap();
    let site = store
        .blocking(|db| db.save_site(&scope, &by, None, &spec))
        .unwrap()
        .id;
    StoreFixture {
        dir,
        data,
        store,
        scope,
        site,
    }
}

/// The session cookie's value from a sign-in answer.
pub fn session_from(r: &Response) -> String {
    let cookie = r
        .headers()
        .get(SET_COOKIE)
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap();
    let pair = cookie.split(';').next().unwrap();
    let (name, value) = pair.split_once('=').unwrap();
    assert_eq!(name, "__Host-kc_session");
    value.to_string()
}

/// A valid site body.
pub fn site_body(name: &str) -> Value {
    json!({
        "name": name,
        "timezone": "Europe/Paris",
        "business_hours": { "mon": [{ "open": "09:00", "close": "18:00" }], "tue": [], "wed": [],
                            "thu": [], "fri": [], "sat": [], "sun": [] },
        "holidays": [{ "date": "2026-12-25", "name": "Christmas Day" }]
    })
}
