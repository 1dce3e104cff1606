//! [`FleetScoreExec`]: the DataFusion operator that runs the library's streaming detector over
//! every device of its input partition.
//!
//! It asks the engine for what the detector needs and nothing more: its input hash-partitioned
//! on `device` (all of a device's samples in one task) and sorted by `(device, t)` within each
//! partition (DataFusion's `EnforceDistribution` / `EnforceSorting` insert the repartition and
//! the sort, which spills to disk under the session's memory limit). Each task then reads its
//! partition one batch at a time on a blocking thread, runs [`crate::stream::run_rows`] (the
//! code of `tinyvae score`) device after device with a fresh detector each, and sends the window
//! rows ([`super::schema`]) downstream in batches of [`BATCH`] rows through a channel of two
//! batches: a task holds one input batch, one window and two output batches.
//!
//! The per-window scoring is whatever `HostModel` does (`crate::model`): a faster kernel there
//! speeds this up without a change here.

use std::fmt;
use std::sync::Arc;

use anyhow::anyhow;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::col;
use datafusion::physical_expr::{
    Distribution, EquivalenceProperties, LexRequirement, OrderingRequirements, PhysicalExpr,
    PhysicalSortRequirement,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::SinkExt;

use super::rows::Batches;
use super::schema::{window_schema, WindowBatch};
use super::spec::{ScoreSpec, Scorer};
use crate::stream;

/// Window rows per output batch.
pub const BATCH: usize = 8192;

/// Scores every device of its input (see the module doc).
#[derive(Debug)]
pub struct FleetScoreExec {
    /// The job's options.
    pub spec: ScoreSpec,
    /// Whether the input has a `label` column (the output then has one too).
    pub labels: bool,
    /// Whether the input is a scan that already gives each task whole devices in `(device, t)`
    /// order ([`super::scan`]): the operator then asks the engine for nothing (no repartition,
    /// no sort) and checks the order as it reads.
    pub in_order: bool,
    input: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
}

impl FleetScoreExec {
    /// Scores `input` (with columns `device`, `t`, the model's channels, optionally `label`).
    pub fn new(
        spec: ScoreSpec,
        labels: bool,
        in_order: bool,
        input: Arc<dyn ExecutionPlan>,
    ) -> Self {
        let schema = window_schema(labels);
        let n = input.output_partitioning().partition_count();
        let props = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(n),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            spec,
            labels,
            in_order,
            input,
            schema,
            props: Arc::new(props),
        }
    }

    fn device_t(&self) -> Result<(Arc<dyn PhysicalExpr>, Arc<dyn PhysicalExpr>)> {
        let s = self.input.schema();
        Ok((col("device", &s)?, col("t", &s)?))
    }
}

impl DisplayAs for FleetScoreExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "FleetScoreExec: model={}", self.spec.model.display())
    }
}

fn ext(e: anyhow::Error) -> DataFusionError {
    DataFusionError::External(format!("{e:#}").into())
}

impl ExecutionPlan for FleetScoreExec {
    fn name(&self) -> &str {
        "FleetScoreExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        if self.in_order {
            return vec![Distribution::UnspecifiedDistribution];
        }
        match self.device_t() {
            Ok((d, _)) => vec![Distribution::KeyPartitioned(vec![d])],
            Err(_) => vec![Distribution::SinglePartition],
        }
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        if self.in_order {
            return vec![None];
        }
        let Ok((d, t)) = self.device_t() else {
            return vec![None];
        };
        let req = LexRequirement::new([
            PhysicalSortRequirement::new(d, None),
            PhysicalSortRequirement::new(t, None),
        ]);
        vec![req.map(OrderingRequirements::new)]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // An in-order scan must not be split or re-dealt (a device would be cut in two).
        vec![!self.in_order]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("FleetScoreExec has one input".into()))?;
        Ok(Arc::new(Self::new(
            self.spec.clone(),
            self.labels,
            self.in_order,
            input,
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let spec = self.spec.clone();
        let labels = self.labels;
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<_>>(2);
        tokio::task::spawn_blocking(move || {
            let mut err_tx = tx.clone();
            if let Err(e) = score_partition(&spec, labels, input, &mut tx) {
                let _ = futures::executor::block_on(err_tx.send(Err(ext(e))));
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            rx,
        )))
    }
}

type Tx = futures::channel::mpsc::Sender<Result<datafusion::arrow::array::RecordBatch>>;

/// Scores one partition, device after device, sending the window rows to `tx`.
fn score_partition(
    spec: &ScoreSpec,
    labels: bool,
    input: SendableRecordBatchStream,
    tx: &mut Tx,
) -> anyhow::Result<()> {
    let scorer = Scorer::new(spec)?;
    let model = scorer.model();
    let ck = &scorer.loaded.ck.config;
    let channels = scorer.channels().to_vec();
    let mut batches = Batches::new(input, &channels);
    if batches.has_labels != labels {
        return Err(anyhow!(
            "archive: the label column changed between plan and run"
        ));
    }
    let mut out = WindowBatch::new(labels);
    let mut send = |out: &mut WindowBatch| -> anyhow::Result<()> {
        let b = out.finish()?;
        futures::executor::block_on(tx.send(Ok(b)))
            .map_err(|_| anyhow!("fleet score: the consumer went away"))
    };
    while let Some(device) = batches.next_device()? {
        let cfg = scorer.config(Some(&device))?;
        let mut rows = batches.device(device.clone(), ck.window);
        stream::run_rows(model, ck, &mut rows, &cfg, |src, row| {
            let label = labels.then(|| src.any_label(row.report.start, row.report.end));
            out.push(&device, &row, label, &channels);
            if out.len() >= BATCH {
                send(&mut out)?;
            }
            Ok(())
        })?;
    }
    if !out.is_empty() {
        send(&mut out)?;
    }
    Ok(())
}
