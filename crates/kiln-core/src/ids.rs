//! Identifier generation in the shapes Databricks uses.

use rand::Rng;

/// A cluster id like `1121-132814-ab12cd34` (MMDD-HHMMSS-8 random characters).
pub fn cluster_id(now_ms: i64) -> String {
    let (month, day, hour, minute, second) = crate::time::utc_parts(now_ms);
    format!(
        "{month:02}{day:02}-{hour:02}{minute:02}{second:02}-{}",
        random_alnum(8)
    )
}

/// Lower-case letters and digits.
pub fn random_alnum(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n_bytes: usize) -> String {
    let mut bytes = vec![0u8; n_bytes];
    rand::rng().fill(bytes.as_mut_slice());
    hex::encode(bytes)
}

/// A positive numeric id as a decimal string (SCIM ids, token ids).
pub fn numeric_id() -> String {
    let n: u64 = rand::rng().random_range(1_000_000_000_000_000..9_000_000_000_000_000);
    n.to_string()
}

/// A random UUID v4 string.
pub fn uuid4() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    // One allocation (every request gets one of these as its request id).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// Compares tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
    }

    #[test]
    fn uuid4_has_the_v4_shape() {
        let id = uuid4();
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(id
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert_ne!(uuid4(), id);
    }

    #[test]
    fn cluster_id_has_databricks_shape() {
        let id = cluster_id(1_763_731_694_000); // 2025-11-21T13:28:14Z
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "1121");
        assert_eq!(parts[1], "132814");
        assert_eq!(parts[2].len(), 8);
    }

    #[test]
    fn uuid_is_v4() {
        let u = uuid4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
