//! Job webhooks: a run's `webhook_notifications` (`on_start`, `on_success`,
//! `on_failure`, `on_duration_warning_threshold_exceeded`) name notification
//! destinations; each event is POSTed to them as Databricks does
//! (`{"event_type": "jobs.on_failure", "workspace_id", "run": {"run_id"},
//! "job": {"job_id", "name"}}`; Slack and Teams get `{"text": …}`).
//!
//! Delivery runs in a task the service owns (cancelled at shutdown), over
//! HTTP/1.1 or HTTPS (the system's trust roots), 10 s an attempt, retried
//! after 1, 2 and 4 s on a connection error, a 429 or a 5xx. The URL is a
//! secret: logs name the destination id only.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;
use kiln_core::{Error, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::destinations::Target;
use crate::lifecycle::RunResultState;
use crate::model::RunRecord;
use crate::service::Jobs;

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Event {
    Start,
    Success,
    Failure,
    DurationWarning,
}

impl Event {
    fn field(self) -> &'static str {
        match self {
            Event::Start => "on_start",
            Event::Success => "on_success",
            Event::Failure => "on_failure",
            Event::DurationWarning => "on_duration_warning_threshold_exceeded",
        }
    }

    /// The event a run's end is: success, failure (FAILED, TIMEDOUT,
    /// INTERNAL_ERROR), or none (cancelled, skipped).
    pub(crate) fn of_end(run: &RunRecord) -> Option<Event> {
        use crate::lifecycle::RunLifeCycleState as L;
        if run.state.life_cycle_state == L::InternalError {
            return Some(Event::Failure);
        }
        match run.state.result_state? {
            RunResultState::Success | RunResultState::SuccessWithFailures => Some(Event::Success),
            RunResultState::Failed | RunResultState::Timedout => Some(Event::Failure),
            _ => None,
        }
    }
}

/// The destination ids a run's settings name for `event`.
pub(crate) fn destinations_for(run: &RunRecord, event: Event) -> Vec<String> {
    destination_ids(&run.settings, event)
}

/// The destination ids in the `webhook_notifications` of job or task settings.
fn destination_ids(settings: &serde_json::Map<String, Value>, event: Event) -> Vec<String> {
    settings
        .get("webhook_notifications")
        .and_then(|w| w.get(event.field()))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("id").and_then(Value::as_str).map(String::from))
        .collect()
}

/// Sends `event` of `run` to its destinations (in the background).
pub(crate) fn notify(jobs: &Arc<Jobs>, run: &RunRecord, event: Event) {
    let ids = destinations_for(run, event);
    announce(jobs, run, None, ids, event);
}

/// Sends `event` of one task run to the task's own destinations.
pub(crate) fn notify_task(jobs: &Arc<Jobs>, run: &RunRecord, task_key: &str, event: Event) {
    let Some(task) = run.tasks.iter().find(|t| t.task_key == task_key) else {
        return;
    };
    let ids = destination_ids(&task.task, event);
    announce(jobs, run, Some((task_key, task.run_id)), ids, event);
}

fn announce(
    jobs: &Arc<Jobs>,
    run: &RunRecord,
    task: Option<(&str, i64)>,
    ids: Vec<String>,
    event: Event,
) {
    if ids.is_empty() {
        return;
    }
    let workspace_id = jobs
        .store
        .meta("workspace_id")
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut payload = json!({
        "event_type": format!("jobs.{}", event.field()),
        "workspace_id": workspace_id,
        "run": {"run_id": run.run_id},
        "job": {"job_id": run.job_id, "name": run.run_name},
    });
    if let Some((key, task_run_id)) = task {
        payload["task"] = json!({"task_key": key, "run_id": task_run_id});
    }
    let what = match task {
        Some((key, _)) => format!("task {key} of run {}", run.run_id),
        None => format!("run {}", run.run_id),
    };
    let text = format!(
        "Job \"{}\" {what}: {}",
        run.run_name,
        event.field().trim_start_matches("on_").replace('_', " ")
    );
    for id in ids {
        let target = match jobs.destinations.target(&id) {
            Ok(Some(t)) => t,
            Ok(None) => continue, // email/PagerDuty: kept, not delivered by Kiln
            Err(e) => {
                tracing::warn!(destination = %id, error = %e.message, "a webhook destination is gone");
                continue;
            }
        };
        let body = match target.kind.as_str() {
            "generic_webhook" => payload.clone(),
            _ => json!({ "text": text }),
        };
        let cancel = jobs.shutdown.clone();
        let run_id = run.run_id;
        jobs.tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                sent = deliver(&target, &body) => match sent {
                    Ok(status) => tracing::info!(destination = %id, run_id, status, event = event.field(), "webhook delivered"),
                    Err(e) => tracing::warn!(destination = %id, run_id, event = event.field(), error = %e.message, "webhook not delivered"),
                },
            }
        });
    }
}

/// POSTs `body`, retrying; the final HTTP status, or why it failed.
async fn deliver(target: &Target, body: &Value) -> Result<u16> {
    let mut last = Error::internal("webhook", "not sent");
    for (attempt, pause) in std::iter::once(Duration::ZERO).chain(BACKOFF).enumerate() {
        tokio::time::sleep(pause).await;
        match tokio::time::timeout(ATTEMPT_TIMEOUT, post(target, body)).await {
            Ok(Ok(status)) if status == 429 || status >= 500 => {
                last = Error::internal(
                    "webhook",
                    format!("HTTP {status} (attempt {})", attempt + 1),
                );
            }
            Ok(Ok(status)) if status >= 400 => {
                return Err(Error::invalid(format!(
                    "the destination answered HTTP {status}"
                )));
            }
            Ok(Ok(status)) => return Ok(status),
            Ok(Err(e)) => last = e,
            Err(_) => last = Error::internal("webhook", "timed out"),
        }
    }
    Err(last)
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::internal("webhook", e)
}

async fn post(target: &Target, body: &Value) -> Result<u16> {
    let uri: hyper::Uri = target.url.parse().map_err(failed)?;
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| failed("the URL has no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let mut request = Request::post(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(
            hyper::header::HOST,
            uri.authority().map(|a| a.as_str()).unwrap_or(&host),
        )
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "Kiln-Jobs-Webhook");
    if let Some(user) = &target.username {
        use base64::Engine as _;
        let pair = format!("{user}:{}", target.password.as_deref().unwrap_or(""));
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        request = request.header(hyper::header::AUTHORIZATION, format!("Basic {encoded}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(failed)?;
    let tcp = TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(failed)?;
    if !https {
        return send(tcp, request).await;
    }
    let name = rustls::pki_types::ServerName::try_from(bare).map_err(failed)?;
    let tls = tokio_rustls::TlsConnector::from(client_config()?)
        .connect(name, tcp)
        .await
        .map_err(failed)?;
    send(tls, request).await
}

async fn send<S>(io: S, request: Request<Full<Bytes>>) -> Result<u16>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(failed)?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(failed);
    driver.abort();
    Ok(response?.status().as_u16())
}

/// TLS with the system's trust roots (read once).
fn client_config() -> Result<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::CertificateDer;
            let mut roots = rustls::RootCertStore::empty();
            for bundle in [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ] {
                if let Ok(certs) = CertificateDer::pem_file_iter(bundle) {
                    for cert in certs.flatten() {
                        let _ = roots.add(cert);
                    }
                }
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .ok()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
        })
        .clone()
        .ok_or_else(|| failed("TLS is not available"))
}
