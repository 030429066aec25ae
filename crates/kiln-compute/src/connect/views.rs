//! Unity Catalog views. The engine's catalog client cannot create or read
//! views, so Kiln keeps them in its catalog and expands them where they are
//! read: a reference to a view in SQL (after `FROM` or `JOIN`, in a `FROM`
//! list) becomes its definition in parentheses, recursively; CTE names
//! shadow views, as they do in Spark.

use super::ddl::{closing, is_word, name_at, tokenize, Token};

/// How deep views may nest in one another (a cycle stops here).
pub const MAX_DEPTH: usize = 16;

/// `CREATE [OR REPLACE] VIEW [IF NOT EXISTS] name [(cols)] [COMMENT '…'] [TBLPROPERTIES (…)] AS query`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreateView {
    pub replace: bool,
    pub if_not_exists: bool,
    pub name: Vec<String>,
    /// Column names given in the view's column list.
    pub columns: Vec<String>,
    /// The `COMMENT` literal as written.
    pub comment: Option<String>,
    pub query: String,
}

/// `DROP VIEW [IF EXISTS] name`.
#[derive(Debug, Clone, PartialEq)]
pub struct DropView {
    pub if_exists: bool,
    pub name: Vec<String>,
}

use super::ddl::Tokens;

/// Answers a name's expanded query when it names a view.
pub type Lookup<'l> = dyn FnMut(&[String]) -> Result<Option<String>, String> + 'l;

/// Answers the fully qualified form of a table name (`None`: leave it).
pub type Qualify<'q> = dyn Fn(&[String]) -> Option<String> + 'q;

pub fn parse_create_view(sql: &str) -> Option<CreateView> {
    let tokens = tokenize(sql)?;
    let mut out = CreateView::default();
    if !is_word(tokens.first(), "CREATE") {
        return None;
    }
    let mut i = 1;
    if is_word(tokens.get(1), "OR") && is_word(tokens.get(2), "REPLACE") {
        out.replace = true;
        i = 3;
    }
    if !is_word(tokens.get(i), "VIEW") {
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
        // `name [COMMENT '…']` entries separated by commas.
        let mut expect_name = true;
        for (token, _, _) in &tokens[i + 1..end] {
            match token {
                Token::Word(w) | Token::Quoted(w) if expect_name => {
                    out.columns.push(w.clone());
                    expect_name = false;
                }
                Token::Punct(',') => expect_name = true,
                _ => {}
            }
        }
        i = end + 1;
    }
    loop {
        match tokens.get(i) {
            Some((Token::Word(w), _, _)) if w.eq_ignore_ascii_case("COMMENT") => {
                match tokens.get(i + 1) {
                    Some((Token::Literal, s, e)) => out.comment = Some(sql[*s..*e].to_string()),
                    _ => return None,
                }
                i += 2;
            }
            Some((Token::Word(w), _, _)) if w.eq_ignore_ascii_case("TBLPROPERTIES") => {
                if !matches!(tokens.get(i + 1), Some((Token::Punct('('), _, _))) {
                    return None;
                }
                i = closing(&tokens, i + 1)? + 1;
            }
            Some((Token::Word(w), _, end)) if w.eq_ignore_ascii_case("AS") => {
                let query = sql[*end..].trim().trim_end_matches(';').trim();
                if query.is_empty() {
                    return None;
                }
                out.query = query.to_string();
                return Some(out);
            }
            _ => return None,
        }
    }
}

pub fn parse_drop_view(sql: &str) -> Option<DropView> {
    let tokens = tokenize(sql)?;
    if !is_word(tokens.first(), "DROP") || !is_word(tokens.get(1), "VIEW") {
        return None;
    }
    let mut i = 2;
    let if_exists = is_word(tokens.get(2), "IF") && is_word(tokens.get(3), "EXISTS");
    if if_exists {
        i = 4;
    }
    let (name, next) = name_at(&tokens, i)?;
    let rest = &tokens[next..];
    let done = rest.is_empty() || (rest.len() == 1 && rest[0].0 == Token::Punct(';'));
    done.then_some(DropView { if_exists, name })
}

/// Words after which a table reference cannot be an alias.
const CLAUSE_WORDS: &[&str] = &[
    "WHERE",
    "JOIN",
    "LEFT",
    "RIGHT",
    "INNER",
    "OUTER",
    "FULL",
    "CROSS",
    "NATURAL",
    "ON",
    "USING",
    "GROUP",
    "ORDER",
    "HAVING",
    "LIMIT",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "MINUS",
    "WINDOW",
    "LATERAL",
    "PIVOT",
    "UNPIVOT",
    "TABLESAMPLE",
    "QUALIFY",
    "CLUSTER",
    "DISTRIBUTE",
    "SORT",
    "ANTI",
    "SEMI",
    "OFFSET",
    "FOR",
    "VERSION",
    "TIMESTAMP",
    "SELECT",
    "WITH",
    "FROM",
];

fn is_clause(word: &str) -> bool {
    CLAUSE_WORDS.iter().any(|c| c.eq_ignore_ascii_case(word))
}

/// Names a statement defines as CTEs (`WITH a AS (…), b (x) AS (…)`).
fn cte_names(tokens: &Tokens) -> Vec<String> {
    let mut names = Vec::new();
    for (i, (token, _, _)) in tokens.iter().enumerate() {
        let (Token::Word(name) | Token::Quoted(name)) = token else {
            continue;
        };
        let leads = i > 0
            && (is_word(tokens.get(i - 1), "WITH")
                || is_word(tokens.get(i - 1), "RECURSIVE")
                || matches!(tokens.get(i - 1), Some((Token::Punct(','), _, _))));
        if !leads {
            continue;
        }
        let mut j = i + 1;
        if matches!(tokens.get(j), Some((Token::Punct('('), _, _))) {
            match closing(tokens, j) {
                Some(end) => j = end + 1,
                None => continue,
            }
        }
        if is_word(tokens.get(j), "AS")
            && matches!(tokens.get(j + 1), Some((Token::Punct('('), _, _)))
        {
            names.push(name.to_lowercase());
        }
    }
    names
}

/// Rewrites `sql` with every view reference replaced by its definition
/// (`lookup` answers a name's definition when it names a view, already
/// expanded). `Ok(None)`: nothing to replace.
pub fn expand_sql(
    sql: &str,
    lookup: &mut Lookup<'_>,
    qualify: Option<&Qualify<'_>>,
) -> Result<Option<String>, String> {
    let Some(tokens) = tokenize(sql) else {
        return Ok(None);
    };
    let ctes = cte_names(&tokens);
    // Per parenthesis depth: inside a FROM list.
    let mut from_list: Vec<bool> = vec![false];
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut changed = false;
    let mut i = 0;
    while i < tokens.len() {
        let (token, _, _) = &tokens[i];
        let depth = from_list.len() - 1;
        let reference_follows = match token {
            Token::Word(w) if w.eq_ignore_ascii_case("FROM") => {
                from_list[depth] = true;
                true
            }
            Token::Word(w) if w.eq_ignore_ascii_case("JOIN") => {
                from_list[depth] = true;
                true
            }
            // A join condition does not end the FROM list (`FROM a JOIN b ON x, c`).
            Token::Word(w)
                if is_clause(w)
                    && !["LATERAL", "ON", "USING"]
                        .iter()
                        .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                from_list[depth] = false;
                false
            }
            Token::Punct(',') => from_list[depth],
            Token::Punct('(') => {
                from_list.push(false);
                false
            }
            Token::Punct(')') => {
                if from_list.len() > 1 {
                    from_list.pop();
                }
                false
            }
            _ => false,
        };
        i += 1;
        if !reference_follows {
            continue;
        }
        let Some((name, next)) = name_at(&tokens, i) else {
            continue;
        };
        let function_call = matches!(tokens.get(next), Some((Token::Punct('('), _, _)));
        let shadowed = name.len() == 1 && ctes.contains(&name[0].to_lowercase());
        if function_call || shadowed {
            i = next;
            continue;
        }
        let Some(definition) = lookup(&name)? else {
            // In a view's own query, a table is the one of the view's schema.
            if let Some(full) = qualify.and_then(|q| q(&name)) {
                out.push_str(&sql[copied..tokens[i].1]);
                out.push_str(&full);
                copied = tokens[next - 1].2;
                changed = true;
            }
            i = next;
            continue;
        };
        let aliased = match tokens.get(next) {
            Some((Token::Word(w), _, _)) => w.eq_ignore_ascii_case("AS") || !is_clause(w),
            Some((Token::Quoted(_), _, _)) => true,
            _ => false,
        };
        let (start, end) = (tokens[i].1, tokens[next - 1].2);
        out.push_str(&sql[copied..start]);
        out.push_str(&super::ddl::subquery(&definition));
        if !aliased {
            out.push_str(" AS ");
            out.push_str(&super::ddl::quote(
                name.last().map(String::as_str).unwrap_or("v"),
            ));
        }
        copied = end;
        changed = true;
        i = next;
    }
    if !changed {
        return Ok(None);
    }
    out.push_str(&sql[copied..]);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(name: &[String]) -> Result<Option<String>, String> {
        let last = name.last().map(|s| s.to_lowercase()).unwrap_or_default();
        Ok(match last.as_str() {
            "v" => Some("SELECT 1 AS a".into()),
            "w" => Some("SELECT 2 AS b".into()),
            _ => None,
        })
    }

    fn expand(sql: &str) -> Option<String> {
        expand_sql(sql, &mut views, None).ok().flatten()
    }

    #[test]
    fn references_become_their_definitions() {
        assert_eq!(
            expand("SELECT * FROM main.default.v").as_deref(),
            Some("SELECT * FROM (\nSELECT 1 AS a\n) AS `v`")
        );
        assert_eq!(
            expand("select * from t join `V` x on 1=1, w where a > 0").as_deref(),
            Some(
                "select * from t join (\nSELECT 1 AS a\n) x on 1=1, (\nSELECT 2 AS b\n) AS `w` where a > 0"
            )
        );
        assert_eq!(
            expand("SELECT (SELECT max(a) FROM v) FROM t").as_deref(),
            Some("SELECT (SELECT max(a) FROM (\nSELECT 1 AS a\n) AS `v`) FROM t")
        );
    }

    #[test]
    fn a_definition_ending_in_a_comment_keeps_its_parenthesis() {
        let mut commented = |name: &[String]| -> Result<Option<String>, String> {
            Ok((name == ["v"]).then(|| "SELECT 1 AS a -- the answer".to_string()))
        };
        let out = expand_sql("SELECT * FROM v WHERE a = 1", &mut commented, None);
        assert_eq!(
            out.ok().flatten().as_deref(),
            Some("SELECT * FROM (\nSELECT 1 AS a -- the answer\n) AS `v` WHERE a = 1")
        );
    }

    #[test]
    fn a_views_query_names_its_own_schemas_tables() {
        let qualify = |name: &[String]| {
            (name.len() < 3).then(|| format!("`c`.`s`.`{}`", name[name.len() - 1]))
        };
        let out = expand_sql(
            "SELECT * FROM t JOIN x.u ON 1 = 1, v",
            &mut views,
            Some(&qualify),
        );
        assert_eq!(
            out.ok().flatten().as_deref(),
            Some("SELECT * FROM `c`.`s`.`t` JOIN `c`.`s`.`u` ON 1 = 1, (\nSELECT 1 AS a\n) AS `v`")
        );
    }

    #[test]
    fn columns_ctes_functions_and_strings_are_not_views() {
        for sql in [
            "SELECT v FROM t",
            "SELECT v.a FROM t AS v",
            "WITH v AS (SELECT 3) SELECT * FROM v",
            "SELECT * FROM range(3) v",
            "SELECT 'FROM v' AS x",
            "SELECT * FROM t WHERE x IN (1, 2)",
            "INSERT INTO TABLE t SELECT 1",
        ] {
            assert_eq!(expand(sql), None, "{sql}");
        }
    }

    #[test]
    fn reads_view_statements() {
        let v = parse_create_view(
            "CREATE OR REPLACE VIEW main.s.v (a COMMENT 'x', `b`) COMMENT 'c' TBLPROPERTIES ('k'='v') AS SELECT 1, 2;",
        );
        let v = v.unwrap_or_default();
        assert!(v.replace && !v.if_not_exists);
        assert_eq!(v.name, vec!["main", "s", "v"]);
        assert_eq!(v.columns, vec!["a", "b"]);
        assert_eq!(v.comment.as_deref(), Some("'c'"));
        assert_eq!(v.query, "SELECT 1, 2");
        assert_eq!(parse_create_view("CREATE TEMP VIEW v AS SELECT 1"), None);
        assert_eq!(
            parse_create_view("CREATE GLOBAL TEMPORARY VIEW v AS SELECT 1"),
            None
        );
        assert_eq!(
            parse_drop_view("drop view if exists `a`.v"),
            Some(DropView {
                if_exists: true,
                name: vec!["a".into(), "v".into()]
            })
        );
        assert_eq!(parse_drop_view("DROP VIEW v CASCADE"), None);
    }
}
