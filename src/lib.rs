//! sqlguard: SQL text → facts (analysis) → decision (policy) → guarded execution → MCP response.
#![deny(unsafe_op_in_unsafe_fn)]

/// mimalloc instead of the system allocator, for every binary, test, bench and example built on
/// this crate (feature `mimalloc`, on by default; the fuzz crate leaves it out so that
/// AddressSanitizer sees every allocation). A decision allocates and frees a few hundred small
/// strings and vectors (the facts, the walker's arena, regorus' values): glibc's malloc and free
/// were 13-15 % of an analysis's instructions, and 8 % of a never-seen decision's.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
