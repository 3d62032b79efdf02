//! Rebuilds when a migration is added: sqlx's `migrate!` embeds the
//! migrations folder at compile time, and cargo cannot see new files in it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
