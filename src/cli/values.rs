//! The library's closed sets as command-line values: clap lists them in
//! `--help` and refuses anything else, naming the valid ones.

use clap::builder::PossibleValue;
use clap::ValueEnum;

use crate::policy::Profile;
use crate::schedule::StageState;

impl ValueEnum for StageState {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
}

impl ValueEnum for Profile {
    fn value_variants<'a>() -> &'a [Self] {
        &[Profile::None, Profile::Amazon]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
}
