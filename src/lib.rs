//! sqlguard: SQL text → facts (analysis) → decision (policy) → guarded execution → MCP response.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod analysis;
pub mod audit;
pub mod cli;
pub mod clientconfig;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod execution;
pub mod mcp;
pub mod policy;
pub mod teleport;
