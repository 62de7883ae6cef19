//! A plugin's name: checked to be usable as a Cargo package, a Rust crate,
//! a C file and a `lib<name>.so` at once, and the identifiers derived from
//! it.

/// The longest name accepted.
pub const MAX_LEN: usize = 64;

/// Names that would clash with Rust (keywords, the standard crates) or
/// with the plugin API crate itself.
const RESERVED: &[&str] = &[
    "abstract",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "alloc",
    "core",
    "std",
    "proc_macro",
    "test",
    "spp_plugin",
    "spp_plugin_api",
];

/// Identifiers the generated Rust code imports: a plugin type of that name
/// gets a suffix.
const IMPORTED: &[&str] = &[
    "AfterException",
    "Conn",
    "ExceptionReason",
    "Host",
    "Input",
    "Level",
    "OnClose",
    "OnException",
    "OnFini",
    "OnRoute",
    "Plugin",
    "Processed",
];

/// Checks `name`: 1 to [`MAX_LEN`] characters, a lowercase ASCII letter
/// first, then lowercase letters, digits, `_` or `-`, not ending in `-` or
/// `_`, and not a Rust keyword or standard crate. The reason when not.
pub fn check(name: &str) -> Result<(), String> {
    const RULE: &str = "a lowercase ASCII letter, then lowercase letters, digits, '_' or '-'";
    let Some(first) = name.chars().next() else {
        return Err("it is empty".into());
    };
    if name.len() > MAX_LEN {
        return Err(format!("it is longer than {MAX_LEN} characters"));
    }
    if !first.is_ascii_lowercase() {
        return Err(format!("it must start with {RULE}"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        return Err(format!("{bad:?} is not allowed (use {RULE})"));
    }
    if name.ends_with(['-', '_']) {
        return Err("it must not end with '-' or '_'".into());
    }
    if RESERVED.contains(&lib_name(name).as_str()) {
        return Err("it is reserved (a Rust keyword or crate name)".into());
    }
    Ok(())
}

/// The library name: `-` becomes `_` (`lib<lib_name>.so`, the Rust crate).
pub fn lib_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The plugin's Rust type: `my-echo` is `MyEcho` (with a `Plugin` suffix
/// when that would shadow an import of the generated code).
pub fn type_name(name: &str) -> String {
    let camel: String = name
        .split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    if IMPORTED.contains(&camel.as_str()) {
        camel + "Plugin"
    } else {
        camel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_pass_and_bad_ones_say_why() {
        for good in ["echo", "my-echo", "kv_store2", "a"] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("Echo", "start with"),
            ("2fast", "start with"),
            ("my echo", "' '"),
            ("my.echo", "'.'"),
            ("echo-", "end with"),
            ("fn", "reserved"),
            ("spp-plugin-api", "reserved"),
            ("test", "reserved"),
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(check(&"a".repeat(MAX_LEN + 1)).is_err());
    }

    #[test]
    fn identifiers_are_derived() {
        assert_eq!(lib_name("my-echo"), "my_echo");
        assert_eq!(type_name("my-echo"), "MyEcho");
        assert_eq!(type_name("kv_store2"), "KvStore2");
        assert_eq!(type_name("plugin"), "PluginPlugin");
        assert_eq!(type_name("a--b"), "AB");
    }
}
