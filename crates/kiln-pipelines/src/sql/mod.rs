//! DLT SQL: tokenizer, statement model and parser.

mod body;
mod flows;
pub mod lexer;
pub mod model;
pub mod parser;
#[cfg(test)]
mod tests;

pub use model::*;
pub use parser::parse;
