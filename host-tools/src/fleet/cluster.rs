//! A Ballista cluster built from this crate: `tinyvae fleet scheduler` and `tinyvae fleet
//! executor` run Ballista's scheduler and executor processes with the fleet's plan codecs
//! ([`super::codec`]), so the executors can run [`super::exec::FleetScoreExec`] and no
//! separate Ballista install is needed.
//!
//! The executors open the model and the archive by the paths in the plan (absolute): run them
//! where those paths are visible (one machine, or a shared file system).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;

use super::codec::{FleetLogicalCodec, FleetPhysicalCodec};

/// Runs a scheduler listening on `host:port` until the process ends.
///
/// # Errors
/// A bad address, a port in use, a scheduler that fails to start.
pub async fn scheduler(host: &str, port: u16) -> Result<()> {
    let config = SchedulerConfig {
        bind_host: host.to_string(),
        external_host: host.to_string(),
        bind_port: port,
        override_logical_codec: Some(Arc::new(FleetLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(FleetPhysicalCodec::default())),
        ..SchedulerConfig::default()
    };
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("--bind {host}:{port}: not an IP address and port"))?;
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| anyhow!("scheduler: {e}"))?;
    eprintln!("fleet scheduler listening on {addr}");
    start_server(cluster, addr, Arc::new(config))
        .await
        .map_err(|e| anyhow!("scheduler {addr}: {e}"))
}

/// How to run an executor.
#[derive(Clone, Debug)]
pub struct ExecutorOpts {
    /// Scheduler host.
    pub scheduler_host: String,
    /// Scheduler port.
    pub scheduler_port: u16,
    /// Address to bind.
    pub bind_host: String,
    /// Flight (data) port.
    pub port: u16,
    /// gRPC (control) port.
    pub grpc_port: u16,
    /// Concurrent tasks (cores) of this executor.
    pub cores: usize,
    /// Memory pool of the executor's tasks, bytes (sorts spill to disk beyond it).
    pub memory_limit: u64,
}

/// Runs an executor until the process ends.
///
/// # Errors
/// A scheduler that cannot be reached, a port in use.
pub async fn executor(o: &ExecutorOpts) -> Result<()> {
    let work = tempfile::Builder::new()
        .prefix("tinyvae-executor.")
        .tempdir()
        .context("creating the executor's work directory")?;
    let config = ExecutorProcessConfig {
        bind_host: o.bind_host.clone(),
        external_host: Some(o.bind_host.clone()),
        port: o.port,
        grpc_port: o.grpc_port,
        scheduler_host: o.scheduler_host.clone(),
        scheduler_port: o.scheduler_port,
        vcores: o.cores,
        work_dir: Some(work.path().to_string_lossy().to_string()),
        memory_pool_size: Some(o.memory_limit),
        print_thread_info: false,
        override_logical_codec: Some(Arc::new(FleetLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(FleetPhysicalCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    eprintln!(
        "fleet executor on {}:{} ({} cores) for scheduler {}:{}",
        o.bind_host, o.port, o.cores, o.scheduler_host, o.scheduler_port
    );
    let r = start_executor_process(Arc::new(config))
        .await
        .map_err(|e| anyhow!("executor: {e}"));
    drop(work);
    r
}
