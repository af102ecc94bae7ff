//! Recorded payloads of every message, read back with this build. Fixtures of a released
//! version are never edited or removed: a new cloud must keep reading old firmware.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use kiosk_protocol::command::{Action, Command, CommandResult, Outcome};
use kiosk_protocol::config::{ConfigOutcome, DesiredConfig, Reported};
use kiosk_protocol::event::{Event, EventBody};
use kiosk_protocol::provision::{ProvisionRequest, ProvisionResponse, ProvisionResult};
use kiosk_protocol::renew::{RenewRequest, RenewResponse, RenewResult};
use kiosk_protocol::telemetry::{Presence, Status, Telemetry};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fn text(version: &str, name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version)
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reads a fixture as `T` and checks that writing it back gives the same JSON.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let raw = text("v1", name);
    let value: T = serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
    let again: Value = serde_json::to_value(&value).unwrap();
    let original: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(again, original, "{name} does not round-trip");
    value
}

#[test]
fn every_fixture_file_is_covered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    let covered = [
        "call_accepted.json",
        "call_ended.json",
        "call_ended_callback.json",
        "call_queued.json",
        "call_queued_position.json",
        "call_refused.json",
        "cmd_result_accepted.json",
        "cmd_result_failed.json",
        "cmd_result_rejected.json",
        "cmd_result_succeeded.json",
        "command_factory_reset.json",
        "command_reboot.json",
        "command_restart_service.json",
        "command_rotate_certificate.json",
        "command_update.json",
        "desired_config.json",
        "desired_config_invalid.json",
        "down_signal_ice_end.json",
        "down_signal_sdp_answer.json",
        "event_boot.json",
        "event_consent.json",
        "event_diagnostic.json",
        "event_future_kind.json",
        "event_survey.json",
        "journey_callback.json",
        "journey_callback_booked.json",
        "journey_code_dead.json",
        "journey_code_sent.json",
        "journey_forget.json",
        "journey_future_result.json",
        "journey_limited.json",
        "journey_otp_request.json",
        "journey_otp_resend.json",
        "journey_otp_verify.json",
        "journey_verified.json",
        "journey_wrong_code.json",
        "provision_request.json",
        "provision_request_with_token.json",
        "provision_response_activation_code.json",
        "provision_response_certificate.json",
        "provision_response_certificate_for_key.json",
        "provision_response_rejected.json",
        "renew_request.json",
        "renew_response_certificate.json",
        "renew_response_rejected.json",
        "reported_applied.json",
        "reported_rejected.json",
        "signal_end.json",
        "signal_ice.json",
        "signal_place.json",
        "signal_place_customer.json",
        "signal_sdp_offer.json",
        "status_offline.json",
        "status_online.json",
        "telemetry.json",
        "telemetry_in_call.json",
    ];
    assert_eq!(names, covered, "add a test for every fixture");
}

#[test]
fn call_signalling() {
    use kiosk_protocol::call::{
        CallControl, CallEvent, CallKind, DownSignal, EndReason, Party, PeerSignal, SdpType,
        UpSignal, UpSignalBody,
    };
    let p: UpSignal = round_trip("signal_place.json");
    assert!(matches!(
        p.body,
        UpSignalBody::Place {
            kind: CallKind::Test,
            ..
        }
    ));
    assert!(p.body.check().is_ok() && p.body.call().is_none());
    let o: UpSignal = round_trip("signal_sdp_offer.json");
    assert!(matches!(
        o.body,
        UpSignalBody::Sdp {
            sdp_type: SdpType::Offer,
            ..
        }
    ));
    let i: UpSignal = round_trip("signal_ice.json");
    assert_eq!(
        i.body.call().map(|c| c.as_str()),
        Some("call-abcdefgh23456789")
    );
    let e: UpSignal = round_trip("signal_end.json");
    assert!(matches!(
        e.body,
        UpSignalBody::End {
            reason: EndReason::Hangup,
            ..
        }
    ));
    let q: CallControl = round_trip("call_queued.json");
    assert_eq!(
        q.event,
        CallEvent::Queued {
            position: None,
            estimated_wait_s: None
        }
    );
    let q: CallControl = round_trip("call_queued_position.json");
    assert_eq!(
        q.event,
        CallEvent::Queued {
            position: Some(2),
            estimated_wait_s: Some(95)
        }
    );
    let p: UpSignal = round_trip("signal_place_customer.json");
    match &p.body {
        UpSignalBody::Place {
            kind: CallKind::Customer,
            customer: Some(token),
            consent: Some(consent),
            ..
        } => {
            assert!(token.starts_with("kcu_"));
            assert!(!consent.granted && consent.notice_version == 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(p.body.check().is_ok());
    let x: CallControl = round_trip("call_ended_callback.json");
    assert_eq!(
        x.event,
        CallEvent::Ended {
            reason: EndReason::NotAnswered,
            by: Party::Cloud,
            callback_offered: true,
        }
    );
    let r: CallControl = round_trip("call_refused.json");
    assert!(matches!(r.event, CallEvent::Refused { .. }));
    let a: CallControl = round_trip("call_accepted.json");
    match a.event {
        CallEvent::Accepted { ice_servers, .. } => {
            assert_eq!(ice_servers.len(), 2);
            assert!(ice_servers[1]
                .username
                .as_deref()
                .unwrap()
                .ends_with(":call-abcdefgh23456789"));
        }
        other => panic!("{other:?}"),
    }
    let x: CallControl = round_trip("call_ended.json");
    assert_eq!(
        x.event,
        CallEvent::Ended {
            reason: EndReason::AgentDisconnected,
            by: Party::Cloud,
            callback_offered: false,
        }
    );
    let s: DownSignal = round_trip("down_signal_sdp_answer.json");
    assert!(matches!(
        s.body,
        PeerSignal::Sdp {
            sdp_type: SdpType::Answer,
            ..
        }
    ));
    let c: DownSignal = round_trip("down_signal_ice_end.json");
    assert!(matches!(c.body, PeerSignal::Ice { ref candidate, .. } if candidate.is_empty()));
    let t: Telemetry = round_trip("telemetry_in_call.json");
    let stats = t.call_stats.unwrap();
    assert_eq!(stats.frames_decoded, Some(612));
    assert!(stats.stamp_latencies_ms.is_empty());
    let old: Telemetry = round_trip("telemetry.json");
    assert!(old.call_stats.is_none() && old.encoder_reason.is_none());
}

#[test]
fn provisioning() {
    let r: ProvisionRequest = round_trip("provision_request.json");
    assert!(r.enrollment_token.is_none());
    let r: ProvisionRequest = round_trip("provision_request_with_token.json");
    assert_eq!(r.enrollment_token.as_deref(), Some("ket_9sd8f7g6h5j4k3l2"));
    let r: ProvisionResponse = round_trip("provision_response_certificate.json");
    assert!(
        matches!(r.result, ProvisionResult::Certificate { ref device_id, .. } if device_id.as_str() == "kiosk-0001")
    );
    assert_eq!(
        r.key_fingerprint, None,
        "answers from before fingerprints still read"
    );
    let r: ProvisionResponse = round_trip("provision_response_certificate_for_key.json");
    assert_eq!(r.key_fingerprint.as_deref(), Some("3f9a0c21d7e4b856"));
    let r: ProvisionResponse = round_trip("provision_response_activation_code.json");
    assert!(matches!(r.result, ProvisionResult::ActivationCode { .. }));
    let r: ProvisionResponse = round_trip("provision_response_rejected.json");
    assert!(matches!(r.result, ProvisionResult::Rejected { .. }));
}

#[test]
fn certificate_renewal() {
    let r: RenewRequest = round_trip("renew_request.json");
    assert_eq!(r.header.seq, 51);
    let a: RenewResponse = round_trip("renew_response_certificate.json");
    assert_eq!(a.request, r.header.id);
    assert!(matches!(a.result, RenewResult::Certificate { .. }));
    let a: RenewResponse = round_trip("renew_response_rejected.json");
    assert!(matches!(a.result, RenewResult::Rejected { .. }));
}

#[test]
fn desired_and_reported_config() {
    let good: DesiredConfig = round_trip("desired_config.json");
    assert_eq!(good.validate(), Ok(()));
    let bad: DesiredConfig = round_trip("desired_config_invalid.json");
    let errors = bad.validate().unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    for f in [
        "site.business_hours.mon",
        "locale.available",
        "idle.warning_s",
        "telemetry_interval_s",
    ] {
        assert!(fields.contains(&f), "{f} not reported in {fields:?}");
    }
    let r: Reported = round_trip("reported_applied.json");
    assert_eq!(r.outcome, ConfigOutcome::Applied { version: 7 });
    let r: Reported = round_trip("reported_rejected.json");
    assert!(matches!(
        r.outcome,
        ConfigOutcome::Rejected {
            version: Some(8),
            ..
        }
    ));
}

#[test]
fn commands_and_results() {
    let actions: Vec<Action> = [
        "command_reboot.json",
        "command_restart_service.json",
        "command_rotate_certificate.json",
        "command_factory_reset.json",
        "command_update.json",
    ]
    .iter()
    .map(|n| round_trip::<Command>(n).action)
    .collect();
    assert!(matches!(
        actions[4],
        Action::Update {
            size: 104_857_600,
            ..
        }
    ));
    for (name, check) in [
        (
            "cmd_result_accepted.json",
            matches_accepted as fn(&Outcome) -> bool,
        ),
        ("cmd_result_succeeded.json", |o| {
            matches!(o, Outcome::Succeeded { .. })
        }),
        ("cmd_result_failed.json", |o| {
            matches!(o, Outcome::Failed { .. })
        }),
        ("cmd_result_rejected.json", |o| {
            matches!(o, Outcome::Rejected { .. })
        }),
    ] {
        let r: CommandResult = round_trip(name);
        assert!(check(&r.outcome), "{name}");
    }
}

fn matches_accepted(o: &Outcome) -> bool {
    matches!(o, Outcome::Accepted)
}

#[test]
fn telemetry_status_and_events() {
    let t: Telemetry = round_trip("telemetry.json");
    assert_eq!(t.header.seq, 47);
    let s: Status = round_trip("status_online.json");
    assert_eq!(s.state, Presence::Online);
    let s: Status = round_trip("status_offline.json");
    assert_eq!(s.state, Presence::Offline);
    let e: Event = round_trip("event_boot.json");
    assert!(matches!(e.body, EventBody::Boot { .. }));
    let e: Event = round_trip("event_diagnostic.json");
    assert!(matches!(e.body, EventBody::Diagnostic { .. }));
    // A kind from newer firmware is read, kept with its id and sequence, and not interpreted.
    let raw = text("v1", "event_future_kind.json");
    let e: Event = serde_json::from_str(&raw).unwrap();
    assert_eq!(e.body, EventBody::Unknown);
    assert_eq!(e.header.seq, 3);
    let e: Event = round_trip("event_consent.json");
    assert!(matches!(
        e.body,
        EventBody::Consent {
            granted: false,
            notice_version: 2,
            ..
        }
    ));
    let e: Event = round_trip("event_survey.json");
    assert!(matches!(e.body, EventBody::Survey { score: 3, .. }));
}

#[test]
fn customer_journey() {
    use kiosk_protocol::journey::{
        DeadCode, JourneyAnswer, JourneyRequest, JourneyResult, JourneyUp,
    };
    let r: JourneyUp = round_trip("journey_otp_request.json");
    assert!(matches!(r.body, JourneyRequest::OtpRequest { .. }));
    assert!(r.check().is_ok());
    let r: JourneyUp = round_trip("journey_otp_resend.json");
    assert_eq!(r.body, JourneyRequest::OtpResend);
    let r: JourneyUp = round_trip("journey_otp_verify.json");
    assert!(r.check().is_ok());
    let r: JourneyUp = round_trip("journey_callback.json");
    assert!(matches!(
        r.body,
        JourneyRequest::Callback { call: Some(_), .. }
    ));
    let r: JourneyUp = round_trip("journey_forget.json");
    assert_eq!(r.body, JourneyRequest::Forget);
    let a: JourneyAnswer = round_trip("journey_code_sent.json");
    assert!(matches!(
        a.result,
        JourneyResult::CodeSent {
            resend_after_s: 30,
            ..
        }
    ));
    let a: JourneyAnswer = round_trip("journey_wrong_code.json");
    assert_eq!(a.result, JourneyResult::WrongCode { tries_left: 4 });
    let a: JourneyAnswer = round_trip("journey_code_dead.json");
    assert_eq!(
        a.result,
        JourneyResult::CodeDead {
            why: DeadCode::TooManyTries
        }
    );
    let a: JourneyAnswer = round_trip("journey_verified.json");
    assert!(matches!(a.result, JourneyResult::Verified { .. }));
    let a: JourneyAnswer = round_trip("journey_limited.json");
    assert!(matches!(a.result, JourneyResult::Limited { .. }));
    let a: JourneyAnswer = round_trip("journey_callback_booked.json");
    assert!(matches!(a.result, JourneyResult::CallbackBooked { .. }));
    let raw = text("v1", "journey_future_result.json");
    let a: JourneyAnswer = serde_json::from_str(&raw).unwrap();
    assert_eq!(a.result, JourneyResult::Unknown);
}

#[test]
fn a_payload_from_a_newer_protocol_is_refused_not_misread() {
    let raw = text("v1", "telemetry.json").replacen("\"v\":1", "\"v\":2", 1);
    let e = serde_json::from_str::<Telemetry>(&raw).unwrap_err();
    assert!(e.to_string().contains("not supported"), "{e}");
}
