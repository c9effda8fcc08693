//! The `runnel` binary. Thin: it parses arguments and calls the libraries.

fn main() {
    println!("runnel: not yet built");
}
