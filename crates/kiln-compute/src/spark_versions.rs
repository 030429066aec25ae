//! The Databricks runtime versions Kiln answers to.

use kiln_core::{Error, Result};

/// The runtime of a cluster that names none (pipelines, job clusters without one).
pub const DEFAULT_SPARK_VERSION: &str = "16.4.x-scala2.12";

/// Databricks runtime versions Kiln answers to; all run on the Sail engine.
pub const SPARK_VERSIONS: &[(&str, &str)] = &[
    (
        "19.3.x-scala2.13",
        "19.3 (includes Apache Spark 4.1.0, Scala 2.13) on Kiln Sail 0.7.2",
    ),
    (
        "18.3.x-scala2.13",
        "18.3 LTS (includes Apache Spark 4.0.0, Scala 2.13) on Kiln Sail 0.7.2",
    ),
    (
        "17.3.x-scala2.13",
        "17.3 LTS (includes Apache Spark 4.0.0, Scala 2.13) on Kiln Sail 0.7.2",
    ),
    (
        "16.4.x-scala2.12",
        "16.4 LTS (includes Apache Spark 3.5.2, Scala 2.12) on Kiln Sail 0.7.2",
    ),
    (
        "15.4.x-scala2.12",
        "15.4 LTS (includes Apache Spark 3.5.0, Scala 2.12) on Kiln Sail 0.7.2",
    ),
    (
        "14.3.x-scala2.12",
        "14.3 LTS (includes Apache Spark 3.5.0, Scala 2.12) on Kiln Sail 0.7.2",
    ),
    (
        "13.3.x-scala2.12",
        "13.3 LTS (includes Apache Spark 3.4.1, Scala 2.12) on Kiln Sail 0.7.2",
    ),
];

/// Accepts the listed keys and the other Databricks runtime keys of the same
/// form (`<major>.<minor>.x[-variant]-scala2.1x`), which all run on Sail.
pub fn validate_spark_version(key: &str) -> Result<()> {
    if SPARK_VERSIONS.iter().any(|(k, _)| *k == key) {
        return Ok(());
    }
    let mut parts = key.splitn(3, '.');
    let major_ok = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let minor_ok = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let rest_ok = parts.next().is_some_and(|p| {
        p.starts_with("x-") && (p.ends_with("-scala2.12") || p.ends_with("-scala2.13"))
    });
    if major_ok && minor_ok && rest_ok {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "Invalid spark version {key}. Use one of the keys listed by clusters/spark-versions, e.g. 16.4.x-scala2.12."
    )))
}
