//! The machine clusters run on, as Kiln reports it (a cluster's one node).

/// What Kiln reports of the host a cluster runs on.
#[derive(Debug, Clone, Copy)]
pub struct HostInfo {
    pub cores: f64,
    pub memory_mb: u64,
    /// The size of the filesystem holding the data dir (the clusters' local disk).
    pub disk_gb: u64,
}

impl HostInfo {
    pub fn detect(data_dir: &std::path::Path) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0);
        let memory_mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map(|kb| kb / 1024)
            .unwrap_or(0);
        Self {
            cores,
            memory_mb,
            disk_gb: kiln_core::process::disk_size_gb(data_dir),
        }
    }
}
