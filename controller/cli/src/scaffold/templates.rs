//! The files `spp new plugin` writes, as templates kept in
//! `controller/cli/templates/` and embedded at build time, and [`render`],
//! which fills their `{{key}}` placeholders.

/// One file of a generated project: its path in the project and template.
pub struct File {
    /// Path relative to the project directory; `{{key}}` placeholders are
    /// filled as in the text.
    pub path: &'static str,
    /// The template text.
    pub text: &'static str,
}

/// The spp config both languages share.
const SPP_TOML: &str = include_str!("../../templates/spp.toml.tmpl");

/// The files of a Rust plugin crate.
pub const RUST: &[File] = &[
    File {
        path: "Cargo.toml",
        text: include_str!("../../templates/rust/Cargo.toml.tmpl"),
    },
    File {
        path: "src/lib.rs",
        text: include_str!("../../templates/rust/lib.rs.tmpl"),
    },
    File {
        path: "spp.toml",
        text: SPP_TOML,
    },
    File {
        path: "Makefile",
        text: include_str!("../../templates/rust/Makefile.tmpl"),
    },
    File {
        path: "README.md",
        text: include_str!("../../templates/rust/README.md.tmpl"),
    },
    File {
        path: ".gitignore",
        text: include_str!("../../templates/rust/gitignore.tmpl"),
    },
];

/// The files of a C plugin; the header is copied verbatim.
pub const C: &[File] = &[
    File {
        path: "{{name}}.c",
        text: include_str!("../../templates/c/plugin.c.tmpl"),
    },
    File {
        path: "spp_plugin.h",
        text: HEADER,
    },
    File {
        path: "spp.toml",
        text: SPP_TOML,
    },
    File {
        path: "Makefile",
        text: include_str!("../../templates/c/Makefile.tmpl"),
    },
    File {
        path: "README.md",
        text: include_str!("../../templates/c/README.md.tmpl"),
    },
    File {
        path: ".gitignore",
        text: include_str!("../../templates/c/gitignore.tmpl"),
    },
];

/// The plugin ABI header this `spp` speaks, for C plugins.
pub const HEADER: &str = include_str!("../../../../plugin-api/include/spp_plugin.h");

/// `text` with every `{{key}}` of `values` replaced by its value. Values
/// are inserted as they are (they never contain a placeholder).
pub fn render(text: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(text.to_string(), |out, (key, value)| {
        out.replace(&format!("{{{{{key}}}}}"), value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every placeholder the templates use, with a sample value.
    pub(crate) const KEYS: &[&str] = &[
        "name",
        "lib",
        "type",
        "api_dep",
        "api_note",
        "spp",
        "port",
        "port_note",
        "port_shown",
        "addr",
        "plugin",
        "build_hint",
    ];

    #[test]
    fn every_placeholder_is_filled() {
        let values: Vec<(&str, &str)> = KEYS.iter().map(|k| (*k, "x")).collect();
        for file in RUST.iter().chain(C) {
            for text in [file.path, file.text] {
                let out = render(text, &values);
                assert!(!out.contains("{{"), "{}: {out}", file.path);
            }
        }
    }

    #[test]
    fn render_replaces_every_occurrence() {
        assert_eq!(
            render("{{a}}-{{b}}-{{a}}", &[("a", "1"), ("b", "2")]),
            "1-2-1"
        );
    }
}
