//! Hostile components for tests: a real, valid plugin component with sections appended
//! at its top level.
//!
//! The component binary format allows its sections in any order and any number of
//! times; a section appended after the others extends the index spaces it defines. So a
//! plugin built by the SDK stays a working plugin (same imports, same exports) while
//! gaining what the SDK would never produce: extra core modules, extra core instances
//! (each with its own linear memory), a module with a great many functions.

use wasm_encoder::{
    CodeSection, Component, ExportKind, ExportSection, Function, FunctionSection, InstanceSection,
    MemorySection, MemoryType, Module, ModuleArg, ModuleSection, TypeSection, ValType,
};
use wasmparser::{
    ComponentAlias, ComponentExternalKind, ComponentOuterAliasKind, ComponentTypeRef, Encoding,
    Parser, Payload,
};

/// `component` plus, at its top level, one core module that defines a memory of `pages`
/// 64 KiB pages (min = pages, exported as "m") and `count` core instances of that module
/// (instantiated with no args). Every instance gets its own linear memory when the
/// component is instantiated.
pub fn with_extra_memories(component: &[u8], count: u32, pages: u64) -> Vec<u8> {
    let index = core_module_count(component);

    let mut module = Module::new();
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: pages,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("m", ExportKind::Memory, 0);
    module.section(&exports);

    let mut extra = Component::new();
    extra.section(&ModuleSection(&module));
    if count > 0 {
        let mut instances = InstanceSection::new();
        for _ in 0..count {
            instances.instantiate(index, Vec::<(&str, ModuleArg)>::new());
        }
        extra.section(&instances);
    }
    append(component, extra)
}

/// `component` plus a core module (never instantiated) with `functions` small distinct
/// functions (each `() -> i32` returning its own index), to make a component that is
/// valid but slow to compile.
pub fn with_many_functions(component: &[u8], functions: u32) -> Vec<u8> {
    // Checks that `component` is a component (the index is not needed: nothing refers
    // to the module).
    core_module_count(component);

    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    module.section(&types);
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    for k in 0..functions {
        funcs.function(0);
        let mut f = Function::new([]);
        f.instructions().i32_const(k as i32).end();
        code.function(&f);
    }
    module.section(&funcs);
    module.section(&code);

    let mut extra = Component::new();
    extra.section(&ModuleSection(&module));
    append(component, extra)
}

/// `component` followed by the sections of `extra` (its bytes without the 8-byte
/// component header).
fn append(component: &[u8], extra: Component) -> Vec<u8> {
    let extra = extra.finish();
    let header = Component::new().finish();
    assert_eq!(
        &extra[..header.len()],
        &header[..],
        "wasm-encoder's component header"
    );
    let mut out = Vec::with_capacity(component.len() + extra.len() - header.len());
    out.extend_from_slice(component);
    out.extend_from_slice(&extra[header.len()..]);
    out
}

/// How many entries the top level of `component` has in its core-module index space:
/// its module sections, plus imports, exports and aliases of core modules (each of which
/// also adds an index). Nested modules and components have index spaces of their own and
/// are not counted. Panics when `component` is not a well-formed component.
fn core_module_count(component: &[u8]) -> u32 {
    let mut depth = 0u32; // 1 while at the top level
    let mut count = 0u32;
    for payload in Parser::new(0).parse_all(component) {
        let payload = payload.expect("parsing the component to extend");
        match payload {
            Payload::Version { encoding, .. } => {
                assert!(
                    depth > 0 || encoding == Encoding::Component,
                    "expected a component, found a core module"
                );
                depth += 1;
            }
            Payload::End(_) => depth -= 1,
            _ if depth != 1 => {}
            Payload::ModuleSection { .. } => count += 1,
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    let import = import.expect("parsing a component import");
                    if matches!(import.ty, ComponentTypeRef::Module(_)) {
                        count += 1;
                    }
                }
            }
            Payload::ComponentExportSection(reader) => {
                for export in reader {
                    let export = export.expect("parsing a component export");
                    if export.kind == ComponentExternalKind::Module {
                        count += 1;
                    }
                }
            }
            Payload::ComponentAliasSection(reader) => {
                for alias in reader {
                    match alias.expect("parsing a component alias") {
                        ComponentAlias::Outer {
                            kind: ComponentOuterAliasKind::CoreModule,
                            ..
                        }
                        | ComponentAlias::InstanceExport {
                            kind: ComponentExternalKind::Module,
                            ..
                        } => count += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    count
}
