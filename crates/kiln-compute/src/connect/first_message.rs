//! The first message of a Spark Connect call, read without a protobuf
//! library: its session id and user context (fields 1 and 2 of every request),
//! and a `ConfigRequest` made in the same session. The gateway reads these to
//! tie a session to its user and to set the session's defaults.

/// What every Spark Connect request starts with: `session_id` (field 1) and
/// `user_context` (field 2, kept as its encoded bytes).
#[derive(Debug, PartialEq)]
pub struct FirstFields {
    pub session: String,
    pub user_context: Option<Vec<u8>>,
}

/// The leading fields of the first, uncompressed message.
pub fn first_fields(prefix: &[u8]) -> Option<FirstFields> {
    let (&compressed, message) = prefix.split_first()?;
    if compressed != 0 || message.len() < 4 {
        return None;
    }
    let (session, rest) = length_delimited(&message[4..], 0x0A)?;
    let session = String::from_utf8(session.to_vec()).ok()?;
    let user_context = length_delimited(rest, 0x12).map(|(bytes, _)| bytes.to_vec());
    Some(FirstFields {
        session,
        user_context,
    })
}

/// A length-delimited field with the given tag at the start of `bytes`, and what follows it.
fn length_delimited(bytes: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = bytes.split_first()?;
    if found != tag {
        return None;
    }
    // `varint(rest, 0)` answers the offset after it: the bytes it used.
    let (length, used) = super::walk::varint(rest, 0)?;
    let end = used.checked_add(usize::try_from(length).ok()?)?;
    Some((rest.get(used..end)?, rest.get(end..)?))
}

fn put_field(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    let mut length = bytes.len() as u64;
    loop {
        let byte = (length & 0x7F) as u8;
        length >>= 7;
        if length == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(bytes);
}

/// A `ConfigRequest` setting `pairs` in the client's session (same user context).
pub fn config_set(first: &FirstFields, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut set = Vec::new();
    for (key, value) in pairs {
        let mut pair = Vec::new();
        put_field(&mut pair, 0x0A, key.as_bytes());
        put_field(&mut pair, 0x12, value.as_bytes());
        put_field(&mut set, 0x0A, &pair);
    }
    let mut operation = Vec::new();
    put_field(&mut operation, 0x0A, &set);
    let mut request = Vec::new();
    put_field(&mut request, 0x0A, first.session.as_bytes());
    if let Some(context) = &first.user_context {
        put_field(&mut request, 0x12, context);
    }
    put_field(&mut request, 0x1A, &operation);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    #[test]
    fn reads_the_session_id_of_the_first_message() {
        let session = "7f1c1b2e-0000-4000-8000-000000000001";
        let mut message = vec![0x0A, session.len() as u8];
        message.extend_from_slice(session.as_bytes());
        message.extend_from_slice(&[0x12, 0x00]);
        let body = framed(&message);
        let first = first_fields(&body);
        assert_eq!(first.as_ref().map(|f| f.session.as_str()), Some(session));
        assert_eq!(first.and_then(|f| f.user_context), Some(Vec::new()));
    }

    #[test]
    fn other_shapes_have_no_session() {
        assert_eq!(first_fields(&framed(&[0x12, 0x01, b'x'])), None);
        let mut compressed = framed(&[0x0A, 0x01, b'x']);
        compressed[0] = 1;
        assert_eq!(first_fields(&compressed), None);
        assert_eq!(first_fields(&[0, 0, 0]), None);
        assert_eq!(first_fields(&framed(&[0x0A, 0x05, b'x'])), None);
    }

    #[test]
    fn config_requests_carry_the_session_and_user_context() {
        let first = FirstFields {
            session: "s1".into(),
            user_context: Some(vec![0x0A, 0x01, b'u']),
        };
        let message = config_set(&first, &[("k", "v")]);
        assert_eq!(
            message,
            vec![
                0x0A, 2, b's', b'1', 0x12, 3, 0x0A, 1, b'u', 0x1A, 10, 0x0A, 8, 0x0A, 6, 0x0A, 1,
                b'k', 0x12, 1, b'v'
            ]
        );
    }
}
