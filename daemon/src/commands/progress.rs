//! Progress bars on stderr (hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` units (bytes, lines), or a spinner when unknown.
pub fn bar(total: Option<u64>, unit: &str) -> ProgressBar {
    match total {
        Some(total) => {
            let bar = ProgressBar::new(total);
            let template = match unit {
                "bytes" => {
                    "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}"
                }
                _ => {
                    "{spinner} [{elapsed_precise}] {bar:40} {human_pos}/{human_len} {unit} ({per_sec}, eta {eta}) {msg}"
                }
            };
            bar.set_style(
                ProgressStyle::with_template(&template.replace("{unit}", unit))
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bytes} read {msg}")
                    .expect("valid template"),
            );
            bar
        }
    }
}
