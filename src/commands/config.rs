//! `berth config`: the resolved settings of one environment, read from berth.toml, the `BERTH_*`
//! variables and the flags, without touching AWS or Docker (`output/config.rs` shows them).

use crate::error::Error;
use crate::flags::Flags;
use crate::settings::{self, Settings};

pub fn config(flags: &Flags) -> Result<Settings, Error> {
    Ok(settings::load(flags)?)
}
