//! clap's side of the library's named enums ([`sslmem::choice::Choice`]): their names, with
//! their help, as a flag's possible values. Shared by both binaries (`sslmem-train` includes
//! this file), since the library itself knows no command line.

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use sslmem::choice::Choice;

/// The value parser of a flag whose values are `T`'s names: `#[arg(value_parser =
/// choice::<Distance>())]`.
pub fn choice<T: Choice + Clone + Send + Sync>() -> impl TypedValueParser<Value = T> {
    let values = T::offered()
        .into_iter()
        .map(|v| PossibleValue::new(v.name()).help(v.help()));
    PossibleValuesParser::new(values).try_map(|name| T::parse(&name))
}
