//! Plan codecs for Ballista: how a [`FleetScoreTable`] (in the logical plan the client sends
//! the scheduler) and a [`FleetScoreExec`] (in the tasks the scheduler sends the executors)
//! cross the wire. Each is a tag and the node's JSON; everything else goes to Ballista's own
//! codecs. The scheduler and the executors must use these codecs, which is why they are run
//! from this crate (`tinyvae fleet scheduler` / `tinyvae fleet executor`, [`super::cluster`]).

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};

use super::exec::FleetScoreExec;
use super::spec::ScoreSpec;
use super::table::FleetScoreTable;

const TABLE_TAG: &[u8] = b"tinyvae-fleet-table\0";
const EXEC_TAG: &[u8] = b"tinyvae-fleet-exec\0";

#[derive(Serialize, Deserialize)]
struct TableWire {
    spec: ScoreSpec,
    archive: std::path::PathBuf,
    channels: Vec<String>,
    labels: bool,
}

#[derive(Serialize, Deserialize)]
struct ExecWire {
    spec: ScoreSpec,
    labels: bool,
    in_order: bool,
}

fn json_err(e: serde_json::Error) -> DataFusionError {
    DataFusionError::Internal(format!("fleet plan codec: {e}"))
}

/// The logical codec: [`FleetScoreTable`], then Ballista's.
#[derive(Debug, Default)]
pub struct FleetLogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for FleetLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.strip_prefix(TABLE_TAG) {
            Some(json) => {
                let w: TableWire = serde_json::from_slice(json).map_err(json_err)?;
                Ok(Arc::new(FleetScoreTable::new(
                    w.spec, w.archive, w.channels, w.labels,
                )))
            }
            None => self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        match node.downcast_ref::<FleetScoreTable>() {
            Some(t) => {
                buf.extend_from_slice(TABLE_TAG);
                serde_json::to_writer(
                    &mut *buf,
                    &TableWire {
                        spec: t.spec.clone(),
                        archive: t.archive.clone(),
                        channels: t.channels.clone(),
                        labels: t.labels,
                    },
                )
                .map_err(json_err)
            }
            None => self.inner.try_encode_table_provider(table_ref, node, buf),
        }
    }
}

/// The physical codec: [`FleetScoreExec`], then Ballista's.
#[derive(Debug, Default)]
pub struct FleetPhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for FleetPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match buf.strip_prefix(EXEC_TAG) {
            Some(json) => {
                let w: ExecWire = serde_json::from_slice(json).map_err(json_err)?;
                let [input] = inputs else {
                    return Err(DataFusionError::Internal(
                        "FleetScoreExec has one input".into(),
                    ));
                };
                Ok(Arc::new(FleetScoreExec::new(
                    w.spec,
                    w.labels,
                    w.in_order,
                    input.clone(),
                )))
            }
            None => self.inner.try_decode(buf, inputs, ctx, proto_converter),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        match node.downcast_ref::<FleetScoreExec>() {
            Some(e) => {
                buf.extend_from_slice(EXEC_TAG);
                serde_json::to_writer(
                    &mut *buf,
                    &ExecWire {
                        spec: e.spec.clone(),
                        labels: e.labels,
                        in_order: e.in_order,
                    },
                )
                .map_err(json_err)
            }
            None => self.inner.try_encode(node, buf, proto_converter),
        }
    }
}
