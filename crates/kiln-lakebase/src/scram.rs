//! SCRAM-SHA-256 (RFC 5802 / 7677), the server side, as Postgres speaks it:
//! the proxy authenticates a native-password role this way, so the password
//! itself never crosses the wire (not even inside TLS). The verifier is
//! derived from the role's password at each login with a fresh salt.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const MECHANISM: &str = "SCRAM-SHA-256";
const ITERATIONS: u32 = 4096;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `Hi()` of RFC 5802 (PBKDF2 with HMAC-SHA-256, one block).
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &block);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

/// One exchange: made from the client's first message, finished by its final one.
pub struct Exchange {
    salted: [u8; 32],
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl Exchange {
    /// Reads `client-first-message` for a password whose `Hi()` with `salt`
    /// is `salted`; returns the exchange and `server-first-message`.
    pub fn start(
        salted: [u8; 32],
        salt: &[u8],
        client_first: &str,
        server_nonce: &str,
    ) -> Result<(Self, String), String> {
        let bad = || "malformed SCRAM client-first-message".to_string();
        // gs2-header: "n,," / "y,," (no channel binding: none is offered), never "p=…".
        let (cbind, rest) = client_first.split_once(',').ok_or_else(bad)?;
        if cbind != "n" && cbind != "y" {
            return Err("SCRAM channel binding is not offered by this server".into());
        }
        let (authzid, bare) = rest.split_once(',').ok_or_else(bad)?;
        let client_nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or_else(bad)?;
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={ITERATIONS}", B64.encode(salt));
        let exchange = Self {
            salted,
            gs2_header: format!("{cbind},{authzid},"),
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((exchange, server_first))
    }

    /// Checks `client-final-message`; returns `server-final-message` when the proof holds.
    pub fn finish(&self, client_final: &str) -> Result<String, String> {
        let refused = || "password authentication failed".to_string();
        let (without_proof, proof) = client_final.rsplit_once(",p=").ok_or_else(refused)?;
        let mut channel = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(c) = attr.strip_prefix("c=") {
                channel = Some(c);
            } else if let Some(r) = attr.strip_prefix("r=") {
                nonce = Some(r);
            }
        }
        if channel != Some(B64.encode(&self.gs2_header).as_str())
            || nonce != Some(self.nonce.as_str())
        {
            return Err(refused());
        }
        let proof = B64.decode(proof).map_err(|_| refused())?;
        if proof.len() != 32 {
            return Err(refused());
        }
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let client_key = hmac(&self.salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let recovered: Vec<u8> = proof
            .iter()
            .zip(signature.iter())
            .map(|(p, s)| p ^ s)
            .collect();
        let check: [u8; 32] = Sha256::digest(&recovered).into();
        let same = check
            .iter()
            .zip(stored_key.iter())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0;
        if !same {
            return Err(refused());
        }
        let server_key = hmac(&self.salted, b"Server Key");
        Ok(format!(
            "v={}",
            B64.encode(hmac(&server_key, auth_message.as_bytes()))
        ))
    }
}

/// Runs the exchange with a Postgres client (AuthenticationSASL, then
/// SASLContinue and SASLFinal); `Err` is the refusal's message.
pub async fn authenticate<S>(client: &mut S, password: &str) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let io = |e: std::io::Error| e.to_string();
    let mut offer = 10i32.to_be_bytes().to_vec();
    offer.extend_from_slice(MECHANISM.as_bytes());
    offer.extend_from_slice(&[0, 0]);
    send_auth(client, &offer).await.map_err(io)?;
    let initial = read_message(client).await.map_err(io)?;
    let end = initial
        .iter()
        .position(|b| *b == 0)
        .ok_or("malformed SASLInitialResponse")?;
    if &initial[..end] != MECHANISM.as_bytes() || initial.len() < end + 5 {
        return Err(format!("only {MECHANISM} is offered"));
    }
    let first = String::from_utf8_lossy(&initial[end + 5..]).into_owned();
    let (salt, salted) = verifier(password).await?;
    let nonce = kiln_core::ids::random_hex(18);
    let (exchange, server_first) = Exchange::start(salted, &salt, &first, &nonce)?;
    let mut cont = 11i32.to_be_bytes().to_vec();
    cont.extend_from_slice(server_first.as_bytes());
    send_auth(client, &cont).await.map_err(io)?;
    let last = read_message(client).await.map_err(io)?;
    let server_final = exchange.finish(&String::from_utf8_lossy(&last))?;
    let mut done = 12i32.to_be_bytes().to_vec();
    done.extend_from_slice(server_final.as_bytes());
    send_auth(client, &done).await.map_err(io)?;
    client.flush().await.map_err(io)
}

/// A password's salt and `Hi()`, as Postgres keeps per role: computed once
/// (off the proxy's thread: 4096 HMACs) and then reused, so a client that
/// has proved nothing yet costs no key stretching.
async fn verifier(password: &str) -> Result<(Vec<u8>, [u8; 32]), String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Cache = Mutex<HashMap<[u8; 32], (Vec<u8>, [u8; 32])>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let key: [u8; 32] = Sha256::digest(password.as_bytes()).into();
    if let Some(found) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(found);
    }
    let password = password.to_string();
    let computed = tokio::task::spawn_blocking(move || {
        let salt = kiln_core::ids::random_hex(16).into_bytes();
        let salted = salted_password(password.as_bytes(), &salt, ITERATIONS);
        (salt, salted)
    })
    .await
    .map_err(|e| e.to_string())?;
    if let Ok(mut c) = cache.lock() {
        if c.len() >= 4096 {
            c.clear();
        }
        c.insert(key, computed.clone());
    }
    Ok(computed)
}

async fn send_auth<S: tokio::io::AsyncWrite + Unpin>(
    client: &mut S,
    body: &[u8],
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut message = vec![b'R'];
    message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    message.extend_from_slice(body);
    client.write_all(&message).await?;
    client.flush().await
}

/// A `p` message's payload (bounded).
async fn read_message<S: tokio::io::AsyncRead + Unpin>(client: &mut S) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let kind = client.read_u8().await?;
    let len = client.read_i32().await?;
    if kind != b'p' || !(4..=16_384).contains(&len) {
        return Err(std::io::Error::other("expected a SASL response"));
    }
    let mut payload = vec![0u8; len as usize - 4];
    client.read_exact(&mut payload).await?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exchange of RFC 7677 §3 (user "user", password "pencil").
    #[test]
    fn rfc7677_exchange() -> Result<(), String> {
        let salt = B64
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .map_err(|e| e.to_string())?;
        let salted = salted_password(b"pencil", &salt, ITERATIONS);
        let (exchange, server_first) = Exchange::start(
            salted,
            &salt,
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )?;
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let final_message = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            exchange.finish(final_message)?,
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // a wrong proof, a changed nonce, channel binding asked for: refused
        assert!(exchange
            .finish(&final_message.replace("p=dHz", "p=dHy"))
            .is_err());
        assert!(exchange
            .finish(&final_message.replace("$k0,", "$k1,"))
            .is_err());
        assert!(Exchange::start(salted, &salt, "p=tls-server-end-point,,n=,r=abc", "s").is_err());
        assert!(Exchange::start(salted, &salt, "garbage", "s").is_err());
        Ok(())
    }
}
