//! `plugin new`: a plugin project from the templates of `plugins/templates/`, embedded in
//! the binary. The project gets a copy of the contract (`wit/plugin.wit`), so it builds
//! and tests on its own: a source file, `build.sh` (with the WIT bindings step), a README
//! and golden cases for `plugin test`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A language a plugin project can be made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TemplateLanguage {
    /// Rust with wit-bindgen.
    Rust,
    /// JavaScript with componentize-js.
    Js,
    /// Python with componentize-py.
    Python,
    /// C with clang, wasi-libc and wit-bindgen's C bindings.
    C,
    /// Zig over the same C bindings.
    Zig,
}

/// One language's template: its files (path in the project, text) and the fragments
/// the shared README takes.
struct Template {
    /// The language's name in the README.
    title: &'static str,
    /// The file authors edit.
    source: &'static str,
    /// The README's "Build" section.
    build: &'static str,
    /// Every file of the project but the shared ones.
    files: &'static [(&'static str, &'static str)],
}

/// Files every project gets.
const SHARED: [(&str, &str); 3] = [
    (
        "README.md",
        include_str!("../../plugins/templates/common/README.md"),
    ),
    (
        "cases.jsonl",
        include_str!("../../plugins/templates/common/cases.jsonl"),
    ),
    ("wit/plugin.wit", include_str!("../../wit/plugin.wit")),
];

/// The longest plugin name accepted.
const MAX_NAME_CHARS: usize = 64;

impl TemplateLanguage {
    /// The name `--lang` takes.
    pub fn name(self) -> &'static str {
        match self {
            TemplateLanguage::Rust => "rust",
            TemplateLanguage::Js => "js",
            TemplateLanguage::Python => "python",
            TemplateLanguage::C => "c",
            TemplateLanguage::Zig => "zig",
        }
    }

    fn template(self) -> Template {
        macro_rules! template_file {
            ($lang:literal, $path:literal) => {
                include_str!(concat!("../../plugins/templates/", $lang, "/", $path))
            };
        }
        match self {
            TemplateLanguage::Rust => Template {
                title: "Rust",
                source: "src/lib.rs",
                build: template_file!("rust", "build.md"),
                files: &[
                    ("Cargo.toml", template_file!("rust", "Cargo.toml")),
                    ("src/lib.rs", template_file!("rust", "src/lib.rs")),
                    ("build.sh", template_file!("rust", "build.sh")),
                    (".gitignore", template_file!("rust", "gitignore")),
                ],
            },
            TemplateLanguage::Js => Template {
                title: "JavaScript",
                source: "plugin.js",
                build: template_file!("js", "build.md"),
                files: &[
                    ("package.json", template_file!("js", "package.json")),
                    ("plugin.js", template_file!("js", "plugin.js")),
                    ("build.sh", template_file!("js", "build.sh")),
                    (".gitignore", template_file!("js", "gitignore")),
                ],
            },
            TemplateLanguage::Python => Template {
                title: "Python",
                source: "app.py",
                build: template_file!("python", "build.md"),
                files: &[
                    ("app.py", template_file!("python", "app.py")),
                    ("build.sh", template_file!("python", "build.sh")),
                    (".gitignore", template_file!("python", "gitignore")),
                ],
            },
            TemplateLanguage::C => Template {
                title: "C",
                source: "plugin.c",
                build: template_file!("c", "build.md"),
                files: &[
                    ("plugin.c", template_file!("c", "plugin.c")),
                    ("build.sh", template_file!("c", "build.sh")),
                    (".gitignore", template_file!("c", "gitignore")),
                ],
            },
            TemplateLanguage::Zig => Template {
                title: "Zig",
                source: "plugin.zig",
                build: template_file!("zig", "build.md"),
                files: &[
                    ("plugin.zig", template_file!("zig", "plugin.zig")),
                    ("build.sh", template_file!("zig", "build.sh")),
                    (".gitignore", template_file!("zig", "gitignore")),
                ],
            },
        }
    }
}

/// Writes a `language` project for the plugin `name` into `dir` (default `./NAME`),
/// which must be missing or empty; returns the directory and the files written.
pub fn create(
    name: &str,
    language: TemplateLanguage,
    dir: Option<&Path>,
) -> Result<(PathBuf, Vec<String>)> {
    check_name(name)?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if let Ok(mut entries) = std::fs::read_dir(&dir)
        && entries.next().is_some()
    {
        bail!(
            "{} is not empty: `plugin new` writes into a new or empty directory",
            dir.display()
        );
    }
    let template = language.template();
    let fill = |text: &str| {
        text.replace("{{build}}", template.build.trim_end())
            .replace("{{language}}", template.title)
            .replace("{{lang}}", language.name())
            .replace("{{source}}", template.source)
            .replace("{{name_snake}}", &name.replace('-', "_"))
            .replace("{{name}}", name)
    };
    let mut written = Vec::new();
    for (path, text) in SHARED.iter().chain(template.files) {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, fill(text))
            .with_context(|| format!("cannot write {}", target.display()))?;
        if path.ends_with(".sh") {
            make_executable(&target)?;
        }
        written.push((*path).to_owned());
    }
    Ok((dir, written))
}

/// A name every language's tools accept as a package and file name: lowercase ASCII
/// letters, digits and inner hyphens, starting with a letter.
fn check_name(name: &str) -> Result<()> {
    let well_formed = name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name.len() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !well_formed {
        bail!(
            "invalid plugin name {name:?}: use lowercase letters, digits and single inner \
             hyphens, starting with a letter, at most {MAX_NAME_CHARS} characters"
        );
    }
    Ok(())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_has_the_contract_cases_readme_and_build_script_filled_in() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("geo-tag");
        let (_, files) = create("geo-tag", TemplateLanguage::Zig, Some(&project)).unwrap();
        assert!(files.contains(&"wit/plugin.wit".to_owned()));
        let wit = std::fs::read_to_string(project.join("wit/plugin.wit")).unwrap();
        assert!(wit.contains("package adtrack:plugin@"));
        let build = std::fs::read_to_string(project.join("build.sh")).unwrap();
        assert!(build.contains("--name geo_tag") && build.contains("-o geo-tag.wasm"));
        let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
        assert!(readme.starts_with("# geo-tag\n") && readme.contains("in Zig"));
        assert!(!readme.contains("{{"), "every placeholder is filled");
        let cases = std::fs::read_to_string(project.join("cases.jsonl")).unwrap();
        assert!(cases.contains(r#""plugin":"geo-tag""#));
    }

    #[test]
    fn a_directory_with_files_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let error = create("demo", TemplateLanguage::Rust, Some(dir.path())).unwrap_err();
        assert!(error.to_string().contains("is not empty"), "{error}");
        assert!(!dir.path().join("Cargo.toml").exists());
    }

    #[test]
    fn names_the_tools_would_refuse_are_refused() {
        for name in ["", "Demo", "1demo", "demo-", "de--mo", "de_mo", "de mo"] {
            let dir = tempfile::tempdir().unwrap();
            let error = create(name, TemplateLanguage::C, Some(dir.path())).unwrap_err();
            assert!(error.to_string().contains("invalid plugin name"), "{name}");
        }
    }
}
