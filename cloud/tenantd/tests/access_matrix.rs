//! The role × endpoint × tenant matrix: every route of the router, tried as every kind of
//! caller, on its own organization, on another organization, and with another organization's
//! resource id under its own organization. The expectations are this file's own table; the test
//! fails when the router has a route the table does not know (or the reverse), so a new route
//! cannot skip it. Zero unexpected allows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{site_body, Cred, TestCloud, STAFF_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};
use tenantd::tenancy::{OrgRef, Role};

/// Kinds of caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Anonymous,
    SuperAdmin,
    OrgAdmin,
    Agent,
    AdminToken,
    AgentToken,
}

const EVERYONE: &[Who] = &[
    Who::Anonymous,
    Who::SuperAdmin,
    Who::OrgAdmin,
    Who::Agent,
    Who::AdminToken,
    Who::AgentToken,
];
const SIGNED_IN: &[Who] = &[
    Who::SuperAdmin,
    Who::OrgAdmin,
    Who::Agent,
    Who::AdminToken,
    Who::AgentToken,
];
const SESSIONS: &[Who] = &[Who::SuperAdmin, Who::OrgAdmin, Who::Agent];
const ROOT: &[Who] = &[Who::SuperAdmin];
const ADMINS: &[Who] = &[Who::OrgAdmin, Who::AdminToken];
/// Admins (users and tokens) and agents signed in: who sees calls (agents their own).
const CALL_STAFF: &[Who] = &[Who::OrgAdmin, Who::AdminToken, Who::Agent];
/// Signed-in staff, no tokens: the call WebSocket.
const STAFF_SESSIONS: &[Who] = &[Who::OrgAdmin, Who::Agent];
/// The agent who accepted the call.
const CALL_AGENT: &[Who] = &[Who::Agent];
/// Every member of the organization, users and tokens: the callback list.
const ORG_MEMBERS: &[Who] = &[Who::OrgAdmin, Who::Agent, Who::AdminToken, Who::AgentToken];
const MEMBERS_AND_ROOT: &[Who] = &[
    Who::SuperAdmin,
    Who::OrgAdmin,
    Who::Agent,
    Who::AdminToken,
    Who::AgentToken,
];

/// What a route's `{id}` or `{device}` names (or, for a claim, the code in its body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    None,
    User,
    Site,
    Token,
    EnrollmentToken,
    Device,
    ActivationCode,
    /// A call the organization's matrix agent accepted (`{call}`).
    Call,
    /// A snapshot the matrix agent took of such a call (`{call}` and `{id}`).
    Snapshot,
    /// An open callback of the organization (`{id}`).
    Callback,
    /// A fresh receipt key of one of the organization's gateways (`{key}`).
    ReceiptKey,
}

/// What a body is made from.
struct BodyCtx {
    n: usize,
    /// A site of the organization in the path.
    site: i64,
    /// The activation code made for this call.
    code: String,
}

/// Who may use a route on their own organization, the resource its `{id}` names, and whether
/// a super admin may use it on any organization.
struct Expect {
    allowed: &'static [Who],
    target: Target,
    body: fn(&BodyCtx) -> Option<Value>,
    /// The call ends or changes the caller's own session: use a fresh caller for it.
    fresh_caller: bool,
    /// A body that is not JSON: its media type and bytes.
    raw: Option<(&'static str, &'static [u8])>,
    /// A WebSocket upgrade: sent with the upgrade headers, and only its status is read.
    upgrade: bool,
}

fn no_body(_: &BodyCtx) -> Option<Value> {
    None
}

fn expectations() -> BTreeMap<(String, &'static str), Expect> {
    let mut t = BTreeMap::new();
    let mut add = |m: Method,
                   path: &'static str,
                   allowed: &'static [Who],
                   target: Target,
                   body: fn(&BodyCtx) -> Option<Value>| {
        let fresh_caller = path == "/api/v1/auth/logout" || path == "/api/v1/auth/password";
        t.insert(
            (m.to_string(), path),
            Expect {
                allowed,
                target,
                body,
                fresh_caller,
                raw: None,
                upgrade: false,
            },
        );
    };
    use Target as T;
    add(Method::GET, "/api/v1/health", EVERYONE, T::None, no_body);
    add(
        Method::GET,
        "/pki/v1/device.crl",
        EVERYONE,
        T::None,
        no_body,
    );
    add(Method::GET, "/pki/v1/claim.crl", EVERYONE, T::None, no_body);
    add(
        Method::GET,
        "/api/v1/openapi.json",
        EVERYONE,
        T::None,
        no_body,
    );
    add(
        Method::POST,
        "/api/v1/auth/login",
        EVERYONE,
        T::None,
        |_| Some(json!({ "email": "login-probe@a.example", "password": STAFF_PASSWORD })),
    );
    add(
        Method::POST,
        "/api/v1/auth/logout",
        SESSIONS,
        T::None,
        no_body,
    );
    add(
        Method::POST,
        "/api/v1/auth/password",
        SESSIONS,
        T::None,
        |c| {
            Some(json!({ "current_password": STAFF_PASSWORD,
                     "new_password": format!("a brand new secret {}", c.n) }))
        },
    );
    add(Method::GET, "/api/v1/me", SIGNED_IN, T::None, no_body);
    add(
        Method::GET,
        "/api/v1/platform/health",
        ROOT,
        T::None,
        no_body,
    );
    add(Method::GET, "/api/v1/orgs", ROOT, T::None, no_body);
    add(Method::POST, "/api/v1/orgs", ROOT, T::None, |c| {
        Some(json!({ "slug": format!("new-org-{}", c.n), "name": "New",
                     "admin_email": format!("boss{}@new.example", c.n), "admin_name": "Boss" }))
    });
    add(
        Method::GET,
        "/api/v1/orgs/{org}",
        MEMBERS_AND_ROOT,
        T::None,
        no_body,
    );
    add(Method::PATCH, "/api/v1/orgs/{org}", ROOT, T::None, |c| {
        Some(json!({ "name": format!("Renamed {}", c.n) }))
    });
    add(
        Method::GET,
        "/api/v1/orgs/{org}/users",
        ADMINS,
        T::None,
        no_body,
    );
    add(
        Method::POST,
        "/api/v1/orgs/{org}/users",
        ADMINS,
        T::None,
        |c| {
            Some(
                json!({ "email": format!("made{}@x.example", c.n), "name": "Made", "role": "agent" }),
            )
        },
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/users/{id}",
        ADMINS,
        T::User,
        no_body,
    );
    add(
        Method::PATCH,
        "/api/v1/orgs/{org}/users/{id}",
        ADMINS,
        T::User,
        |c| Some(json!({ "name": format!("Renamed {}", c.n) })),
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/sites",
        ADMINS,
        T::None,
        no_body,
    );
    add(
        Method::POST,
        "/api/v1/orgs/{org}/sites",
        ADMINS,
        T::None,
        |c| Some(site_body(&format!("New site {}", c.n))),
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/sites/{id}",
        ADMINS,
        T::Site,
        no_body,
    );
    add(
        Method::PUT,
        "/api/v1/orgs/{org}/sites/{id}",
        ADMINS,
        T::Site,
        |c| Some(site_body(&format!("Replaced site {}", c.n))),
    );
    add(
        Method::DELETE,
        "/api/v1/orgs/{org}/sites/{id}",
        ADMINS,
        T::Site,
        no_body,
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/settings",
        ADMINS,
        T::None,
        no_body,
    );
    add(
        Method::PUT,
        "/api/v1/orgs/{org}/settings",
        ADMINS,
        T::None,
        |c| {
            Some(
                json!({ "recording": "on_with_consent", "retention_days": 30 + c.n % 100,
                     "technicians_may_review_recordings": false }),
            )
        },
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/api-tokens",
        ADMINS,
        T::None,
        no_body,
    );
    add(
        Method::POST,
        "/api/v1/orgs/{org}/api-tokens",
        ADMINS,
        T::None,
        |c| Some(json!({ "name": format!("made {}", c.n), "role": "agent" })),
    );
    add(
        Method::DELETE,
        "/api/v1/orgs/{org}/api-tokens/{id}",
        ADMINS,
        T::Token,
        no_body,
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/audit",
        ADMINS,
        T::None,
        no_body,
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/audit/verify",
        ADMINS,
        T::None,
        no_body,
    );
    add(Method::GET, "/api/v1/claim-batches", ROOT, T::None, no_body);
    add(Method::POST, "/api/v1/claim-batches", ROOT, T::None, |c| {
        Some(json!({ "name": format!("batch-{}", c.n), "note": "matrix" }))
    });
    add(
        Method::GET,
        "/api/v1/orgs/{org}/enrollment-tokens",
        ADMINS,
        T::None,
        no_body,
    );
    add(
        Method::POST,
        "/api/v1/orgs/{org}/enrollment-tokens",
        ADMINS,
        T::None,
        |c| Some(json!({ "site_id": c.site, "uses": 3, "expires_in_hours": 24 })),
    );
    add(
        Method::DELETE,
        "/api/v1/orgs/{org}/enrollment-tokens/{id}",
        ADMINS,
        T::EnrollmentToken,
        no_body,
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/devices",
        ADMINS,
        T::None,
        no_body,
    );
    add(
        Method::POST,
        "/api/v1/orgs/{org}/devices/claim",
        ADMINS,
        T::ActivationCode,
        |c| Some(json!({ "code": c.code, "site_id": c.site })),
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/devices/{device}",
        ADMINS,
        T::Device,
        no_body,
    );
    add(
        Method::POST,
        "/api/v1/orgs/{org}/devices/{device}/revoke",
        ADMINS,
        T::Device,
        no_body,
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/devices/{device}/config",
        ADMINS,
        T::Device,
        no_body,
    );
    add(
        Method::PUT,
        "/api/v1/orgs/{org}/devices/{device}/config",
        ADMINS,
        T::Device,
        |c| {
            Some(
                json!({ "default_language": "fr", "languages": ["fr", "en"], "idle_s": 60 + c.n % 100,
                     "warning_s": 20, "telemetry_interval_s": 30, "board_profile": "qemu" }),
            )
        },
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/devices/{device}/commands",
        ADMINS,
        T::Device,
        no_body,
    );
    add(
        Method::POST,
        "/api/v1/orgs/{org}/devices/{device}/commands",
        ADMINS,
        T::Device,
        |_| {
            Some(
                json!({ "action": "restart_service", "service": "kiosk-media", "expires_in_s": 600 }),
            )
        },
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/ice",
        ADMINS,
        T::None,
        no_body,
    );
    add(
        Method::PUT,
        "/api/v1/orgs/{org}/ice",
        ADMINS,
        T::None,
        |c| Some(json!({ "stun_urls": [format!("stun:stun{}.example.test:3478", c.n)] })),
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/calls",
        CALL_STAFF,
        T::None,
        no_body,
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/calls/records",
        CALL_STAFF,
        T::None,
        no_body,
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/calls/records.csv",
        CALL_STAFF,
        T::None,
        no_body,
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/callbacks",
        ORG_MEMBERS,
        T::None,
        no_body,
    );
    add(
        Method::POST,
        "/api/v1/orgs/{org}/callbacks/{id}/done",
        ORG_MEMBERS,
        T::Callback,
        no_body,
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/calls/ws",
        STAFF_SESSIONS,
        T::None,
        no_body,
    );
    add(
        Method::POST,
        "/api/v1/orgs/{org}/calls/{call}/snapshots",
        CALL_AGENT,
        T::Call,
        no_body,
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/calls/{call}/snapshots",
        CALL_STAFF,
        T::Call,
        no_body,
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/calls/{call}/snapshots/{id}",
        CALL_STAFF,
        T::Snapshot,
        no_body,
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/sms",
        ADMINS,
        T::None,
        no_body,
    );
    add(
        Method::PUT,
        "/api/v1/orgs/{org}/sms",
        ADMINS,
        T::None,
        |c| {
            Some(json!({ "gateways": [{ "kind": "http", "name": "primary",
                "url": format!("https://sms{}.example.test/v1/send", c.n),
                "body": { "to": "{to}", "text": "{text}" },
                "auth": { "type": "bearer", "token": "matrix-token" } }] }))
        },
    );
    add(
        Method::GET,
        "/api/v1/orgs/{org}/sms/messages",
        ADMINS,
        T::None,
        no_body,
    );
    add(
        Method::POST,
        "/api/v1/orgs/{org}/customers/erase",
        ADMINS,
        T::None,
        |c| Some(json!({ "phone": format!("+3361234{:04}", c.n % 10_000) })),
    );
    // Public: the key is the credential. A receipt for a message with no record is taken.
    add(
        Method::POST,
        "/api/v1/sms/receipts/{key}",
        EVERYONE,
        T::ReceiptKey,
        |c| Some(json!({ "id": format!("matrix-{}", c.n), "status": "delivered" })),
    );
    if let Some(e) = t.get_mut(&(
        Method::POST.to_string(),
        "/api/v1/orgs/{org}/calls/{call}/snapshots",
    )) {
        e.raw = Some(("image/png", PNG));
    }
    if let Some(e) = t.get_mut(&(Method::GET.to_string(), "/api/v1/orgs/{org}/calls/ws")) {
        e.upgrade = true;
    }
    t
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR";

/// The callers of one organization (plus the platform's super admin and anonymous).
struct Callers {
    org: OrgRef,
    creds: BTreeMap<Who, Cred>,
}

static FRESH: AtomicUsize = AtomicUsize::new(0);

impl Callers {
    async fn make(cloud: &TestCloud, root: &Cred, org: &OrgRef) -> Callers {
        let admin = cloud
            .staff(org, &format!("admin@{}.example", org.slug), Role::OrgAdmin)
            .await;
        let agent = cloud
            .staff(org, &format!("agent@{}.example", org.slug), Role::Agent)
            .await;
        let (_, admin_token) = cloud.token(&admin, org, "org_admin").await;
        let (_, agent_token) = cloud.token(&admin, org, "agent").await;
        let creds = BTreeMap::from([
            (Who::Anonymous, Cred::None),
            (Who::SuperAdmin, root.clone()),
            (Who::OrgAdmin, admin),
            (Who::Agent, agent),
            (Who::AdminToken, admin_token),
            (Who::AgentToken, agent_token),
        ]);
        Callers {
            org: org.clone(),
            creds,
        }
    }

    /// A caller of this kind that may be used up (signed out, password changed).
    async fn fresh(&self, cloud: &TestCloud, who: Who) -> Cred {
        let n = FRESH.fetch_add(1, Ordering::SeqCst);
        match who {
            Who::OrgAdmin | Who::Agent => {
                let role = if who == Who::OrgAdmin {
                    Role::OrgAdmin
                } else {
                    Role::Agent
                };
                cloud
                    .staff(
                        &self.org,
                        &format!("fresh{n}@{}.example", self.org.slug),
                        role,
                    )
                    .await
            }
            Who::SuperAdmin => {
                let email = format!("root{n}@platform.example");
                let hash = tenantd::auth::password::PasswordHasher::new(Default::default())
                    .unwrap()
                    .hash(&tenantd::auth::password::Password::new(STAFF_PASSWORD))
                    .unwrap();
                cloud
                    .store
                    .blocking(|db| {
                        db.create_super_admin(
                            &tenantd::store::By::new("test"),
                            &email,
                            "Root",
                            &hash,
                        )
                    })
                    .unwrap();
                cloud.login(&email, STAFF_PASSWORD).await
            }
            other => self.creds[&other].clone(),
        }
    }
}

/// Makes the resource a route's `{id}` or `{device}` names, in `org` (for a claim: the code).
async fn make_target(
    cloud: &TestCloud,
    admin: &Cred,
    org: &OrgRef,
    site: i64,
    target: Target,
) -> String {
    let n = FRESH.fetch_add(1, Ordering::SeqCst);
    match target {
        Target::None => String::new(),
        Target::Device => cloud.add_device(org, site),
        Target::ActivationCode => cloud.add_activation_code(),
        Target::EnrollmentToken => {
            let (status, body) = cloud
                .call(
                    Method::POST,
                    &format!("/api/v1/orgs/{}/enrollment-tokens", org.slug),
                    admin,
                    Some(json!({ "site_id": site })),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            body["token"]["id"].to_string()
        }
        Target::User => cloud
            .add_user(org, &format!("target{n}@{}.example", org.slug), Role::Agent)
            .to_string(),
        Target::Site => {
            let (status, body) = cloud
                .call(
                    Method::POST,
                    &format!("/api/v1/orgs/{}/sites", org.slug),
                    admin,
                    Some(site_body(&format!("Target site {n}"))),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            body["id"].to_string()
        }
        Target::Token => cloud.token(admin, org, "agent").await.0.to_string(),
        Target::Call => make_call(cloud, org, site),
        Target::Callback => make_callback(cloud, org, site).to_string(),
        Target::ReceiptKey => {
            let (status, body) = cloud
                .call(
                    Method::PUT,
                    &format!("/api/v1/orgs/{}/sms", org.slug),
                    admin,
                    Some(json!({ "gateways": [{ "kind": "http", "name": "receipts",
                        "url": "https://sms.example.test/v1/send",
                        "body": { "to": "{to}", "text": "{text}" },
                        "receipts": { "provider_id": "/id", "status": "/status",
                                      "delivered": ["delivered"], "new_key": true } }] })),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let path = body["gateways"][0]["receipts"]["url_path"]
                .as_str()
                .unwrap();
            path.rsplit('/').next().unwrap().to_string()
        }
        Target::Snapshot => {
            let call = make_call(cloud, org, site);
            let scope = tenantd::tenancy::OrgScope::trusted_internal(org.clone());
            let agent = matrix_agent(cloud, org);
            let snap = cloud
                .store
                .blocking(|db| {
                    db.add_snapshot(
                        &scope,
                        &tenantd::store::By::new("test"),
                        &call,
                        agent,
                        "image/png",
                        PNG,
                    )
                })
                .unwrap();
            format!("{call}/{}", snap.id)
        }
    }
}

/// The user id of the organization's matrix agent (`agent@<slug>.example`).
fn matrix_agent(cloud: &TestCloud, org: &OrgRef) -> i64 {
    let email = format!("agent@{}.example", org.slug);
    cloud
        .store
        .blocking(|db| db.login_record(&email))
        .unwrap()
        .unwrap()
        .user_id
}

/// A call of a new kiosk of `org`, accepted by the matrix agent and still running.
fn make_call(cloud: &TestCloud, org: &OrgRef, site: i64) -> String {
    use kiosk_protocol::call::CallKind;
    use tenantd::calls::registry::{new_call_id, CallRecord, CallState};
    let device = cloud.add_device(org, site);
    let now = jiff::Timestamp::now().as_millisecond();
    let record = CallRecord {
        state: CallState::Accepted,
        agent_id: Some(matrix_agent(cloud, org)),
        accepted_at_ms: Some(now),
        ..CallRecord::new(
            new_call_id(),
            org.id,
            Some(site),
            device,
            CallKind::Test,
            "matrix".into(),
            now,
        )
    };
    cloud.store.blocking(|db| db.save_call(&record)).unwrap();
    record.id.as_str().to_string()
}

/// An open callback of a new kiosk of `org`, written as the customer journey books one.
fn make_callback(cloud: &TestCloud, org: &OrgRef, site: i64) -> i64 {
    let device = cloud.add_device(org, site);
    common::journey::add_callback(cloud, org.id, Some(site), &device, None, "+33612345678")
}

fn with_cred(mut req: reqwest::RequestBuilder, cred: &Cred) -> reqwest::RequestBuilder {
    match cred {
        Cred::None => {}
        Cred::Cookie(c) => req = req.header("cookie", format!("__Host-kc_session={c}")),
        Cred::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
    }
    req
}

/// A request with a body that is not JSON.
async fn raw(
    cloud: &TestCloud,
    method: Method,
    path: &str,
    cred: &Cred,
    media: &str,
    bytes: &[u8],
) -> (u16, Value) {
    let req = cloud
        .client
        .request(method, format!("{}{path}", cloud.base))
        .header("content-type", media)
        .body(bytes.to_vec());
    let r = with_cred(req, cred).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A WebSocket upgrade request: only the status is read (101 when it is accepted).
async fn upgrade(cloud: &TestCloud, path: &str, cred: &Cred) -> (u16, Value) {
    let req = cloud
        .client
        .get(format!("{}{path}", cloud.base))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    let r = with_cred(req, cred).send().await.unwrap();
    let status = r.status().as_u16();
    if status == 101 {
        return (status, Value::Null);
    }
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_as_every_role_for_every_tenant() {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org_a = cloud.create_org(&root, "alpha").await;
    let org_b = cloud.create_org(&root, "bravo").await;
    cloud.add_user(&org_a, "login-probe@a.example", Role::Agent);
    let site_a = cloud.add_site(&org_a, "Matrix A");
    let site_b = cloud.add_site(&org_b, "Matrix B");
    let a = Callers::make(&cloud, &root, &org_a).await;
    let b = Callers::make(&cloud, &root, &org_b).await;
    let admin_a = a.creds[&Who::OrgAdmin].clone();
    let admin_b = b.creds[&Who::OrgAdmin].clone();

    // The table must cover exactly the router's routes.
    let table = expectations();
    let routes = tenantd::api::route_table();
    let routed: BTreeSet<(String, &str)> = routes
        .iter()
        .map(|r| (r.method.to_string(), r.path))
        .collect();
    let expected: BTreeSet<(String, &str)> = table.keys().cloned().collect();
    assert_eq!(
        routed.difference(&expected).collect::<Vec<_>>(),
        Vec::<&(String, &str)>::new(),
        "routes without an expectation: add them to this test"
    );
    assert_eq!(
        expected.difference(&routed).collect::<Vec<_>>(),
        Vec::<&(String, &str)>::new(),
        "expectations for routes that no longer exist"
    );

    let mut unexpected = Vec::new();
    let mut tried = 0;
    let mut n = 0;
    for route in &routes {
        let exp = &table[&(route.method.to_string(), route.path)];
        let org_scoped = route.path.contains("{org}");
        // (label, path org, resource org): own, another org's, and another org's resource
        // under the caller's own org.
        let mut cases = vec![("own", &org_a, &org_a)];
        if org_scoped {
            cases.push(("other-org", &org_b, &org_b));
            if !matches!(exp.target, Target::None | Target::ActivationCode) {
                cases.push(("other-org-id", &org_a, &org_b));
            }
        }
        for who in EVERYONE {
            for (case, path_org, resource_org) in &cases {
                n += 1;
                let resource_admin = if resource_org.slug == org_a.slug {
                    &admin_a
                } else {
                    &admin_b
                };
                let resource_site = if resource_org.slug == org_a.slug {
                    site_a
                } else {
                    site_b
                };
                let path_site = if path_org.slug == org_a.slug {
                    site_a
                } else {
                    site_b
                };
                let id = make_target(
                    &cloud,
                    resource_admin,
                    resource_org,
                    resource_site,
                    exp.target,
                )
                .await;
                let (call_id, snap_id) = match exp.target {
                    Target::Call => (id.clone(), String::new()),
                    Target::Snapshot => {
                        let (c, s) = id.split_once('/').unwrap();
                        (c.to_string(), s.to_string())
                    }
                    _ => (String::new(), id.clone()),
                };
                let path = route
                    .path
                    .replace("{org}", &path_org.slug)
                    .replace("{call}", &call_id)
                    .replace("{id}", &snap_id)
                    .replace("{device}", &id)
                    .replace("{key}", &id);
                let ctx = BodyCtx {
                    n,
                    site: path_site,
                    code: id.clone(),
                };
                let cred = if exp.fresh_caller {
                    a.fresh(&cloud, *who).await
                } else {
                    a.creds[who].clone()
                };
                let (status, body) = if exp.upgrade {
                    upgrade(&cloud, &path, &cred).await
                } else if let Some((media, bytes)) = exp.raw {
                    raw(&cloud, route.method.clone(), &path, &cred, media, bytes).await
                } else {
                    cloud
                        .call(route.method.clone(), &path, &cred, (exp.body)(&ctx))
                        .await
                };
                tried += 1;
                let super_sees_all = *who == Who::SuperAdmin;
                let should_allow = exp.allowed.contains(who)
                    && match *case {
                        "own" => true,
                        "other-org" => super_sees_all,
                        _ => false,
                    };
                let label = format!(
                    "{who:?} {} {path} [{case}] -> {status} {body}",
                    route.method
                );
                if should_allow {
                    assert_eq!(status, route.success.as_u16(), "expected success: {label}");
                } else {
                    if (200..300).contains(&status) {
                        unexpected.push(label.clone());
                    }
                    assert!(
                        [401, 403, 404].contains(&status),
                        "a denial answers 401, 403 or 404: {label}"
                    );
                    if *who == Who::Anonymous {
                        assert_eq!(status, 401, "{label}");
                    }
                    // Another organization's resources look exactly like missing ones.
                    let foreign_org = *case == "other-org";
                    let foreign_id = *case == "other-org-id" && exp.allowed.contains(who);
                    if (foreign_org || foreign_id)
                        && *who != Who::Anonymous
                        && *who != Who::SuperAdmin
                    {
                        assert_eq!(status, 404, "{label}");
                    }
                }
            }
        }
    }
    assert!(unexpected.is_empty(), "unexpected allows: {unexpected:#?}");
    println!(
        "access matrix: {tried} requests over {} routes, 0 unexpected allows",
        routes.len()
    );
    assert!(tried > 300);
}
