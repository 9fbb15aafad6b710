//! `POST /masterlink/v1/agent`: the agent link (masterlink::protocol).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use masterlink::protocol::{
    AgentCall, MasterMessage, Pong, StatusUpdate, Unregister, STREAM_ID_HEADER,
};
use tokio::sync::mpsc;

use super::{check_content_type, record_stream, refusal, text, AppState, CloseGuard, Closed};

pub(super) async fn call(
    State(shared): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Agents follow the 307 to the leader and register there.
    if let Some(elsewhere) = shared.not_leading(uri.path()) {
        return elsewhere;
    }
    if let Err((status, message)) = check_content_type(&headers) {
        return text(status, message);
    }
    // With --authenticate-agents every call proves its principal (the
    // stream id alone could be replayed by anyone who saw it).
    let principal = match super::authenticate_agent(&shared, &headers) {
        Ok(p) => p,
        Err(denied) => return *denied,
    };
    let call = match AgentCall::parse(&body) {
        Ok(call) => call,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("Invalid agent call: {e}")),
    };
    if let AgentCall::Register(register) = call {
        if let Err(crate::auth::Denied::Forbidden(m) | crate::auth::Denied::Unauthenticated(m)) =
            shared
                .config
                .auth
                .acls
                .authorize(principal.as_deref(), crate::auth::Action::RegisterAgent)
        {
            return text(StatusCode::FORBIDDEN, m);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let result = shared.core().register_agent(register, tx.clone());
        drop(tx);
        return match result {
            Ok((agent_id, stream_id)) => {
                let guard = CloseGuard {
                    tx: shared.closed.clone(),
                    closed: Some(Closed::Agent {
                        id: agent_id,
                        stream_id: stream_id.clone(),
                    }),
                };
                record_stream(STREAM_ID_HEADER, Some(&stream_id), rx, Some(guard))
            }
            Err(message) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let _ = tx.send(Bytes::from(MasterMessage::Error { message }.to_record()));
                drop(tx);
                record_stream(STREAM_ID_HEADER, None, rx, None)
            }
        };
    }

    let agent_id = call.agent_id().map(|a| a.value.clone()).unwrap_or_default();
    let stream_id = headers
        .get(STREAM_ID_HEADER)
        .map(|v| v.to_str().unwrap_or("<not text>"));
    let mut core = shared.core();
    if let Err(r) = core.check_agent(&agent_id, stream_id) {
        return refusal(r);
    }
    match call {
        AgentCall::StatusUpdate(StatusUpdate {
            framework_id,
            status,
            ..
        }) => core.status_update(&agent_id, &framework_id.value, status),
        AgentCall::Pong(Pong { .. }) => core.pong(&agent_id),
        AgentCall::Unregister(Unregister { .. }) => core.unregister_agent(&agent_id),
        AgentCall::Register(_) => unreachable!("handled above"),
    }
    StatusCode::ACCEPTED.into_response()
}
