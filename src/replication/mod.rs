//! Partner-host replication (write-through copies of every mutation).
//! Not built yet: see the replication issue.
