//! Helpers shared by the C ABI tests of this crate (`mod common;`).

use std::ffi::{c_char, CStr};

use alloy_ffi::ffi::alloy_string_free;

/// The error text a call wrote into its `err` out-parameter (`None` if it
/// left it NULL), freed with `alloy_string_free` as a C caller must.
///
/// # Safety
/// `err` is NULL or a string the library wrote into an `err`
/// out-parameter that nobody has freed yet; it is freed here, so the
/// caller must not use it afterwards.
pub unsafe fn take_err(err: *mut c_char) -> Option<String> {
    (!err.is_null()).then(|| {
        // SAFETY: the caller passes a NUL-terminated string from the
        // library (see # Safety), freed once below.
        let text = unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: returned by the library, not freed before (# Safety),
        // and not used afterwards.
        unsafe { alloy_string_free(err) };
        text
    })
}
