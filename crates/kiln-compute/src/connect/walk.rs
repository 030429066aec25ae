//! Rewriting inside an encoded Spark Connect message without its schema: the
//! message is walked as protobuf wire data, a `hook` may replace any nested
//! message, and only the messages on the way to a replacement are re-encoded
//! (every other byte goes through as the client sent it).

/// A field as found on the wire: its number, wire type and the byte range of
/// the whole field (`start..end`) and of its payload (`value`).
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub number: u32,
    pub wire_type: u8,
    pub start: usize,
    pub end: usize,
    pub value: (usize, usize),
}

/// The varint at `at`, and the offset just after it.
pub(super) fn varint(bytes: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = *bytes.get(at + i)?;
        value |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, at + i + 1));
        }
    }
    None
}

/// The fields of `message`, or `None` when it is not a well-formed message.
pub fn fields(message: &[u8]) -> Option<Vec<Field>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < message.len() {
        let start = at;
        let (key, next) = varint(message, at)?;
        let number = u32::try_from(key >> 3).ok().filter(|n| *n > 0)?;
        let wire_type = (key & 7) as u8;
        let (value, end) = match wire_type {
            0 => {
                let (_, end) = varint(message, next)?;
                ((next, end), end)
            }
            1 => ((next, next + 8), next + 8),
            2 => {
                let (length, body) = varint(message, next)?;
                let end = body.checked_add(usize::try_from(length).ok()?)?;
                ((body, end), end)
            }
            5 => ((next, next + 4), next + 4),
            _ => return None,
        };
        if end > message.len() {
            return None;
        }
        out.push(Field {
            number,
            wire_type,
            start,
            end,
            value,
        });
        at = end;
    }
    Some(out)
}

/// The payload of the first length-delimited field `number`.
pub fn bytes_field<'a>(message: &'a [u8], parsed: &[Field], number: u32) -> Option<&'a [u8]> {
    parsed
        .iter()
        .find(|f| f.number == number && f.wire_type == 2)
        .map(|f| &message[f.value.0..f.value.1])
}

pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A length-delimited field.
pub fn put_bytes(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    put_varint(out, (u64::from(number) << 3) | 2);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// What `rewrite_path` does with the payload it reaches.
pub type Change<'c> = dyn FnMut(&[u8]) -> Result<Option<Vec<u8>>, String> + 'c;

/// What a hook does with one nested message.
pub type Hook<'h> = dyn FnMut(&[u8], &[Field]) -> Result<Option<Vec<u8>>, String> + 'h;

/// Walks `message` (at most `depth` levels down): `hook` sees every message
/// and may return its replacement; a message is re-encoded only when
/// something inside it was replaced. `Ok(None)`: nothing changed.
pub fn rewrite(
    message: &[u8],
    depth: usize,
    hook: &mut Hook<'_>,
) -> Result<Option<Vec<u8>>, String> {
    let Some(parsed) = fields(message) else {
        return Ok(None);
    };
    if let Some(replaced) = hook(message, &parsed)? {
        return Ok(Some(replaced));
    }
    if depth == 0 {
        return Ok(None);
    }
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for field in parsed.iter().filter(|f| f.wire_type == 2) {
        let payload = &message[field.value.0..field.value.1];
        if payload.is_empty() {
            continue;
        }
        if let Some(new) = rewrite(payload, depth - 1, hook)? {
            let buffer = out.get_or_insert_with(|| Vec::with_capacity(message.len() + 64));
            buffer.extend_from_slice(&message[copied..field.start]);
            put_bytes(buffer, field.number, &new);
            copied = field.end;
        }
    }
    Ok(out.map(|mut buffer| {
        buffer.extend_from_slice(&message[copied..]);
        buffer
    }))
}

/// Replaces the payload of the field found by following `path` (field
/// numbers, first occurrence at each level) with `change` of it.
pub fn rewrite_path(
    message: &[u8],
    path: &[u32],
    change: &mut Change<'_>,
) -> Result<Option<Vec<u8>>, String> {
    let Some((&first, rest)) = path.split_first() else {
        return change(message);
    };
    let Some(parsed) = fields(message) else {
        return Ok(None);
    };
    let Some(field) = parsed
        .iter()
        .find(|f| f.number == first && f.wire_type == 2)
    else {
        return Ok(None);
    };
    let Some(new) = rewrite_path(&message[field.value.0..field.value.1], rest, change)? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(message.len() + new.len());
    out.extend_from_slice(&message[..field.start]);
    put_bytes(&mut out, field.number, &new);
    out.extend_from_slice(&message[field.end..]);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_messages_keep_their_bytes_and_changes_reencode_the_path() {
        // {1: {2: "ab"}, 3: 7, 4: {1: "x"}}
        let mut inner = Vec::new();
        put_bytes(&mut inner, 2, b"ab");
        let mut msg = Vec::new();
        put_bytes(&mut msg, 1, &inner);
        msg.extend_from_slice(&[0x18, 7]);
        let mut other = Vec::new();
        put_bytes(&mut other, 1, b"x");
        put_bytes(&mut msg, 4, &other);
        let mut nothing = |_: &[u8], _: &[Field]| Ok(None);
        assert_eq!(rewrite(&msg, 8, &mut nothing), Ok(None));
        let mut swap = |m: &[u8], f: &[Field]| {
            Ok((bytes_field(m, f, 2) == Some(b"ab")).then(|| {
                let mut out = Vec::new();
                put_bytes(&mut out, 2, b"longer value");
                out
            }))
        };
        let new = rewrite(&msg, 8, &mut swap)
            .ok()
            .flatten()
            .unwrap_or_default();
        let top = fields(&new).unwrap_or_default();
        assert_eq!(top.len(), 3);
        let first = bytes_field(&new, &top, 1).unwrap_or_default();
        assert_eq!(
            bytes_field(first, &fields(first).unwrap_or_default(), 2),
            Some(&b"longer value"[..])
        );
        assert!(new.ends_with(&msg[msg.len() - other.len() - 2..]));
        let by_path = rewrite_path(&msg, &[4, 1], &mut |v: &[u8]| {
            Ok((v == b"x").then(|| b"yz".to_vec()))
        });
        let by_path = by_path.ok().flatten().unwrap_or_default();
        let top = fields(&by_path).unwrap_or_default();
        let four = bytes_field(&by_path, &top, 4).unwrap_or_default();
        assert_eq!(
            bytes_field(four, &fields(four).unwrap_or_default(), 1),
            Some(&b"yz"[..])
        );
    }

    #[test]
    fn garbage_is_no_message() {
        assert!(fields(&[0xff, 0xff]).is_none());
        assert!(fields(&[0x0a, 0x05, 1]).is_none());
        assert!(fields(&[0x07]).is_none());
    }
}
