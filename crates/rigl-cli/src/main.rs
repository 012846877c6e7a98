//! The `rigl` command-line tool: train, eval, count and bench sparse networks.

fn main() {
    println!(
        "rigl {}: subcommands train, eval, count and bench are not built yet",
        env!("CARGO_PKG_VERSION")
    );
}
