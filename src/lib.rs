//! omdiscd: the openMosix auto-discovery daemon, rewritten.
//!
//! The library holds everything the binary, the tests, the benches and the
//! fuzz targets use; `src/main.rs` only parses the command line and starts it.

pub mod auth;
pub mod child;
pub mod cli;
pub mod config;
pub mod control;
pub mod counters;
pub mod daemon;
pub mod log;
pub mod map;
pub mod mapfile;
pub mod netlink;
pub mod node;
pub mod notify;
mod num;
pub mod procfs;
pub mod rate;
pub mod rng;
pub mod sim;
pub mod staticmap;
pub mod sys;
pub mod udp;
pub mod wire;
