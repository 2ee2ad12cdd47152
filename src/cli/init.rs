//! `replay init`: create the executor's schema ahead of the first run.

use crate::engine::state;
use crate::exit_codes;

use super::args::InitArgs;

pub fn run(args: &InitArgs) -> u8 {
    let target = match args.target.resolve() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_codes::REFUSED;
        }
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("error: cannot start the async runtime");
        return exit_codes::FAILURE;
    };
    let result = runtime.block_on(async {
        let pool = state::connect(&target.database_url).await?;
        state::migrate(&pool).await
    });
    match result {
        Ok(()) => {
            println!("the `replay` schema is ready");
            exit_codes::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit_codes::FAILURE
        }
    }
}
