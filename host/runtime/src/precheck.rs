//! A cheap look at a component's shape before it is compiled.
//!
//! Compiling a component with Cranelift cannot be interrupted: once
//! `wasmtime::component::Component::new` starts, it runs until every function of every
//! core module is compiled, however long that takes and however much memory it needs.
//! Instantiation has the same problem in another form: every core instance of a module
//! with a memory gets its own linear memory. A plugin file with a hundred thousand
//! functions, or a thousand core instances, would stall (or exhaust) the host before any
//! per-plugin limit could apply.
//!
//! So before compiling, [`check`] walks the binary with `wasmparser`'s streaming
//! [`Parser`] (no validation, no compilation; the compile validates later) and counts
//! what the component holds: core modules, functions, code and data bytes, core and
//! component instances, at every nesting depth. A component over any of the
//! [`ShapeLimits`] is refused with a [`ShapeError`] naming the figure, its value, the
//! limit and the `[limits]` key that raises it. The walk stops at the first figure over
//! its limit, so a hostile component costs no more than reading up to that point.

use wasmparser::{Encoding, Parser, Payload};

/// Limits a component must meet before it is compiled.
///
/// Each figure is a total over the whole component, nested modules and components at
/// any depth included (see [`Shape`] for what each counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeLimits {
    /// The largest component file, in bytes (`limits.max_component_mib`, which sets it in
    /// MiB).
    pub max_component_bytes: u64,
    /// The most core modules (`limits.max_modules`).
    pub max_modules: u64,
    /// The most defined functions, over all core modules (`limits.max_functions`).
    pub max_functions: u64,
    /// The most bytes of code sections, over all core modules (`limits.max_code_bytes`).
    pub max_code_bytes: u64,
    /// The most bytes of data sections, over all core modules (`limits.max_data_bytes`).
    pub max_data_bytes: u64,
    /// The most core instances (`limits.max_core_instances`).
    pub max_core_instances: u64,
    /// The most component instances (`limits.max_component_instances`).
    pub max_component_instances: u64,
}

/// What the component holds (totals over every nested module/component, at any depth).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// Size of the whole component file, in bytes.
    pub bytes: u64,
    /// Core modules (a core module given in place of a component counts as one).
    pub modules: u64,
    /// Functions defined by core modules: entries of their code sections (imported
    /// functions do not count).
    pub functions: u64,
    /// Bytes of the core modules' code sections (the function bodies).
    pub code_bytes: u64,
    /// Bytes of the core modules' data sections (the data segments).
    pub data_bytes: u64,
    /// Entries of core instance sections: each `instantiate` of a core module and each
    /// instance made from exports counts.
    pub core_instances: u64,
    /// Entries of component instance sections: each `instantiate` of a component and
    /// each instance made from exports counts.
    pub component_instances: u64,
    /// Memories defined (not imported) by core modules. Not limited here: each core
    /// instance of a module defining a memory makes one linear memory.
    pub memories: u64,
    /// Tables defined (not imported) by core modules. Not limited here.
    pub tables: u64,
}

/// Why a component was refused (Display: one line naming the figure, its value and the
/// limit, and the `[limits]` key that raises it, e.g. "defines 40000 functions, over the
/// limit of 20000 (limits.max_functions)").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// The file is larger than [`ShapeLimits::max_component_bytes`] (set in MiB by
    /// `limits.max_component_mib`); it was not parsed.
    #[error("is {bytes} bytes, over the limit of {limit} bytes (limits.max_component_mib)")]
    TooLarge {
        /// Size of the file, in bytes.
        bytes: u64,
        /// The limit it is over.
        limit: u64,
    },
    /// A running total went over its limit; the walk stopped there, so `found` is the
    /// total when it was noticed, not necessarily the component's full figure.
    #[error("defines {found} {what}, over the limit of {limit} ({key})")]
    OverLimit {
        /// The figure, as a plural noun phrase ("functions", "bytes of code", ...).
        what: &'static str,
        /// Its value when the walk stopped.
        found: u64,
        /// The limit it is over.
        limit: u64,
        /// The `[limits]` key that raises the limit, e.g. `limits.max_functions`.
        key: &'static str,
    },
    /// The binary could not be parsed (wasmparser's message).
    #[error("is not a well-formed WebAssembly component: {0}")]
    Malformed(String),
}

/// How a limited figure is named in a [`ShapeError::OverLimit`].
struct Figure {
    /// The figure as a plural noun phrase.
    what: &'static str,
    /// The `[limits]` key that raises its limit.
    key: &'static str,
}

/// [`Shape::modules`], limited by [`ShapeLimits::max_modules`].
const MODULES: Figure = Figure {
    what: "core modules",
    key: "limits.max_modules",
};
/// [`Shape::functions`], limited by [`ShapeLimits::max_functions`].
const FUNCTIONS: Figure = Figure {
    what: "functions",
    key: "limits.max_functions",
};
/// [`Shape::code_bytes`], limited by [`ShapeLimits::max_code_bytes`].
const CODE_BYTES: Figure = Figure {
    what: "bytes of code",
    key: "limits.max_code_bytes",
};
/// [`Shape::data_bytes`], limited by [`ShapeLimits::max_data_bytes`].
const DATA_BYTES: Figure = Figure {
    what: "bytes of data",
    key: "limits.max_data_bytes",
};
/// [`Shape::core_instances`], limited by [`ShapeLimits::max_core_instances`].
const CORE_INSTANCES: Figure = Figure {
    what: "core instances",
    key: "limits.max_core_instances",
};
/// [`Shape::component_instances`], limited by [`ShapeLimits::max_component_instances`].
const COMPONENT_INSTANCES: Figure = Figure {
    what: "component instances",
    key: "limits.max_component_instances",
};

/// Adds `n` to a running total and refuses once it passes `limit`.
fn add(total: &mut u64, n: u64, limit: u64, figure: &Figure) -> Result<(), ShapeError> {
    *total = total.saturating_add(n);
    if *total > limit {
        return Err(ShapeError::OverLimit {
            what: figure.what,
            found: *total,
            limit,
            key: figure.key,
        });
    }
    Ok(())
}

/// Measures a component (without validating or compiling it) and checks it against
/// `limits`.
///
/// A file over `max_component_bytes` is refused before it is parsed; otherwise the walk
/// stops at the first running total over its limit. Returns the component's [`Shape`]
/// when every figure is within its limit.
pub fn check(bytes: &[u8], limits: &ShapeLimits) -> Result<Shape, ShapeError> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if len > limits.max_component_bytes {
        return Err(ShapeError::TooLarge {
            bytes: len,
            limit: limits.max_component_bytes,
        });
    }
    let mut shape = Shape {
        bytes: len,
        ..Shape::default()
    };
    // `parse_all` descends into nested modules and components itself, so every payload
    // of every depth comes through this one loop.
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| ShapeError::Malformed(e.to_string()))?;
        match payload {
            // Every core module starts with its header, whether it is nested in a
            // component (after a `ModuleSection` payload) or is the whole file.
            Payload::Version {
                encoding: Encoding::Module,
                ..
            } => add(&mut shape.modules, 1, limits.max_modules, &MODULES)?,
            // The body count and section size come with the section's start, so a huge
            // code section is refused before its bodies are walked.
            Payload::CodeSectionStart { count, size, .. } => {
                add(
                    &mut shape.functions,
                    u64::from(count),
                    limits.max_functions,
                    &FUNCTIONS,
                )?;
                add(
                    &mut shape.code_bytes,
                    u64::from(size),
                    limits.max_code_bytes,
                    &CODE_BYTES,
                )?;
            }
            Payload::DataSection(reader) => add(
                &mut shape.data_bytes,
                reader.range().len() as u64,
                limits.max_data_bytes,
                &DATA_BYTES,
            )?,
            Payload::InstanceSection(reader) => add(
                &mut shape.core_instances,
                u64::from(reader.count()),
                limits.max_core_instances,
                &CORE_INSTANCES,
            )?,
            Payload::ComponentInstanceSection(reader) => add(
                &mut shape.component_instances,
                u64::from(reader.count()),
                limits.max_component_instances,
                &COMPONENT_INSTANCES,
            )?,
            Payload::MemorySection(reader) => {
                shape.memories = shape.memories.saturating_add(u64::from(reader.count()));
            }
            Payload::TableSection(reader) => {
                shape.tables = shape.tables.saturating_add(u64::from(reader.count()));
            }
            _ => {}
        }
    }
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{
        CodeSection, Component, ComponentInstanceSection, ConstExpr, DataSection, ExportKind,
        ExportSection, Function, FunctionSection, InstanceSection, MemorySection, MemoryType,
        Module, ModuleArg, ModuleSection, NestedComponentSection, RefType, TableSection, TableType,
        TypeSection,
    };

    /// Limits nothing reaches.
    const UNLIMITED: ShapeLimits = ShapeLimits {
        max_component_bytes: u64::MAX,
        max_modules: u64::MAX,
        max_functions: u64::MAX,
        max_code_bytes: u64::MAX,
        max_data_bytes: u64::MAX,
        max_core_instances: u64::MAX,
        max_component_instances: u64::MAX,
    };

    /// A core module with `functions` functions `() -> i32` and, when `memory`, one
    /// memory (exported as "m") with a `data`-byte active data segment.
    fn module(functions: u32, memory: bool, data: usize) -> Module {
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], [wasm_encoder::ValType::I32]);
        module.section(&types);
        let mut funcs = FunctionSection::new();
        for _ in 0..functions {
            funcs.function(0);
        }
        module.section(&funcs);
        if memory {
            let mut tables = TableSection::new();
            tables.table(TableType {
                element_type: RefType::FUNCREF,
                table64: false,
                minimum: 1,
                maximum: None,
                shared: false,
            });
            module.section(&tables);
            let mut memories = MemorySection::new();
            memories.memory(MemoryType {
                minimum: 1,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
            module.section(&memories);
            let mut exports = ExportSection::new();
            exports.export("m", ExportKind::Memory, 0);
            module.section(&exports);
        }
        let mut code = CodeSection::new();
        for k in 0..functions {
            let mut f = Function::new([]);
            f.instructions().i32_const(k as i32).end();
            code.function(&f);
        }
        module.section(&code);
        if memory && data > 0 {
            let mut datas = DataSection::new();
            datas.active(0, &ConstExpr::i32_const(0), vec![7u8; data]);
            module.section(&datas);
        }
        module
    }

    /// A component holding `module` and `instances` core instances of it.
    fn component(module: &Module, instances: u32) -> Component {
        let mut component = Component::new();
        component.section(&ModuleSection(module));
        if instances > 0 {
            let mut section = InstanceSection::new();
            for _ in 0..instances {
                section.instantiate(0, Vec::<(&str, ModuleArg)>::new());
            }
            component.section(&section);
        }
        component
    }

    /// The error's (message, key, found, limit); panics when `result` is not `OverLimit`.
    fn over(result: Result<Shape, ShapeError>) -> (String, &'static str, u64, u64) {
        match result {
            Err(
                e @ ShapeError::OverLimit {
                    key, found, limit, ..
                },
            ) => (e.to_string(), key, found, limit),
            other => panic!("expected OverLimit, got {other:?}"),
        }
    }

    #[test]
    fn counts_functions_and_code_of_a_nested_module() {
        let bytes = component(&module(25, false, 0), 0).finish();
        let shape = check(&bytes, &UNLIMITED).unwrap();
        assert_eq!(shape.bytes, bytes.len() as u64);
        assert_eq!(shape.modules, 1);
        assert_eq!(shape.functions, 25);
        assert!(shape.code_bytes > 25 * 4, "{shape:?}");
        assert_eq!(shape.data_bytes, 0);
        assert_eq!(shape.core_instances, 0);
        assert_eq!(shape.component_instances, 0);
        assert_eq!((shape.memories, shape.tables), (0, 0));
    }

    #[test]
    fn counts_core_instances_memories_tables_and_data() {
        let bytes = component(&module(2, true, 100), 7).finish();
        let shape = check(&bytes, &UNLIMITED).unwrap();
        assert_eq!(shape.modules, 1);
        assert_eq!(shape.functions, 2);
        assert_eq!(shape.core_instances, 7);
        assert_eq!(shape.memories, 1);
        assert_eq!(shape.tables, 1);
        assert!(shape.data_bytes >= 100, "{shape:?}");
        // The encoder's output is valid, so the counts are of a real component.
        wasmparser::Validator::new().validate_all(&bytes).unwrap();
    }

    #[test]
    fn totals_cover_every_depth() {
        // outer component: module(3) + nested component { module(4), module(5) + 2 core
        // instances, and a component instance of a nested-nested empty component }.
        let mut inner = component(&module(4, false, 0), 0);
        inner.section(&ModuleSection(&module(5, true, 10)));
        let mut cores = InstanceSection::new();
        cores.instantiate(1, Vec::<(&str, ModuleArg)>::new());
        cores.instantiate(1, Vec::<(&str, ModuleArg)>::new());
        inner.section(&cores);
        inner.section(&NestedComponentSection(&Component::new()));
        let mut comps = ComponentInstanceSection::new();
        comps.instantiate(
            0,
            Vec::<(&str, wasm_encoder::ComponentExportKind, u32)>::new(),
        );
        inner.section(&comps);

        let mut outer = component(&module(3, false, 0), 1);
        outer.section(&NestedComponentSection(&inner));
        let bytes = outer.finish();
        wasmparser::Validator::new().validate_all(&bytes).unwrap();

        let shape = check(&bytes, &UNLIMITED).unwrap();
        assert_eq!(shape.modules, 3);
        assert_eq!(shape.functions, 3 + 4 + 5);
        assert_eq!(shape.core_instances, 3);
        assert_eq!(shape.component_instances, 1);
        assert_eq!(shape.memories, 1);
        assert!(shape.data_bytes >= 10);
    }

    #[test]
    fn a_figure_at_its_limit_passes() {
        let bytes = component(&module(2, true, 100), 7).finish();
        let exact = check(&bytes, &UNLIMITED).unwrap();
        let limits = ShapeLimits {
            max_component_bytes: exact.bytes,
            max_modules: exact.modules,
            max_functions: exact.functions,
            max_code_bytes: exact.code_bytes,
            max_data_bytes: exact.data_bytes,
            max_core_instances: exact.core_instances,
            max_component_instances: exact.component_instances,
        };
        assert_eq!(check(&bytes, &limits), Ok(exact));
    }

    #[test]
    fn too_large_is_refused_before_parsing() {
        // Not even a wasm header: the size alone decides.
        let bytes = vec![0xffu8; 1000];
        let limits = ShapeLimits {
            max_component_bytes: 999,
            ..UNLIMITED
        };
        let err = check(&bytes, &limits).unwrap_err();
        assert_eq!(
            err,
            ShapeError::TooLarge {
                bytes: 1000,
                limit: 999
            }
        );
        let message = err.to_string();
        assert!(
            message.contains("1000") && message.contains("999"),
            "{message}"
        );
        assert_eq!(
            message,
            "is 1000 bytes, over the limit of 999 bytes (limits.max_component_mib)"
        );
    }

    #[test]
    fn each_limit_names_its_key() {
        let bytes = component(&module(30, true, 100), 5).finish();
        let shape = check(&bytes, &UNLIMITED).unwrap();

        let (message, key, found, limit) = over(check(
            &bytes,
            &ShapeLimits {
                max_functions: 20,
                ..UNLIMITED
            },
        ));
        assert_eq!((key, found, limit), ("limits.max_functions", 30, 20));
        assert_eq!(
            message,
            "defines 30 functions, over the limit of 20 (limits.max_functions)"
        );

        let (message, key, _, _) = over(check(
            &bytes,
            &ShapeLimits {
                max_code_bytes: shape.code_bytes - 1,
                ..UNLIMITED
            },
        ));
        assert_eq!(key, "limits.max_code_bytes");
        assert!(message.contains("bytes of code"), "{message}");

        let (message, key, _, _) = over(check(
            &bytes,
            &ShapeLimits {
                max_data_bytes: 50,
                ..UNLIMITED
            },
        ));
        assert_eq!(key, "limits.max_data_bytes");
        assert!(
            message.contains("over the limit of 50 (limits.max_data_bytes)"),
            "{message}"
        );

        let (message, key, found, limit) = over(check(
            &bytes,
            &ShapeLimits {
                max_core_instances: 4,
                ..UNLIMITED
            },
        ));
        assert_eq!((key, found, limit), ("limits.max_core_instances", 5, 4));
        assert_eq!(
            message,
            "defines 5 core instances, over the limit of 4 (limits.max_core_instances)"
        );

        let (message, key, found, limit) = over(check(
            &bytes,
            &ShapeLimits {
                max_modules: 0,
                ..UNLIMITED
            },
        ));
        assert_eq!((key, found, limit), ("limits.max_modules", 1, 0));
        assert!(message.contains("1 core modules"), "{message}");
    }

    #[test]
    fn component_instances_limit() {
        let mut c = Component::new();
        c.section(&NestedComponentSection(&Component::new()));
        let mut comps = ComponentInstanceSection::new();
        for _ in 0..3 {
            comps.instantiate(
                0,
                Vec::<(&str, wasm_encoder::ComponentExportKind, u32)>::new(),
            );
        }
        c.section(&comps);
        let bytes = c.finish();
        assert_eq!(check(&bytes, &UNLIMITED).unwrap().component_instances, 3);
        let (message, key, found, limit) = over(check(
            &bytes,
            &ShapeLimits {
                max_component_instances: 2,
                ..UNLIMITED
            },
        ));
        assert_eq!(
            (key, found, limit),
            ("limits.max_component_instances", 3, 2)
        );
        assert!(message.contains("3 component instances"), "{message}");
    }

    #[test]
    fn modules_limit_counts_across_depths_and_stops_early() {
        // Ten modules, the limit is 3: refused at the fourth.
        let mut c = Component::new();
        let m = module(1, false, 0);
        for _ in 0..10 {
            c.section(&ModuleSection(&m));
        }
        let mut bytes = c.finish();
        // Garbage after the fourth module would be a parse error if the walk went on;
        // truncating the tail proves it stops at the limit.
        let fourth_end = {
            let mut ends = Parser::new(0)
                .parse_all(&bytes)
                .filter_map(|p| match p.unwrap() {
                    Payload::ModuleSection {
                        unchecked_range, ..
                    } => Some(unchecked_range.end),
                    _ => None,
                });
            ends.nth(3).unwrap()
        };
        bytes.truncate(fourth_end + 1);
        let (_, key, found, limit) = over(check(
            &bytes,
            &ShapeLimits {
                max_modules: 3,
                ..UNLIMITED
            },
        ));
        assert_eq!((key, found, limit), ("limits.max_modules", 4, 3));
    }

    #[test]
    fn malformed_input_is_refused_with_the_parser_message() {
        for bytes in [&b"not wasm"[..], &b"\0asm\x0d\0\x01\0\x07\xff"[..]] {
            match check(bytes, &UNLIMITED) {
                Err(e @ ShapeError::Malformed(_)) => {
                    let message = e.to_string();
                    assert!(message.contains("offset"), "{message}");
                }
                other => panic!("expected Malformed, got {other:?}"),
            }
        }
    }
}
