//! SQL text Kiln reads or writes around table writes: the head of a
//! `CREATE [OR REPLACE] TABLE … [AS query]` / `REPLACE TABLE …` statement, and
//! column types rendered as DDL from an analyzed schema.
//!
//! The parser only reads the statement's head (up to the top-level `AS`); a
//! clause it does not know makes it answer `None`, and the statement then goes
//! to the engine untouched.

use super::wire::{DataType, Kind};

/// A `CREATE TABLE` / `REPLACE TABLE` statement Kiln runs itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreateTable {
    /// `CREATE OR REPLACE TABLE` or `REPLACE TABLE`.
    pub replace: bool,
    /// `REPLACE TABLE` (without `CREATE`): the table must exist.
    pub must_exist: bool,
    pub if_not_exists: bool,
    /// The name's parts, unquoted.
    pub name: Vec<String>,
    /// The text inside the column list's parentheses.
    pub columns: Option<String>,
    pub using: Option<String>,
    /// The text inside `PARTITIONED BY (…)`.
    pub partitioned_by: Option<String>,
    /// The `COMMENT` literal as written (quotes included).
    pub comment: Option<String>,
    /// The text inside `TBLPROPERTIES (…)`.
    pub tblproperties: Option<String>,
    /// The query after the top-level `AS`.
    pub query: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    Word(String),
    Quoted(String),
    Literal,
    Punct(char),
}

/// Tokens with the byte offsets where each starts and ends.
pub(super) fn tokenize(sql: &str) -> Option<Vec<(Token, usize, usize)>> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'-' && bytes.get(i + 1) == Some(&b'-') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            let end = sql[i + 2..].find("*/")?;
            i += end + 4;
        } else if c == b'`' {
            let start = i;
            let mut name = String::new();
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return None,
                    Some(b'`') if bytes.get(i + 1) == Some(&b'`') => {
                        name.push('`');
                        i += 2;
                    }
                    Some(b'`') => {
                        i += 1;
                        break;
                    }
                    Some(_) => {
                        let ch = sql[i..].chars().next()?;
                        name.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            out.push((Token::Quoted(name), start, i));
        } else if c == b'\'' || c == b'"' {
            let start = i;
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return None,
                    Some(b'\\') => i += 2,
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            out.push((Token::Literal, start, i));
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80)
            {
                i += 1;
            }
            out.push((Token::Word(sql[start..i].to_string()), start, i));
        } else {
            out.push((Token::Punct(c as char), i, i + 1));
            i += 1;
        }
    }
    Some(out)
}

pub(super) fn is_word(token: Option<&(Token, usize, usize)>, word: &str) -> bool {
    matches!(token, Some((Token::Word(w), _, _)) if w.eq_ignore_ascii_case(word))
}

/// The index of the `)` closing the `(` at `open`.
pub(super) fn closing(tokens: &[(Token, usize, usize)], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, (token, _, _)) in tokens.iter().enumerate().skip(open) {
        match token {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

pub(super) type Tokens = Vec<(Token, usize, usize)>;

/// A dotted name starting at token `i` (words or backquoted parts): its
/// parts, unquoted, and the index after it.
pub(super) fn name_at(tokens: &Tokens, mut i: usize) -> Option<(Vec<String>, usize)> {
    let mut parts = Vec::new();
    loop {
        match tokens.get(i) {
            Some((Token::Word(w), _, _)) | Some((Token::Quoted(w), _, _)) => parts.push(w.clone()),
            _ => return None,
        }
        i += 1;
        if matches!(tokens.get(i), Some((Token::Punct('.'), _, _))) {
            i += 1;
        } else {
            return Some((parts, i));
        }
    }
}

/// Reads a `CREATE [OR REPLACE] TABLE` / `REPLACE TABLE` statement's head;
/// `None` for any other statement or a clause Kiln leaves to the engine
/// (`LOCATION`, `CLUSTER BY`, `OPTIONS`, `EXTERNAL`, `TEMPORARY`, …).
pub fn parse_create_table(sql: &str) -> Option<CreateTable> {
    let tokens = tokenize(sql)?;
    let mut out = CreateTable::default();
    let mut i = if is_word(tokens.first(), "CREATE") {
        if is_word(tokens.get(1), "OR") && is_word(tokens.get(2), "REPLACE") {
            out.replace = true;
            3
        } else {
            1
        }
    } else if is_word(tokens.first(), "REPLACE") {
        out.replace = true;
        out.must_exist = true;
        1
    } else {
        return None;
    };
    if !is_word(tokens.get(i), "TABLE") {
        return None;
    }
    i += 1;
    if is_word(tokens.get(i), "IF")
        && is_word(tokens.get(i + 1), "NOT")
        && is_word(tokens.get(i + 2), "EXISTS")
    {
        out.if_not_exists = true;
        i += 3;
    }
    let (name, next) = name_at(&tokens, i)?;
    out.name = name;
    i = next;
    if matches!(tokens.get(i), Some((Token::Punct('('), _, _))) {
        let end = closing(&tokens, i)?;
        out.columns = Some(sql[tokens[i].2..tokens[end].1].trim().to_string());
        i = end + 1;
    }
    let inner = |open: usize| -> Option<(String, usize)> {
        if !matches!(tokens.get(open), Some((Token::Punct('('), _, _))) {
            return None;
        }
        let end = closing(&tokens, open)?;
        Some((
            sql[tokens[open].2..tokens[end].1].trim().to_string(),
            end + 1,
        ))
    };
    while let Some((token, start, end)) = tokens.get(i) {
        match token {
            Token::Punct(';') if i + 1 == tokens.len() => break,
            Token::Word(w) if w.eq_ignore_ascii_case("USING") => match tokens.get(i + 1) {
                Some((Token::Word(f), _, _)) => {
                    out.using = Some(f.clone());
                    i += 2;
                }
                _ => return None,
            },
            Token::Word(w)
                if w.eq_ignore_ascii_case("PARTITIONED") && is_word(tokens.get(i + 1), "BY") =>
            {
                let (text, next) = inner(i + 2)?;
                out.partitioned_by = Some(text);
                i = next;
            }
            Token::Word(w) if w.eq_ignore_ascii_case("COMMENT") => match tokens.get(i + 1) {
                Some((Token::Literal, s, e)) => {
                    out.comment = Some(sql[*s..*e].to_string());
                    i += 2;
                }
                _ => return None,
            },
            Token::Word(w) if w.eq_ignore_ascii_case("TBLPROPERTIES") => {
                let (text, next) = inner(i + 1)?;
                out.tblproperties = Some(text);
                i = next;
            }
            Token::Word(w) if w.eq_ignore_ascii_case("AS") => {
                let _ = (start, end);
                let query = sql[*end..].trim().trim_end_matches(';').trim();
                if query.is_empty() {
                    return None;
                }
                out.query = Some(query.to_string());
                break;
            }
            _ => return None,
        }
    }
    if out.columns.is_none() && out.query.is_none() {
        return None;
    }
    Some(out)
}

/// What a `USE` statement makes current.
#[derive(Debug, Clone, PartialEq)]
pub enum Use {
    /// `USE CATALOG c`: the catalog (and its `default` schema).
    Catalog(String),
    /// `USE [SCHEMA|DATABASE|NAMESPACE] [c.]s`.
    Schema(Vec<String>),
}

/// Reads a `USE …` statement.
pub fn parse_use(sql: &str) -> Option<Use> {
    let tokens = tokenize(sql)?;
    if !is_word(tokens.first(), "USE") {
        return None;
    }
    let mut i = 1;
    let catalog = is_word(tokens.get(1), "CATALOG");
    if catalog
        || ["SCHEMA", "DATABASE", "NAMESPACE"]
            .iter()
            .any(|k| is_word(tokens.get(1), k))
    {
        i = 2;
    }
    let (parts, i) = name_at(&tokens, i)?;
    let parts: Vec<String> = parts.iter().map(|p| p.to_lowercase()).collect();
    let rest = &tokens[i..];
    if !(rest.is_empty() || (rest.len() == 1 && rest[0].0 == Token::Punct(';'))) {
        return None;
    }
    match (catalog, parts.as_slice()) {
        (true, [c]) => Some(Use::Catalog(c.clone())),
        (false, [_] | [_, _]) => Some(Use::Schema(parts)),
        _ => None,
    }
}

/// A query in parentheses, each on a line of its own: a query that ends in a
/// `--` comment must not swallow the closing one.
pub fn subquery(query: &str) -> String {
    format!("(\n{query}\n)")
}

/// Quotes one identifier part for Spark SQL.
pub fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a dotted name's parts.
pub fn quote_name(parts: &[String]) -> String {
    parts.iter().map(|p| quote(p)).collect::<Vec<_>>().join(".")
}

/// A SQL string literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A column type as Spark SQL DDL (`BIGINT`, `ARRAY<STRUCT<…>>`, …).
pub fn type_ddl(data_type: &DataType) -> Result<String, String> {
    let Some(kind) = &data_type.kind else {
        return Err("a column of a type Kiln cannot name".into());
    };
    Ok(match kind {
        Kind::Null(_) => return Err("a column of type VOID (a bare NULL): cast it".into()),
        Kind::Binary(_) => "BINARY".into(),
        Kind::Boolean(_) => "BOOLEAN".into(),
        Kind::Byte(_) => "TINYINT".into(),
        Kind::Short(_) => "SMALLINT".into(),
        Kind::Integer(_) => "INT".into(),
        Kind::Long(_) => "BIGINT".into(),
        Kind::Float(_) => "FLOAT".into(),
        Kind::Double(_) => "DOUBLE".into(),
        Kind::Decimal(d) => format!(
            "DECIMAL({},{})",
            d.precision.unwrap_or(10),
            d.scale.unwrap_or(0)
        ),
        Kind::String(_) => "STRING".into(),
        Kind::Char(l) => format!("CHAR({})", l.length),
        Kind::VarChar(l) => format!("VARCHAR({})", l.length),
        Kind::Date(_) => "DATE".into(),
        Kind::Timestamp(_) => "TIMESTAMP".into(),
        Kind::TimestampNtz(_) => "TIMESTAMP_NTZ".into(),
        Kind::CalendarInterval(_) => return Err("a column of type INTERVAL".into()),
        Kind::YearMonthInterval(_) => "INTERVAL YEAR TO MONTH".into(),
        Kind::DayTimeInterval(_) => "INTERVAL DAY TO SECOND".into(),
        Kind::Array(a) => {
            let element = a
                .element_type
                .as_deref()
                .ok_or("an array without an element type")?;
            format!("ARRAY<{}>", type_ddl(element)?)
        }
        Kind::Map(m) => {
            let key = m.key_type.as_deref().ok_or("a map without a key type")?;
            let value = m
                .value_type
                .as_deref()
                .ok_or("a map without a value type")?;
            format!("MAP<{}, {}>", type_ddl(key)?, type_ddl(value)?)
        }
        Kind::Struct(s) => {
            let fields = s
                .fields
                .iter()
                .map(|f| {
                    let t = f
                        .data_type
                        .as_ref()
                        .ok_or("a struct field without a type")?;
                    Ok(format!("{}: {}", quote(&f.name), type_ddl(t)?))
                })
                .collect::<Result<Vec<_>, String>>()?;
            format!("STRUCT<{}>", fields.join(", "))
        }
        Kind::Unparsed(u) => u.data_type_string.clone(),
        Kind::Variant(_) => "VARIANT".into(),
    })
}

/// A column type in Spark's JSON form (what Unity Catalog's `type_json`
/// holds inside a field), `"string"` for what has none here.
pub fn type_json(data_type: &DataType) -> serde_json::Value {
    use serde_json::json;
    let Some(kind) = &data_type.kind else {
        return json!("string");
    };
    match kind {
        Kind::Null(_) => json!("void"),
        Kind::Binary(_) => json!("binary"),
        Kind::Boolean(_) => json!("boolean"),
        Kind::Byte(_) => json!("byte"),
        Kind::Short(_) => json!("short"),
        Kind::Integer(_) => json!("integer"),
        Kind::Long(_) => json!("long"),
        Kind::Float(_) => json!("float"),
        Kind::Double(_) => json!("double"),
        Kind::Decimal(d) => json!(format!(
            "decimal({},{})",
            d.precision.unwrap_or(10),
            d.scale.unwrap_or(0)
        )),
        Kind::Date(_) => json!("date"),
        Kind::Timestamp(_) => json!("timestamp"),
        Kind::TimestampNtz(_) => json!("timestamp_ntz"),
        Kind::Array(a) => json!({
            "type": "array",
            "elementType": a.element_type.as_deref().map(type_json).unwrap_or(json!("string")),
            "containsNull": true,
        }),
        Kind::Map(m) => json!({
            "type": "map",
            "keyType": m.key_type.as_deref().map(type_json).unwrap_or(json!("string")),
            "valueType": m.value_type.as_deref().map(type_json).unwrap_or(json!("string")),
            "valueContainsNull": true,
        }),
        Kind::Struct(s) => json!({
            "type": "struct",
            "fields": s.fields.iter().map(|f| json!({
                "name": f.name,
                "type": f.data_type.as_ref().map(type_json).unwrap_or(json!("string")),
                "nullable": true,
                "metadata": {},
            })).collect::<Vec<_>>(),
        }),
        _ => json!("string"),
    }
}

/// A type name folded so that the engine's and the catalog's spellings of
/// one type compare equal (`integer` = `int`, `long` = `bigint`, spaces dropped).
pub fn fold_type(text: &str) -> String {
    let lower: String = text
        .to_ascii_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '`')
        .collect();
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(match word.as_str() {
            "integer" => "int",
            "long" => "bigint",
            "short" => "smallint",
            "byte" => "tinyint",
            "real" => "float",
            "dec" | "numeric" => "decimal",
            other => other,
        });
        word.clear();
    };
    for c in lower.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::super::wire::{ArrayType, Decimal, Empty, StructField, StructType};
    use super::*;

    #[test]
    fn reads_create_or_replace_as_select() -> Result<(), Box<dyn std::error::Error>> {
        let t = parse_create_table(
            "CREATE OR REPLACE TABLE main.default.`my t` USING DELTA PARTITIONED BY (k) COMMENT 'it\\'s' TBLPROPERTIES ('a' = '1') AS SELECT 1 AS a, ')' AS `as`;",
        );
        let t = t.ok_or("parsed")?;
        assert!(t.replace && !t.must_exist && !t.if_not_exists);
        assert_eq!(t.name, vec!["main", "default", "my t"]);
        assert_eq!(t.using.as_deref(), Some("DELTA"));
        assert_eq!(t.partitioned_by.as_deref(), Some("k"));
        assert_eq!(t.tblproperties.as_deref(), Some("'a' = '1'"));
        assert_eq!(t.query.as_deref(), Some("SELECT 1 AS a, ')' AS `as`"));
        Ok(())
    }

    #[test]
    fn reads_replace_with_columns() -> Result<(), Box<dyn std::error::Error>> {
        let t = parse_create_table("replace table t (a INT COMMENT 'x', b DECIMAL(10, 2))")
            .ok_or("parsed")?;
        assert!(t.replace && t.must_exist);
        assert_eq!(t.name, vec!["t"]);
        assert_eq!(
            t.columns.as_deref(),
            Some("a INT COMMENT 'x', b DECIMAL(10, 2)")
        );
        assert_eq!(t.query, None);
        Ok(())
    }

    #[test]
    fn leaves_other_statements_to_the_engine() -> Result<(), Box<dyn std::error::Error>> {
        for sql in [
            "SELECT 1",
            "CREATE TABLE t (a INT) LOCATION '/tmp/x'",
            "CREATE TABLE t (a INT) CLUSTER BY (a)",
            "CREATE TEMPORARY VIEW v AS SELECT 1",
            "CREATE OR REPLACE VIEW v AS SELECT 1",
            "CREATE TABLE t",
            "CREATE TABLE t AS",
            "CREATE TABLE `t AS SELECT 1",
        ] {
            assert_eq!(parse_create_table(sql), None, "{sql}");
        }
        Ok(())
    }

    #[test]
    fn comments_and_strings_hide_keywords() -> Result<(), Box<dyn std::error::Error>> {
        let t = parse_create_table(
            "/* AS */ CREATE TABLE IF NOT EXISTS t -- AS nothing\n COMMENT 'AS' AS SELECT 2",
        )
        .ok_or("parsed")?;
        assert!(t.if_not_exists);
        assert_eq!(t.comment.as_deref(), Some("'AS'"));
        assert_eq!(t.query.as_deref(), Some("SELECT 2"));
        Ok(())
    }

    #[test]
    fn reads_use_statements() -> Result<(), Box<dyn std::error::Error>> {
        assert_eq!(
            parse_use("USE CATALOG Sales"),
            Some(Use::Catalog("sales".into()))
        );
        assert_eq!(
            parse_use("use schema x;"),
            Some(Use::Schema(vec!["x".into()]))
        );
        assert_eq!(
            parse_use("USE `a`.b"),
            Some(Use::Schema(vec!["a".into(), "b".into()]))
        );
        assert_eq!(parse_use("USE a.b.c"), None);
        assert_eq!(parse_use("USE x WHERE"), None);
        assert_eq!(parse_use("SELECT 1"), None);
        Ok(())
    }

    #[test]
    fn renders_nested_types() -> Result<(), Box<dyn std::error::Error>> {
        let int = DataType {
            kind: Some(Kind::Integer(Empty {})),
        };
        let t = DataType {
            kind: Some(Kind::Array(Box::new(ArrayType {
                element_type: Some(Box::new(DataType {
                    kind: Some(Kind::Struct(StructType {
                        fields: vec![
                            StructField {
                                name: "a`b".into(),
                                data_type: Some(int.clone()),
                                nullable: true,
                            },
                            StructField {
                                name: "d".into(),
                                data_type: Some(DataType {
                                    kind: Some(Kind::Decimal(Decimal {
                                        scale: Some(2),
                                        precision: Some(12),
                                    })),
                                }),
                                nullable: true,
                            },
                        ],
                    })),
                })),
                contains_null: true,
            }))),
        };
        assert_eq!(
            type_ddl(&t).as_deref(),
            Ok("ARRAY<STRUCT<`a``b`: INT, `d`: DECIMAL(12,2)>>")
        );
        let void = DataType {
            kind: Some(Kind::Null(Empty {})),
        };
        assert!(type_ddl(&void).is_err());
        Ok(())
    }

    #[test]
    fn folds_type_spellings() -> Result<(), Box<dyn std::error::Error>> {
        assert_eq!(fold_type("INT"), fold_type("integer"));
        assert_eq!(fold_type("array<long>"), fold_type("ARRAY<BIGINT>"));
        assert_eq!(fold_type("decimal(10, 2)"), fold_type("DECIMAL(10,2)"));
        assert_ne!(fold_type("int"), fold_type("bigint"));
        assert_eq!(fold_type("struct<a:int>"), fold_type("STRUCT<`a`: INT>"));
        Ok(())
    }
}
