//! The journey without sockets: every screen, transition, timer and refusal.

use super::*;

/// Friday 2026-11-20 10:00 in Paris.
const OPEN_WALL: &str = "2026-11-20T09:00:00Z";
/// Friday 2026-11-20 20:00 in Paris: closed until Saturday 10:00.
const CLOSED_WALL: &str = "2026-11-20T19:00:00Z";

fn config(recording: &str, notice: u32) -> Box<DesiredConfig> {
    let json = format!(
        r#"{{"v":1,"version":7,"org":"demo","site":{{"id":1,"name":"Main Street","timezone":"Europe/Paris",
        "business_hours":{{"mon":[{{"open":"09:00","close":"19:00"}}],"tue":[{{"open":"09:00","close":"19:00"}}],
        "wed":[{{"open":"09:00","close":"19:00"}}],"thu":[{{"open":"09:00","close":"19:00"}}],
        "fri":[{{"open":"09:00","close":"19:00"}}],"sat":[{{"open":"10:00","close":"17:00"}}],"sun":[]}},
        "holidays":[{{"date":"2026-12-25","name":"Christmas Day"}}]}},
        "locale":{{"default":"en","available":["en","fr","ar"]}},
        "otp":{{"code_length":6,"resend_after_s":30}},
        "recording":{{"mode":"{recording}","consent_notice_version":{notice}}},
        "idle":{{"idle_s":60,"warning_s":20}},"telemetry_interval_s":30,"board_profile":"qemu"}}"#
    );
    let c: DesiredConfig = serde_json::from_str(&json).unwrap();
    c.validate().unwrap();
    Box::new(c)
}

fn at(mono_s: u64, wall: &str) -> Now {
    Now {
        mono: mono_s * 1000,
        wall: wall.parse().unwrap(),
    }
}

fn t(mono_s: u64) -> Now {
    at(mono_s, OPEN_WALL)
}

fn online() -> Link {
    Link {
        present: true,
        state: state::ENROLLED.into(),
        activation_code: String::new(),
        connected: true,
    }
}

fn journey_with(c: Box<DesiredConfig>) -> Journey {
    let mut j = Journey::new(Defaults {
        language: Language::En,
        country: "US",
        display: DisplayInfo {
            px_per_mm: 4.0,
            min_target_px: 80.0,
        },
        boot: 0xabc,
    });
    j.handle(Input::Link(online()), t(0)).unwrap();
    j.handle(Input::Config(Some(c)), t(0)).unwrap();
    j
}

fn journey() -> Journey {
    journey_with(config("off", 0))
}

fn act(j: &mut Journey, a: Action, now: Now) -> Vec<Command> {
    j.handle(Input::Action(a), now)
        .unwrap()
        .into_iter()
        .map(|i| i.command)
        .collect()
}

fn answer(j: &mut Journey, a: Answer, now: Now) -> Vec<Command> {
    let epoch = j.epoch();
    j.handle(Input::Answer { epoch, answer: a }, now)
        .unwrap()
        .into_iter()
        .map(|i| i.command)
        .collect()
}

fn signal(j: &mut Journey, s: SyncSignal, now: Now) {
    assert!(j.handle(Input::Signal(s), now).unwrap().is_empty());
}

fn code_sent() -> Answer {
    Answer::Otp(Ok(JourneyOutcome::CodeSent {
        masked_phone: "+33•••••••78".into(),
        resend_after_s: 30,
        expires_in_s: 300,
    }))
}

fn verified() -> Answer {
    Answer::Verify(Ok(JourneyOutcome::Verified {
        masked_phone: "+33•••••••78".into(),
        expires_in_s: 600,
    }))
}

fn submit_phone() -> Action {
    Action::SubmitPhone {
        country: "FR".into(),
        number: "0612345678".into(),
    }
}

fn submit_code(code: &str) -> Action {
    Action::SubmitCode { code: code.into() }
}

/// Attract → phone → code → verified, for a call.
fn to_verified(j: &mut Journey) -> Vec<Command> {
    act(j, Action::Start, t(1));
    assert_eq!(j.screen(), "phone");
    let cmds = act(j, submit_phone(), t(2));
    assert_eq!(
        cmds,
        vec![Command::RequestOtp {
            phone: "+33612345678".into(),
            language: j.language().tag().into()
        }]
    );
    assert!(j.view(t(2)).busy);
    answer(j, code_sent(), t(3));
    assert_eq!(j.screen(), "code");
    let cmds = act(j, submit_code("123456"), t(4));
    assert_eq!(
        cmds,
        vec![Command::VerifyOtp {
            code: "123456".into()
        }]
    );
    answer(j, verified(), t(5))
}

fn ended(call: &str, request: &str, reason: &str) -> SyncSignal {
    SyncSignal::CallEnded {
        call: call.into(),
        request: request.into(),
        reason: reason.into(),
    }
}

#[test]
fn gates_come_before_the_journey() {
    let mut j = Journey::new(Defaults {
        language: Language::Fr,
        country: "FR",
        display: DisplayInfo {
            px_per_mm: 4.0,
            min_target_px: 80.0,
        },
        boot: 1,
    });
    // Nothing known of kiosk-sync yet.
    assert_eq!(j.screen(), "unavailable");
    let mut link = online();
    link.state = state::AWAITING_ACTIVATION.into();
    link.activation_code = "K7Q-4MX".into();
    link.connected = false;
    j.handle(Input::Link(link.clone()), t(0)).unwrap();
    assert_eq!(j.screen(), "activation");
    assert_eq!(j.view(t(0)).activation.unwrap().code, "K7Q-4MX");
    link.state = state::ENROLLING.into();
    j.handle(Input::Link(link.clone()), t(0)).unwrap();
    assert_eq!(j.screen(), "setup");
    link.state = state::UNENROLLED.into();
    j.handle(Input::Link(link), t(0)).unwrap();
    assert_eq!(j.screen(), "setup");
    // Enrolled but offline.
    let mut link = online();
    link.connected = false;
    j.handle(Input::Link(link), t(0)).unwrap();
    assert_eq!(j.screen(), "unavailable");
    // Online without a config: being set up.
    j.handle(Input::Link(online()), t(0)).unwrap();
    assert_eq!(j.screen(), "setup");
    assert!(matches!(
        j.handle(Input::Action(Action::Start), t(0)),
        Err(Refusal::NotNow(_))
    ));
    j.handle(Input::Config(Some(config("off", 0))), t(0))
        .unwrap();
    assert_eq!(j.screen(), "attract");
    // The config's default language wins over the file's.
    assert_eq!(j.view(t(0)).language, "en");
    // kiosk-sync leaves the bus.
    j.handle(Input::Link(Link::default()), t(1)).unwrap();
    assert_eq!(j.screen(), "unavailable");
}

#[test]
fn a_gate_closing_mid_session_resets_it() {
    let mut j = journey();
    act(&mut j, Action::Start, t(1));
    let epoch = j.epoch();
    let mut link = online();
    link.connected = false;
    let out = j.handle(Input::Link(link), t(2)).unwrap();
    assert_eq!(out.last().unwrap().command, Command::EndJourney);
    assert_eq!(j.epoch(), epoch + 1);
    assert_eq!(j.screen(), "unavailable");
    j.handle(Input::Link(online()), t(3)).unwrap();
    assert_eq!(j.screen(), "attract");
    // No session, no reset: a link blip on the attract screen keeps the epoch.
    let epoch = j.epoch();
    j.handle(Input::Link(Link::default()), t(4)).unwrap();
    assert_eq!(j.epoch(), epoch);
}

#[test]
fn the_whole_call_journey_with_consent() {
    let mut j = journey_with(config("on_with_consent", 1));
    act(
        &mut j,
        Action::Language {
            language: "fr".into(),
        },
        t(0),
    );
    assert_eq!(j.view(t(0)).language, "fr");
    assert!(to_verified(&mut j).is_empty());
    assert_eq!(j.screen(), "consent");
    let v = j.view(t(5));
    let c = v.consent.unwrap();
    assert_eq!(c.version, 1);
    assert!(c.notice.starts_with("Cette organisation"));
    let cmds = act(&mut j, Action::Consent { granted: true }, t(6));
    assert_eq!(
        cmds,
        vec![Command::PlaceCustomerCall {
            language: "fr".into(),
            consent: "granted".into()
        }]
    );
    assert_eq!(j.screen(), "queue");
    assert!(j.view(t(6)).busy);
    answer(&mut j, Answer::Placed(Ok("req-1".into())), t(6));
    let q = j.view(t(6)).queue.unwrap();
    assert!(!q.queued && q.position.is_none());
    // A queued signal for someone else's request is not ours.
    signal(
        &mut j,
        SyncSignal::CallQueued {
            request: "req-other".into(),
            call: "c-other".into(),
        },
        t(7),
    );
    assert!(!j.view(t(7)).queue.unwrap().queued);
    signal(
        &mut j,
        SyncSignal::CallQueued {
            request: "req-1".into(),
            call: "c-1".into(),
        },
        t(7),
    );
    assert!(j.view(t(7)).queue.unwrap().queued);
    signal(
        &mut j,
        SyncSignal::QueueUpdate {
            call: "c-1".into(),
            position: 3,
            estimated_wait_s: 240,
        },
        t(8),
    );
    let q = j.view(t(8)).queue.unwrap();
    assert_eq!((q.position, q.estimated_wait_s), (Some(3), Some(240)));
    signal(
        &mut j,
        SyncSignal::QueueUpdate {
            call: "c-1".into(),
            position: 1,
            estimated_wait_s: 0,
        },
        t(9),
    );
    let q = j.view(t(9)).queue.unwrap();
    assert_eq!((q.position, q.estimated_wait_s), (Some(1), None));
    // No idle reset while waiting in the queue.
    assert_eq!(j.next_deadline(t(0)), None);
    signal(
        &mut j,
        SyncSignal::CallAccepted { call: "c-1".into() },
        t(10),
    );
    assert_eq!(j.screen(), "call");
    let c = j.view(t(75)).call.unwrap();
    assert_eq!((c.elapsed_s, c.muted, c.recording), (65, false, true));
    assert_eq!(
        act(&mut j, Action::Mute { muted: true }, t(76)),
        vec![Command::SetMicrophoneMuted(true)]
    );
    answer(
        &mut j,
        Answer::Muted {
            muted: true,
            result: Ok(()),
        },
        t(76),
    );
    assert!(j.view(t(76)).call.unwrap().muted);
    // kiosk-media's property follows.
    j.handle(Input::MediaMuted(false), t(77)).unwrap();
    assert!(!j.view(t(77)).call.unwrap().muted);
    // The language is fixed during a call.
    assert!(j
        .handle(
            Input::Action(Action::Language {
                language: "en".into()
            }),
            t(77)
        )
        .is_err());
    let cmds = act(&mut j, Action::HangUp, t(80));
    assert_eq!(
        cmds,
        vec![Command::EndCall {
            call: "c-1".into(),
            reason: "hangup".into()
        }]
    );
    assert_eq!(j.screen(), "survey");
    // The CallEnded that follows our own hang-up changes nothing.
    signal(&mut j, ended("c-1", "req-1", "hangup"), t(80));
    assert_eq!(j.screen(), "survey");
    assert!(matches!(
        j.handle(Input::Action(Action::Survey { score: 4 }), t(81)),
        Err(Refusal::BadInput(_))
    ));
    let cmds = act(&mut j, Action::Survey { score: 3 }, t(81));
    assert_eq!(
        cmds,
        vec![Command::ReportSurvey {
            call: "c-1".into(),
            score: 3
        }]
    );
    assert_eq!(j.screen(), "thanks");
    assert_eq!(j.view(t(81)).auto_reset_s, Some(10));
    assert_eq!(j.next_deadline(t(0)), Some(91_000));
    let epoch = j.epoch();
    let out = j.handle(Input::Tick, t(91)).unwrap();
    assert_eq!(
        out,
        vec![Issued {
            epoch,
            command: Command::EndJourney
        }]
    );
    assert_eq!(j.screen(), "attract");
    assert_eq!(j.view(t(91)).language, "en");
    assert_eq!(j.session(), format!("abc-{}", epoch + 1));
}

#[test]
fn declining_consent_still_places_the_call_without_recording() {
    let mut j = journey_with(config("on_with_consent", 1));
    to_verified(&mut j);
    let cmds = act(&mut j, Action::Consent { granted: false }, t(6));
    assert_eq!(
        cmds,
        vec![Command::PlaceCustomerCall {
            language: "en".into(),
            consent: "declined".into()
        }]
    );
    answer(&mut j, Answer::Placed(Ok("r".into())), t(6));
    signal(&mut j, SyncSignal::CallAccepted { call: "c".into() }, t(7));
    assert!(!j.view(t(7)).call.unwrap().recording);
}

#[test]
fn an_unknown_notice_version_places_the_call_declined() {
    let mut j = journey_with(config("on_with_consent", 42));
    let cmds = to_verified(&mut j);
    assert_eq!(
        cmds,
        vec![Command::PlaceCustomerCall {
            language: "en".into(),
            consent: "declined".into()
        }]
    );
    assert_eq!(j.screen(), "queue");
}

#[test]
fn without_recording_no_question_is_asked() {
    let mut j = journey();
    let cmds = to_verified(&mut j);
    assert_eq!(
        cmds,
        vec![Command::PlaceCustomerCall {
            language: "en".into(),
            consent: "".into()
        }]
    );
}

#[test]
fn phone_errors_keep_the_screen_and_say_why() {
    let mut j = journey();
    act(&mut j, Action::Start, t(1));
    // Too short: refused here, no D-Bus call.
    let cmds = act(
        &mut j,
        Action::SubmitPhone {
            country: "FR".into(),
            number: "06".into(),
        },
        t(2),
    );
    assert!(cmds.is_empty());
    let p = j.view(t(2)).problem.unwrap();
    assert_eq!((p.problem, p.seq), (Problem::InvalidPhone, 1));
    // Malformed input is a bad request.
    for (country, number) in [("ZZ", "0612345678"), ("FR", "06-12"), ("FR", "")] {
        assert!(matches!(
            j.handle(
                Input::Action(Action::SubmitPhone {
                    country: country.into(),
                    number: number.into()
                }),
                t(2)
            ),
            Err(Refusal::BadInput(_))
        ));
    }
    for (outcome, problem) in [
        (
            Ok(JourneyOutcome::InvalidPhone {
                message: "x".into(),
            }),
            Problem::InvalidPhone,
        ),
        (
            Ok(JourneyOutcome::Limited { retry_after_s: 600 }),
            Problem::Limited { retry_after_s: 600 },
        ),
        (
            Ok(JourneyOutcome::Unavailable {
                reason: "sms".into(),
            }),
            Problem::Unavailable,
        ),
        (Ok(JourneyOutcome::Offline), Problem::Offline),
        (Err("no reply".into()), Problem::Unavailable),
    ] {
        act(&mut j, submit_phone(), t(3));
        // Busy: a second submit is refused, not doubled.
        assert!(matches!(
            j.handle(Input::Action(submit_phone()), t(3)),
            Err(Refusal::NotNow(_))
        ));
        answer(&mut j, Answer::Otp(outcome), t(4));
        assert_eq!(j.screen(), "phone");
        assert_eq!(j.view(t(4)).problem.unwrap().problem, problem);
        assert!(!j.view(t(4)).busy);
    }
    // Back leaves for the attract screen.
    act(&mut j, Action::Back, t(5));
    assert_eq!(j.screen(), "attract");
}

#[test]
fn code_errors_each_get_their_words_and_a_way_forward() {
    let mut j = journey();
    act(&mut j, Action::Start, t(1));
    act(&mut j, submit_phone(), t(2));
    answer(&mut j, code_sent(), t(3));
    let c = j.view(t(3)).code.unwrap();
    assert_eq!(
        (c.masked_phone.as_str(), c.resend_in_s, c.length),
        ("+33•••••••78", 30, 6)
    );
    // Not six digits: a bad request.
    for bad in ["12345", "1234567", "12a456", ""] {
        assert!(matches!(
            j.handle(Input::Action(submit_code(bad)), t(4)),
            Err(Refusal::BadInput(_))
        ));
    }
    act(&mut j, submit_code("000000"), t(4));
    answer(
        &mut j,
        Answer::Verify(Ok(JourneyOutcome::WrongCode { tries_left: 4 })),
        t(5),
    );
    let p = j.view(t(5)).problem.unwrap();
    assert_eq!(p.problem, Problem::WrongCode { tries_left: 4 });
    let seq = p.seq;
    act(&mut j, submit_code("000001"), t(6));
    answer(
        &mut j,
        Answer::Verify(Ok(JourneyOutcome::CodeDead {
            why: "too_many_tries".into(),
        })),
        t(7),
    );
    let p = j.view(t(7)).problem.unwrap();
    assert_eq!(
        p.problem,
        Problem::CodeDead {
            why: "too_many_tries".into()
        }
    );
    assert!(p.seq > seq);
    // Resend only after the cooldown: the deadline wakes the edge then.
    assert!(matches!(
        j.handle(Input::Action(Action::ResendCode), t(20)),
        Err(Refusal::NotNow(_))
    ));
    assert_eq!(j.view(t(20)).code.unwrap().resend_in_s, 13);
    assert_eq!(j.next_deadline(t(20)), Some(33_000));
    assert_eq!(
        act(&mut j, Action::ResendCode, t(33)),
        vec![Command::ResendOtp]
    );
    answer(
        &mut j,
        Answer::Otp(Ok(JourneyOutcome::Limited { retry_after_s: 900 })),
        t(34),
    );
    assert_eq!(
        j.view(t(34)).problem.unwrap().problem,
        Problem::Limited { retry_after_s: 900 }
    );
    act(&mut j, Action::ResendCode, t(35));
    answer(&mut j, code_sent(), t(36));
    assert!(j.view(t(36)).problem.is_none());
    assert_eq!(j.view(t(36)).code.unwrap().resend_in_s, 30);
    for (outcome, problem) in [
        (Ok(JourneyOutcome::Offline), Problem::Offline),
        (
            Ok(JourneyOutcome::Unavailable { reason: "".into() }),
            Problem::Unavailable,
        ),
        (Err("timeout".into()), Problem::Unavailable),
    ] {
        act(&mut j, submit_code("123456"), t(37));
        answer(&mut j, Answer::Verify(outcome), t(38));
        assert_eq!(j.view(t(38)).problem.unwrap().problem, problem);
    }
    // Another number: back to the keypad.
    act(&mut j, Action::ChangeNumber, t(39));
    assert_eq!(j.screen(), "phone");
    assert!(j.view(t(39)).problem.is_none());
}

#[test]
fn closed_now_offers_a_callback_before_any_number_is_typed() {
    let mut j = journey();
    act(&mut j, Action::Start, at(1, CLOSED_WALL));
    assert_eq!(j.screen(), "closed");
    let c = j.view(at(1, CLOSED_WALL)).closed.unwrap();
    assert_eq!(c.next_opening.as_deref(), Some("tomorrow at 10:00"));
    assert_eq!(
        c.next_opening_at.as_deref(),
        Some("2026-11-21T10:00:00+01:00[Europe/Paris]")
    );
    act(
        &mut j,
        Action::Language {
            language: "ar".into(),
        },
        at(2, CLOSED_WALL),
    );
    let v = j.view(at(2, CLOSED_WALL));
    assert_eq!(v.dir, "rtl");
    assert_eq!(
        v.closed.unwrap().next_opening.as_deref(),
        Some("غدًا الساعة 10:00")
    );
    act(&mut j, Action::RequestCallback, at(3, CLOSED_WALL));
    assert_eq!(j.screen(), "phone");
    assert_eq!(
        j.view(at(3, CLOSED_WALL)).phone.unwrap().purpose,
        Purpose::Callback
    );
    act(&mut j, submit_phone(), at(4, CLOSED_WALL));
    answer(&mut j, code_sent(), at(5, CLOSED_WALL));
    assert_eq!(
        j.view(at(5, CLOSED_WALL)).code.unwrap().purpose,
        Purpose::Callback
    );
    act(&mut j, submit_code("123456"), at(6, CLOSED_WALL));
    let cmds = answer(&mut j, verified(), at(7, CLOSED_WALL));
    assert_eq!(
        cmds,
        vec![Command::RequestCallback {
            call: String::new()
        }]
    );
    assert!(j.view(at(7, CLOSED_WALL)).busy);
    answer(
        &mut j,
        Answer::Callback(Ok(JourneyOutcome::CallbackBooked {
            masked_phone: "+33•••••••78".into(),
        })),
        at(8, CLOSED_WALL),
    );
    assert_eq!(j.screen(), "booked");
    assert_eq!(
        j.view(at(8, CLOSED_WALL)).booked.unwrap().masked_phone,
        "+33•••••••78"
    );
    // Booked resets by itself.
    j.handle(Input::Tick, at(18, CLOSED_WALL)).unwrap();
    assert_eq!(j.screen(), "attract");
}

#[test]
fn holidays_and_sites_that_never_open() {
    let mut j = journey();
    // Christmas Day at 11:00 in Paris, a Friday: a holiday.
    act(&mut j, Action::Start, at(1, "2026-12-25T10:00:00Z"));
    assert_eq!(j.screen(), "closed");
    let c = j.view(at(1, "2026-12-25T10:00:00Z")).closed.unwrap();
    assert_eq!(c.next_opening.as_deref(), Some("tomorrow at 10:00"));
    act(&mut j, Action::Back, at(2, "2026-12-25T10:00:00Z"));
    let mut never = config("off", 0);
    never.site.business_hours = Default::default();
    j.handle(Input::Config(Some(never)), t(3)).unwrap();
    act(&mut j, Action::Start, t(4));
    assert_eq!(j.screen(), "closed");
    assert_eq!(j.view(t(4)).closed.unwrap().next_opening, None);
}

#[test]
fn nobody_answered_then_a_callback_is_offered() {
    let mut j = journey();
    to_verified(&mut j);
    answer(&mut j, Answer::Placed(Ok("req-9".into())), t(6));
    signal(
        &mut j,
        SyncSignal::CallQueued {
            request: "req-9".into(),
            call: "c-9".into(),
        },
        t(7),
    );
    signal(&mut j, ended("c-9", "req-9", "not_answered"), t(60));
    assert_eq!(j.screen(), "no_answer");
    // Someone else's offer is not ours.
    signal(
        &mut j,
        SyncSignal::CallbackOffered {
            call: "c-other".into(),
        },
        t(60),
    );
    assert_eq!(j.screen(), "no_answer");
    signal(
        &mut j,
        SyncSignal::CallbackOffered { call: "c-9".into() },
        t(61),
    );
    assert_eq!(j.screen(), "callback_offer");
    let cmds = act(&mut j, Action::Callback { accept: true }, t(62));
    assert_eq!(cmds, vec![Command::RequestCallback { call: "c-9".into() }]);
    answer(
        &mut j,
        Answer::Callback(Ok(JourneyOutcome::Unavailable { reason: "x".into() })),
        t(63),
    );
    assert_eq!(j.screen(), "callback_failed");
    assert_eq!(j.view(t(63)).problem.unwrap().problem, Problem::Unavailable);
    let cmds = act(&mut j, Action::Done, t(64));
    assert_eq!(cmds, vec![Command::EndJourney]);
    assert_eq!(j.screen(), "attract");
}

#[test]
fn a_callback_offer_may_come_straight_from_the_queue_and_be_declined() {
    let mut j = journey();
    to_verified(&mut j);
    answer(&mut j, Answer::Placed(Ok("r".into())), t(6));
    signal(
        &mut j,
        SyncSignal::CallQueued {
            request: "r".into(),
            call: "c".into(),
        },
        t(7),
    );
    signal(
        &mut j,
        SyncSignal::CallbackOffered { call: "c".into() },
        t(8),
    );
    assert_eq!(j.screen(), "callback_offer");
    signal(&mut j, ended("c", "r", "not_answered"), t(8));
    assert_eq!(j.screen(), "callback_offer");
    let cmds = act(&mut j, Action::Callback { accept: false }, t(9));
    assert_eq!(cmds, vec![Command::EndJourney]);
}

#[test]
fn cancelling_in_the_queue_ends_the_call_and_the_session() {
    let mut j = journey();
    to_verified(&mut j);
    // Cancelled before kiosk-sync even answered: the call is ended by its (empty) id.
    let cmds = act(&mut j, Action::CancelCall, t(6));
    assert_eq!(
        cmds,
        vec![
            Command::EndCall {
                call: "".into(),
                reason: "cancelled".into()
            },
            Command::EndJourney
        ]
    );
    let mut j = journey();
    to_verified(&mut j);
    answer(&mut j, Answer::Placed(Ok("r".into())), t(6));
    // Cancelled while placing: by request id.
    let mut k = j.clone();
    let cmds = act(&mut k, Action::CancelCall, t(6));
    assert_eq!(
        cmds,
        vec![
            Command::EndCall {
                call: "r".into(),
                reason: "cancelled".into()
            },
            Command::EndJourney
        ]
    );
    signal(
        &mut j,
        SyncSignal::CallQueued {
            request: "r".into(),
            call: "c".into(),
        },
        t(7),
    );
    let epoch = j.epoch();
    let cmds = act(&mut j, Action::CancelCall, t(8));
    assert_eq!(
        cmds,
        vec![
            Command::EndCall {
                call: "c".into(),
                reason: "cancelled".into()
            },
            Command::EndJourney
        ]
    );
    assert_eq!(j.screen(), "attract");
    // The CallEnded that follows is from the last session: ignored.
    signal(&mut j, ended("c", "r", "cancelled"), t(8));
    assert_eq!(j.screen(), "attract");
    // So is a late answer.
    j.handle(
        Input::Answer {
            epoch,
            answer: Answer::Placed(Ok("late".into())),
        },
        t(9),
    )
    .unwrap();
    assert_eq!(j.screen(), "attract");
}

#[test]
fn refused_and_broken_calls_say_so_and_may_try_again() {
    let mut j = journey();
    to_verified(&mut j);
    answer(&mut j, Answer::Placed(Err("not connected".into())), t(6));
    assert_eq!(j.screen(), "call_failed");
    assert_eq!(j.view(t(6)).can_retry, Some(true));
    let cmds = act(&mut j, Action::TryAgain, t(7));
    assert_eq!(
        cmds,
        vec![Command::PlaceCustomerCall {
            language: "en".into(),
            consent: "".into()
        }]
    );
    answer(&mut j, Answer::Placed(Ok("r2".into())), t(7));
    signal(&mut j, ended("", "r2", "refused: closed"), t(8));
    assert_eq!(j.screen(), "call_failed");
    assert_eq!(j.view(t(8)).problem.unwrap().problem, Problem::Refused);
    act(&mut j, Action::TryAgain, t(9));
    answer(&mut j, Answer::Placed(Ok("r3".into())), t(9));
    signal(&mut j, ended("", "r3", "kiosk_offline"), t(10));
    assert_eq!(j.view(t(10)).can_retry, Some(false));
    assert!(j.handle(Input::Action(Action::TryAgain), t(11)).is_err());
    // A call that breaks off.
    let mut j = journey();
    to_verified(&mut j);
    answer(&mut j, Answer::Placed(Ok("r".into())), t(6));
    signal(&mut j, SyncSignal::CallAccepted { call: "c".into() }, t(7));
    signal(&mut j, ended("c", "r", "media_failed"), t(20));
    assert_eq!(j.screen(), "call_failed");
    assert_eq!(j.view(t(20)).problem.unwrap().problem, Problem::CallCut);
    // The agent hangs up: survey.
    let mut j = journey();
    to_verified(&mut j);
    answer(&mut j, Answer::Placed(Ok("r".into())), t(6));
    signal(&mut j, SyncSignal::CallAccepted { call: "c".into() }, t(7));
    signal(&mut j, ended("other", "x", "hangup"), t(20));
    assert_eq!(j.screen(), "call");
    signal(&mut j, ended("c", "r", "hangup"), t(20));
    assert_eq!(j.screen(), "survey");
    // Mute that fails says so.
    let mut j = journey();
    to_verified(&mut j);
    answer(&mut j, Answer::Placed(Ok("r".into())), t(6));
    signal(&mut j, SyncSignal::CallAccepted { call: "c".into() }, t(7));
    act(&mut j, Action::Mute { muted: true }, t(8));
    answer(
        &mut j,
        Answer::Muted {
            muted: true,
            result: Err("no kiosk-media".into()),
        },
        t(8),
    );
    let v = j.view(t(8));
    assert!(!v.call.unwrap().muted);
    assert_eq!(v.problem.unwrap().problem, Problem::MuteFailed);
}

#[test]
fn idle_warns_then_resets_and_a_touch_extends() {
    let mut j = journey();
    // The attract screen in its default language has nothing to forget.
    assert_eq!(j.next_deadline(t(0)), None);
    act(&mut j, Action::Start, t(100));
    assert_eq!(j.next_deadline(t(0)), Some(160_000));
    j.handle(Input::Tick, t(159)).unwrap();
    assert!(j.view(t(159)).warning.is_none());
    j.handle(Input::Tick, t(160)).unwrap();
    assert_eq!(j.view(t(160)).warning.unwrap().seconds_left, 20);
    assert_eq!(j.view(t(165)).warning.unwrap().seconds_left, 15);
    assert_eq!(j.next_deadline(t(0)), Some(180_000));
    // A tap extends.
    act(&mut j, Action::Extend, t(170));
    assert!(j.view(t(170)).warning.is_none());
    assert_eq!(j.screen(), "phone");
    assert_eq!(j.next_deadline(t(0)), Some(230_000));
    j.handle(Input::Tick, t(230)).unwrap();
    assert!(j.view(t(230)).warning.is_some());
    let epoch = j.epoch();
    let out = j.handle(Input::Tick, t(250)).unwrap();
    assert_eq!(
        out,
        vec![Issued {
            epoch,
            command: Command::EndJourney
        }]
    );
    assert_eq!(j.screen(), "attract");
    assert_eq!(j.next_deadline(t(0)), None);
    // A language chosen and left alone resets too.
    act(
        &mut j,
        Action::Language {
            language: "ar".into(),
        },
        t(300),
    );
    assert_eq!(j.next_deadline(t(0)), Some(360_000));
    j.handle(Input::Tick, t(360)).unwrap();
    j.handle(Input::Tick, t(380)).unwrap();
    assert_eq!(j.view(t(380)).language, "en");
}

#[test]
fn no_idle_reset_while_waiting_for_the_cloud_or_in_a_call() {
    let mut j = journey();
    act(&mut j, Action::Start, t(0));
    act(&mut j, submit_phone(), t(1));
    assert_eq!(j.next_deadline(t(0)), None);
    j.handle(Input::Tick, t(500)).unwrap();
    assert_eq!(j.screen(), "phone");
    // The idle clock restarts when the answer moves the screen on.
    answer(&mut j, code_sent(), t(500));
    assert_eq!(j.next_deadline(t(0)), Some(530_000));
    j.handle(Input::Tick, t(530)).unwrap();
    assert_eq!(j.next_deadline(t(530)), Some(560_000));
    act(&mut j, submit_code("123456"), t(540));
    answer(&mut j, verified(), t(541));
    answer(&mut j, Answer::Placed(Ok("r".into())), t(541));
    signal(
        &mut j,
        SyncSignal::CallAccepted { call: "c".into() },
        t(542),
    );
    assert_eq!(j.next_deadline(t(0)), None);
    signal(&mut j, ended("c", "r", "hangup"), t(2000));
    // The survey gets a fresh idle period.
    assert_eq!(j.next_deadline(t(0)), Some(2_060_000));
}

#[test]
fn ui1_reset_mid_call_ends_the_call_and_the_journey() {
    let mut j = journey();
    to_verified(&mut j);
    answer(&mut j, Answer::Placed(Ok("r".into())), t(6));
    signal(&mut j, SyncSignal::CallAccepted { call: "c".into() }, t(7));
    let out: Vec<Command> = j
        .handle(Input::Reset, t(8))
        .unwrap()
        .into_iter()
        .map(|i| i.command)
        .collect();
    assert_eq!(
        out,
        vec![
            Command::EndCall {
                call: "c".into(),
                reason: "hangup".into()
            },
            Command::EndJourney
        ]
    );
    assert_eq!(j.screen(), "attract");
}

#[test]
fn actions_that_do_not_fit_the_screen_are_refused() {
    let mut j = journey();
    for a in [
        submit_code("123456"),
        Action::HangUp,
        Action::CancelCall,
        Action::ResendCode,
        Action::Survey { score: 2 },
        Action::Consent { granted: true },
        Action::TryAgain,
        Action::Back,
        Action::Callback { accept: true },
        Action::RequestCallback,
        Action::Mute { muted: true },
        submit_phone(),
    ] {
        match j.handle(Input::Action(a.clone()), t(1)) {
            Err(Refusal::NotNow(m)) => assert!(m.contains(a.kind()), "{m}"),
            other => panic!("{a:?}: {other:?}"),
        }
        assert_eq!(j.screen(), "attract");
    }
    assert!(matches!(
        j.handle(
            Input::Action(Action::Language {
                language: "de".into()
            }),
            t(1)
        ),
        Err(Refusal::BadInput(_))
    ));
    // Touch and done always fit.
    assert!(j.handle(Input::Action(Action::Touch), t(1)).is_ok());
    assert!(j.handle(Input::Action(Action::Done), t(1)).is_ok());
}

#[test]
fn the_config_decides_languages_and_country() {
    let mut c = config("off", 0);
    c.locale.default = "fr".into();
    c.locale.available = vec!["fr".into(), "ar".into(), "de".into()];
    let mut j = journey_with(c);
    let v = j.view(t(0));
    assert_eq!((v.language, v.languages.clone()), ("fr", vec!["fr", "ar"]));
    act(&mut j, Action::Start, t(1));
    assert_eq!(j.view(t(1)).phone.unwrap().country, "FR");
    // A site in a zone the table does not know: the file's default country.
    let mut c = config("off", 0);
    c.site.timezone = "Antarctica/Troll".into();
    let mut j = journey_with(c);
    act(&mut j, Action::Start, t(1));
    assert_eq!(j.view(t(1)).phone.unwrap().country, "US");
    // Only languages this build has: none of the config's, so all of them.
    let mut c = config("off", 0);
    c.locale.default = "de".into();
    c.locale.available = vec!["de".into()];
    let j = journey_with(c);
    assert_eq!(j.view(t(0)).languages, vec!["en", "fr", "ar"]);
    assert_eq!(j.view(t(0)).language, "en");
}

#[test]
fn nothing_of_the_customer_shows_in_debug_output() {
    let a = submit_phone();
    assert!(!format!("{a:?}").contains("612345678"));
    let c = Command::RequestOtp {
        phone: "+33612345678".into(),
        language: "en".into(),
    };
    assert!(!format!("{c:?}").contains("612345678"));
    let c = Command::VerifyOtp {
        code: "123456".into(),
    };
    assert!(!format!("{c:?}").contains("123456"));
    assert!(!format!("{:?}", submit_code("123456")).contains("123456"));
    // The view never holds a number or a code either.
    let mut j = journey();
    act(&mut j, Action::Start, t(1));
    act(&mut j, submit_phone(), t(2));
    answer(&mut j, code_sent(), t(3));
    act(&mut j, submit_code("987654"), t(4));
    let json = serde_json::to_string(&j.view(t(4))).unwrap();
    assert!(
        !json.contains("612345678") && !json.contains("987654"),
        "{json}"
    );
    assert!(!format!("{j:?}").contains("612345678") && !format!("{j:?}").contains("987654"));
}

#[test]
fn view_json_shape() {
    let mut j = journey();
    act(&mut j, Action::Start, t(1));
    let v = serde_json::to_value(j.view(t(1))).unwrap();
    assert_eq!(v["screen"], "phone");
    assert_eq!(v["session"], "abc-1");
    assert_eq!(v["dir"], "ltr");
    assert_eq!(v["display"]["min_target_px"], 80.0);
    assert_eq!(v["phone"]["purpose"], "call");
    assert_eq!(v["phone"]["country"], "FR");
    assert!(v["phone"]["countries"].as_array().unwrap().len() > 30);
    assert!(v.get("warning").is_none());
    act(
        &mut j,
        Action::SubmitPhone {
            country: "FR".into(),
            number: "0".into(),
        },
        t(2),
    );
    let v = serde_json::to_value(j.view(t(2))).unwrap();
    assert_eq!(v["problem"]["kind"], "invalid_phone");
    assert_eq!(v["problem"]["seq"], 1);
}

#[test]
fn actions_read_with_exactly_their_fields() {
    assert_eq!(Action::from_json(br#"{"type":"start"}"#), Ok(Action::Start));
    assert_eq!(
        Action::from_json(br#"{"type":"survey","score":2}"#),
        Ok(Action::Survey { score: 2 })
    );
    for (body, words) in [
        (&br#"{"type":"start","x":1}"#[..], "unknown field `x`"),
        (
            br#"{"type":"survey","score":2,"call":"c"}"#,
            "unknown field",
        ),
        (br#"{"type":"survey"}"#, "missing field `score`"),
        (br#"{"type":"warp"}"#, "unknown variant"),
        (br#"[1]"#, "invalid type"),
        (b"nope", "expected"),
    ] {
        let e = Action::from_json(body).unwrap_err();
        assert!(e.contains(words), "{e}");
    }
}
