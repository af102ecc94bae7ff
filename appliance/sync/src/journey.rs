//! The customer's session as kiosk-sync keeps it: one journey id, and after a verified code
//! the customer token for one call.
//!
//! kiosk-ui asks through Sync1 (`RequestOtp`, `ResendOtp`, `VerifyOtp`, `PlaceCustomerCall`,
//! `RequestCallback`, `EndJourney`); kiosk-sync sends live `up/journey` messages and waits for
//! the cloud's `down/journey` answer. [`JourneyDesk`] is the plain-data part: the session, the
//! one request waiting for its answer, and the translation of the cloud's answers into what
//! kiosk-ui may see ([`JourneyOutcome`]): the token stays here, so kiosk-ui holds no secret.
//!
//! Limits: one request at a time (the service serializes them); an answer that comes after
//! [`ANSWER_TIMEOUT`] is dropped, and kiosk-ui shows "unavailable".

use std::time::Duration;

use kiosk_bus::sync::JourneyOutcome;
use kiosk_protocol::journey::{DeadCode, JourneyAnswer, JourneyResult};
use tokio::sync::oneshot;

/// How long a journey request waits for the cloud's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A verified customer: the token for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Customer {
    token: String,
    expires_at_ms: i64,
}

/// The customer's session.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    request: String,
    customer: Option<Customer>,
}

/// The journey state of kiosk-sync.
#[derive(Debug, Default)]
pub struct JourneyDesk {
    session: Option<Session>,
    pending: Option<(String, oneshot::Sender<JourneyResult>)>,
}

fn dead(why: DeadCode) -> &'static str {
    match why {
        DeadCode::Expired => "expired",
        DeadCode::Used => "used",
        DeadCode::TooManyTries => "too_many_tries",
        DeadCode::NoCode => "no_code",
        DeadCode::Other => "other",
    }
}

impl JourneyDesk {
    /// Starts a new session with a fresh id; returns it and the id of the session it replaces
    /// (for the cloud to forget), if any.
    pub fn begin(&mut self) -> (String, Option<String>) {
        let request = format!("jr-{:016x}", rand::random::<u64>());
        let old = self.session.replace(Session {
            request: request.clone(),
            customer: None,
        });
        self.pending = None;
        (request, old.map(|s| s.request))
    }

    /// The current session's id.
    pub fn request(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.request.as_str())
    }

    /// Waits for the answer to the message about to be sent for `request`.
    pub fn expect(&mut self, request: &str) -> oneshot::Receiver<JourneyResult> {
        let (tx, rx) = oneshot::channel();
        self.pending = Some((request.to_string(), tx));
        rx
    }

    /// A `down/journey` message: handed to the waiting request if it is its answer.
    pub fn answer(&mut self, answer: JourneyAnswer) -> bool {
        match self.pending.take() {
            Some((request, tx)) if request == answer.request => tx.send(answer.result).is_ok(),
            other => {
                self.pending = other;
                false
            }
        }
    }

    /// What kiosk-ui sees of the cloud's answer to `request`. A `verified` answer's token is
    /// kept for the session (if it is still the current one).
    pub fn outcome(&mut self, request: &str, result: JourneyResult, now_ms: i64) -> JourneyOutcome {
        match result {
            JourneyResult::CodeSent {
                masked_phone,
                resend_after_s,
                expires_in_s,
            } => JourneyOutcome::CodeSent {
                masked_phone,
                resend_after_s,
                expires_in_s,
            },
            JourneyResult::Limited { retry_after_s } => JourneyOutcome::Limited { retry_after_s },
            JourneyResult::InvalidPhone { message } => JourneyOutcome::InvalidPhone { message },
            JourneyResult::Verified {
                customer,
                masked_phone,
                expires_in_s,
            } => match self.session.as_mut() {
                Some(s) if s.request == request => {
                    s.customer = Some(Customer {
                        token: customer,
                        expires_at_ms: now_ms + i64::from(expires_in_s) * 1000,
                    });
                    JourneyOutcome::Verified {
                        masked_phone,
                        expires_in_s,
                    }
                }
                _ => JourneyOutcome::Unavailable {
                    reason: "the session ended before the code was verified".into(),
                },
            },
            JourneyResult::WrongCode { tries_left } => JourneyOutcome::WrongCode { tries_left },
            JourneyResult::CodeDead { why } => JourneyOutcome::CodeDead {
                why: dead(why).to_string(),
            },
            JourneyResult::CallbackBooked { masked_phone } => {
                JourneyOutcome::CallbackBooked { masked_phone }
            }
            JourneyResult::Forgotten => JourneyOutcome::Unavailable {
                reason: "the session was forgotten".into(),
            },
            JourneyResult::Unavailable { reason } => JourneyOutcome::Unavailable { reason },
            JourneyResult::Unknown => JourneyOutcome::Unavailable {
                reason: "the cloud answered something this kiosk does not know".into(),
            },
        }
    }

    /// The verified customer's token, while it is valid. A call placed with it uses it up in
    /// the cloud; it stays here for a callback about that call.
    pub fn customer_token(&self, now_ms: i64) -> Option<String> {
        let c = self.session.as_ref()?.customer.as_ref()?;
        (now_ms < c.expires_at_ms).then(|| c.token.clone())
    }

    /// The token for a callback: also after it expired for placing calls (the cloud decides).
    pub fn callback_token(&self) -> Option<String> {
        Some(self.session.as_ref()?.customer.as_ref()?.token.clone())
    }

    /// Ends the session; returns its id for the cloud to forget.
    pub fn end(&mut self) -> Option<String> {
        self.pending = None;
        self.session.take().map(|s| s.request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiosk_protocol::Version;

    fn answer(request: &str, result: JourneyResult) -> JourneyAnswer {
        JourneyAnswer {
            v: Version::CURRENT,
            request: request.into(),
            result,
        }
    }

    #[test]
    fn the_token_never_leaves_and_expires() {
        let mut d = JourneyDesk::default();
        let (r, old) = d.begin();
        assert!(old.is_none() && r.starts_with("jr-"));
        let verified = JourneyResult::Verified {
            customer: "kcu_secret".into(),
            masked_phone: "+33•••••••78".into(),
            expires_in_s: 600,
        };
        let seen = d.outcome(&r, verified, 1_000);
        let json = serde_json::to_string(&seen).unwrap();
        assert!(!json.contains("kcu_secret"), "{json}");
        assert_eq!(d.customer_token(2_000).as_deref(), Some("kcu_secret"));
        assert_eq!(d.customer_token(1_000 + 600_000), None);
        assert_eq!(d.callback_token().as_deref(), Some("kcu_secret"));
        assert_eq!(d.end().as_deref(), Some(r.as_str()));
        assert_eq!(d.callback_token(), None);
    }

    #[test]
    fn answers_go_to_the_waiting_request_only() {
        let mut d = JourneyDesk::default();
        let (r, _) = d.begin();
        let mut rx = d.expect(&r);
        assert!(!d.answer(answer("jr-other", JourneyResult::Forgotten)));
        assert!(rx.try_recv().is_err());
        assert!(d.answer(answer(&r, JourneyResult::WrongCode { tries_left: 3 })));
        assert_eq!(
            rx.try_recv().unwrap(),
            JourneyResult::WrongCode { tries_left: 3 }
        );
        // A late second answer has nobody waiting.
        assert!(!d.answer(answer(&r, JourneyResult::Forgotten)));
    }

    #[test]
    fn a_new_session_replaces_the_old_one() {
        let mut d = JourneyDesk::default();
        let (first, _) = d.begin();
        d.outcome(
            &first,
            JourneyResult::Verified {
                customer: "kcu_a".into(),
                masked_phone: String::new(),
                expires_in_s: 600,
            },
            0,
        );
        let (second, old) = d.begin();
        assert_eq!(old.as_deref(), Some(first.as_str()));
        assert_ne!(first, second);
        assert_eq!(d.customer_token(1), None);
        // A verification answering the old session is not kept.
        let seen = d.outcome(
            &first,
            JourneyResult::Verified {
                customer: "kcu_b".into(),
                masked_phone: String::new(),
                expires_in_s: 600,
            },
            0,
        );
        assert!(matches!(seen, JourneyOutcome::Unavailable { .. }));
        assert_eq!(d.customer_token(1), None);
    }
}
