//! Fleet scale (feature `fleet`): Parquet archives of many devices scored and calibrated on
//! Apache DataFusion, distributed with Apache Ballista, each device's windows exactly what
//! `tinyvae score` (and the chip) computes on that device's stream.
//!
//! - [`archive`]: the archive layout and `fleet convert`;
//! - [`generate`]: a seeded fleet replaying the bundled recordings;
//! - [`scan`]: a Hive-partitioned archive read device by device, without a sort;
//! - [`spec`], [`rows`], [`schema`], [`exec`], [`table`]: the scoring operator;
//! - [`codec`], [`cluster`]: Ballista's plan codecs, scheduler and executor;
//! - [`engine`], [`job`]: sessions, outputs, the score and calibrate jobs.

pub mod archive;
pub mod cluster;
pub mod codec;
pub mod engine;
pub mod exec;
pub mod generate;
pub mod job;
pub mod rows;
pub mod scan;
pub mod schema;
pub mod spec;
pub mod table;
