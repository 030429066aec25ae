//! What job settings name, looked up where it lives: the clusters, pipelines,
//! jobs, Unity Catalog volumes and tables, notification destinations and SQL
//! warehouses the settings checks (`settings`, `task_settings`) ask about.

use crate::service::Jobs;
use crate::task_settings::Lookups;

impl Lookups for Jobs {
    fn cluster_exists(&self, cluster_id: &str) -> bool {
        self.clusters.get(cluster_id).is_ok()
    }
    fn pipeline_exists(&self, pipeline_id: &str) -> bool {
        self.pipelines.get(pipeline_id).is_ok()
    }
    fn job_exists(&self, job_id: i64) -> bool {
        self.get(job_id).is_ok()
    }
    fn volume_exists(&self, full_name: &str) -> bool {
        self.catalog.get_volume(full_name).is_ok()
    }
    fn table_exists(&self, full_name: &str) -> bool {
        self.catalog.get_table(full_name).is_ok()
    }
    fn destination_exists(&self, id: &str) -> bool {
        self.destinations.exists(id)
    }
    fn warehouse_exists(&self, id: &str) -> bool {
        self.statements.warehouses.exists(id)
    }
}
