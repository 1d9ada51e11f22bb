//! SQL UDF plugins: scalar functions compiled into shared libraries and loaded at run time.
//!
//! A plugin is a `cdylib` crate built with `arroyo-udf-plugin` 0.2 (see `udfs/README.md`). That
//! crate pins arrow 51 and chrono < 0.4.40, so plugins cannot be linked into this workspace
//! (arrow 59, datafusion 55); they are built on their own and called through the C ABI that the
//! `#[udf]` macro generates, with arrays passed over the Arrow C Data Interface, whose struct
//! layouts are the same in every arrow version.
//!
//! # The plugin ABI
//!
//! For a synchronous function `#[udf] fn f(a: A, b: Option<B>) -> R`, `arroyo-udf-macros` 0.2.0
//! keeps `f` as written and exports exactly one symbol, `#[no_mangle] pub extern "C-unwind" fn
//! __run(args: FfiArrays) -> RunResult`. An `async fn` exports `__start`, `__send`,
//! `__drain_results` and `__stop_runtime` instead, and no `__run`. Because the names are fixed, a
//! library holds one UDF. The types come from `arroyo-udf-common` 0.2.1, all `#[repr(C)]`:
//!
//! ```text
//! struct FfiArraySchema(FFI_ArrowArray, FFI_ArrowSchema);   // 80 + 72 = 152 bytes
//! struct FfiArrays { ptr: *mut FfiArraySchema, len: usize, capacity: usize, error: bool } // 32
//! enum RunResult { Ok(FfiArraySchema), Err }   // C layout: u32 tag (Ok = 0, Err = 1), then
//!                                              // the payload at offset 8; 160 bytes
//! ```
//!
//! - **Arguments.** `FfiArrays` is the raw parts of a Rust `Vec<FfiArraySchema>`, one entry per
//!   argument in declaration order. `__run` takes ownership of all of it: it rebuilds the `Vec`
//!   with `Vec::from_raw_parts(ptr, len, capacity)`, so the plugin frees that buffer with *its*
//!   global allocator (Rust's `System` allocator, i.e. `malloc`/`free`, as long as the plugin
//!   sets no `#[global_allocator]`); it imports every array with `arrow::ffi::from_ffi` and drops
//!   arrays and schemas before returning, which calls their `release` callbacks (host code,
//!   freeing host memory). `error` is unused by `__run` (it is the async path's flag).
//! - **Rows.** The batch size is `args[0].len()`; the arguments are zipped row by row, so they
//!   must all have the same length.
//! - **Types.** Rust argument and return types map to Arrow types: `bool` Boolean, `i8`..`i64`
//!   Int8..Int64, `u8`..`u64` UInt8..UInt64, `f32`/`f64` Float32/Float64, `&str` (argument) and
//!   `String` (return) Utf8, `&[u8]`/`Vec<u8>` Binary. The generated code downcasts each argument
//!   with `PrimitiveArray::<T>::from`, `StringArray::from` or `BinaryArray::from`, which panic on
//!   any other type (`Utf8View`, `LargeUtf8`, a dictionary...). `Vec<T>` arguments make an
//!   aggregate, which this host does not call.
//! - **NULLs.** For an argument that is not an `Option`, a NULL in a row skips the call and
//!   appends NULL to the result. `Option` arguments receive `None`. A non-`Option` return value is
//!   wrapped in `Some`; an `Option` return may produce NULLs itself.
//! - **Result.** `RunResult::Ok` holds the result array, exported with `arrow::ffi::to_ffi`: its
//!   `release` callbacks are plugin code, so the library must stay loaded until the result has
//!   been released. `RunResult::Err` reports a panic inside the function (caught by
//!   `catch_unwind`); no message crosses the boundary: the plugin's panic hook prints it to
//!   stderr. Panics outside that `catch_unwind` — importing an argument that is not a valid C
//!   Data Interface array, or calling with zero arguments — unwind out of `__run` into the host,
//!   where they abort (a panic of another Rust runtime cannot be caught).
//! - **Metadata.** The macro exports nothing that names the function or its types (Arroyo itself
//!   keeps the UDF's source next to the library and parses it). Plugins therefore also export
//!   `extern "C" fn fleetstream_udf_signature() -> *const c_char`, written at build time by
//!   `udfs/udf-build` from the `#[udf]` function with the macro's own parser, returning a static
//!   NUL-terminated string such as
//!   `fleetstream-udf/1 airport_surcharge(pickup_lat: Float64?, pickup_lng: Float64?, fare: Float64) -> Float64`
//!   (`?`: the parameter is an `Option`; `fleetstream-udf/1`: this format and the `__run` ABI of
//!   `arroyo-udf-plugin` 0.2).
//!
//! # What the host does
//!
//! [`UdfPlugin::load`] opens the library, reads and checks the signature, and resolves `__run`.
//! [`UdfPlugin::call`] checks the arguments' count, types and lengths (so that nothing can panic
//! outside the plugin's `catch_unwind`), exports them, allocates the argument vector with
//! [`std::alloc::System`] whatever the host's own global allocator is, calls `__run`, validates
//! the result and copies it into host memory before releasing the plugin's arrays, so results
//! never point into a library that may be unloaded. A library is unloaded when its last
//! [`UdfPlugin`] is dropped. [`PluginUdf`] wraps a plugin as a DataFusion scalar function.
//!
//! All `unsafe` code is in the private `abi` module below.

use std::ffi::OsStr;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayData, ArrayRef, make_array, new_empty_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, Result as DataFusionResult, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

/// First word of the signature string: the signature format and the `__run` ABI this host calls.
pub const ABI_TAG: &str = "fleetstream-udf/1";

/// Symbol that returns the signature string.
pub const SIGNATURE_SYMBOL: &str = "fleetstream_udf_signature";

/// Symbol of the function entry point generated by `#[udf]`.
pub const RUN_SYMBOL: &str = "__run";

/// Errors loading or calling a UDF plugin; each names the library and, once known, the function.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot load UDF plugin {path}: {source}")]
    Load {
        path: PathBuf,
        #[source]
        source: libloading::Error,
    },
    #[error("{path} is not a UDF plugin: it exports no `__run` (is it built with `#[udf]`?)")]
    NotAPlugin { path: PathBuf },
    #[error(
        "UDF plugin {path} holds an async UDF (it exports `__start`, not `__run`); only \
         synchronous UDFs are supported"
    )]
    AsyncUdf { path: PathBuf },
    #[error(
        "UDF plugin {path} exports `__run` but not `fleetstream_udf_signature`, so its name and \
         types are unknown; build it with the fleetstream-udf-build helper (udfs/README.md)"
    )]
    MissingSignature { path: PathBuf },
    #[error("UDF plugin {path} has ABI `{found}`; this host calls `{ABI_TAG}` plugins")]
    WrongAbi { path: PathBuf, found: String },
    #[error("UDF plugin {path} has a malformed signature {signature:?}: {reason}")]
    BadSignature {
        path: PathBuf,
        signature: String,
        reason: &'static str,
    },
    #[error("UDF `{function}` in {path}: type `{type_name}` is not supported")]
    UnsupportedType {
        path: PathBuf,
        function: String,
        type_name: String,
    },
    #[error("cannot read UDF plugin directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("UDF `{function}` is defined twice, in {first} and {second}")]
    DuplicateName {
        function: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("UDF `{function}` ({path}) takes {expected} arguments, got {actual}")]
    ArgumentCount {
        path: PathBuf,
        function: String,
        expected: usize,
        actual: usize,
    },
    #[error("UDF `{function}` ({path}): argument {index} must be {expected}, got {actual}")]
    ArgumentType {
        path: PathBuf,
        function: String,
        index: usize,
        expected: DataType,
        actual: DataType,
    },
    #[error("UDF `{function}` ({path}): argument {index} has {actual} rows, expected {expected}")]
    ArgumentLength {
        path: PathBuf,
        function: String,
        index: usize,
        expected: usize,
        actual: usize,
    },
    #[error("UDF `{function}` ({path}) panicked; the plugin printed the message to stderr")]
    Panicked { path: PathBuf, function: String },
    #[error("UDF `{function}` ({path}): cannot pass arrays over the C Data Interface: {source}")]
    Ffi {
        path: PathBuf,
        function: String,
        #[source]
        source: ArrowError,
    },
    #[error("UDF `{function}` ({path}) returned an invalid result: {reason}")]
    InvalidResult {
        path: PathBuf,
        function: String,
        reason: String,
    },
}

/// A loaded UDF plugin: one scalar function.
pub struct UdfPlugin {
    name: String,
    parameter_names: Vec<String>,
    arg_types: Vec<DataType>,
    /// Per argument: whether the function receives NULLs (`Option`) rather than being skipped.
    arg_accepts_null: Vec<bool>,
    return_type: DataType,
    signature: String,
    path: PathBuf,
    library: abi::Library,
}

impl fmt::Debug for UdfPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdfPlugin")
            .field("signature", &self.signature)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl UdfPlugin {
    /// Loads the plugin at `path`.
    ///
    /// Loading runs the library's initialisers: load only libraries you trust, as you would
    /// link them into the process.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PluginError> {
        let path = path.as_ref().to_path_buf();
        let (library, signature) = abi::Library::open(&path)?;
        let parsed = parse_signature(&signature).map_err(|e| match e {
            SignatureError::Abi(found) => PluginError::WrongAbi {
                path: path.clone(),
                found,
            },
            SignatureError::Malformed(reason) => PluginError::BadSignature {
                path: path.clone(),
                signature: signature.clone(),
                reason,
            },
            SignatureError::UnsupportedType { function, type_name } => PluginError::UnsupportedType {
                path: path.clone(),
                function,
                type_name,
            },
        })?;
        Ok(Self {
            name: parsed.name,
            parameter_names: parsed.params.iter().map(|p| p.name.clone()).collect(),
            arg_types: parsed.params.iter().map(|p| p.data_type.clone()).collect(),
            arg_accepts_null: parsed.params.iter().map(|p| p.accepts_null).collect(),
            return_type: parsed.return_type,
            signature,
            path,
            library,
        })
    }

    /// The function's SQL name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parameter names, as written in the plugin's Rust source.
    pub fn parameter_names(&self) -> &[String] {
        &self.parameter_names
    }

    /// The argument types, in order.
    pub fn arg_types(&self) -> &[DataType] {
        &self.arg_types
    }

    /// The result type.
    pub fn return_type(&self) -> &DataType {
        &self.return_type
    }

    /// Whether every NULL argument gives a NULL result without calling the function (no
    /// argument is an `Option`).
    pub fn is_strict(&self) -> bool {
        !self.arg_accepts_null.iter().any(|&accepts| accepts)
    }

    /// The signature string the plugin exports.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// The library the plugin was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls the function on `num_rows` rows.
    ///
    /// Each argument must have exactly the declared type (see [`Self::arg_types`]; no casts are
    /// made here) and `num_rows` rows. The result is a host-owned array of [`Self::return_type`].
    pub fn call(&self, args: &[ArrayRef], num_rows: usize) -> Result<ArrayRef, PluginError> {
        if args.len() != self.arg_types.len() {
            return Err(PluginError::ArgumentCount {
                path: self.path.clone(),
                function: self.name.clone(),
                expected: self.arg_types.len(),
                actual: args.len(),
            });
        }
        for (index, (arg, expected)) in args.iter().zip(&self.arg_types).enumerate() {
            if arg.data_type() != expected {
                return Err(PluginError::ArgumentType {
                    path: self.path.clone(),
                    function: self.name.clone(),
                    index,
                    expected: expected.clone(),
                    actual: arg.data_type().clone(),
                });
            }
            if arg.len() != num_rows {
                return Err(PluginError::ArgumentLength {
                    path: self.path.clone(),
                    function: self.name.clone(),
                    index,
                    expected: num_rows,
                    actual: arg.len(),
                });
            }
        }
        if num_rows == 0 {
            return Ok(new_empty_array(&self.return_type));
        }

        let data: Vec<ArrayData> = args.iter().map(|arg| arg.to_data()).collect();
        match self.library.run(&data, &self.return_type, num_rows) {
            Ok(result) => Ok(make_array(result)),
            Err(abi::RunError::Panicked) => Err(PluginError::Panicked {
                path: self.path.clone(),
                function: self.name.clone(),
            }),
            Err(abi::RunError::Export(source)) => Err(PluginError::Ffi {
                path: self.path.clone(),
                function: self.name.clone(),
                source,
            }),
            Err(abi::RunError::InvalidResult(reason)) => Err(PluginError::InvalidResult {
                path: self.path.clone(),
                function: self.name.clone(),
                reason,
            }),
        }
    }
}

/// Loads every plugin (`*.so` on Linux, `*.dylib` on macOS, `*.dll` on Windows) in `dir`, in
/// file name order. Fails on the first library that does not load, and when two libraries
/// define the same function name.
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Vec<UdfPlugin>, PluginError> {
    let dir = dir.as_ref();
    let read_error = |source| PluginError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path.extension() == Some(OsStr::new(std::env::consts::DLL_EXTENSION)) && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();

    let mut plugins: Vec<UdfPlugin> = Vec::with_capacity(paths.len());
    for path in paths {
        let plugin = UdfPlugin::load(&path)?;
        if let Some(first) = plugins.iter().find(|p| p.name == plugin.name) {
            return Err(PluginError::DuplicateName {
                function: plugin.name,
                first: first.path.clone(),
                second: path,
            });
        }
        plugins.push(plugin);
    }
    Ok(plugins)
}

/// A [`UdfPlugin`] as a DataFusion scalar function:
/// `ctx.register_udf(ScalarUDF::new_from_impl(PluginUdf::new(plugin)))`.
///
/// Arguments are coerced to the plugin's exact types by DataFusion's planner (a `Decimal128`
/// column or an integer literal for a `Float64` parameter) and cast at run time if a physical type
/// still differs (`Utf8View` for `Utf8`). Named arguments use the Rust parameter names.
#[derive(Debug, Clone)]
pub struct PluginUdf {
    plugin: Arc<UdfPlugin>,
    signature: Signature,
}

impl PluginUdf {
    /// Wraps `plugin` as a [`Volatility::Volatile`] function: DataFusion calls it for every row
    /// and never folds it into a constant. Use [`Self::with_volatility`] for pure functions.
    pub fn new(plugin: impl Into<Arc<UdfPlugin>>) -> Self {
        Self::with_volatility(plugin, Volatility::Volatile)
    }

    /// Wraps `plugin` with the given volatility; a pure function (the same result for the same
    /// arguments) can be [`Volatility::Immutable`], which lets DataFusion evaluate it once for
    /// constant arguments.
    pub fn with_volatility(plugin: impl Into<Arc<UdfPlugin>>, volatility: Volatility) -> Self {
        let plugin = plugin.into();
        let exact = Signature::exact(plugin.arg_types.clone(), volatility);
        // Parameter names are unique Rust identifiers, one per argument; should DataFusion still
        // refuse them, the function just lacks named-argument calls.
        let signature = exact
            .clone()
            .with_parameter_names(plugin.parameter_names.clone())
            .unwrap_or(exact);
        Self { plugin, signature }
    }

    /// The wrapped plugin.
    pub fn plugin(&self) -> &UdfPlugin {
        &self.plugin
    }
}

impl PartialEq for PluginUdf {
    fn eq(&self, other: &Self) -> bool {
        self.plugin.name == other.plugin.name
            && self.plugin.path == other.plugin.path
            && self.signature == other.signature
    }
}

impl Eq for PluginUdf {}

impl Hash for PluginUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.plugin.name.hash(state);
        self.plugin.path.hash(state);
        self.signature.hash(state);
    }
}

impl ScalarUDFImpl for PluginUdf {
    fn name(&self) -> &str {
        &self.plugin.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DataFusionResult<DataType> {
        Ok(self.plugin.return_type.clone())
    }

    fn is_strict(&self) -> bool {
        self.plugin.is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DataFusionResult<ColumnarValue> {
        let constant = self.signature.volatility != Volatility::Volatile
            && args
                .args
                .iter()
                .all(|arg| matches!(arg, ColumnarValue::Scalar(_)));
        let num_rows = if constant { 1 } else { args.number_rows };

        let arrays = args
            .args
            .iter()
            .zip(&self.plugin.arg_types)
            .map(|(arg, expected)| {
                let array = arg.to_array(num_rows)?;
                if array.data_type() == expected {
                    Ok(array)
                } else {
                    Ok(cast(&array, expected)?)
                }
            })
            .collect::<DataFusionResult<Vec<_>>>()?;

        let result = self
            .plugin
            .call(&arrays, num_rows)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        if constant {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?))
        } else {
            Ok(ColumnarValue::Array(result))
        }
    }
}

/// A parsed signature string.
#[derive(Debug, PartialEq)]
struct ParsedSignature {
    name: String,
    params: Vec<Param>,
    return_type: DataType,
}

#[derive(Debug, PartialEq)]
struct Param {
    name: String,
    data_type: DataType,
    accepts_null: bool,
}

#[derive(Debug, PartialEq)]
enum SignatureError {
    Abi(String),
    Malformed(&'static str),
    UnsupportedType { function: String, type_name: String },
}

/// Parses `fleetstream-udf/1 NAME(PARAM: TYPE, ...) -> TYPE`.
fn parse_signature(signature: &str) -> Result<ParsedSignature, SignatureError> {
    use SignatureError::Malformed;

    let (tag, rest) = signature.split_once(' ').unwrap_or((signature, ""));
    if tag != ABI_TAG {
        return Err(SignatureError::Abi(tag.to_owned()));
    }
    let (name, rest) = rest.split_once('(').ok_or(Malformed("no `(`"))?;
    let (params, return_type) = rest.split_once(") -> ").ok_or(Malformed("no `) -> `"))?;
    let name = name.trim();
    if !is_identifier(name) {
        return Err(Malformed("the function name is not an identifier"));
    }

    let data_type = |type_name: &str| {
        let (base, accepts_null) = match type_name.strip_suffix('?') {
            Some(base) => (base, true),
            None => (type_name, false),
        };
        let data_type = arrow_type(base).ok_or_else(|| SignatureError::UnsupportedType {
            function: name.to_owned(),
            type_name: type_name.to_owned(),
        })?;
        Ok((data_type, accepts_null))
    };

    let mut parsed_params = Vec::new();
    for param in params.split(',') {
        let (param_name, type_name) = param
            .split_once(':')
            .ok_or(Malformed("a parameter is not `NAME: TYPE`"))?;
        let param_name = param_name.trim();
        if !is_identifier(param_name) {
            return Err(Malformed("a parameter name is not an identifier"));
        }
        if parsed_params.iter().any(|p: &Param| p.name == param_name) {
            return Err(Malformed("two parameters have the same name"));
        }
        let (data_type, accepts_null) = data_type(type_name.trim())?;
        parsed_params.push(Param {
            name: param_name.to_owned(),
            data_type,
            accepts_null,
        });
    }
    let (return_type, _) = data_type(return_type.trim())?;
    Ok(ParsedSignature {
        name: name.to_owned(),
        params: parsed_params,
        return_type,
    })
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// The Arrow types `#[udf]` functions take and return.
fn arrow_type(name: &str) -> Option<DataType> {
    Some(match name {
        "Boolean" => DataType::Boolean,
        "Int8" => DataType::Int8,
        "Int16" => DataType::Int16,
        "Int32" => DataType::Int32,
        "Int64" => DataType::Int64,
        "UInt8" => DataType::UInt8,
        "UInt16" => DataType::UInt16,
        "UInt32" => DataType::UInt32,
        "UInt64" => DataType::UInt64,
        "Float32" => DataType::Float32,
        "Float64" => DataType::Float64,
        "Utf8" => DataType::Utf8,
        "Binary" => DataType::Binary,
        _ => return None,
    })
}

/// The C ABI of `arroyo-udf-plugin` 0.2 and everything `unsafe` about calling it.
#[allow(unsafe_code)]
mod abi {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::ffi::{CStr, c_char};
    use std::path::Path;

    use datafusion::arrow::array::{ArrayData, MutableArrayData};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::arrow::error::ArrowError;
    use datafusion::arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi, to_ffi};

    use super::PluginError;

    /// `arroyo_udf_common::FfiArraySchema`.
    #[repr(C)]
    struct FfiArraySchema(FFI_ArrowArray, FFI_ArrowSchema);

    /// `arroyo_udf_common::FfiArrays`: the raw parts of a `Vec<FfiArraySchema>`.
    #[repr(C)]
    struct FfiArrays {
        ptr: *mut FfiArraySchema,
        len: usize,
        capacity: usize,
        error: bool,
    }

    /// `arroyo_udf_common::RunResult`.
    #[repr(C)]
    #[allow(dead_code, reason = "constructed by the plugin")]
    enum RunResult {
        Ok(FfiArraySchema),
        Err,
    }

    type RunFn = unsafe extern "C-unwind" fn(FfiArrays) -> RunResult;
    type SignatureFn = unsafe extern "C" fn() -> *const c_char;

    // The plugin was compiled against arrow 51 and arroyo-udf-common 0.2.1; these are their sizes
    // there (C Data Interface structs and `#[repr(C)]` layout rules make them version-proof).
    #[cfg(target_pointer_width = "64")]
    const _: () = {
        assert!(size_of::<FFI_ArrowArray>() == 80);
        assert!(size_of::<FFI_ArrowSchema>() == 72);
        assert!(size_of::<FfiArraySchema>() == 152);
        assert!(size_of::<FfiArrays>() == 32);
        assert!(size_of::<RunResult>() == 160);
    };

    /// Why a call produced no result.
    pub(super) enum RunError {
        /// The function panicked (`RunResult::Err`).
        Panicked,
        /// An argument could not be exported.
        Export(ArrowError),
        /// The result did not import, or is not what the signature promises.
        InvalidResult(String),
    }

    /// An open plugin library and its `__run`.
    pub(super) struct Library {
        run: RunFn,
        // Keeps `run` and the release callbacks of the plugin's arrays mapped.
        _library: libloading::Library,
    }

    impl Library {
        /// Opens the library at `path`, returning it with its signature string.
        pub(super) fn open(path: &Path) -> Result<(Self, String), PluginError> {
            // SAFETY: loading a library runs its initialisers; plugins are trusted code, chosen
            // by whoever configures the plugin directory (see `UdfPlugin::load`).
            let library = unsafe { libloading::Library::new(path) }.map_err(|source| PluginError::Load {
                path: path.to_path_buf(),
                source,
            })?;

            // SAFETY: `__run` is exported by `#[udf]` of arroyo-udf-plugin 0.2 with exactly the
            // type `RunFn` (see the module docs); the signature string's ABI tag, checked by the
            // caller before any call, confirms the plugin was built that way.
            let run = match unsafe { library.get::<RunFn>(b"__run\0") } {
                Ok(run) => *run,
                Err(_) => {
                    // SAFETY: only whether the symbol exists is looked at; it is never used.
                    let is_async = unsafe { library.get::<*const ()>(b"__start\0") }.is_ok();
                    let path = path.to_path_buf();
                    return Err(if is_async {
                        PluginError::AsyncUdf { path }
                    } else {
                        PluginError::NotAPlugin { path }
                    });
                }
            };

            // SAFETY: `fleetstream_udf_signature` is generated by udfs/udf-build with exactly the
            // type `SignatureFn`.
            let signature_fn = match unsafe { library.get::<SignatureFn>(b"fleetstream_udf_signature\0") } {
                Ok(signature_fn) => *signature_fn,
                Err(_) => {
                    return Err(PluginError::MissingSignature {
                        path: path.to_path_buf(),
                    });
                }
            };
            // SAFETY: the generated function takes no arguments and returns a pointer to a
            // static, NUL-terminated C string literal inside the library, which is still loaded;
            // it is copied before the library can be unloaded.
            let signature = unsafe { CStr::from_ptr(signature_fn()) };
            let signature = signature
                .to_str()
                .map_err(|_| PluginError::BadSignature {
                    path: path.to_path_buf(),
                    signature: signature.to_string_lossy().into_owned(),
                    reason: "not UTF-8",
                })?
                .to_owned();

            Ok((
                Self {
                    run,
                    _library: library,
                },
                signature,
            ))
        }

        /// Calls `__run` on `args` and returns its result, copied into host memory.
        ///
        /// The caller guarantees what `__run` cannot check without panicking outside its
        /// `catch_unwind`: `args` is not empty, and every argument has the plugin's declared type
        /// and `num_rows` rows.
        pub(super) fn run(
            &self,
            args: &[ArrayData],
            return_type: &DataType,
            num_rows: usize,
        ) -> Result<ArrayData, RunError> {
            assert!(!args.is_empty(), "#[udf] functions take at least one argument");

            // Export everything first: once the argument vector is allocated nothing may fail
            // before `__run` owns it.
            let exported = args
                .iter()
                .map(|data| to_ffi(data).map(|(array, schema)| FfiArraySchema(array, schema)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(RunError::Export)?;

            let len = exported.len();
            let layout = Layout::array::<FfiArraySchema>(len)
                .map_err(|e| RunError::Export(ArrowError::MemoryError(e.to_string())))?;
            // SAFETY: `layout` has a non-zero size: `len > 0` and `FfiArraySchema` is not
            // zero-sized. `System` is what the plugin's `Vec::from_raw_parts` frees with.
            let ptr = unsafe { System.alloc(layout) }.cast::<FfiArraySchema>();
            if ptr.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            for (i, item) in exported.into_iter().enumerate() {
                // SAFETY: `ptr` is a fresh, suitably aligned allocation for `len` elements and
                // `i < len`; each slot is written once.
                unsafe { ptr.add(i).write(item) };
            }
            let arrays = FfiArrays {
                ptr,
                len,
                capacity: len,
                error: false,
            };

            // SAFETY: `run` is the plugin's `__run` (see `open`). It takes ownership of `arrays`
            // (the buffer was allocated for exactly `capacity` elements by the allocator it frees
            // with) and of each exported array and schema, whose release callbacks are host code.
            // The caller checked argument count, types and lengths, so the plugin's unchecked
            // imports cannot panic outside its `catch_unwind`.
            let result = unsafe { (self.run)(arrays) };

            let FfiArraySchema(array, schema) = match result {
                RunResult::Ok(result) => result,
                RunResult::Err => return Err(RunError::Panicked),
            };
            // SAFETY: the plugin exported `array` and `schema` with arrow's `to_ffi`, so they are
            // valid C Data Interface structs; their release callbacks are plugin code, and the
            // library stays loaded while `self` is borrowed, longer than `imported` lives.
            let imported =
                unsafe { from_ffi(array, &schema) }.map_err(|e| RunError::InvalidResult(e.to_string()))?;
            if imported.data_type() != return_type {
                return Err(RunError::InvalidResult(format!(
                    "type {}, expected {return_type}",
                    imported.data_type()
                )));
            }
            if imported.len() != num_rows {
                return Err(RunError::InvalidResult(format!(
                    "{} rows, expected {num_rows}",
                    imported.len()
                )));
            }
            imported
                .validate_full()
                .map_err(|e| RunError::InvalidResult(e.to_string()))?;

            // Copy into host buffers, so that dropping `imported` (and `schema`) here hands the
            // plugin's memory back to it while it is certainly still loaded.
            let mut copy = MutableArrayData::new(vec![&imported], false, num_rows);
            copy.try_extend(0, 0, num_rows)
                .map_err(|e| RunError::InvalidResult(e.to_string()))?;
            Ok(copy.freeze())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_generated_signature() {
        let parsed = parse_signature(
            "fleetstream-udf/1 airport_surcharge(pickup_lat: Float64?, pickup_lng: Float64?, \
             fare: Float64) -> Float64",
        )
        .unwrap();
        assert_eq!(parsed.name, "airport_surcharge");
        let params: Vec<_> = parsed
            .params
            .iter()
            .map(|p| (p.name.as_str(), p.data_type.clone(), p.accepts_null))
            .collect();
        assert_eq!(
            params,
            [
                ("pickup_lat", DataType::Float64, true),
                ("pickup_lng", DataType::Float64, true),
                ("fare", DataType::Float64, false),
            ]
        );
        assert_eq!(parsed.return_type, DataType::Float64);

        let parsed = parse_signature("fleetstream-udf/1 label(class: Utf8, n: Int64) -> Utf8?").unwrap();
        assert_eq!(parsed.return_type, DataType::Utf8);
    }

    #[test]
    fn rejects_other_abis_and_types() {
        assert_eq!(
            parse_signature("fleetstream-udf/2 f(x: Int64) -> Int64"),
            Err(SignatureError::Abi("fleetstream-udf/2".into()))
        );
        assert_eq!(
            parse_signature("fleetstream-udf/1 f(x: Timestamp) -> Int64"),
            Err(SignatureError::UnsupportedType {
                function: "f".into(),
                type_name: "Timestamp".into()
            })
        );
        assert!(matches!(
            parse_signature("fleetstream-udf/1 f(x Int64) -> Int64"),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            parse_signature("fleetstream-udf/1 f() -> Int64"),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            parse_signature("fleetstream-udf/1 f(x: Int64, x: Int64) -> Int64"),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn load_names_the_file_that_is_not_a_plugin() {
        let dir = std::env::temp_dir().join(format!("fleetstream-plugins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("not_a_library.so");
        std::fs::write(&fake, b"plain text").unwrap();

        let err = UdfPlugin::load(&fake).unwrap_err();
        assert!(matches!(err, PluginError::Load { .. }), "{err}");
        assert!(err.to_string().contains("not_a_library.so"), "{err}");
        let err = load_dir(&dir).unwrap_err();
        assert!(matches!(err, PluginError::Load { .. }), "{err}");

        std::fs::remove_file(&fake).unwrap();
        assert!(load_dir(&dir).unwrap().is_empty());
        std::fs::remove_dir(&dir).unwrap();

        let err = load_dir(&dir).unwrap_err();
        assert!(matches!(err, PluginError::ReadDir { .. }), "{err}");
    }
}
