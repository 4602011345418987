//! The registry and its text format, on registries of the tests' own (the process one is
//! shared with every other test of the crate).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::job::AttemptError;

fn error() -> AttemptError {
    AttemptError {
        attempt: 1,
        error: "E".into(),
        traceback: None,
        at_ms: 0,
    }
}

/// One sample of the text format: metric name, labels, value.
#[derive(Debug, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text format strictly: `# HELP`/`# TYPE` before each family's samples,
/// label values unescaped, every value a number. Returns the families (name, type) in
/// order and the samples.
fn parse(text: &str) -> (Vec<(String, String)>, Vec<Sample>) {
    let mut families: Vec<(String, String)> = Vec::new();
    let mut samples = Vec::new();
    let mut helped: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a text");
            assert!(!help.is_empty());
            helped = Some(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
            assert_eq!(helped.as_deref(), Some(name), "TYPE right after its HELP");
            assert!(["counter", "histogram"].contains(&kind));
            assert!(
                families.iter().all(|(n, _)| n != name),
                "one block per family"
            );
            families.push((name.to_owned(), kind.to_owned()));
        } else {
            let (family, _) = families.last().expect("a sample after its TYPE");
            samples.push(parse_sample(line, family));
        }
    }
    (families, samples)
}

fn parse_sample(line: &str, family: &str) -> Sample {
    let open = line.find('{').expect("labels");
    let name = &line[..open];
    let suffix = name.strip_prefix(family).expect("sample of its family");
    assert!(
        ["", "_bucket", "_sum", "_count"].contains(&suffix),
        "{line}"
    );
    let mut labels = BTreeMap::new();
    let mut chars = line[open + 1..].chars();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "{line}");
        let mut value = String::new();
        loop {
            match chars.next().expect("closed value") {
                '"' => break,
                '\\' => value.push(match chars.next().expect("escape") {
                    'n' => '\n',
                    c @ ('\\' | '"') => c,
                    c => panic!("bad escape \\{c} in {line}"),
                }),
                '\n' => panic!("raw newline"),
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        match chars.next() {
            Some(',') => continue,
            Some('}') => break,
            other => panic!("{other:?} after a label in {line}"),
        }
    }
    let rest: String = chars.collect();
    let value = rest.strip_prefix(' ').expect("space before the value");
    let value = value.parse().unwrap_or_else(|_| panic!("value {value:?}"));
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let found: Vec<_> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want)
        .collect();
    assert_eq!(found.len(), 1, "one sample {name} {labels:?}");
    found[0].value
}

#[test]
fn counters_count_each_outcome_of_their_pair() {
    let reg = Registry::default();
    let s = reg.series("send", "mail");
    s.enqueued(3);
    for _ in 0..4 {
        s.started(None);
    }
    let ms = Duration::from_millis(1);
    s.finished(&Completion::Succeeded(Value::Null), ms);
    s.finished(
        &Completion::Retry {
            run_at_ms: 5,
            error: error(),
        },
        ms,
    );
    s.finished(&Completion::Failed(error()), ms);
    s.finished(&Completion::Cancelled { reason: None }, ms);
    s.finished(&Completion::Succeeded(Value::Null), ms);
    reg.series("other", "mail").enqueued(1);
    let (_, samples) = parse(&render_registry(&reg));
    let pair = [("task", "send"), ("queue", "mail")];
    let get = |n: &str| value(&samples, &format!("spikard_tasks_jobs_{n}_total"), &pair);
    assert_eq!(get("enqueued"), 3.0);
    assert_eq!(get("started"), 4.0);
    assert_eq!(get("succeeded"), 2.0);
    assert_eq!(get("retried"), 1.0);
    assert_eq!(get("failed"), 1.0);
    assert_eq!(get("cancelled"), 1.0);
    let other = [("task", "other"), ("queue", "mail")];
    assert_eq!(
        value(&samples, "spikard_tasks_jobs_enqueued_total", &other),
        1.0
    );
    assert_eq!(
        value(&samples, "spikard_tasks_jobs_started_total", &other),
        0.0
    );
    // The same pair is the same series.
    assert!(Arc::ptr_eq(&s, &reg.series("send", "mail")));
}

#[test]
fn histogram_buckets_are_cumulative_with_count_and_sum() {
    let reg = Registry::default();
    let s = reg.series("t", "q");
    for ms in [0.5, 1.0, 3.0, 500.0, 1_000_000.0] {
        s.finished(
            &Completion::Succeeded(Value::Null),
            Duration::from_secs_f64(ms / 1000.0),
        );
    }
    let (_, samples) = parse(&render_registry(&reg));
    let name = "spikard_tasks_job_duration_seconds";
    let bucket = |le: &str| {
        let labels = [("task", "t"), ("queue", "q"), ("le", le)];
        value(&samples, &format!("{name}_bucket"), &labels)
    };
    // `le` is "less than or equal": exactly 1 ms is in the 0.001 bucket.
    assert_eq!(bucket("0.001"), 2.0);
    assert_eq!(bucket("0.0025"), 2.0);
    assert_eq!(bucket("0.005"), 3.0);
    assert_eq!(bucket("0.25"), 3.0);
    assert_eq!(bucket("0.5"), 4.0);
    assert_eq!(bucket("300"), 4.0);
    assert_eq!(bucket("+Inf"), 5.0);
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == format!("{name}_bucket"))
        .map(|s| s.value)
        .collect();
    assert_eq!(buckets.len(), 17);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    let pair = [("task", "t"), ("queue", "q")];
    assert_eq!(value(&samples, &format!("{name}_count"), &pair), 5.0);
    let sum = value(&samples, &format!("{name}_sum"), &pair);
    assert!((sum - 1000.5045).abs() < 1e-6, "{sum}");
}

#[test]
fn start_latency_is_per_queue() {
    let reg = Registry::default();
    reg.series("a", "q1")
        .started(Some(Duration::from_millis(20)));
    reg.series("b", "q1").started(Some(Duration::from_secs(2)));
    reg.series("c", "q2").started(None);
    let (_, samples) = parse(&render_registry(&reg));
    let name = "spikard_tasks_job_start_latency_seconds";
    assert_eq!(
        value(&samples, &format!("{name}_count"), &[("queue", "q1")]),
        2.0
    );
    let le = |q: &str, le: &str| {
        value(
            &samples,
            &format!("{name}_bucket"),
            &[("queue", q), ("le", le)],
        )
    };
    assert_eq!(le("q1", "0.025"), 1.0);
    assert_eq!(le("q1", "2.5"), 2.0);
    assert_eq!(
        value(&samples, &format!("{name}_count"), &[("queue", "q2")]),
        0.0
    );
}

#[test]
fn label_values_are_escaped() {
    let reg = Registry::default();
    let task = "a\"b\\c\nd";
    reg.series(task, "q\\").enqueued(1);
    let text = render_registry(&reg);
    assert!(
        text.contains(r#"spikard_tasks_jobs_enqueued_total{task="a\"b\\c\nd",queue="q\\"} 1"#),
        "{text}"
    );
    let (_, samples) = parse(&text);
    let labels = [("task", task), ("queue", "q\\")];
    assert_eq!(
        value(&samples, "spikard_tasks_jobs_enqueued_total", &labels),
        1.0
    );
}

#[test]
fn pairs_beyond_the_cap_are_counted_under_other() {
    let reg = Registry::default();
    for i in 0..MAX_PAIRS {
        reg.series(&format!("t{i}"), "q").enqueued(1);
    }
    for i in 0..5 {
        reg.series(&format!("late{i}"), "late").enqueued(2);
    }
    // Pairs that existed before the cap keep their series.
    reg.series("t0", "q").enqueued(1);
    let (_, samples) = parse(&render_registry(&reg));
    let enqueued: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == "spikard_tasks_jobs_enqueued_total")
        .collect();
    assert_eq!(enqueued.len(), MAX_PAIRS + 1);
    let name = "spikard_tasks_jobs_enqueued_total";
    assert_eq!(
        value(&samples, name, &[("task", OTHER), ("queue", OTHER)]),
        10.0
    );
    assert_eq!(
        value(&samples, name, &[("task", "t0"), ("queue", "q")]),
        2.0
    );
    assert!(!samples
        .iter()
        .any(|s| s.labels.get("queue").map(String::as_str) == Some("late")));
}

#[test]
fn output_is_parseable_with_families_in_order_and_series_sorted() {
    let reg = Registry::default();
    for (task, queue) in [("b", "q"), ("a", "z"), ("a", "q"), ("c", "a")] {
        reg.series(task, queue).started(Some(Duration::ZERO));
    }
    let text = render_registry(&reg);
    assert!(text.ends_with('\n'));
    let (families, samples) = parse(&text);
    let names: Vec<&str> = families.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "spikard_tasks_jobs_enqueued_total",
            "spikard_tasks_jobs_started_total",
            "spikard_tasks_jobs_succeeded_total",
            "spikard_tasks_jobs_failed_total",
            "spikard_tasks_jobs_retried_total",
            "spikard_tasks_jobs_cancelled_total",
            "spikard_tasks_job_duration_seconds",
            "spikard_tasks_job_start_latency_seconds",
        ]
    );
    let order: Vec<(&str, &str)> = samples
        .iter()
        .filter(|s| s.name == "spikard_tasks_jobs_started_total")
        .map(|s| (s.labels["task"].as_str(), s.labels["queue"].as_str()))
        .collect();
    assert_eq!(order, [("a", "q"), ("a", "z"), ("b", "q"), ("c", "a")]);
    let queues: Vec<&str> = samples
        .iter()
        .filter(|s| s.name == "spikard_tasks_job_start_latency_seconds_count")
        .map(|s| s.labels["queue"].as_str())
        .collect();
    assert_eq!(queues, ["a", "q", "z"]);
}

#[test]
fn an_empty_registry_renders_only_the_headers() {
    let (families, samples) = parse(&render_registry(&Registry::default()));
    assert_eq!(families.len(), 8);
    assert!(samples.is_empty());
}

#[test]
fn enqueues_are_counted_per_pair_of_each_item() {
    let before = |t: &str| series(t, "metrics-test-q").enqueued.load(Relaxed);
    let (a, b) = ("metrics-test-a", "metrics-test-b");
    let (a0, b0) = (before(a), before(b));
    let q = "metrics-test-q";
    count_enqueued([(a, q), (a, q), (b, q), (a, q)]);
    assert_eq!(before(a) - a0, 3);
    assert_eq!(before(b) - b0, 1);
    assert!(render().contains(r#"spikard_tasks_jobs_enqueued_total{task="metrics-test-a""#));
}
