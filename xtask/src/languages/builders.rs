//! One function per language: build `tracking` into the given output path, returning
//! whether it had to be built (`false`: it was up to date).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{c_bindings, is_fresh, toolchains};
use crate::{debian, run};

/// The Rust reference, built with the other Rust plugins by `plugins::build`; copied under
/// its language's name.
pub fn rust(root: &Path, output: &Path) -> Result<bool> {
    let built = root.join("target/plugins/tracking.wasm");
    std::fs::copy(&built, output).with_context(|| {
        format!(
            "cannot copy {} (built by `cargo xtask plugins`)",
            built.display()
        )
    })?;
    Ok(true)
}

/// The JavaScript plugin with componentize-js. `http` and `fetch-event` are disabled: they
/// would import `wasi:http`, which the sandbox refuses; stdio stays so that an uncaught
/// exception reaches stderr, which the host quotes in the trap report.
pub fn js(root: &Path, output: &Path) -> Result<bool> {
    let dir = root.join("plugins/js");
    let inputs = [
        dir.join("tracking"),
        dir.join("package.json"),
        dir.join("package-lock.json"),
    ];
    if is_fresh(root, output, &inputs)? {
        return Ok(false);
    }
    debian::ensure_command("node", &["--version"], &["nodejs", "npm"])?;
    toolchains::ensure_npm_packages(&dir)?;
    eprintln!("xtask: building tracking-js with componentize-js");
    run(
        // Relative paths: componentize-js reads the WIT inside a sandbox that sees only
        // the working directory and its parents by relative path.
        Command::new("node")
            .current_dir(&dir)
            .args([
                "node_modules/@bytecodealliance/componentize-js/src/cli.js",
                "tracking/tracking.js",
                "--wit",
                "../../wit",
                "--world-name",
                "plugin",
                "--disable",
                "http",
                "fetch-event",
            ])
            .arg("--out")
            .arg(output),
        "componentize-js",
    )?;
    Ok(true)
}

/// The Python plugin with componentize-py. WASI imports are replaced by trapping stubs
/// (`--stub-wasi`): CPython's runtime imports `wasi:sockets`, which the sandbox refuses.
pub fn python(root: &Path, output: &Path) -> Result<bool> {
    let sources = root.join("plugins/python/tracking");
    if built_from_pypi_tools_is_fresh(root, output, &sources)? {
        return Ok(false);
    }
    let venv = toolchains::ensure_venv(root)?;
    eprintln!("xtask: building tracking-python with componentize-py");
    run(
        Command::new(venv.join("bin/componentize-py"))
            .arg("--wit-path")
            .arg(root.join("wit"))
            .args(["--world", "plugin", "componentize", "--stub-wasi"])
            .arg("--python-path")
            .arg(&sources)
            .arg("tracking")
            .arg("--output")
            .arg(output)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        "componentize-py",
    )?;
    Ok(true)
}

/// Debian packages for the C plugin: clang 14 with the wasm32 builtins, lld, wasi-libc.
pub(super) const C_DEBIAN_PACKAGES: [&str; 4] =
    ["clang", "lld", "wasi-libc", "libclang-rt-14-dev-wasm32"];

/// The C plugin: wasi-libc for `wasm32-wasi` as a reactor, over wit-bindgen's C bindings,
/// made a component by `wasm-tools component new`. The module imports no WASI, so no
/// preview1 adapter is needed.
pub fn c(root: &Path, output: &Path) -> Result<bool> {
    let sources = root.join("plugins/c/tracking");
    if built_from_pypi_tools_is_fresh(root, output, &sources)? {
        return Ok(false);
    }
    debian::ensure_packages(&C_DEBIAN_PACKAGES)?;
    let venv = toolchains::ensure_venv(root)?;
    let bindings = c_bindings::generate(root)?;
    let build_dir = root.join("target/plugin-build/c");
    std::fs::create_dir_all(&build_dir)?;
    let module = build_dir.join("tracking.core.wasm");
    eprintln!("xtask: building tracking-c with clang (wasm32-wasi)");
    run(
        Command::new("clang")
            .args([
                "--target=wasm32-wasi",
                "-O2",
                "-Wall",
                "-Wextra",
                "-mexec-model=reactor",
            ])
            .arg("-I")
            .arg(&bindings.dir)
            .arg("-o")
            .arg(&module)
            .arg(sources.join("tracking.c"))
            .arg(&bindings.source)
            .arg(&bindings.type_object),
        "clang",
    )?;
    component_new(&venv, &module, output)?;
    Ok(true)
}

/// The Zig plugin over the C bindings: `zig translate-c` turns `plugin.h` into the module
/// `plugin`, `plugin.c` and the component-type object are linked in, and
/// `wasm-tools component new` makes the component.
pub fn zig(root: &Path, output: &Path) -> Result<bool> {
    let sources = root.join("plugins/zig/tracking");
    if built_from_pypi_tools_is_fresh(root, output, &sources)? {
        return Ok(false);
    }
    let venv = toolchains::ensure_venv(root)?;
    let bindings = c_bindings::generate(root)?;
    let build_dir = root.join("target/plugin-build/zig");
    std::fs::create_dir_all(&build_dir)?;
    let zig = |args: &[&str]| {
        let mut command = Command::new(venv.join("bin/python"));
        // Zig's global cache stays where Zig keeps it (`~/.cache/zig`): the wasi-libc it
        // compiles on the first build (about two minutes) is reused by every later clone.
        command
            .args(["-m", "ziglang"])
            .args(args)
            .env("ZIG_LOCAL_CACHE_DIR", build_dir.join("cache"));
        command
    };
    let translated = zig(&["translate-c", "-target", "wasm32-wasi", "-lc"])
        .arg("-I")
        .arg(&bindings.dir)
        .arg(&bindings.header)
        .output()
        .context("cannot run zig translate-c")?;
    if !translated.status.success() {
        bail!(
            "zig translate-c of {} failed:\n{}",
            bindings.header.display(),
            String::from_utf8_lossy(&translated.stderr)
        );
    }
    let header_module = build_dir.join("plugin.zig");
    std::fs::write(&header_module, &translated.stdout)
        .with_context(|| format!("cannot write {}", header_module.display()))?;
    let module = build_dir.join("tracking.core.wasm");
    eprintln!("xtask: building tracking-zig with zig build-exe (wasm32-wasi)");
    let emit = format!("-femit-bin={}", module.display());
    run(
        zig(&[
            "build-exe",
            "-target",
            "wasm32-wasi",
            "-O",
            "ReleaseSmall",
            "-fno-entry",
            "-mexec-model=reactor",
            "-lc",
            "--name",
            "tracking",
            &emit,
            "--dep",
            "plugin",
        ])
        .arg("-I")
        .arg(&bindings.dir)
        .arg(format!("-Mroot={}", sources.join("tracking.zig").display()))
        .arg(&bindings.source)
        .arg(&bindings.type_object)
        .arg(format!("-Mplugin={}", header_module.display())),
        "zig build-exe",
    )?;
    component_new(&venv, &module, output)?;
    Ok(true)
}

/// Whether `output` is newer than `sources` and the pinned PyPI tools it is built with.
fn built_from_pypi_tools_is_fresh(root: &Path, output: &Path, sources: &Path) -> Result<bool> {
    is_fresh(
        root,
        output,
        &[sources.to_path_buf(), root.join(toolchains::REQUIREMENTS)],
    )
}

/// `wasm-tools component new` from the venv: the core module with its embedded component
/// type becomes a component.
fn component_new(venv: &Path, module: &Path, output: &Path) -> Result<()> {
    run(
        Command::new(venv.join("bin/wasm-tools"))
            .args(["component", "new"])
            .arg(module)
            .arg("-o")
            .arg(output),
        "wasm-tools component new",
    )
}
