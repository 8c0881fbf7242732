//! The `rmif` program run as a process against registry members started in the test process:
//! its output for people and machines, its errors, and processes holding sessions that are
//! killed or paused.

mod commands;
mod exit_codes;
mod holders;
mod recipes;
mod support;
