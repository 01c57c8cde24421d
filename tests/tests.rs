//! The integration tests: one binary, one module per part of the pipeline.

mod support;

mod analysis;
mod approval;
mod audit;
mod cache;
mod catalog;
mod cli;
mod clientconfig;
mod doctor;
mod evaluator;
mod execution;
mod http;
mod live_catalog;
mod masking;
mod mcp;
mod oracle;
mod plan;
mod policy;
mod raw_tree;
mod security_team;
mod shape;
mod teleport;
