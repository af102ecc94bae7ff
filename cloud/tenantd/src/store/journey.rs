//! The customer journey's rows: the customer principal (a verified phone number, good for one
//! call from one kiosk), and what the OTP and callback code keeps (`crate::otp`).
//!
//! A customer token is a random secret given to the kiosk that verified the code; only its
//! SHA-256 is stored. [`Db::claim_customer`] binds it to the one call it is used for.

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{Db, StoreError};

/// A verified customer, as a call placed with its token sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRef {
    pub id: i64,
    pub org_id: i64,
    pub phone_masked: String,
    /// Keyed hash of the E.164 number (erasure and per-number history find rows by it).
    pub phone_hash: Vec<u8>,
    pub language: Option<String>,
    pub verified_at_ms: i64,
}

/// SHA-256 of a customer token, as stored.
pub fn customer_token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Db<'_> {
    /// Uses the customer token `token` for call `call_id` placed by `device_id`: the token must
    /// be this kiosk's, unexpired at `now_ms` and not used for another call (a repeated claim
    /// for the same call gets the same answer). `None` when any of that fails.
    pub fn claim_customer(
        &mut self,
        device_id: &str,
        token: &str,
        call_id: &str,
        now_ms: i64,
    ) -> Result<Option<CustomerRef>, StoreError> {
        let hash = customer_token_hash(token);
        let tx = self.tx()?;
        let row = tx
            .query_row(
                "SELECT id, org_id, phone_masked, phone_hash, language, verified_at_ms, \
                        expires_at_ms, call_id \
                 FROM customers WHERE token_hash = ?1 AND device_id = ?2",
                params![hash.as_slice(), device_id],
                |r| {
                    Ok((
                        CustomerRef {
                            id: r.get(0)?,
                            org_id: r.get(1)?,
                            phone_masked: r.get(2)?,
                            phone_hash: r.get(3)?,
                            language: r.get(4)?,
                            verified_at_ms: r.get(5)?,
                        },
                        r.get::<_, i64>(6)?,
                        r.get::<_, Option<String>>(7)?,
                    ))
                },
            )
            .optional()?;
        let Some((customer, expires_at_ms, used_for)) = row else {
            return Ok(None);
        };
        match used_for {
            Some(c) if c == call_id => return Ok(Some(customer)),
            Some(_) => return Ok(None),
            None if now_ms >= expires_at_ms => return Ok(None),
            None => {}
        }
        tx.execute(
            "UPDATE customers SET call_id = ?1 WHERE id = ?2 AND call_id IS NULL",
            params![call_id, customer.id],
        )?;
        tx.commit()?;
        Ok(Some(customer))
    }
}

impl Db<'_> {
    /// Reads, without using it, the customer behind token `token` of kiosk `device_id`: `None`
    /// unless it is this kiosk's, unexpired at `now_ms` and not used for a call yet. For a
    /// placement refused before it queues (the site is closed), which must leave the token
    /// usable (a callback may be booked with it).
    pub fn customer_for_token(
        &mut self,
        device_id: &str,
        token: &str,
        now_ms: i64,
    ) -> Result<Option<CustomerRef>, StoreError> {
        let hash = customer_token_hash(token);
        Ok(self
            .conn
            .query_row(
                "SELECT id, org_id, phone_masked, phone_hash, language, verified_at_ms \
                 FROM customers WHERE token_hash = ?1 AND device_id = ?2 \
                    AND call_id IS NULL AND expires_at_ms > ?3",
                params![hash.as_slice(), device_id, now_ms],
                |r| {
                    Ok(CustomerRef {
                        id: r.get(0)?,
                        org_id: r.get(1)?,
                        phone_masked: r.get(2)?,
                        phone_hash: r.get(3)?,
                        language: r.get(4)?,
                        verified_at_ms: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }
}
