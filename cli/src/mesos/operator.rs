//! The master's v1 operator API (`POST /api/v1`), as raw JSON: callers pick
//! the fields they need from the documented responses (MESOS-API.md §5), so
//! fields a newer master adds never break them.

use std::time::Duration;

use serde_json::Value as Json;

use super::{error_body, http_client, ClientError, MasterAddr};

/// The operator endpoint's path.
pub const OPERATOR_PATH: &str = "/api/v1";

const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Makes operator calls to one master.
#[derive(Clone)]
pub struct OperatorClient {
    http: reqwest::Client,
    master: MasterAddr,
}

/// One answer: the body as received and, when it is not empty, parsed.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status (200 for GET_* calls, 202 for asynchronous ones).
    pub status: u16,
    /// The body as received.
    pub body: String,
    /// The body as JSON (`None` for an empty body).
    pub json: Option<Json>,
}

impl OperatorClient {
    /// A client for `master`.
    pub fn new(master: &MasterAddr) -> OperatorClient {
        OperatorClient {
            http: http_client(),
            master: master.clone(),
        }
    }

    /// Posts `call` (`{"type": ..., "<type>": {...}}`) and returns the answer
    /// of any 2xx status.
    pub async fn call(&self, call: &Json) -> Result<Answer, ClientError> {
        let what = call
            .get("type")
            .and_then(Json::as_str)
            .unwrap_or("operator call")
            .to_string();
        let url = reqwest::Url::parse(&self.master.url(OPERATOR_PATH)).map_err(|e| {
            ClientError::Protocol {
                what: what.clone(),
                message: format!("bad master address: {e}"),
            }
        })?;
        let body = serde_json::to_vec(call).expect("JSON is serialisable");
        let resp = self
            .master
            .post(&self.http, url, |req| {
                req.header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(reqwest::header::ACCEPT, "application/json")
                    .timeout(CALL_TIMEOUT)
                    .body(body.clone())
            })
            .await
            .map_err(|e| ClientError::from_reqwest(&what, &self.master.to_string(), e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ClientError::Status {
                what,
                status: status.as_u16(),
                body: error_body(resp).await,
            });
        }
        let body = resp
            .text()
            .await
            .map_err(|e| ClientError::from_reqwest(&what, &self.master.to_string(), e))?;
        let json = if body.trim().is_empty() {
            None
        } else {
            Some(
                serde_json::from_str(&body).map_err(|e| ClientError::Protocol {
                    what: what.clone(),
                    message: format!("the answer is not JSON: {e}"),
                })?,
            )
        };
        Ok(Answer {
            status: status.as_u16(),
            body,
            json,
        })
    }

    /// A `GET_*` call without arguments (`GET_AGENTS`, `GET_TASKS`, ...):
    /// checks that the answer is of the same type and has its payload.
    pub async fn get(&self, call_type: &str) -> Result<Answer, ClientError> {
        let answer = self.call(&serde_json::json!({ "type": call_type })).await?;
        check_answer(call_type, answer.json.as_ref())?;
        Ok(answer)
    }
}

/// `answer` must be `{"type": call_type, "<call_type lowercase>": {...}}`.
pub fn check_answer(call_type: &str, answer: Option<&Json>) -> Result<(), ClientError> {
    let bad = |message: String| ClientError::Protocol {
        what: call_type.to_string(),
        message,
    };
    let answer = answer.ok_or_else(|| bad("empty answer".into()))?;
    match answer.get("type").and_then(Json::as_str) {
        Some(t) if t == call_type => {}
        Some(t) => return Err(bad(format!("answer of type {t}"))),
        None => return Err(bad("answer without a type".into())),
    }
    let field = call_type.to_ascii_lowercase();
    if !answer.get(&field).is_some_and(Json::is_object) {
        return Err(bad(format!("answer without its '{field}' object")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked() {
        let ok = serde_json::json!({"type": "GET_AGENTS", "get_agents": {}});
        assert!(check_answer("GET_AGENTS", Some(&ok)).is_ok());
        let wrong = serde_json::json!({"type": "GET_TASKS", "get_tasks": {}});
        assert!(check_answer("GET_AGENTS", Some(&wrong))
            .unwrap_err()
            .to_string()
            .contains("GET_TASKS"));
        let empty = serde_json::json!({"type": "GET_AGENTS"});
        assert!(check_answer("GET_AGENTS", Some(&empty)).is_err());
        assert!(check_answer("GET_AGENTS", None).is_err());
    }
}
