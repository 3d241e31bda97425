//! Health monitoring: per-channel probes, rise/fall, re-probe on passive
//! failures. (Being built: see issue #4.)

pub mod spec;
