//! Helpers shared by the C ABI tests of this crate (`mod common;`).

use std::ffi::{c_char, CStr};

use alloy_ffi::ffi::alloy_string_free;

/// The error text a call wrote into its `err` out-parameter (`None` if it
/// left it NULL), freed with `alloy_string_free` as a C caller must.
pub fn take_err(err: *mut c_char) -> Option<String> {
    (!err.is_null()).then(|| {
        // SAFETY: a NUL-terminated string from the library, freed once below.
        let text = unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: returned by the library and not used afterwards.
        unsafe { alloy_string_free(err) };
        text
    })
}
