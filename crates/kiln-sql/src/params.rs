//! Named statement parameters (`:name` markers) bound as Spark Connect
//! literal expressions: the engine binds them, so a value is always data,
//! never SQL text. A typed value (`INT`, `DATE`, `DECIMAL(10,2)`, …) is a
//! literal of that type, or a string literal cast to it by the engine.

use std::collections::HashMap;

use kiln_core::{Error, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct StatementParameter {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Expression {
    #[prost(message, optional, tag = "1")]
    literal: Option<Literal>,
    #[prost(message, optional, boxed, tag = "7")]
    cast: Option<Box<Cast>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Cast {
    #[prost(message, optional, boxed, tag = "1")]
    expr: Option<Box<Expression>>,
    #[prost(string, optional, tag = "3")]
    type_str: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Literal {
    #[prost(oneof = "Value", tags = "1, 3, 5, 6, 7, 11, 13")]
    value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Value {
    /// A typed NULL (its type: a Spark Connect `DataType`, here STRING).
    #[prost(message, tag = "1")]
    Null(NullType),
    #[prost(bool, tag = "3")]
    Boolean(bool),
    #[prost(int32, tag = "5")]
    Short(i32),
    #[prost(int32, tag = "6")]
    Integer(i32),
    #[prost(int64, tag = "7")]
    Long(i64),
    #[prost(double, tag = "11")]
    Double(f64),
    #[prost(string, tag = "13")]
    String(String),
}

/// `DataType` with its `string` kind (tag 11) set.
#[derive(Clone, PartialEq, prost::Message)]
struct NullType {
    #[prost(message, optional, tag = "11")]
    string: Option<Empty>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Empty {}

fn literal(value: Value) -> Expression {
    Expression {
        literal: Some(Literal { value: Some(value) }),
        cast: None,
    }
}

fn cast(inner: Expression, type_text: &str) -> Expression {
    Expression {
        literal: None,
        cast: Some(Box::new(Cast {
            expr: Some(Box::new(inner)),
            type_str: Some(type_text.into()),
        })),
    }
}

fn bad(p: &StatementParameter, type_text: &str) -> Error {
    Error::invalid(format!(
        "Parameter {} has value {:?}, which is not a {type_text}.",
        p.name,
        p.value.as_deref().unwrap_or_default()
    ))
}

fn expression(p: &StatementParameter) -> Result<Expression> {
    let type_text = p
        .type_
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or("STRING")
        .to_uppercase();
    let Some(value) = &p.value else {
        let null = literal(Value::Null(NullType {
            string: Some(Empty {}),
        }));
        return Ok(if type_text == "STRING" {
            null
        } else {
            cast(null, &type_text)
        });
    };
    let v = value.trim();
    Ok(match type_text.as_str() {
        "STRING" | "VARCHAR" | "CHAR" => literal(Value::String(value.clone())),
        "INT" | "INTEGER" => literal(Value::Integer(v.parse().map_err(|_| bad(p, &type_text))?)),
        "SMALLINT" | "SHORT" => literal(Value::Short(
            v.parse::<i16>().map_err(|_| bad(p, &type_text))?.into(),
        )),
        "BIGINT" | "LONG" => literal(Value::Long(v.parse().map_err(|_| bad(p, &type_text))?)),
        "DOUBLE" => literal(Value::Double(v.parse().map_err(|_| bad(p, &type_text))?)),
        "BOOLEAN" => literal(Value::Boolean(match v.to_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(bad(p, &type_text)),
        })),
        other => {
            if !other
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_(), <>:".contains(c))
            {
                return Err(Error::invalid(format!(
                    "Parameter {} has an invalid type {other:?}.",
                    p.name
                )));
            }
            cast(literal(Value::String(value.clone())), other)
        }
    })
}

/// One value as an encoded engine expression (a positional `?` argument).
pub fn encode(p: &StatementParameter) -> Result<Vec<u8>> {
    Ok(prost::Message::encode_to_vec(&expression(p)?))
}

/// The parameters as the engine's named arguments (encoded expressions).
pub fn bind(parameters: &[StatementParameter]) -> Result<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    for p in parameters {
        if p.name.is_empty()
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Error::invalid(format!(
                "Invalid parameter name {:?}: letters, digits and underscores only.",
                p.name
            )));
        }
        if out
            .insert(
                p.name.clone(),
                prost::Message::encode_to_vec(&expression(p)?),
            )
            .is_some()
        {
            return Err(Error::invalid(format!(
                "Parameter {} is given twice.",
                p.name
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, value: Option<&str>, t: Option<&str>) -> StatementParameter {
        StatementParameter {
            name: name.into(),
            value: value.map(String::from),
            type_: t.map(String::from),
        }
    }

    #[test]
    fn values_are_literals_never_text() -> Result<()> {
        let bound = bind(&[
            p("x", Some("1; DROP TABLE t"), None),
            p("n", Some("7"), Some("INT")),
        ])?;
        let x: Expression = prost::Message::decode(bound["x"].as_slice())
            .map_err(|e| Error::internal("decode", e))?;
        assert_eq!(
            x.literal.and_then(|l| l.value),
            Some(Value::String("1; DROP TABLE t".into()))
        );
        let n: Expression = prost::Message::decode(bound["n"].as_slice())
            .map_err(|e| Error::internal("decode", e))?;
        assert_eq!(n.literal.and_then(|l| l.value), Some(Value::Integer(7)));
        assert!(bind(&[p("n", Some("seven"), Some("INT"))]).is_err());
        assert!(bind(&[p("bad name", Some("1"), None)]).is_err());
        assert!(bind(&[p("d", Some("2024-01-01"), Some("DATE); DROP"))]).is_err());
        let d: Expression = prost::Message::decode(
            bind(&[p("d", Some("2024-01-01"), Some("DATE"))])?["d"].as_slice(),
        )
        .map_err(|e| Error::internal("decode", e))?;
        assert_eq!(d.cast.and_then(|c| c.type_str), Some("DATE".into()));
        Ok(())
    }
}
