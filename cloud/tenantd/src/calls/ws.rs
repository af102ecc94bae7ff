//! The agents' WebSocket: one task per socket, between the socket and the registry.
//!
//! The task reads the agent's frames (text, one JSON object each), refuses what breaks the
//! rules with an `error` frame on this socket only (`bad_message`, `rate`, and the registry's
//! `not_your_call`, `busy`, `no_such_call`), and writes what the registry sends the agent. It
//! checks every [`CallSettings::session_recheck`](super::CallSettings) that the session is still
//! signed in, and closes the socket (code 4401) when it is not. When the socket closes, the
//! registry learns it; the agent's call waits for the grace.

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use kiosk_protocol::call::{CallId, MAX_CANDIDATE_BYTES, MAX_SDP_BYTES};

use super::registry::{AgentRef, ClientFrame, ErrorCode, Refusal, ServerFrame};
use super::{now_ms, CallHub, FrameRate, RateVerdict};
use crate::auth::tokens::SessionPolicy;

/// Largest frame accepted from an agent; larger ones are refused with `bad_message`.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Largest message the socket reads at all; past this the connection is closed.
pub const MAX_READ_BYTES: usize = 1024 * 1024;
/// Frames an agent's socket may send per second.
pub const MAX_FRAMES_PER_S: u32 = 50;
/// The close code of a socket whose session ended.
pub const CLOSE_SIGNED_OUT: u16 = 4401;

/// Who is on the socket.
#[derive(Debug, Clone)]
pub struct SocketAgent {
    pub agent: AgentRef,
    /// The session's token digest, to check it is still signed in.
    pub session: [u8; 32],
    pub sessions: SessionPolicy,
}

/// Serves one agent's socket until it closes.
pub async fn serve(hub: CallHub, who: SocketAgent, mut socket: WebSocket) {
    let user_id = who.agent.user_id;
    let org_id = who.agent.org_id;
    let (socket_id, mut frames) = hub.open_socket(user_id);
    let hello = hub.decide(|r| r.connect(who.agent.clone(), socket_id));
    hub.deliver(hello).await;
    let mut rate = FrameRate::per_second(MAX_FRAMES_PER_S);
    let mut recheck = tokio::time::interval(hub.settings().session_recheck);
    recheck.tick().await;
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        let refusal = Refusal::new(ErrorCode::BadMessage, "send text frames", None);
                        if send(&mut socket, &refusal.frame()).await.is_err() { break; }
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "agent socket failed");
                        break;
                    }
                };
                let now = now_ms();
                match rate.check(now) {
                    RateVerdict::Take => {}
                    RateVerdict::Drop => continue,
                    RateVerdict::RefuseAndWarn => {
                        let refusal = Refusal::new(
                            ErrorCode::Rate,
                            format!("at most {MAX_FRAMES_PER_S} frames a second; frames dropped"),
                            None,
                        );
                        if send(&mut socket, &refusal.frame()).await.is_err() { break; }
                        continue;
                    }
                }
                let frame = match parse(text.as_str()) {
                    Ok(f) => f,
                    Err(refusal) => {
                        if send(&mut socket, &refusal.frame()).await.is_err() { break; }
                        continue;
                    }
                };
                // An accept needs the organization's ICE settings, read before the registry
                // is locked.
                let ice = if matches!(frame, ClientFrame::Accept { .. }) {
                    match hub.store().run(move |db| db.ice_settings(org_id)).await {
                        Ok(ice) => Some(ice),
                        Err(e) => {
                            tracing::error!(error = %e, "could not read the ICE settings");
                            None
                        }
                    }
                } else {
                    None
                };
                let decided = hub.decide(|r| {
                    let ice = ice.unwrap_or_default();
                    r.agent_frame(user_id, socket_id, frame, &|call, at| ice.grant(call, at), now)
                });
                match decided {
                    Ok(effects) => hub.deliver(effects).await,
                    Err(refusal) => {
                        if send(&mut socket, &refusal.frame()).await.is_err() { break; }
                    }
                }
            }
            out = frames.recv() => {
                let Some(frame) = out else { break };
                if send(&mut socket, &frame).await.is_err() { break; }
            }
            _ = recheck.tick() => {
                let (digest, policy) = (who.session, who.sessions.clone());
                let now = crate::store::now_unix();
                let live = hub
                    .store()
                    .run(move |db| db.principal_for_session(&digest, now, &policy))
                    .await;
                if matches!(live, Ok(None)) {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: CLOSE_SIGNED_OUT,
                            reason: "signed out".into(),
                        })))
                        .await;
                    break;
                }
            }
        }
    }
    hub.close_socket(user_id, socket_id);
    let effects = hub.decide(|r| r.disconnect(user_id, socket_id, now_ms()));
    hub.deliver(effects).await;
}

async fn send(socket: &mut WebSocket, frame: &ServerFrame) -> Result<(), axum::Error> {
    let text = serde_json::to_string(frame).unwrap_or_default();
    socket.send(Message::Text(text.into())).await
}

/// Reads one agent frame, or says why not.
pub fn parse(text: &str) -> Result<ClientFrame, Refusal> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(Refusal::new(
            ErrorCode::BadMessage,
            format!("frames are at most {MAX_FRAME_BYTES} bytes"),
            None,
        ));
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Refusal::new(ErrorCode::BadMessage, format!("not JSON: {e}"), None))?;
    let call = value
        .get("call")
        .and_then(|c| c.as_str())
        .and_then(|c| CallId::parse(c).ok());
    let frame: ClientFrame = serde_json::from_value(value)
        .map_err(|e| Refusal::new(ErrorCode::BadMessage, e.to_string(), call.as_ref()))?;
    match &frame {
        ClientFrame::Sdp { sdp, .. } if sdp.len() > MAX_SDP_BYTES => Err(Refusal::new(
            ErrorCode::BadMessage,
            format!("SDP is at most {MAX_SDP_BYTES} bytes"),
            call.as_ref(),
        )),
        ClientFrame::Ice { candidate, .. } if candidate.len() > MAX_CANDIDATE_BYTES => {
            Err(Refusal::new(
                ErrorCode::BadMessage,
                format!("a candidate is at most {MAX_CANDIDATE_BYTES} bytes"),
                call.as_ref(),
            ))
        }
        _ => Ok(frame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_parsed_strictly() {
        assert_eq!(
            parse(r#"{"type":"available","available":true}"#),
            Ok(ClientFrame::Available { available: true })
        );
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping));
        for bad in [
            "not json",
            r#"{"type":"dance"}"#,
            r#"{"type":"accept"}"#,
            r#"{"type":"accept","call":"NOT AN ID"}"#,
            r#"{"type":"end","call":"call-abcdefghijklmnop","extra":1}"#,
            r#"{"type":"sdp","call":"call-abcdefghijklmnop","sdp_type":"pranswer","sdp":"v=0"}"#,
        ] {
            assert_eq!(parse(bad).unwrap_err().code, ErrorCode::BadMessage, "{bad}");
        }
        let refusal =
            parse(r#"{"type":"ice","call":"call-abcdefghijklmnop","candidate":1}"#).unwrap_err();
        assert_eq!(refusal.call.unwrap().as_str(), "call-abcdefghijklmnop");
        let big = format!(
            r#"{{"type":"ice","call":"call-abcdefghijklmnop","candidate":"{}","sdp_mline_index":0}}"#,
            "a".repeat(MAX_CANDIDATE_BYTES + 1)
        );
        assert_eq!(parse(&big).unwrap_err().code, ErrorCode::BadMessage);
        assert_eq!(
            parse(&" ".repeat(MAX_FRAME_BYTES + 1)).unwrap_err().code,
            ErrorCode::BadMessage
        );
    }
}
