//! Rows the customer journey (one-time codes, callbacks) writes, made straight in the store
//! file for tests of what reads them: a verified customer and its token, a booked callback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rusqlite::{params, Connection};

use super::TestCloud;

/// A second connection to the running cloud's store file.
pub fn open(cloud: &TestCloud) -> Connection {
    let conn = Connection::open(cloud.data_dir().join(tenantd::store::DB_FILE)).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn
}

/// The masked form of a number, as the journey keeps it.
pub fn masked(e164: &str) -> String {
    kiosk_protocol::journey::mask_phone(e164)
}

/// A verified customer of kiosk `device_id`, as a verified one-time code leaves it: returns its
/// token (what kiosk-sync puts in `place`) and its row id. It expires `ttl_ms` from now.
pub fn add_customer(
    cloud: &TestCloud,
    org_id: i64,
    device_id: &str,
    phone: &str,
    language: Option<&str>,
    ttl_ms: i64,
) -> (String, i64) {
    let token = format!("kct_test-{}", hex(&rand::random::<[u8; 16]>()));
    let now = jiff::Timestamp::now().as_millisecond();
    let conn = open(cloud);
    conn.execute(
        "INSERT INTO customers (org_id, device_id, request_id, token_hash, phone_hash,
            phone_masked, phone_e164, language, verified_at_ms, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            org_id,
            device_id,
            format!("req-{}", hex(&rand::random::<[u8; 8]>())),
            tenantd::store::customer_token_hash(&token).as_slice(),
            phone_hash(phone),
            masked(phone),
            phone,
            language,
            now - 1_000,
            now + ttl_ms,
        ],
    )
    .unwrap();
    (token, conn.last_insert_rowid())
}

/// An open callback of kiosk `device_id` (for `call`, or the site closed), as the journey
/// books it; returns its id.
pub fn add_callback(
    cloud: &TestCloud,
    org_id: i64,
    site_id: Option<i64>,
    device_id: &str,
    call: Option<&str>,
    phone: &str,
) -> i64 {
    let now = jiff::Timestamp::now().as_millisecond();
    let conn = open(cloud);
    conn.execute(
        "INSERT INTO callbacks (org_id, site_id, device_id, call_id, reason, phone_e164,
            phone_hash, phone_masked, language, requested_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'fr', ?9)",
        params![
            org_id,
            site_id,
            device_id,
            call,
            if call.is_some() {
                "not_answered"
            } else {
                "closed"
            },
            phone,
            phone_hash(phone),
            masked(phone),
            now,
        ],
    )
    .unwrap();
    conn.last_insert_rowid()
}

fn phone_hash(phone: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(format!("test-key:{phone}").as_bytes()).to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
