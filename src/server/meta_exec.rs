//! Executes meta commands (mg, ms, md, ma, me). Placeholder until the meta
//! protocol work lands.

use super::exec::{emit, Env, Next};
use crate::protocol::{meta::MetaCommand, Ctx, ErrorKind, Response};

pub fn execute(_m: &MetaCommand<'_>, ctx: &Ctx, _env: &Env<'_>, out: &mut Vec<u8>) -> Next {
    emit(ctx, Response::Error(ErrorKind::UnknownCommand), out);
    Next::Continue
}
