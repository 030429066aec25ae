//! Values that users set and Kiln hands to child processes (pip, engines):
//! each is checked for what it claims to be, so that none becomes an option,
//! a path or a setting of Kiln's own.

use kiln_core::{Error, Result};

const VERSION_OPERATORS: &[&str] = &["===", "~=", "==", "!=", "<=", ">=", "<", ">"];

/// A PEP 508 requirement: `name[extra,...] (spec, ...) ; marker`, or a direct
/// reference to a wheel over HTTP(S): `name[extra,...] @ https://…/x.whl`.
pub fn pypi_requirement(value: &str) -> Result<()> {
    let bad = || {
        Error::invalid(format!(
            "Invalid value for field pypi.package: {value:?} is not a PEP 508 requirement \
             (a name, optional [extras], optional version specifiers such as ==1.2 or >=1,<2, optional ; marker)"
        ))
    };
    if value.chars().any(|c| c.is_control()) {
        return Err(bad());
    }
    let (requirement, marker) = match value.split_once(';') {
        Some((r, m)) => (r, Some(m)),
        None => (value, None),
    };
    let requirement = requirement.trim();
    if let Some((named, url)) = requirement.split_once('@') {
        let url = url.trim();
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        let clean = !url.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control());
        let path = url.split(['?', '#']).next().unwrap_or_default();
        if !scheme_ok || !clean || !path.ends_with(".whl") || !url_host_ok(url) {
            return Err(bad());
        }
        return pypi_requirement(named.trim()).map_err(|_| bad());
    }
    let name_end = requirement
        .find(|c: char| !is_name_char(c))
        .unwrap_or(requirement.len());
    if !is_name(&requirement[..name_end]) {
        return Err(bad());
    }
    let mut rest = requirement[name_end..].trim_start();
    if let Some(after) = rest.strip_prefix('[') {
        let close = after.find(']').ok_or_else(bad)?;
        if !after[..close].split(',').all(|e| is_name(e.trim())) {
            return Err(bad());
        }
        rest = after[close + 1..].trim_start();
    }
    let specs = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(rest)
        .trim();
    if !specs.is_empty() && !specs.split(',').all(version_clause) {
        return Err(bad());
    }
    if let Some(marker) = marker {
        let allowed = |c: char| c.is_ascii_alphanumeric() || " ._<>=!~()'\",-".contains(c);
        if marker.trim().is_empty() || !marker.chars().all(allowed) {
            return Err(bad());
        }
    }
    Ok(())
}

/// `http(s)://host[:port]/…` with a host of letters, digits, `.-` (or `[v6]`).
fn url_host_ok(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') || authority.is_empty() {
        return false;
    }
    authority
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
}

/// The PEP 508 direct reference for a wheel URL: `name @ url`, the project
/// name read from the wheel's file name (`name-version-…whl`).
pub fn wheel_url_requirement(url: &str) -> Result<String> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let file = path.rsplit('/').next().unwrap_or_default();
    let name = file
        .strip_suffix(".whl")
        .and_then(|stem| stem.split('-').next())
        .filter(|n| is_name(n))
        .ok_or_else(|| {
            Error::invalid(format!(
                "Invalid value for field uri: {url:?} is not the URL of a wheel (…/name-version-….whl)"
            ))
        })?;
    let requirement = format!("{name} @ {url}");
    pypi_requirement(&requirement).map_err(|_| {
        Error::invalid(format!(
            "Invalid value for field uri: {url:?} is not an http(s) URL of a wheel"
        ))
    })?;
    Ok(requirement)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A project or extra name: letters and digits at both ends, `._-` inside.
fn is_name(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    edge(name.chars().next()) && edge(name.chars().last()) && name.chars().all(is_name_char)
}

fn version_clause(clause: &str) -> bool {
    let clause = clause.trim();
    let Some(op) = VERSION_OPERATORS.iter().find(|op| clause.starts_with(**op)) else {
        return false;
    };
    let version = clause[op.len()..].trim();
    !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '*' | '+' | '!' | '_' | '-'))
}

/// A package index: an `http(s)://` URL without spaces or control characters.
pub fn index_url(value: &str) -> Result<()> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !value.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        _ => Err(Error::invalid(format!(
            "Invalid value for field pypi.repo: {value:?} is not an http(s) URL of a package index"
        ))),
    }
}

/// Each line of a requirements file must be a requirement (or a comment):
/// options (`-r`, `-e`, `--index-url`, …) are refused.
pub fn requirements_file(text: &str) -> Result<()> {
    for (n, line) in text.lines().enumerate() {
        let line = line.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        pypi_requirement(line).map_err(|_| {
            Error::invalid(format!(
                "Invalid value for field requirements: line {} ({line:?}) is not a PEP 508 requirement; options and includes are not allowed",
                n + 1
            ))
        })?;
    }
    Ok(())
}

/// Environment variables Kiln sets for engines (or that change how the
/// engine's own programs load): users may not set these.
const RESERVED_ENV_PREFIXES: &[&str] = &["SAIL_", "KILN_", "LD_", "PYTHON", "SPARK_CONNECT"];
const RESERVED_ENV: &[&str] = &["HOME", "PATH", "USER", "RUST_LOG"];

/// `spark_env_vars`: POSIX names, not reserved, values without NUL.
pub fn spark_env_vars<'a>(vars: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<()> {
    for (name, value) in vars {
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let reserved = RESERVED_ENV.contains(&name.as_str())
            || RESERVED_ENV_PREFIXES.iter().any(|p| name.starts_with(p));
        if !valid_name || reserved || value.contains('\0') {
            return Err(Error::invalid(format!(
                "Invalid value for field spark_env_vars: {name:?} is not a variable users may set (POSIX names; SAIL_*, KILN_*, LD_*, PYTHON*, HOME, PATH, USER are Kiln's)"
            )));
        }
    }
    Ok(())
}

/// `spark_conf`: dotted keys, values without control characters.
pub fn spark_conf<'a>(conf: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<()> {
    for (key, value) in conf {
        let valid_key = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid_key || value.chars().any(|c| c.is_control()) {
            return Err(Error::invalid(format!(
                "Invalid value for field spark_conf: {key:?} must be a dotted key with a value without control characters"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep508_requirements_pass_and_options_do_not() {
        for ok in [
            "simplejson",
            "simplejson==3.19.2",
            "requests[socks,security]>=2.0,<3",
            "numpy (>=1.20)",
            "pandas~=2.1; python_version >= '3.9'",
            "zope.interface",
            "a",
            "x @ https://files.example.com/x-1.0-py3-none-any.whl",
            "x[extra] @ http://127.0.0.1:8000/x-1.0-py3-none-any.whl?token=1",
        ] {
            assert!(pypi_requirement(ok).is_ok(), "{ok}");
        }
        for bad in [
            "--help",
            "-r /etc/passwd",
            "/etc/passwd",
            "./local",
            "x --index-url http://evil",
            "x==1 -e .",
            "-e git+https://x",
            "x\n--pre",
            "",
            "x==",
            "x[",
            "git+https://github.com/a/b",
            "x @ file:///etc/passwd.whl",
            "x @ https://h/x-1.0.tar.gz",
            "x @ https://user:pw@h/x.whl",
            "x @ https://h/x.whl --pre",
            "--pre @ https://h/x.whl",
            "x @ ",
            "x; $(rm -rf /)",
        ] {
            assert!(pypi_requirement(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wheel_urls_become_direct_references() {
        assert_eq!(
            wheel_url_requirement("https://h.example/dl/my_pkg-1.2-py3-none-any.whl").ok(),
            Some("my_pkg @ https://h.example/dl/my_pkg-1.2-py3-none-any.whl".to_string())
        );
        assert!(wheel_url_requirement("https://h/pkg.tar.gz").is_err());
        assert!(wheel_url_requirement("https://h/-1.0.whl").is_err());
        assert!(wheel_url_requirement("https://h/x-1.whl --index-url http://e").is_err());
    }

    #[test]
    fn index_urls_are_http_urls() {
        assert!(index_url("https://pypi.example.com/simple").is_ok());
        assert!(index_url("http://127.0.0.1:9/simple").is_ok());
        for bad in [
            "--trusted-host x",
            "file:///etc",
            "https://",
            "https://a b",
            "ftp://x",
        ] {
            assert!(index_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requirements_files_hold_only_requirements() {
        assert!(requirements_file("# deps\nsimplejson==3.19.2\n\nsix>=1  # comment\n").is_ok());
        for bad in [
            "-r /etc/passwd",
            "six\n--index-url http://x",
            "-e .",
            "--pre",
        ] {
            assert!(requirements_file(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_vars_and_conf_are_checked() {
        let ok = [("MY_VAR".to_string(), "x y".to_string())];
        assert!(spark_env_vars(ok.iter().map(|(a, b)| (a, b))).is_ok());
        for name in [
            "SAIL_MODE",
            "LD_PRELOAD",
            "KILN_X",
            "PYTHONPATH",
            "HOME",
            "1X",
            "A-B",
            "",
        ] {
            let vars = [(name.to_string(), "v".to_string())];
            assert!(
                spark_env_vars(vars.iter().map(|(a, b)| (a, b))).is_err(),
                "{name}"
            );
        }
        let conf = [("spark.sql.shuffle.partitions".to_string(), "4".to_string())];
        assert!(spark_conf(conf.iter().map(|(a, b)| (a, b))).is_ok());
        let conf = [("spark.x".to_string(), "a\nb".to_string())];
        assert!(spark_conf(conf.iter().map(|(a, b)| (a, b))).is_err());
    }
}
