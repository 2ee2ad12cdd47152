//! `replay schema`: print or write the plan JSON Schema.

use crate::exit_codes;
use crate::plan::schema;

use super::args::SchemaArgs;

pub fn run(args: &SchemaArgs) -> u8 {
    let text = schema::json_schema_text();
    match &args.out {
        None => {
            print!("{text}");
            exit_codes::SUCCESS
        }
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => exit_codes::SUCCESS,
            Err(err) => {
                eprintln!("error: cannot write `{}`: {err}", path.display());
                exit_codes::FAILURE
            }
        },
    }
}
