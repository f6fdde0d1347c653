//! checkpoints_clean.sh: dry run, removal, what is kept, refusals.

use std::collections::BTreeSet;
use std::fs;

use crate::sandbox::*;
use crate::*;

#[test]
fn clean_dry_run_lists_sizes_and_removes_nothing() {
    let sb = Sandbox::new();
    sb.deployed();
    sb.write_run();
    let out_dir = sb.mount.join("output");
    let before = files_under(&out_dir);
    let out = sb.run(&clean(&sb, true, false).render().unwrap());
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(files_under(&out_dir), before);
    for dir in [
        "checkpoint-10",
        "checkpoint-20",
        "backup_20261101_090000",
        "final_model",
        "best_model",
    ] {
        let path = out_dir.join(dir);
        let line = out
            .stdout
            .lines()
            .find(|l| l.ends_with(path.to_str().unwrap()))
            .unwrap_or_else(|| panic!("{dir} not listed: {}", out.stdout));
        assert!(line.starts_with("would remove "), "{line}");
        // du's size column, e.g. "8.0K".
        let size = line["would remove ".len()..].split('\t').next().unwrap();
        assert!(size.chars().next().unwrap().is_ascii_digit(), "{line}");
    }
    assert!(!out.stdout.contains("metrics.jsonl") && !out.stdout.contains("/logs"));
    assert!(out.stdout.contains("would free "), "{}", out.stdout);
    assert_idle_shutdown(&sb);
}

#[test]
fn clean_removes_checkpoints_and_backups_and_the_models_unless_kept() {
    let sb = Sandbox::new();
    sb.deployed();
    sb.write_run();
    let out = sb.run(&clean(&sb, false, true).render().unwrap());
    assert_eq!(out.code, 0, "{}", out.all());
    let left: BTreeSet<String> = fs::read_dir(sb.mount.join("output"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let kept: BTreeSet<String> = [
        "final_model",
        "best_model",
        "metrics.jsonl",
        "logs",
        "run_summary.json",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    assert_eq!(left, kept);
    assert!(out.stdout.contains("freed "), "{}", out.stdout);

    let out = sb.run(&clean(&sb, false, false).render().unwrap());
    assert_eq!(out.code, 0, "{}", out.all());
    let left: BTreeSet<String> = fs::read_dir(sb.mount.join("output"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        left,
        ["metrics.jsonl", "logs", "run_summary.json"]
            .iter()
            .map(|x| x.to_string())
            .collect()
    );

    let out = sb.run(&clean(&sb, false, false).render().unwrap());
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("nothing to clean"), "{}", out.stdout);
}

#[test]
fn clean_refuses_while_training_runs_and_without_the_volume() {
    let sb = Sandbox::new();
    sb.deployed();
    sb.write_run();
    fs::create_dir_all(&sb.run_dir).unwrap();
    fs::write(
        sb.run_dir.join(format!("active.{}", std::process::id())),
        "train\n",
    )
    .unwrap();
    let out = sb.run(&clean(&sb, false, false).render().unwrap());
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("a training is running"),
        "{}",
        out.stderr
    );
    assert!(sb.mount.join("output/checkpoint-10").is_dir());

    let sb = Sandbox::new();
    let out = sb.run(&clean(&sb, false, false).render().unwrap());
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("is not a mounted volume"),
        "{}",
        out.stderr
    );
}
