//! `POST /api/v1/scheduler`: the Mesos v1 scheduler API (JSON).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use masterlink::scheduler::{Call, CallType, Event};
use masterlink::ResourceFormat;
use tokio::sync::mpsc;

use super::{
    check_accept, check_content_type, record_stream, refusal, text, AppState, CloseGuard, Closed,
    STREAM_ID_HEADER,
};

pub(super) async fn call(
    State(shared): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Mesos' first check: a non-leading master sends the scheduler to the
    // leader (pymesos and berth::mesos follow the 307).
    if let Some(elsewhere) = shared.not_leading(uri.path()) {
        return elsewhere;
    }
    let principal = match super::authenticate(&shared, &headers) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    if let Err((status, message)) = check_content_type(&headers) {
        return text(status, message);
    }
    let call = match Call::parse(&body) {
        Ok(call) => call,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("Failed to validate scheduler::Call: {e}"),
            )
        }
    };
    let type_name = call.call_type.to_string();
    *shared
        .core()
        .counters
        .calls
        .entry(format!("scheduler/{type_name}"))
        .or_default() += 1;
    if call.call_type == CallType::Subscribe {
        if let Err((status, message)) = check_accept(&headers) {
            return text(status, message);
        }
        if headers.contains_key(STREAM_ID_HEADER) {
            return text(
                StatusCode::BAD_REQUEST,
                "Expecting 'Mesos-Stream-Id' to be absent for SUBSCRIBE",
            );
        }
        if let Some(p) = &principal {
            let claimed = call
                .subscribe
                .as_ref()
                .and_then(|s| s.framework_info.principal.as_deref());
            if claimed != Some(p.as_str()) {
                return text(
                    StatusCode::FORBIDDEN,
                    format!(
                        "field 'subscribe.framework_info.principal': '{}' does not match the \
                         authenticated principal '{p}'",
                        claimed.unwrap_or("")
                    ),
                );
            }
        }
        return subscribe(&shared, call);
    }

    let Some(framework_id) = call.framework_id.as_ref().map(|f| f.value.clone()) else {
        // Call::parse validates this; kept as a guard.
        return text(
            StatusCode::BAD_REQUEST,
            "Expecting 'framework_id' to be present",
        );
    };
    let stream_id = headers
        .get(STREAM_ID_HEADER)
        .map(|v| v.to_str().unwrap_or("<not text>"));
    let mut core = shared.core();
    if let Err(r) = core.check_stream(&framework_id, stream_id) {
        return refusal(r);
    }
    let fid = framework_id.as_str();
    let missing = |field: &str| {
        text(
            StatusCode::BAD_REQUEST,
            format!("Expecting '{field}' to be present"),
        )
    };
    match call.call_type {
        CallType::Teardown => core.remove_framework(fid),
        CallType::Suppress => {
            let roles = call.suppress.map(|r| r.roles).filter(|r| !r.is_empty());
            core.suppress(fid, roles.as_deref());
        }
        CallType::Revive => {
            let roles = call.revive.map(|r| r.roles).filter(|r| !r.is_empty());
            core.revive(fid, roles.as_deref());
        }
        CallType::Accept => {
            let Some(accept) = call.accept else {
                return missing("accept");
            };
            if let Err(r) = core.accept(fid, accept) {
                return refusal(r);
            }
        }
        CallType::Decline => {
            let Some(decline) = call.decline else {
                return missing("decline");
            };
            core.decline(fid, &decline.offer_ids, decline.filters.as_ref());
        }
        CallType::Kill => {
            let Some(kill) = call.kill else {
                return missing("kill");
            };
            core.kill(fid, kill);
        }
        CallType::Acknowledge => {
            let Some(ack) = call.acknowledge else {
                return missing("acknowledge");
            };
            if let Err(r) = core.acknowledge(fid, ack) {
                return refusal(r);
            }
        }
        CallType::Reconcile => {
            core.reconcile(fid, call.reconcile.unwrap_or_default());
        }
        // Mesos' default allocator ignores requests.
        CallType::Request => {}
        other => {
            return text(
                StatusCode::NOT_IMPLEMENTED,
                format!("call type {other} is not supported by this master yet"),
            )
        }
    }
    StatusCode::ACCEPTED.into_response()
}

fn subscribe(shared: &AppState, call: Call) -> Response {
    let Some(subscribe) = call.subscribe else {
        return text(
            StatusCode::BAD_REQUEST,
            "Expecting 'subscribe' to be present",
        );
    };
    let format = subscribe.framework_info.resource_format();
    let (tx, rx) = mpsc::unbounded_channel();
    let weak = tx.downgrade();
    let result = shared.core().subscribe(
        subscribe.framework_info,
        call.framework_id.as_ref(),
        &subscribe.suppressed_roles,
        tx.clone(),
    );
    match result {
        // FrameworkInfo problems are a 200 with a single ERROR event (Mesos).
        Err(message) => {
            if let Ok(r) = Event::error(message).to_record(format) {
                let _ = tx.send(Bytes::from(r));
            }
            drop(tx);
            record_stream(STREAM_ID_HEADER, None, rx, None)
        }
        Ok((framework_id, stream_id)) => {
            // The core holds the only lasting sender; this one goes.
            drop(tx);
            spawn_heartbeats(weak, shared.config.heartbeat_interval, format);
            let guard = CloseGuard {
                tx: shared.closed.clone(),
                closed: Some(Closed::Framework {
                    id: framework_id,
                    stream_id: stream_id.clone(),
                }),
            };
            record_stream(STREAM_ID_HEADER, Some(&stream_id), rx, Some(guard))
        }
    }
}

/// Sends HEARTBEAT every `interval` until the stream's sender is dropped
/// (teardown, failover, shutdown) or the client has gone.
fn spawn_heartbeats(
    events: mpsc::WeakUnboundedSender<Bytes>,
    interval: Duration,
    format: ResourceFormat,
) {
    let heartbeat = Bytes::from(Event::heartbeat().to_record(format).unwrap_or_default());
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticks.tick().await; // the first tick is immediate
        loop {
            ticks.tick().await;
            // Never hold the sender across an await: teardown must end the
            // stream at once.
            let Some(tx) = events.upgrade() else { return };
            if tx.send(heartbeat.clone()).is_err() {
                return;
            }
        }
    });
}
