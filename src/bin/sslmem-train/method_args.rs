//! `--method` and every method's hyperparameter flags, made from the library's registry
//! (`sslmem::train::methods::METHODS`), so a new method's flags appear without a line here.
//! Each flag reads `SSLMEM_TRAIN_<FLAG>` too, and defaults to the literature's value.

use std::collections::BTreeMap;

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};

use sslmem::error::{Error, Result};
use sslmem::recipe::MethodConfig;
use sslmem::train::methods::{self, Param, METHODS};

/// The chosen method and the values of its flags (`#[command(flatten)]` it into a
/// subcommand's arguments).
#[derive(Clone, Debug)]
pub struct MethodArgs {
    /// One of the registry's names.
    pub name: String,
    /// The chosen method's hyperparameters, by record field.
    values: BTreeMap<&'static str, f64>,
}

const METHOD: &str = "method";

/// `SSLMEM_TRAIN_` then the flag upper-cased, `_` for `-`: `--ema-base` reads
/// `SSLMEM_TRAIN_EMA_BASE`.
fn env(flag: &str) -> String {
    format!("SSLMEM_TRAIN_{}", value_name(flag))
}

/// As clap's derive names a value: `--ema-base <EMA_BASE>`.
fn value_name(flag: &str) -> String {
    flag.to_uppercase().replace('-', "_")
}

/// The flag of one hyperparameter: its help says what it is, its range and where its
/// default comes from.
fn param_arg(p: &'static Param) -> Arg {
    Arg::new(p.flag)
        .long(p.flag)
        .env(env(p.flag))
        .value_name(value_name(p.flag))
        .value_parser(clap::value_parser!(f64))
        .allow_negative_numbers(true)
        .default_value(p.default.to_string())
        .help(format!(
            "{}. Must be {}; default from {}",
            p.help, p.range, p.source
        ))
}

impl MethodArgs {
    /// The chosen method with its flags' values, checked.
    ///
    /// Errors: [`Error::Param`] naming the flag of a value out of range.
    pub fn config(&self) -> Result<MethodConfig> {
        methods::spec(&self.name)?.config(|p| {
            self.values
                .get(p.field)
                .copied()
                .ok_or_else(|| Error::Param(format!("--{} was not read", p.flag)))
        })
    }
}

impl Args for MethodArgs {
    fn augment_args(cmd: Command) -> Command {
        let names = METHODS
            .iter()
            .map(|m| PossibleValue::new(m.name).help(m.about));
        let method = Arg::new(METHOD)
            .long(METHOD)
            .env("SSLMEM_TRAIN_METHOD")
            .value_name("METHOD")
            .default_value(METHODS[0].name)
            .value_parser(PossibleValuesParser::new(names))
            .help("The self-supervised method (the library's registry: sslmem::train::methods)");
        METHODS
            .iter()
            .flat_map(|m| m.params)
            .fold(cmd.arg(method), |cmd, p| cmd.arg(param_arg(p)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for MethodArgs {
    /// Keeps the chosen method's values. A flag of another method given on the command line
    /// is refused (it would do nothing); one set through its environment variable is ignored,
    /// since the environment may hold settings for several runs.
    fn from_arg_matches(m: &ArgMatches) -> std::result::Result<Self, clap::Error> {
        let wrong = |e: clap::parser::MatchesError| clap::Error::raw(ErrorKind::InvalidValue, e);
        let name = m
            .try_get_one::<String>(METHOD)
            .map_err(wrong)?
            .cloned()
            .unwrap_or_else(|| METHODS[0].name.into());
        let mut values = BTreeMap::new();
        for spec in METHODS {
            for p in spec.params {
                if spec.name == name {
                    if let Some(&v) = m.try_get_one::<f64>(p.flag).map_err(wrong)? {
                        values.insert(p.field, v);
                    }
                } else if m.value_source(p.flag) == Some(ValueSource::CommandLine) {
                    return Err(clap::Error::raw(
                        ErrorKind::ArgumentConflict,
                        format!(
                            "--{} is a hyperparameter of {}, and the method is {name}: drop it, \
                             or choose --method {}",
                            p.flag, spec.name, spec.name
                        ),
                    ));
                }
            }
        }
        Ok(Self { name, values })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> std::result::Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}
