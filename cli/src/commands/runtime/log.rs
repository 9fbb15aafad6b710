//! runc's `--log`, `--log-format text|json` and `--debug`: engines read the
//! log file to report why a runtime command failed. A json line is
//! `{"level":"error","msg":"...","time":"..."}`; a text line is
//! `time="..." level=error msg="..."`. Without --log, lines go to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Debug, Clone, Default)]
pub struct LogConfig {
    pub path: Option<PathBuf>,
    pub json: bool,
    pub debug: bool,
}

static CONFIG: OnceLock<LogConfig> = OnceLock::new();

pub fn init(cfg: LogConfig) {
    let _ = CONFIG.set(cfg);
}

pub fn error(msg: &str) {
    write("error", msg);
}

pub fn warn(msg: &str) {
    write("warning", msg);
}

pub fn debug(msg: &str) {
    if CONFIG.get().is_some_and(|c| c.debug) {
        write("debug", msg);
    }
}

/// One log line in the configured format.
pub fn line(json: bool, level: &str, msg: &str, time: &str) -> String {
    if json {
        serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
    } else {
        format!("time={time:?} level={level} msg={msg:?}")
    }
}

fn write(level: &str, msg: &str) {
    let cfg = CONFIG.get().cloned().unwrap_or_default();
    let time = launcher::inspect::rfc3339(launcher::state::now_nanos());
    let text = line(cfg.json, level, msg, &time);
    match &cfg.path {
        Some(p) => {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                let _ = writeln!(f, "{text}");
            }
        }
        None if level != "error" => eprintln!("{text}"),
        // Errors without --log are printed by main as "berth: msg".
        None => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_lines_are_what_engines_parse() {
        let l = super::line(true, "error", "container \"x\" does not exist", "T");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" does not exist");
        assert_eq!(v["time"], "T");
        assert_eq!(
            super::line(false, "error", "a \"b\"", "T"),
            "time=\"T\" level=error msg=\"a \\\"b\\\"\""
        );
    }
}
