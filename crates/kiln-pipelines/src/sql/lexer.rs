//! A small SQL tokenizer that knows what matters for cutting DLT statements
//! apart: string literals (single and double quotes, backslash escapes and
//! doubled quotes), backticked identifiers, `--` and `/* */` comments. Every
//! token keeps its byte span so rewrites can splice the original text.

use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bare word: identifier or keyword.
    Word,
    /// A backticked identifier.
    Quoted,
    /// A string literal.
    Str,
    Number,
    /// Punctuation or an operator (`(`, `,`, `=>`, `<=`, …).
    Punct,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub span: Range<usize>,
    /// 1-based line of the token's first character.
    pub line: usize,
}

/// A tokenizing failure: an unterminated literal or comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub line: usize,
    pub message: String,
}

impl Token {
    pub fn text<'a>(&self, source: &'a str) -> &'a str {
        &source[self.span.clone()]
    }

    /// Whether this token is the keyword `word` (case-insensitive).
    pub fn is(&self, source: &str, word: &str) -> bool {
        self.kind == Kind::Word && self.text(source).eq_ignore_ascii_case(word)
    }

    pub fn is_punct(&self, source: &str, p: &str) -> bool {
        self.kind == Kind::Punct && self.text(source) == p
    }

    /// The identifier's name: backticks removed (doubled backticks unescaped).
    pub fn ident(&self, source: &str) -> String {
        let text = self.text(source);
        match self.kind {
            Kind::Quoted => text[1..text.len() - 1].replace("``", "`"),
            _ => text.to_string(),
        }
    }

    /// The string literal's value, unquoted and unescaped.
    pub fn string_value(&self, source: &str) -> String {
        let text = self.text(source);
        let quote = text.chars().next().unwrap_or('\'');
        let inner = &text[1..text.len().saturating_sub(1).max(1)];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => {}
                },
                c if c == quote && chars.peek() == Some(&quote) => {
                    chars.next();
                    out.push(quote);
                }
                c => out.push(c),
            }
        }
        out
    }
}

const TWO_CHAR_OPS: &[&str] = &["=>", "<=", ">=", "<>", "!=", "==", "::", "||", "->", "<=>"];

/// Splits `source` into tokens, skipping whitespace and comments.
pub fn tokenize(source: &str) -> Result<Vec<Token>, LexError> {
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let start_line = line;
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                loop {
                    if i + 1 >= bytes.len() {
                        return Err(LexError {
                            line: start_line,
                            message: "unterminated /* comment".into(),
                        });
                    }
                    if bytes[i] == b'*' && bytes[i + 1] == b'/' {
                        i += 2;
                        break;
                    }
                    if bytes[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            b'\'' | b'"' | b'`' => {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => {
                            let what = if c == b'`' { "identifier" } else { "string" };
                            return Err(LexError {
                                line: start_line,
                                message: format!("unterminated {what} starting with {}", c as char),
                            });
                        }
                        Some(b'\\') if c != b'`' => i += 2,
                        Some(&q) if q == c => {
                            if bytes.get(i + 1) == Some(&c) {
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(b'\n') => {
                            line += 1;
                            i += 1;
                        }
                        Some(_) => i += 1,
                    }
                }
                let kind = if c == b'`' { Kind::Quoted } else { Kind::Str };
                tokens.push(Token {
                    kind,
                    span: start..i.min(bytes.len()),
                    line: start_line,
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                tokens.push(Token {
                    kind: Kind::Word,
                    span: start..i,
                    line,
                });
            }
            c if c.is_ascii_digit() => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
                tokens.push(Token {
                    kind: Kind::Number,
                    span: start..i,
                    line,
                });
            }
            _ => {
                let rest = &source[i..];
                let len = if rest.starts_with("<=>") {
                    3
                } else if TWO_CHAR_OPS.iter().any(|op| rest.starts_with(op)) {
                    2
                } else {
                    rest.chars().next().map(char::len_utf8).unwrap_or(1)
                };
                i += len;
                tokens.push(Token {
                    kind: Kind::Punct,
                    span: start..i,
                    line,
                });
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(source: &str) -> Vec<String> {
        tokenize(source)
            .unwrap_or_default()
            .iter()
            .map(|t| t.text(source).to_string())
            .collect()
    }

    #[test]
    fn strings_comments_and_identifiers() {
        let s = "SELECT 'a;b', \"c\" -- x;\n FROM `we``ird` /* ; */ WHERE a >= 1;";
        assert_eq!(
            texts(s),
            vec![
                "SELECT",
                "'a;b'",
                ",",
                "\"c\"",
                "FROM",
                "`we``ird`",
                "WHERE",
                "a",
                ">=",
                "1",
                ";"
            ]
        );
        let tokens = tokenize(s).unwrap_or_default();
        assert_eq!(tokens[5].ident(s), "we`ird");
        assert_eq!(tokens[4].line, 2);
    }

    #[test]
    fn escapes_in_strings() {
        let s = r#"'it''s' 'a\'b' "q""q""#;
        let tokens = tokenize(s).unwrap_or_default();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens[0].string_value(s), "it's");
        assert_eq!(tokens[1].string_value(s), "a'b");
        assert_eq!(tokens[2].string_value(s), "q\"q");
    }

    #[test]
    fn unterminated_literals_are_errors() {
        assert!(tokenize("SELECT 'abc").is_err());
        assert!(tokenize("SELECT `abc").is_err());
        assert!(tokenize("SELECT /* abc").is_err());
        assert!(tokenize("SELECT 'a\\").is_err());
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        for s in [
            "'",
            "\\",
            "é'",
            "`",
            "/*/",
            "-",
            "'\\'",
            "\u{1F600}",
            "a=>b<=>c",
        ] {
            let _ = tokenize(s);
        }
    }
}
