//! Fault injection: nothing is lost and nothing is sent twice.
//!
//! Each scenario drives the real `followupd` binary against the real SMTP
//! server (tests/support/smtp_server.py, aiosmtpd), injects one kind of
//! fault (SIGKILL mid-run, SMTP faults, permanent refusals, a day-long
//! outage, a full or read-only disk, a concurrent import, hostile files and
//! hostile order data), and then [`invariants::check_invariants`] proves the
//! invariants with SQL over the database and the server's received.jsonl and
//! attempts.jsonl. Property tests (proptest) fuzz the importer, the schedule
//! and the lint in-process. docs/reliability.md lists the scenarios and the
//! figures of the last runs.
//!
//! Sizes are small by default; `FOLLOWUPD_FAULTS_FULL=1` runs the long
//! variants. `FOLLOWUPD_FAULTS_SEED=N` repeats the random choices (every
//! scenario prints its seed); `FOLLOWUPD_FAULTS_REPORT=FILE` appends each
//! scenario's figures to FILE as one JSON line.

#[macro_use]
#[path = "../common/mod.rs"]
pub mod common;

mod db;
mod harness;
mod invariants;

mod s1_sigkill;
mod s2_smtp_faults;
mod s3_refusals;
mod s4_outage;
mod s5_disk;
mod s6_concurrent_import;
mod s7_bad_files;
mod s8_hostile_data;

mod fuzz;
