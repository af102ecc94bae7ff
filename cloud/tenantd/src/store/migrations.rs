//! Versioned schema migrations, applied in order inside one transaction each; the version is
//! SQLite's `user_version`. Never edit a released migration: add the next one.

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: organizations, users, sessions, API tokens, sites, settings, audit log.
    r#"
CREATE TABLE orgs (
    id          INTEGER PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);

CREATE TABLE users (
    id                    INTEGER PRIMARY KEY,
    org_id                INTEGER REFERENCES orgs(id),
    email                 TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name                  TEXT NOT NULL,
    role                  TEXT NOT NULL CHECK (role IN ('super_admin', 'org_admin', 'agent')),
    password_hash         TEXT NOT NULL,
    must_change_password  INTEGER NOT NULL DEFAULT 0,
    disabled              INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL,
    last_sign_in_at       INTEGER,
    CHECK ((role = 'super_admin') = (org_id IS NULL))
);
CREATE INDEX users_org ON users(org_id);

CREATE TABLE sessions (
    token_hash    BLOB PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY,
    org_id        INTEGER NOT NULL REFERENCES orgs(id),
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('org_admin', 'agent')),
    prefix        TEXT NOT NULL,
    token_hash    BLOB NOT NULL UNIQUE,
    created_by    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);
CREATE INDEX api_tokens_org ON api_tokens(org_id);

CREATE TABLE sites (
    id              INTEGER PRIMARY KEY,
    org_id          INTEGER NOT NULL REFERENCES orgs(id),
    name            TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    business_hours  TEXT NOT NULL,
    holidays        TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE org_settings (
    org_id                             INTEGER PRIMARY KEY REFERENCES orgs(id),
    recording                          TEXT NOT NULL DEFAULT 'off'
                                       CHECK (recording IN ('off', 'on_with_consent')),
    retention_days                     INTEGER NOT NULL DEFAULT 90
                                       CHECK (retention_days BETWEEN 1 AND 3650),
    technicians_may_review_recordings  INTEGER NOT NULL DEFAULT 0,
    updated_at                         INTEGER NOT NULL
);

CREATE TABLE audit_log (
    chain      TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    org_id     INTEGER REFERENCES orgs(id),
    at         INTEGER NOT NULL,
    actor      TEXT,
    action     TEXT NOT NULL,
    target     TEXT,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
) WITHOUT ROWID;
"#,
    // 2: the fleet: claim batches, enrollment tokens, devices and their certificates,
    // activation codes, the device message log (exactly-once), desired configs, commands.
    r#"
CREATE TABLE claim_batches (
    id          INTEGER PRIMARY KEY,
    cn          TEXT NOT NULL UNIQUE,
    note        TEXT NOT NULL,
    cert_serial TEXT NOT NULL UNIQUE,
    not_after   INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE enrollment_tokens (
    id          INTEGER PRIMARY KEY,
    org_id      INTEGER NOT NULL REFERENCES orgs(id),
    site_id     INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    prefix      TEXT NOT NULL,
    token_hash  BLOB NOT NULL UNIQUE,
    uses_left   INTEGER NOT NULL CHECK (uses_left >= 0),
    expires_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX enrollment_tokens_org ON enrollment_tokens(org_id);

CREATE TABLE devices (
    id               TEXT PRIMARY KEY,
    org_id           INTEGER NOT NULL REFERENCES orgs(id),
    site_id          INTEGER REFERENCES sites(id) ON DELETE SET NULL,
    hardware_serial  TEXT NOT NULL,
    board            TEXT NOT NULL,
    firmware         TEXT NOT NULL,
    enrolled_via     TEXT NOT NULL CHECK (enrolled_via IN ('token', 'activation_code')),
    -- claim CN + request id of the provisioning request: a retried request finds its device.
    provision_key    TEXT NOT NULL UNIQUE,
    created_at       INTEGER NOT NULL,
    revoked_at       INTEGER,
    online           INTEGER NOT NULL DEFAULT 0,
    last_seen_at     INTEGER,
    last_telemetry   TEXT,
    reported_version INTEGER,
    reported_errors  TEXT
);
CREATE INDEX devices_org ON devices(org_id);

CREATE TABLE device_certs (
    serial      TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices(id),
    certificate TEXT NOT NULL,
    not_after   INTEGER NOT NULL,
    issued_at   INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX device_certs_device ON device_certs(device_id);

CREATE TABLE activation_codes (
    code_hash   BLOB PRIMARY KEY,
    claim_cn    TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    csr_pem     TEXT NOT NULL,
    hardware    TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    claimed_by  TEXT,
    device_id   TEXT REFERENCES devices(id)
);

CREATE TABLE device_messages (
    device_id    TEXT NOT NULL REFERENCES devices(id),
    message_id   TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    channel      TEXT NOT NULL,
    body         TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, message_id)
) WITHOUT ROWID;
CREATE INDEX device_messages_seq ON device_messages(device_id, seq);

CREATE TABLE desired_configs (
    device_id   TEXT NOT NULL REFERENCES devices(id),
    version     INTEGER NOT NULL,
    body        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, version)
) WITHOUT ROWID;

CREATE TABLE device_commands (
    id          TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices(id),
    body        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    state       TEXT NOT NULL DEFAULT 'sent'
                CHECK (state IN ('sent', 'accepted', 'succeeded', 'failed', 'rejected')),
    detail      TEXT,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX device_commands_device ON device_commands(device_id);

CREATE TABLE crl_state (
    ca          TEXT PRIMARY KEY CHECK (ca IN ('device', 'claim')),
    number      INTEGER NOT NULL
);
INSERT INTO crl_state (ca, number) VALUES ('device', 1), ('claim', 1);
"#,
    // 3: certificate renewal: a renewed certificate remembers the request (message id) it
    // answers, so a repeated request gets the same certificate.
    r#"
ALTER TABLE device_certs ADD COLUMN renew_request TEXT;
CREATE UNIQUE INDEX device_certs_renew ON device_certs(device_id, renew_request)
    WHERE renew_request IS NOT NULL;
"#,
    // 4: calls (one row per placed call, written as it changes), the organizations' ICE
    // settings (STUN/TURN URLs, the TURN shared secret, the longest call) and the snapshots
    // agents take during calls.
    r#"
CREATE TABLE calls (
    id              TEXT PRIMARY KEY,
    org_id          INTEGER NOT NULL REFERENCES orgs(id),
    site_id         INTEGER REFERENCES sites(id) ON DELETE SET NULL,
    device_id       TEXT NOT NULL REFERENCES devices(id),
    kind            TEXT NOT NULL CHECK (kind IN ('test', 'customer')),
    request_id      TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('ringing', 'accepted', 'ended', 'refused')),
    agent_id        INTEGER REFERENCES users(id),
    placed_at_ms    INTEGER NOT NULL,
    accepted_at_ms  INTEGER,
    ended_at_ms     INTEGER,
    end_reason      TEXT,
    ended_by        TEXT CHECK (ended_by IN ('kiosk', 'agent', 'cloud')),
    refused_reason  TEXT,
    rev             INTEGER NOT NULL
);
CREATE INDEX calls_org ON calls(org_id, placed_at_ms);
CREATE INDEX calls_agent ON calls(org_id, agent_id, placed_at_ms);

CREATE TABLE org_ice (
    org_id      INTEGER PRIMARY KEY REFERENCES orgs(id),
    stun_urls   TEXT NOT NULL,
    turn_urls   TEXT NOT NULL,
    turn_secret TEXT,
    max_call_s  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE call_snapshots (
    id          INTEGER PRIMARY KEY,
    org_id      INTEGER NOT NULL REFERENCES orgs(id),
    call_id     TEXT NOT NULL REFERENCES calls(id),
    agent_id    INTEGER NOT NULL REFERENCES users(id),
    media_type  TEXT NOT NULL CHECK (media_type IN ('image/jpeg', 'image/png')),
    size        INTEGER NOT NULL,
    image       BLOB NOT NULL,
    taken_at    INTEGER NOT NULL
);
CREATE INDEX call_snapshots_call ON call_snapshots(org_id, call_id);
"#,
    // 5: the customer journey: one-time codes (keyed hashes only), SMS deliveries, the
    // customer principal (one verified number, one call), callbacks, consent records, call
    // records' customer columns, per-organization SMS gateways and queue time-out, agents'
    // languages.
    r#"
CREATE TABLE otp_codes (
    id             INTEGER PRIMARY KEY,
    org_id         INTEGER NOT NULL REFERENCES orgs(id),
    device_id      TEXT NOT NULL REFERENCES devices(id),
    request_id     TEXT NOT NULL,
    phone_hash     BLOB NOT NULL,
    -- Kept only to resend while the code lives; NULL once verified, dead or forgotten.
    phone_e164     TEXT,
    phone_masked   TEXT NOT NULL,
    code_hash      BLOB NOT NULL,
    language       TEXT,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    tries          INTEGER NOT NULL DEFAULT 0,
    state          TEXT NOT NULL DEFAULT 'live' CHECK (state IN ('live', 'verified', 'dead'))
);
CREATE INDEX otp_codes_request ON otp_codes(device_id, request_id, created_at_ms);
CREATE INDEX otp_codes_phone ON otp_codes(phone_hash, created_at_ms);
CREATE INDEX otp_codes_org ON otp_codes(org_id, created_at_ms);
CREATE INDEX otp_codes_device ON otp_codes(device_id, created_at_ms);

CREATE TABLE sms_messages (
    id             INTEGER PRIMARY KEY,
    org_id         INTEGER NOT NULL REFERENCES orgs(id),
    purpose        TEXT NOT NULL CHECK (purpose IN ('code', 'callback')),
    phone_masked   TEXT NOT NULL,
    gateway        TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('sent', 'failed', 'delivered', 'undelivered')),
    provider_id    TEXT,
    error          TEXT,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);
CREATE INDEX sms_messages_org ON sms_messages(org_id, created_at_ms);

CREATE TABLE customers (
    id              INTEGER PRIMARY KEY,
    org_id          INTEGER NOT NULL REFERENCES orgs(id),
    device_id       TEXT NOT NULL REFERENCES devices(id),
    request_id      TEXT NOT NULL,
    token_hash      BLOB NOT NULL UNIQUE,
    phone_hash      BLOB NOT NULL,
    phone_masked    TEXT NOT NULL,
    -- Kept only while a callback may be booked with the token; NULL after.
    phone_e164      TEXT,
    language        TEXT,
    verified_at_ms  INTEGER NOT NULL,
    expires_at_ms   INTEGER NOT NULL,
    -- The one call the token was used for.
    call_id         TEXT UNIQUE
);
CREATE INDEX customers_phone ON customers(org_id, phone_hash);
-- The prune finds the numbers still kept.
CREATE INDEX customers_phone_kept ON customers(verified_at_ms) WHERE phone_e164 IS NOT NULL;

CREATE TABLE callbacks (
    id               INTEGER PRIMARY KEY,
    org_id           INTEGER NOT NULL REFERENCES orgs(id),
    site_id          INTEGER REFERENCES sites(id) ON DELETE SET NULL,
    device_id        TEXT NOT NULL REFERENCES devices(id),
    customer_id      INTEGER REFERENCES customers(id) ON DELETE SET NULL,
    call_id          TEXT,
    reason           TEXT NOT NULL CHECK (reason IN ('closed', 'not_answered')),
    phone_e164       TEXT NOT NULL,
    phone_hash       BLOB NOT NULL,
    phone_masked     TEXT NOT NULL,
    language         TEXT,
    requested_at_ms  INTEGER NOT NULL,
    state            TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'done', 'cancelled')),
    done_by          INTEGER REFERENCES users(id),
    done_at_ms       INTEGER,
    UNIQUE (customer_id, call_id)
);
CREATE INDEX callbacks_org ON callbacks(org_id, state, requested_at_ms);

CREATE TABLE consents (
    id              TEXT NOT NULL,
    device_id       TEXT NOT NULL REFERENCES devices(id),
    org_id          INTEGER NOT NULL REFERENCES orgs(id),
    call_id         TEXT,
    notice_version  INTEGER NOT NULL,
    granted         INTEGER NOT NULL CHECK (granted IN (0, 1)),
    language        TEXT,
    at_ms           INTEGER NOT NULL,
    PRIMARY KEY (device_id, id)
) WITHOUT ROWID;

ALTER TABLE calls ADD COLUMN customer_id INTEGER REFERENCES customers(id) ON DELETE SET NULL;
ALTER TABLE calls ADD COLUMN phone_masked TEXT;
ALTER TABLE calls ADD COLUMN phone_hash BLOB;
ALTER TABLE calls ADD COLUMN language TEXT;
ALTER TABLE calls ADD COLUMN verified_at_ms INTEGER;
ALTER TABLE calls ADD COLUMN outcome TEXT
    CHECK (outcome IN ('answered', 'abandoned', 'missed', 'declined', 'closed', 'failed'));
ALTER TABLE calls ADD COLUMN survey_score INTEGER CHECK (survey_score BETWEEN 1 AND 3);
ALTER TABLE calls ADD COLUMN recorded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN consent_id TEXT;
ALTER TABLE calls ADD COLUMN callback_offered INTEGER NOT NULL DEFAULT 0;
CREATE INDEX calls_phone ON calls(org_id, phone_hash);

CREATE TABLE org_sms (
    org_id      INTEGER PRIMARY KEY REFERENCES orgs(id),
    -- JSON array of gateway configurations in fail-over order (credentials included).
    gateways    TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

ALTER TABLE org_settings ADD COLUMN queue_timeout_s INTEGER NOT NULL DEFAULT 180
    CHECK (queue_timeout_s BETWEEN 30 AND 3600);
ALTER TABLE users ADD COLUMN languages TEXT NOT NULL DEFAULT '';
"#,
    // 6: providers' delivery receipts: each organization gateway's receipt key, by its
    // SHA-256 (the key itself is in the gateway's settings in `org_sms`), and the index a
    // receipt finds its delivery record by.
    r#"
CREATE TABLE sms_receipt_keys (
    key_hash  BLOB PRIMARY KEY,
    org_id    INTEGER NOT NULL REFERENCES orgs(id),
    -- The gateway's name in delivery records: http:NAME.
    gateway   TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX sms_receipt_keys_org ON sms_receipt_keys(org_id);

CREATE INDEX sms_messages_provider ON sms_messages(org_id, gateway, provider_id)
    WHERE provider_id IS NOT NULL;
"#,
];
