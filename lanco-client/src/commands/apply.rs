use std::path::Path;

use crate::defs;
use crate::error::Result;
use crate::namespace::Namespace;

/// `lanco NS apply FILE`: the file's definitions replace the caller's of
/// the same names; the others stay. A file with any error changes nothing.
pub fn run(ns: &Namespace, file: &Path) -> Result<u8> {
    let new = defs::read_file(file)?;
    defs::update(ns, |mine| {
        let names = new.keys().cloned().collect();
        mine.extend(new);
        Ok(names)
    })?;
    Ok(0)
}
