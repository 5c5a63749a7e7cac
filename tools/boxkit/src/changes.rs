//! `--change`: Dockerfile instructions that edit an image's runtime defaults.
//!
//! Reference: the Dockerfile reference (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE,
//! VOLUME, STOPSIGNAL), the instructions `docker import --change` and `docker commit --change`
//! accept. `CMD ["sh","-c","x"]` is the exec form (a JSON array, used as is);
//! `CMD echo hi` is the shell form and becomes `["/bin/sh","-c","echo hi"]`.

use crate::error::{Error, Result};
use crate::oci::RunConfig;
use serde_json::{Map, Value};

/// Apply one instruction, such as `ENV A=1 B=2` or `CMD ["sh"]`, to `config`.
pub fn apply(config: &mut RunConfig, change: &str) -> Result<()> {
    let change = change.trim();
    let (word, rest) = change.split_once(char::is_whitespace).unwrap_or((change, ""));
    let rest = rest.trim();
    let bad = |why: &str| Error::invalid(format!("--change {change:?}: {why}"));
    if rest.is_empty() {
        return Err(bad("missing a value"));
    }
    match word.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(command(rest).map_err(|w| bad(&w))?),
        "ENTRYPOINT" => config.entrypoint = Some(command(rest).map_err(|w| bad(&w))?),
        "WORKDIR" => {
            if !rest.starts_with('/') {
                return Err(bad("WORKDIR must be an absolute path"));
            }
            config.working_dir = Some(rest.to_string());
        }
        "USER" => config.user = Some(rest.to_string()),
        "STOPSIGNAL" => config.stop_signal = Some(rest.to_string()),
        "ENV" => {
            let env = config.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs(rest).map_err(|w| bad(&w))? {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = config.labels.get_or_insert_with(Default::default);
            for (k, v) in pairs(rest).map_err(|w| bad(&w))? {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            let ports = config.exposed_ports.get_or_insert_with(Map::new);
            for p in rest.split_whitespace() {
                let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                ports.insert(p, Value::Object(Map::new()));
            }
        }
        "VOLUME" => {
            let list: Vec<String> = if rest.starts_with('[') {
                serde_json::from_str(rest).map_err(|e| bad(&format!("not a JSON array of strings: {e}")))?
            } else {
                rest.split_whitespace().map(String::from).collect()
            };
            let vols = config.volumes.get_or_insert_with(Map::new);
            for v in list {
                vols.insert(v, Value::Object(Map::new()));
            }
        }
        other => {
            return Err(bad(&format!(
                "unknown instruction {other:?} (use CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME or STOPSIGNAL)"
            )))
        }
    }
    Ok(())
}

fn command(rest: &str) -> std::result::Result<Vec<String>, String> {
    if rest.starts_with('[') {
        serde_json::from_str(rest).map_err(|e| format!("exec form must be a JSON array of strings: {e}"))
    } else {
        Ok(vec!["/bin/sh".to_string(), "-c".to_string(), rest.to_string()])
    }
}

/// `K=V K2="v 2"` or the legacy `K V…` form.
fn pairs(rest: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let words = split_words(rest)?;
    if !words[0].contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace).ok_or("expected KEY=VALUE or KEY VALUE")?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{w:?} is not KEY=VALUE")),
        })
        .collect()
}

/// Split on spaces, honouring double and single quotes and backslash escapes.
fn split_words(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                cur.push(chars.next().ok_or("trailing backslash")?);
                in_word = true;
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_forms() {
        let mut c = RunConfig::default();
        apply(&mut c, r#"CMD ["sh", "-c", "echo hi"]"#).unwrap();
        assert_eq!(c.cmd.as_deref().unwrap(), ["sh", "-c", "echo hi"]);
        apply(&mut c, "ENTRYPOINT echo hi").unwrap();
        assert_eq!(c.entrypoint.as_deref().unwrap(), ["/bin/sh", "-c", "echo hi"]);
        apply(&mut c, r#"ENV A=1 B="two words""#).unwrap();
        apply(&mut c, "ENV A 3").unwrap();
        assert_eq!(c.env.as_deref().unwrap(), ["B=two words", "A=3"]);
        apply(&mut c, "WORKDIR /srv").unwrap();
        apply(&mut c, "USER nobody:nogroup").unwrap();
        apply(&mut c, "EXPOSE 80 53/udp").unwrap();
        apply(&mut c, r#"VOLUME ["/data"]"#).unwrap();
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert!(c.exposed_ports.unwrap().contains_key("80/tcp"));
        assert!(c.volumes.unwrap().contains_key("/data"));
    }

    #[test]
    fn bad_changes_name_the_change() {
        let mut c = RunConfig::default();
        let e = apply(&mut c, "RUN rm -rf /").unwrap_err().to_string();
        assert!(e.contains("RUN rm -rf /") && e.contains("unknown instruction"), "{e}");
        assert!(apply(&mut c, "CMD [\"sh\"").is_err());
        assert!(apply(&mut c, "WORKDIR rel").is_err());
        assert!(apply(&mut c, "ENV").is_err());
    }
}
