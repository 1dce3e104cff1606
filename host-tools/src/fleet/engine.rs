//! The engines that run a fleet job: DataFusion in this process (`--partitions` tasks, a memory
//! pool past which sorts spill to disk) or a Ballista cluster (`--engine ballista://HOST:PORT`,
//! whose scheduler and executors are `tinyvae fleet scheduler` / `executor`); and the job's
//! outputs: the window table as Parquet files (one per output partition, written as the
//! batches arrive) and the per-device summary.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::arrow::array::RecordBatch;
use datafusion::execution::context::SessionContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::SessionConfig;
use futures::StreamExt;

use super::codec::{FleetLogicalCodec, FleetPhysicalCodec};

/// Where a job runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Engine {
    /// DataFusion in this process.
    Local {
        /// Concurrent tasks (DataFusion's target partitions).
        partitions: usize,
        /// Memory pool, bytes.
        memory_limit: usize,
    },
    /// A Ballista cluster: the scheduler's `ballista://HOST:PORT`.
    Ballista {
        /// The scheduler's URL.
        url: String,
        /// Tasks the job is split into (target partitions).
        partitions: usize,
    },
}

impl Engine {
    /// `--engine` (`local` or `ballista://HOST:PORT`) with `--partitions` and `--memory-limit`.
    ///
    /// # Errors
    /// Another engine, a partition count or memory limit of 0.
    pub fn parse(engine: &str, partitions: usize, memory_mb: usize) -> Result<Self> {
        if partitions == 0 {
            bail!("--partitions 0: at least 1");
        }
        if memory_mb == 0 {
            bail!("--memory-limit 0: at least 1 (MB)");
        }
        if engine == "local" {
            Ok(Self::Local {
                partitions,
                memory_limit: memory_mb << 20,
            })
        } else if let Some(rest) = engine.strip_prefix("ballista://") {
            if rest.is_empty() {
                bail!("--engine {engine}: expected ballista://HOST:PORT");
            }
            Ok(Self::Ballista {
                url: engine.to_string(),
                partitions,
            })
        } else {
            bail!("--engine {engine:?}: expected local or ballista://HOST:PORT")
        }
    }

    /// A session on this engine.
    ///
    /// # Errors
    /// A scheduler that cannot be reached.
    pub async fn context(&self) -> Result<SessionContext> {
        match self {
            Self::Local {
                partitions,
                memory_limit,
            } => local_context(*partitions, *memory_limit),
            Self::Ballista { url, partitions } => {
                let config = SessionConfig::new_with_ballista()
                    .with_target_partitions(*partitions)
                    .with_ballista_logical_extension_codec(Arc::new(FleetLogicalCodec::default()))
                    .with_ballista_physical_extension_codec(
                        Arc::new(FleetPhysicalCodec::default()),
                    );
                let state = SessionStateBuilder::new()
                    .with_config(config)
                    .with_default_features()
                    .build();
                SessionContext::remote_with_state(url, state)
                    .await
                    .with_context(|| format!("--engine {url}: cannot reach the scheduler"))
            }
        }
    }
}

/// A DataFusion session in this process: `partitions` tasks, a memory pool of `memory_limit`
/// bytes (sorts spill to the OS temporary directory past it).
///
/// # Errors
/// A runtime that cannot be built.
pub fn local_context(partitions: usize, memory_limit: usize) -> Result<SessionContext> {
    let cfg = SessionConfig::new()
        .with_target_partitions(partitions)
        .with_batch_size(8192);
    let rt = RuntimeEnvBuilder::new()
        .with_memory_limit(memory_limit, 1.0)
        .build_arc()?;
    Ok(SessionContext::new_with_config_rt(cfg, rt))
}

/// Rows per row group of the outputs: a writer buffers one row group, so this bounds the
/// memory of writing a window table however many windows it has.
pub const OUTPUT_ROWS_PER_GROUP: usize = 65_536;

/// Parquet writer settings of the outputs.
pub fn writer_props() -> Result<WriterProperties> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_max_row_group_row_count(Some(OUTPUT_ROWS_PER_GROUP))
        .build())
}

/// Writes each stream to `dir/part-{i}.parquet` as its batches arrive (all streams polled
/// concurrently); returns the rows written.
///
/// # Errors
/// A failed task or write.
pub async fn write_streams(streams: Vec<SendableRecordBatchStream>, dir: &Path) -> Result<u64> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let jobs = streams.into_iter().enumerate().map(|(i, mut s)| {
        let path = dir.join(format!("part-{i}.parquet"));
        async move {
            let file = std::fs::File::create(&path)
                .with_context(|| format!("{}: cannot create", path.display()))?;
            let mut w = ArrowWriter::try_new(file, s.schema(), Some(writer_props()?))?;
            let mut rows = 0u64;
            while let Some(b) = s.next().await {
                let b = b?;
                rows += b.num_rows() as u64;
                w.write(&b)
                    .with_context(|| format!("{}: cannot write", path.display()))?;
            }
            w.close()
                .with_context(|| format!("{}: cannot write", path.display()))?;
            anyhow::Ok(rows)
        }
    });
    let rows = futures::future::try_join_all(jobs).await?;
    Ok(rows.iter().sum())
}

/// Writes `batches` as one Parquet file.
///
/// # Errors
/// A failed write.
pub fn write_batches(path: &Path, batches: &[RecordBatch]) -> Result<()> {
    let Some(first) = batches.first() else {
        bail!("{}: nothing to write", path.display());
    };
    let file = std::fs::File::create(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    let mut w = ArrowWriter::try_new(file, first.schema(), Some(writer_props()?))?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(())
}

/// The per-device summary of the window table in `windows` (a directory of Parquet files):
/// windows, windows with the alarm on, alarms raised, skipped windows (no score: non-finite
/// samples or gaps), flagged windows (scored, with a saturated or stuck channel), score
/// quantiles (DataFusion's t-digest `approx_percentile_cont`, so memory stays bounded) and the
/// exact minimum and maximum; one row per device, sorted by device.
///
/// # Errors
/// A failed query.
pub async fn device_summary(windows: &Path) -> Result<Vec<RecordBatch>> {
    let ctx = local_context(1, 256 << 20)?;
    let dir: PathBuf = std::path::absolute(windows)?;
    ctx.register_parquet(
        "w",
        &format!("{}/", dir.display()),
        datafusion::prelude::ParquetReadOptions::default(),
    )
    .await?;
    let q = "SELECT device,
            count(*) AS windows,
            sum(CASE WHEN alarm THEN 1 ELSE 0 END) AS alarm_windows,
            sum(CASE WHEN event = 'raised' THEN 1 ELSE 0 END) AS alarms_raised,
            sum(CASE WHEN score IS NULL THEN 1 ELSE 0 END) AS skipped,
            sum(CASE WHEN score IS NOT NULL AND faults IS NOT NULL THEN 1 ELSE 0 END) AS flagged,
            min(score) AS score_min,
            approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY score) AS score_p50,
            approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY score) AS score_p90,
            approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY score) AS score_p99,
            max(score) AS score_max
        FROM w GROUP BY device ORDER BY device";
    Ok(ctx.sql(q).await?.collect().await?)
}
