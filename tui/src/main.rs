//! mmt-tui: the live on-call console (placeholder until issue #3 lands).

fn main() {
    eprintln!("mmt-tui: the console is not built yet (issue #3)");
    std::process::exit(2);
}
