//! `AddArtifacts` of REPL class files. The Scala Spark Connect client uploads
//! the classes its REPL compiled before every call; they are only ever needed
//! to run Scala UDFs and typed lambdas, which the engine (Sail) cannot run, and
//! the engine refuses the upload itself ("handle add artifacts"), which would
//! fail every call of a Scala context. So Kiln acknowledges an upload made of
//! class files only (`classes/…`) and keeps none of it; any other artifact
//! (jars, Python files, archives) still goes to the engine.

use prost::Message as _;

use super::walk::{bytes_field, fields};

#[derive(Clone, PartialEq, prost::Message)]
struct AddArtifactsResponse {
    #[prost(message, repeated, tag = "1")]
    artifacts: Vec<ArtifactSummary>,
    #[prost(string, tag = "2")]
    session_id: String,
    #[prost(string, tag = "3")]
    server_side_session_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ArtifactSummary {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(bool, tag = "2")]
    is_crc_successful: bool,
}

/// The gRPC messages of a request body (5-byte frames), when it is one.
fn frames(body: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let header = body.get(at..at + 5)?;
        if header[0] != 0 {
            return None; // compressed
        }
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        out.push(body.get(at + 5..at + 5 + length)?);
        at += 5 + length;
    }
    Some(out)
}

/// The answer to an `AddArtifacts` call (its whole request body) when every
/// artifact it uploads is a class file; `None` sends it to the engine.
pub fn class_files_only(body: &[u8]) -> Option<Vec<u8>> {
    let mut names = Vec::new();
    let (mut session, mut observed) = (String::new(), String::new());
    for message in frames(body)? {
        let parsed = fields(message)?;
        let text = |n| {
            bytes_field(message, &parsed, n)
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(str::to_string)
        };
        session = text(1).unwrap_or(session);
        observed = text(7).unwrap_or(observed);
        if let Some(batch) = bytes_field(message, &parsed, 3) {
            for artifact in fields(batch)?.iter().filter(|f| f.number == 1) {
                let single = &batch[artifact.value.0..artifact.value.1];
                let name = bytes_field(single, &fields(single)?, 1)?;
                names.push(String::from_utf8(name.to_vec()).ok()?);
            }
        }
        if let Some(begin) = bytes_field(message, &parsed, 4) {
            let name = bytes_field(begin, &fields(begin)?, 1)?;
            names.push(String::from_utf8(name.to_vec()).ok()?);
        }
    }
    let all_classes = !names.is_empty()
        && names
            .iter()
            .all(|n| n.starts_with("classes/") && n.ends_with(".class") && !n.contains(".."));
    if !all_classes {
        return None;
    }
    Some(
        AddArtifactsResponse {
            artifacts: names
                .into_iter()
                .map(|name| ArtifactSummary {
                    name,
                    is_crc_successful: true,
                })
                .collect(),
            server_side_session_id: if observed.is_empty() {
                session.clone()
            } else {
                observed
            },
            session_id: session,
        }
        .encode_to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::walk::put_bytes;
    use super::*;

    fn request(names: &[&str]) -> Vec<u8> {
        let mut batch = Vec::new();
        for name in names {
            let mut single = Vec::new();
            put_bytes(&mut single, 1, name.as_bytes());
            put_bytes(&mut single, 2, b"\x0a\x01x");
            put_bytes(&mut batch, 1, &single);
        }
        let mut message = Vec::new();
        put_bytes(&mut message, 1, b"s1");
        put_bytes(&mut message, 3, &batch);
        let mut body = vec![0];
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(&message);
        body
    }

    #[test]
    fn only_class_files_are_acknowledged() -> Result<(), Box<dyn std::error::Error>> {
        let answer = class_files_only(&request(&["classes/A.class", "classes/x/B$1.class"]))
            .ok_or("answered")?;
        let decoded = AddArtifactsResponse::decode(answer.as_slice())?;
        assert_eq!(decoded.artifacts.len(), 2);
        assert!(decoded.artifacts.iter().all(|a| a.is_crc_successful));
        assert_eq!(decoded.session_id, "s1");
        assert!(class_files_only(&request(&["classes/A.class", "jars/evil.jar"])).is_none());
        assert!(class_files_only(&request(&["pyfiles/x.py"])).is_none());
        assert!(class_files_only(&request(&[])).is_none());
        assert!(class_files_only(b"\x01\x00\x00\x00\x00").is_none());
        Ok(())
    }
}
