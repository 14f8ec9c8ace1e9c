//! Partner-host replication: write-through copies of every client mutation
//! to a partner host (docs/REPLICATION.md).

pub mod ring;
pub mod wire;
