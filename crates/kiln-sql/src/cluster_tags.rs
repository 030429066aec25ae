//! `SET spark.databricks.clusterUsageTags.<tag>` on an all-purpose cluster's
//! SQL endpoint: the tags Databricks puts in every cluster's Spark settings,
//! answered from Kiln's cluster record (the engine knows none of them).
//! dbt-databricks reads `sparkVersion` this way to learn the runtime's
//! version on a cluster. Other `SET key` statements go to the engine.

use kiln_compute::connect::ddl::literal;
use kiln_store::ClusterRecord;

const PREFIX: &str = "spark.databricks.clusterUsageTags.";

/// The key of a `SET <key>` statement that shows one cluster usage tag.
pub fn parse(sql: &str) -> Option<String> {
    let trimmed = sql.trim().trim_end_matches(';').trim();
    let head = trimmed.get(..4)?;
    if !head.eq_ignore_ascii_case("SET ") {
        return None;
    }
    let key = trimmed[4..].trim().trim_matches('`');
    let tag = key.get(..PREFIX.len())?;
    (tag.eq_ignore_ascii_case(PREFIX) && !key.contains(['=', ' ', '\'', '"'])).then(|| key.into())
}

/// The tag's value for the cluster (`<undefined>`, as Spark shows an unset
/// key, for a tag Kiln does not keep).
pub fn value(record: &ClusterRecord, key: &str) -> String {
    let tag = &key[PREFIX.len().min(key.len())..];
    let config = &record.config;
    match tag.to_ascii_lowercase().as_str() {
        "sparkversion" => config.spark_version.clone(),
        "clusterid" => record.cluster_id.clone(),
        "clustername" => config.cluster_name.clone(),
        "clustercreator" => record.creator.clone(),
        "clusterowneruserid" | "clusterowner" => record.owner.clone(),
        "clustersource" => config.cluster_source.clone(),
        "clusterworkers" => config.num_workers.to_string(),
        "clusternodetype" => config.node_type_id.clone(),
        "driverinstanceid" | "drivernodetype" => config.driver_node_type_id.clone(),
        "autoterminationminutes" => config.autotermination_minutes.to_string(),
        _ => config
            .custom_tags
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(tag))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "<undefined>".into()),
    }
}

/// The query answering `SET key` as Spark does: one row of `key`, `value`.
pub fn answer(key: &str, value: &str) -> String {
    format!(
        "SELECT {} AS key, {} AS value",
        literal(key),
        literal(value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cluster_usage_tags_are_kilns() {
        assert_eq!(
            parse("SET spark.databricks.clusterUsageTags.sparkVersion").as_deref(),
            Some("spark.databricks.clusterUsageTags.sparkVersion")
        );
        assert_eq!(
            parse("set `spark.databricks.clusterUsageTags.clusterId`;").as_deref(),
            Some("spark.databricks.clusterUsageTags.clusterId")
        );
        assert_eq!(parse("SET spark.databricks.clusterUsageTags.x = 1"), None);
        assert_eq!(parse("SET spark.sql.shuffle.partitions"), None);
        assert_eq!(parse("SELECT 1"), None);
    }

    #[test]
    fn the_answer_quotes_what_users_named() {
        assert_eq!(
            answer("k", "it's \\ x"),
            "SELECT 'k' AS key, 'it\\'s \\\\ x' AS value"
        );
    }
}
