//! Build-script helper for fleetstream UDF plugins.
//!
//! The `#[udf]` macro of `arroyo-udf-plugin` 0.2 exports only the entry point `__run`; nothing in
//! the compiled plugin says what the function is called or which types it takes. This crate closes
//! that gap: called from a plugin's `build.rs`, it reads the `#[udf]` function in `src/lib.rs`
//! with the parser the macro itself uses (`arroyo_udf_common::parse::ParsedUdf`) and writes
//! `$OUT_DIR/fleetstream_udf.rs`, which the plugin includes. That file exports
//!
//! ```text
//! extern "C" fn fleetstream_udf_signature() -> *const c_char
//! ```
//!
//! returning a static, NUL-terminated UTF-8 string such as
//!
//! ```text
//! fleetstream-udf/1 airport_surcharge(pickup_lat: Float64?, pickup_lng: Float64?, fare: Float64) -> Float64
//! ```
//!
//! Grammar: `fleetstream-udf/1 NAME(PARAM: TYPE, ...) -> TYPE`, where `PARAM` is the Rust parameter
//! name (`argN` for a pattern that is not a plain name) and `TYPE` is one of `Boolean`, `Int8`,
//! `Int16`, `Int32`, `Int64`, `UInt8`, `UInt16`, `UInt32`, `UInt64`, `Float32`, `Float64`, `Utf8`,
//! `Binary`, followed by `?` when the Rust type is an `Option` (the function sees SQL NULLs; without
//! `?` the generated code returns NULL for a NULL argument without calling the function). The tag
//! `fleetstream-udf/1` stands for this format together with the `__run` ABI of
//! `arroyo-udf-plugin` 0.2.
//!
//! Usage, in the plugin's `build.rs`:
//!
//! ```no_run
//! fn main() {
//!     fleetstream_udf_build::generate();
//! }
//! ```
//!
//! and in its `src/lib.rs`: `include!(concat!(env!("OUT_DIR"), "/fleetstream_udf.rs"));`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use arrow_schema::DataType;
use arroyo_udf_common::parse::{NullableType, ParsedUdf};
use syn::ext::IdentExt;

/// First word of every signature string: the signature format and the `__run` ABI it goes with.
pub const ABI_TAG: &str = "fleetstream-udf/1";

/// Name of the exported function that returns the signature string.
pub const SIGNATURE_SYMBOL: &str = "fleetstream_udf_signature";

/// Name of the file written to `OUT_DIR`.
pub const GENERATED_FILE: &str = "fleetstream_udf.rs";

/// Writes `$OUT_DIR/fleetstream_udf.rs` for the `#[udf]` function in the package's `src/lib.rs`.
///
/// Meant to be called from `build.rs`; panics, failing the build, with a message that names the
/// problem (no `#[udf]` function, several of them, or a type the host cannot call).
pub fn generate() {
    let manifest_dir = env_path("CARGO_MANIFEST_DIR");
    let source = manifest_dir.join("src").join("lib.rs");
    println!("cargo:rerun-if-changed={}", source.display());

    let generated = fs::read_to_string(&source)
        .map_err(|e| format!("cannot read {}: {e}", source.display()))
        .and_then(|code| signature_of(&code))
        .map(|signature| generated_code(&signature))
        .unwrap_or_else(|e| panic!("fleetstream UDF plugin {}: {e}", source.display()));

    let out = env_path("OUT_DIR").join(GENERATED_FILE);
    if let Err(e) = fs::write(&out, generated) {
        panic!("cannot write {}: {e}", out.display());
    }
}

/// The signature string of the single `#[udf]` function at the top level of `source`.
pub fn signature_of(source: &str) -> Result<String, String> {
    let file = syn::parse_file(source).map_err(|e| format!("cannot parse the source: {e}"))?;
    let mut udfs = file.items.iter().filter_map(|item| match item {
        syn::Item::Fn(function) if has_udf_attribute(function) => Some(function),
        _ => None,
    });
    let function = udfs
        .next()
        .ok_or("no #[udf] function at the top level of the file")?;
    if let Some(other) = udfs.next() {
        return Err(format!(
            "found #[udf] functions `{}` and `{}`; a plugin holds exactly one, because the \
             macro's export names are fixed",
            function.sig.ident, other.sig.ident
        ));
    }

    let parsed = ParsedUdf::try_parse(function).map_err(|e| e.to_string())?;
    let name = &parsed.name;
    if parsed.udf_type.is_async() {
        return Err(format!("`{name}` is async; the host calls synchronous UDFs only"));
    }
    if parsed.vec_arguments > 0 {
        return Err(format!(
            "`{name}` takes Vec<_> arguments (an aggregate UDF); the host calls scalar UDFs only"
        ));
    }
    if parsed.args.is_empty() {
        return Err(format!(
            "`{name}` takes no arguments; the #[udf] macro needs at least one"
        ));
    }

    let args = parsed
        .args
        .iter()
        .zip(parameter_names(function))
        .enumerate()
        .map(|(i, (arg, param))| match type_name(arg) {
            Ok(ty) => Ok(format!("{param}: {ty}")),
            Err(e) => Err(format!("`{name}` argument {i} (`{param}`): {e}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ret = type_name(&parsed.ret_type).map_err(|e| format!("`{name}` return type: {e}"))?;
    Ok(format!("{ABI_TAG} {name}({}) -> {ret}", args.join(", ")))
}

fn has_udf_attribute(function: &syn::ItemFn) -> bool {
    function
        .attrs
        .iter()
        .any(|attr| attr.path().segments.last().is_some_and(|s| s.ident == "udf"))
}

fn parameter_names(function: &syn::ItemFn) -> impl Iterator<Item = String> + '_ {
    function.sig.inputs.iter().enumerate().map(|(i, arg)| match arg {
        syn::FnArg::Typed(typed) => match typed.pat.as_ref() {
            syn::Pat::Ident(pat) => pat.ident.unraw().to_string(),
            _ => format!("arg{i}"),
        },
        syn::FnArg::Receiver(_) => format!("arg{i}"),
    })
}

fn type_name(ty: &NullableType) -> Result<String, String> {
    let name = match &ty.data_type {
        DataType::Boolean => "Boolean",
        DataType::Int8 => "Int8",
        DataType::Int16 => "Int16",
        DataType::Int32 => "Int32",
        DataType::Int64 => "Int64",
        DataType::UInt8 => "UInt8",
        DataType::UInt16 => "UInt16",
        DataType::UInt32 => "UInt32",
        DataType::UInt64 => "UInt64",
        DataType::Float32 => "Float32",
        DataType::Float64 => "Float64",
        DataType::Utf8 => "Utf8",
        DataType::Binary => "Binary",
        other => {
            return Err(format!(
                "type {other} is not supported by synchronous #[udf] functions; use bool, \
                 i8..i64, u8..u64, f32, f64, &str/String, &[u8]/Vec<u8> or an Option of one"
            ));
        }
    };
    Ok(if ty.nullable {
        format!("{name}?")
    } else {
        name.to_owned()
    })
}

fn generated_code(signature: &str) -> String {
    format!(
        "// Generated by fleetstream-udf-build from the #[udf] function in src/lib.rs.\n\
         \n\
         /// Describes this plugin's UDF to the fleetstream host: `{signature}`.\n\
         #[unsafe(no_mangle)]\n\
         pub extern \"C\" fn {SIGNATURE_SYMBOL}() -> *const ::std::ffi::c_char {{\n    \
             c{signature:?}.as_ptr()\n\
         }}\n"
    )
}

fn env_path(var: &str) -> PathBuf {
    match env::var_os(var) {
        Some(value) => Path::new(&value).to_path_buf(),
        None => panic!("{var} is not set; call fleetstream_udf_build::generate() from build.rs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_arguments_and_nullability() {
        let source = r#"
            use arroyo_udf_plugin::udf;

            fn helper(x: f64) -> f64 { x }

            #[udf]
            fn surcharge(lat: Option<f64>, r#type: &str, (fare): f64) -> Option<String> { None }
        "#;
        assert_eq!(
            signature_of(source).unwrap(),
            "fleetstream-udf/1 surcharge(lat: Float64?, type: Utf8, arg2: Float64) -> Utf8?"
        );
    }

    #[test]
    fn rejects_what_the_host_cannot_call() {
        let none = "fn f(x: i64) -> i64 { x }";
        assert!(signature_of(none).unwrap_err().contains("no #[udf]"));

        let two = "#[udf] fn a(x: i64) -> i64 { x } #[udf] fn b(x: i64) -> i64 { x }";
        assert!(signature_of(two).unwrap_err().contains("exactly one"));

        let aggregate = "#[udf] fn total(xs: Vec<i64>) -> i64 { 0 }";
        assert!(signature_of(aggregate).unwrap_err().contains("aggregate"));

        let asynchronous = "#[udf] async fn slow(x: i64) -> i64 { x }";
        assert!(signature_of(asynchronous).unwrap_err().contains("async"));

        let time = "#[udf] fn at(t: std::time::SystemTime) -> i64 { 0 }";
        assert!(signature_of(time).unwrap_err().contains("not supported"));
    }

    #[test]
    fn generated_code_exports_a_c_string() {
        let code = generated_code("fleetstream-udf/1 f(Int64) -> Int64");
        assert!(code.contains("pub extern \"C\" fn fleetstream_udf_signature()"));
        assert!(code.contains("c\"fleetstream-udf/1 f(Int64) -> Int64\".as_ptr()"));
    }
}
