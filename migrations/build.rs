//! `embed_migrations!` reads the `V<n>__*.sql` files at compile time, but cargo does not know
//! about them: without this, adding a migration leaves an incremental build with the old set
//! (a test then fails with "relation … does not exist").
fn main() {
    println!("cargo:rerun-if-changed=.");
}
