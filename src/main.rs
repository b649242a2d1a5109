use clap::Parser;

fn main() {
    let cli = ironrack::cli::Cli::parse();
    ironrack::util::install_crypto_provider();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ironrack: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = rt.block_on(ironrack::cli::run(cli));
    // Do not wait for background session tasks still closing.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(code);
}
