//! The Postgres proxy: one TCP port, TLS required. It finds the endpoint from
//! the TLS server name's first label (`ep-….<suffix>`) or `options=endpoint=…`,
//! asks for the password (a Lakebase credential), checks it, wakes the
//! endpoint if it is suspended, logs in to it over its private Unix socket and
//! then relays bytes both ways. Cancel requests are routed by the backend key.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::pg;
use crate::service::Lakebase;

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
const MAX_STARTUP: usize = 10_000;

type CancelMap = Arc<Mutex<HashMap<(i32, i32), PathBuf>>>;

/// A refusal sent to the client as a FATAL ErrorResponse.
struct Refusal {
    code: &'static str,
    message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Runs the proxy on a runtime of its own (one thread, in the blocking pool)
/// until cancelled: a session's bytes are relayed by the thread that polled
/// their readiness, with no hand-off between workers (which cost more than
/// the relaying itself on small machines). Endpoints are woken on `main`, the
/// runtime that owns their postmasters.
pub fn spawn(
    lakebase: Arc<Lakebase>,
    listener: std::net::TcpListener,
    tls: Arc<ServerConfig>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let main = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("kiln-pg-proxy")
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the Postgres proxy's runtime");
                return;
            }
        };
        runtime.block_on(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => serve(lakebase, main, listener, tls, cancel).await,
                Err(e) => tracing::error!(error = %e, "cannot use the Postgres proxy's listener"),
            }
        });
    })
}

/// Accepts connections until cancelled.
async fn serve(
    lakebase: Arc<Lakebase>,
    main: tokio::runtime::Handle,
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    cancel: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    let keys: CancelMap = Arc::default();
    // Every connection's task is owned here: cancelled with the proxy, and
    // waited for (5 s at most) before the proxy returns.
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (lakebase, main, acceptor, keys, cancel) = (
            lakebase.clone(),
            main.clone(),
            acceptor.clone(),
            keys.clone(),
            cancel.clone(),
        );
        connections.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = handle(Waker { lakebase, main }, stream, acceptor, keys) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "postgres proxy connection ended");
                    }
                }
            }
        });
    }
    connections.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), connections.wait()).await;
}

async fn read_packet<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Vec<u8>> {
    let len = stream.read_i32().await?;
    if len < 8 || len as usize > MAX_STARTUP {
        return Err(std::io::Error::other("bad startup packet length"));
    }
    let mut body = vec![0u8; len as usize - 4];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

fn code_of(body: &[u8]) -> i32 {
    i32::from_be_bytes([body[0], body[1], body[2], body[3]])
}

/// Lakebase, and the runtime endpoints are woken on.
struct Waker {
    lakebase: Arc<Lakebase>,
    main: tokio::runtime::Handle,
}

impl Waker {
    async fn wake(&self, uid: &str) -> kiln_core::Result<(PathBuf, crate::service::Busy)> {
        let (lakebase, uid) = (self.lakebase.clone(), uid.to_string());
        self.main
            .spawn(async move { lakebase.wake(&uid).await })
            .await
            .map_err(|e| kiln_core::Error::internal("wake an endpoint", e))?
    }
}

async fn handle(
    lakebase: Waker,
    mut stream: TcpStream,
    acceptor: TlsAcceptor,
    keys: CancelMap,
) -> std::io::Result<()> {
    let mut body = read_packet(&mut stream).await?;
    if code_of(&body) == GSSENC_REQUEST {
        stream.write_all(b"N").await?;
        body = read_packet(&mut stream).await?;
    }
    match code_of(&body) {
        CANCEL_REQUEST => return forward_cancel(&body, &keys).await,
        SSL_REQUEST => {}
        _ => {
            let r = refuse("28000", "SSL connection is required (sslmode=require)");
            return send_error(&mut stream, &r).await;
        }
    }
    stream.write_all(b"S").await?;
    let mut tls = acceptor.accept(stream).await?;
    let sni = tls.get_ref().1.server_name().map(str::to_string);
    let body = read_packet(&mut tls).await?;
    if code_of(&body) == CANCEL_REQUEST {
        return forward_cancel(&body, &keys).await;
    }
    match login(&lakebase, &mut tls, &body, sni.as_deref(), &keys).await {
        Ok(()) => Ok(()),
        Err(r) => send_error(&mut tls, &r).await,
    }
}

/// Authenticates, wakes the endpoint and relays the session.
async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    waker: &Waker,
    client: &mut S,
    startup: &[u8],
    sni: Option<&str>,
    keys: &CancelMap,
) -> Result<(), Refusal> {
    let lakebase = &waker.lakebase;
    let mut params = parse_startup(startup)?;
    let user = params
        .get("user")
        .cloned()
        .ok_or_else(|| refuse("28000", "no user name in the startup message"))?;
    let named = endpoint_id(sni, &mut params)?;
    let named = match named {
        Some(uid) => Some(
            lakebase
                .endpoint_by_uid(&uid)
                .ok_or_else(|| refuse("3D000", format!("endpoint {uid} does not exist")))?,
        ),
        None => None,
    };
    // A password role of the named endpoint's branch authenticates with
    // SCRAM-SHA-256 (its password never crosses the wire); anyone else sends
    // a Lakebase credential as a password (inside TLS).
    if let Some(endpoint) = &named {
        if let Some(password) = lakebase
            .native_password(endpoint, &user)
            .map_err(|m| refuse("28P01", m))?
        {
            crate::scram::authenticate(client, &password)
                .await
                .map_err(|m| refuse("28P01", format!("{m} for user \"{user}\"")))?;
            return relay(waker, client, endpoint, &user, &params, keys).await;
        }
    }
    let password = ask_password(client).await?;
    let credential = match lakebase.credentials.check(&password) {
        Ok(credential) => credential,
        Err(refused) if password.starts_with(crate::credentials::TOKEN_PREFIX) => {
            return Err(refuse("28P01", refused));
        }
        Err(not_a_token) => {
            // A native Postgres password: only for a password role of the
            // endpoint's branch, on an endpoint the client named.
            let endpoint = named.ok_or_else(|| refuse("28P01", not_a_token))?;
            lakebase
                .check_native_login(&endpoint, &user, &password)
                .map_err(|m| refuse("28P01", m))?;
            return relay(waker, client, &endpoint, &user, &params, keys).await;
        }
    };
    if credential.identity != user || user == pg::SUPERUSER {
        return Err(refuse(
            "28P01",
            format!("password authentication failed for user \"{user}\": the credential belongs to another identity"),
        ));
    }
    // Neither the TLS server name nor `options` named an endpoint (a client
    // given `127.0.0.1`): the credential was issued for one.
    let endpoint = match named {
        Some(endpoint) => endpoint,
        None => lakebase
            .endpoint_by_name(&credential.endpoint)
            .ok_or_else(|| {
                refuse(
                    "3D000",
                    format!("endpoint {} does not exist", credential.endpoint),
                )
            })?,
    };
    if project_of(&credential.endpoint) != project_of(&endpoint.name()) {
        return Err(refuse(
            "28P01",
            format!("password authentication failed for user \"{user}\": the credential was issued for another project"),
        ));
    }
    relay(waker, client, &endpoint, &user, &params, keys).await
}

/// Wakes the endpoint, logs in over its socket as `user` and relays the session.
async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    waker: &Waker,
    client: &mut S,
    endpoint: &crate::model::EndpointRecord,
    user: &str,
    params: &BTreeMap<String, String>,
    keys: &CancelMap,
) -> Result<(), Refusal> {
    let lakebase = &waker.lakebase;
    let (socket_dir, busy) = waker.wake(&endpoint.uid).await.map_err(|e| {
        refuse(
            "57P03",
            format!("the endpoint could not be started: {}", e.message),
        )
    })?;
    let _session = lakebase.session(&busy);
    drop(busy);
    tracing::info!(endpoint = %endpoint.name(), %user, "postgres session");
    let socket = socket_dir.join(format!(".s.PGSQL.{}", pg::SOCKET_PORT));
    let mut backend = UnixStream::connect(&socket)
        .await
        .map_err(|e| refuse("57P03", format!("cannot reach the endpoint: {e}")))?;
    backend
        .write_all(&startup_message(params))
        .await
        .map_err(|e| refuse("08006", e.to_string()))?;
    let key = relay_login(client, &mut backend, &socket_dir, keys)
        .await
        .map_err(|e| refuse("08006", e.to_string()))?;
    let _ = tokio::io::copy_bidirectional(client, &mut backend).await;
    if let (Some(key), Ok(mut map)) = (key, keys.lock()) {
        map.remove(&key);
    }
    Ok(())
}

/// `projects/{p}/…` → `p`.
fn project_of(name: &str) -> &str {
    name.split('/').nth(1).unwrap_or_default()
}

/// The endpoint from SNI (`ep-x.<suffix>`) or `options` (`endpoint=ep-x`,
/// removed before the options go to Postgres); both must agree.
/// The endpoint uid the client named (TLS server name or `options`), if any.
fn endpoint_id(
    sni: Option<&str>,
    params: &mut BTreeMap<String, String>,
) -> Result<Option<String>, Refusal> {
    let from_sni = sni
        .and_then(|s| s.split('.').next())
        .filter(|l| l.starts_with("ep-"))
        .map(str::to_string);
    let mut from_options = None;
    if let Some(options) = params.get("options").cloned() {
        let parts: Vec<&str> = options.split_whitespace().collect();
        let mut kept = Vec::new();
        let mut i = 0;
        while i < parts.len() {
            let part = parts[i];
            let next = parts.get(i + 1).copied().unwrap_or("");
            if part == "-c" && next.starts_with("endpoint=") {
                from_options = Some(next["endpoint=".len()..].to_string());
                i += 2;
                continue;
            }
            let setting = part
                .strip_prefix("--")
                .or_else(|| part.strip_prefix("-c"))
                .unwrap_or(part);
            match setting.strip_prefix("endpoint=") {
                Some(v) => from_options = Some(v.to_string()),
                None => kept.push(part),
            }
            i += 1;
        }
        if kept.is_empty() {
            params.remove("options");
        } else {
            params.insert("options".into(), kept.join(" "));
        }
    }
    match (from_sni, from_options) {
        (Some(a), Some(b)) if a != b => Err(refuse(
            "08004",
            format!("the TLS server name names endpoint {a} but options name {b}"),
        )),
        (Some(a), _) | (None, Some(a)) => Ok(Some(a)),
        (None, None) => Ok(None),
    }
}

fn parse_startup(body: &[u8]) -> Result<BTreeMap<String, String>, Refusal> {
    let version = code_of(body);
    if version >> 16 != 3 {
        return Err(refuse(
            "08P01",
            format!("unsupported protocol version {version}"),
        ));
    }
    let mut params = BTreeMap::new();
    let mut fields = body[4..].split(|b| *b == 0);
    while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
        if k.is_empty() {
            break;
        }
        params.insert(
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        );
    }
    Ok(params)
}

fn startup_message(params: &BTreeMap<String, String>) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// AuthenticationCleartextPassword, then the client's PasswordMessage.
async fn ask_password<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut S,
) -> Result<String, Refusal> {
    let io = |e: std::io::Error| refuse("08006", e.to_string());
    client
        .write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3])
        .await
        .map_err(io)?;
    client.flush().await.map_err(io)?;
    let kind = client.read_u8().await.map_err(io)?;
    let len = client.read_i32().await.map_err(io)?;
    if kind != b'p' || !(5..=16_384).contains(&len) {
        return Err(refuse("28P01", "expected a password message"));
    }
    let mut payload = vec![0u8; len as usize - 4];
    client.read_exact(&mut payload).await.map_err(io)?;
    let end = payload
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(payload.len());
    Ok(String::from_utf8_lossy(&payload[..end]).into_owned())
}

/// Relays the backend's login answers up to ReadyForQuery (or an error),
/// remembering BackendKeyData for cancel requests.
async fn relay_login<S: AsyncWrite + Unpin>(
    client: &mut S,
    backend: &mut UnixStream,
    socket_dir: &std::path::Path,
    keys: &CancelMap,
) -> std::io::Result<Option<(i32, i32)>> {
    let mut key = None;
    loop {
        let kind = backend.read_u8().await?;
        let len = backend.read_i32().await?;
        if len < 4 {
            return Err(std::io::Error::other("bad backend message"));
        }
        let mut payload = vec![0u8; len as usize - 4];
        backend.read_exact(&mut payload).await?;
        if kind == b'K' && payload.len() >= 8 {
            let k = (code_of(&payload[0..4]), code_of(&payload[4..8]));
            if let Ok(mut map) = keys.lock() {
                map.insert(k, socket_dir.to_path_buf());
            }
            key = Some(k);
        }
        let mut message = vec![kind];
        message.extend_from_slice(&len.to_be_bytes());
        message.extend_from_slice(&payload);
        client.write_all(&message).await?;
        if kind == b'Z' || kind == b'E' {
            client.flush().await?;
            return Ok(key);
        }
    }
}

async fn forward_cancel(body: &[u8], keys: &CancelMap) -> std::io::Result<()> {
    if body.len() < 12 {
        return Ok(());
    }
    let key = (code_of(&body[4..8]), code_of(&body[8..12]));
    let target = keys.lock().ok().and_then(|m| m.get(&key).cloned());
    if let Some(dir) = target {
        let mut backend =
            UnixStream::connect(dir.join(format!(".s.PGSQL.{}", pg::SOCKET_PORT))).await?;
        let mut packet = 16i32.to_be_bytes().to_vec();
        packet.extend_from_slice(body);
        backend.write_all(&packet).await?;
    }
    Ok(())
}

async fn send_error<S: AsyncWrite + Unpin>(stream: &mut S, r: &Refusal) -> std::io::Result<()> {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', r.code),
        (b'M', r.message.as_str()),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&((fields.len() + 4) as i32).to_be_bytes());
    message.extend(fields);
    stream.write_all(&message).await?;
    stream.flush().await?;
    let _ = stream.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trip_and_endpoint_resolution() {
        let mut params = BTreeMap::from([
            ("user".to_string(), "ann@x.com".to_string()),
            ("database".to_string(), "databricks_postgres".to_string()),
            (
                "options".to_string(),
                "endpoint=ep-abc -c work_mem=8MB".to_string(),
            ),
        ]);
        let message = startup_message(&params);
        let parsed = parse_startup(&message[4..]).ok().unwrap_or_default();
        assert_eq!(parsed, params);
        assert_eq!(
            endpoint_id(None, &mut params).ok(),
            Some(Some("ep-abc".into()))
        );
        assert_eq!(
            params.get("options").map(String::as_str),
            Some("-c work_mem=8MB")
        );
        let mut p2 = BTreeMap::from([("options".to_string(), "endpoint=ep-b".to_string())]);
        assert!(endpoint_id(Some("ep-a.localhost"), &mut p2).is_err());
        let mut p3 = BTreeMap::new();
        assert_eq!(
            endpoint_id(Some("ep-a.localhost"), &mut p3).ok(),
            Some(Some("ep-a".into()))
        );
        assert_eq!(
            endpoint_id(Some("localhost"), &mut BTreeMap::new()).ok(),
            Some(None)
        );
    }

    /// A bounded fuzz run over the bytes a client controls before it has
    /// authenticated: startup bodies (any version, keys, values, NULs, odd
    /// `options`) and SNI names never panic the parser or the endpoint lookup.
    #[test]
    fn fuzz_startup_messages_never_panic() {
        let mut rng = kiln_core::fuzz::Rng::new(0x9E37_79B9_7F4A_7C15);
        let mut next = move || rng.next_u64();
        const WORDS: &[&[u8]] = &[
            b"user",
            b"database",
            b"options",
            b"endpoint=",
            b"endpoint=ep-x",
            b"-c",
            b" ",
            b"\0",
            b"\xff",
            b"ep-a.localhost",
            b"=",
            b"replication",
            b"\xc3",
            b"--",
            b"",
        ];
        for _ in 0..20_000 {
            let mut body = match next() % 4 {
                0 => (next() as i32).to_be_bytes().to_vec(),
                _ => 196_608i32.to_be_bytes().to_vec(),
            };
            for _ in 0..next() % 12 {
                match next() % 3 {
                    0 => body.push((next() % 256) as u8),
                    _ => body.extend_from_slice(WORDS[(next() % WORDS.len() as u64) as usize]),
                }
            }
            if let Ok(mut params) = parse_startup(&body) {
                let sni = match next() % 3 {
                    0 => None,
                    1 => Some("ep-a.localhost".to_string()),
                    _ => Some(String::from_utf8_lossy(&body[4..]).into_owned()),
                };
                let _ = endpoint_id(sni.as_deref(), &mut params);
                let _ = startup_message(&params);
            }
        }
    }
}
