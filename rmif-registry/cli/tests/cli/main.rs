//! The `rmif` program run as a process against registry members started in the test process:
//! its output for people and machines, its errors, failing fast or announcing its retries when
//! members are down, and processes holding sessions that are killed or paused.

mod commands;
mod exit_codes;
mod fail_fast;
mod holders;
mod recipes;
mod support;
