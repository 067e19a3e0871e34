//! Where the time goes: the daemon's own debug timings (`create-step handle=H step=S
//! took_ms=X`, `destroy-step ...`), read from its log and gathered per step.

use std::collections::{BTreeMap, HashSet};

/// Durations (ms) of each step of `kind` ("create" or "destroy"), over the handles in
/// `handles`, in the order steps first appear in the log.
pub fn gather(log: &str, kind: &str, handles: &HashSet<String>) -> Vec<(String, Vec<f64>)> {
    let prefix = format!("{kind}-step handle=");
    let mut order: Vec<String> = Vec::new();
    let mut by_step: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in log.lines() {
        let Some(rest) = line.split_once(&prefix).map(|(_, r)| r) else {
            continue;
        };
        let mut handle = "";
        let mut step = "";
        let mut ms = None;
        for (i, w) in rest.split(' ').enumerate() {
            if i == 0 {
                handle = w;
            } else if let Some(s) = w.strip_prefix("step=") {
                step = s;
            } else if let Some(v) = w.strip_prefix("took_ms=") {
                ms = v.parse::<f64>().ok();
            }
        }
        let (Some(ms), false) = (ms, step.is_empty()) else {
            continue;
        };
        if !handles.contains(handle) {
            continue;
        }
        if !by_step.contains_key(step) {
            order.push(step.to_string());
        }
        by_step.entry(step.to_string()).or_default().push(ms);
    }
    order
        .into_iter()
        .map(|s| {
            let v = by_step.remove(&s).unwrap_or_default();
            (s, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_steps_of_the_chosen_handles() {
        let log = "\
[x DEBUG c] create-step handle=0a000004 step=dir took_ms=2.0
[x DEBUG c] create-step handle=0a000008 step=dir took_ms=9.0
[x DEBUG c] create-step handle=0a000004 step=hook-parent-before-clone took_ms=20.5
[x DEBUG c] destroy-step handle=0a000004 step=kill took_ms=1.0
[x DEBUG c] create-step handle=0a00000c step=dir took_ms=4.0
";
        let h: HashSet<String> = ["0a000004", "0a00000c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let c = gather(log, "create", &h);
        assert_eq!(
            c,
            vec![
                ("dir".to_string(), vec![2.0, 4.0]),
                ("hook-parent-before-clone".to_string(), vec![20.5]),
            ]
        );
        assert_eq!(
            gather(log, "destroy", &h),
            vec![("kill".to_string(), vec![1.0])]
        );
    }
}
