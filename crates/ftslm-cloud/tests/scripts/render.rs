//! Rendering: valid bash, inputs quoted exactly, unsafe values refused.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use ftslm_cloud::scripts::ScriptError;

use crate::sandbox::*;
use crate::*;

#[test]
fn rendered_scripts_are_valid_bash_with_quoted_inputs() {
    let sb = Sandbox::new();
    let scripts = [
        deploy(&sb).render().unwrap(),
        train(&sb, s(&["--set", NASTY])).render().unwrap(),
        clean(&sb, true, true).render().unwrap(),
        extract(&sb, NASTY, Some("m")).render().unwrap(),
    ];
    // shellcheck, where installed (FTSLM_SHELLCHECK names it elsewhere), lints
    // the scripts exactly as sent.
    let shellcheck = std::env::var_os("FTSLM_SHELLCHECK")
        .map(PathBuf::from)
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|d| d.join("shellcheck"))
                .find(|p| p.is_file())
        });
    for (i, script) in scripts.iter().enumerate() {
        assert!(script.starts_with("#!/usr/bin/env bash\n"));
        let check = Command::new(bash())
            .args(["-n", "-c", script])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        if let Some(shellcheck) = &shellcheck {
            let path = sb.root.join(format!("rendered-{i}.sh"));
            fs::write(&path, script).unwrap();
            // SC2016: the test's values hold `$(...)` in single quotes on purpose.
            let lint = Command::new(shellcheck)
                .args(["--exclude=SC2016"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                lint.status.success(),
                "{}",
                String::from_utf8_lossy(&lint.stdout)
            );
        }
    }
    // The header alone, evaluated by bash, gives back exactly the values.
    let start = scripts[1].find("readonly SCRIPT_NAME").unwrap();
    let end = start + scripts[1][start..].find("\n\n").unwrap();
    let header =
        scripts[1][start..=end].to_string() + "printf '%s\\0' \"${TRAIN_ARGS[@]}\" \"$PREFIX\"";
    let eval = Command::new(bash()).args(["-c", &header]).output().unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    assert_eq!(
        String::from_utf8(eval.stdout).unwrap(),
        format!("--set\0{NASTY}\0{PREFIX}\0")
    );
    assert!(scripts[1].contains("readonly PREFIX=runs/medical\n"));
    assert!(scripts[1].contains("readonly MAX_RUNTIME_SECONDS=''\n"));
    assert!(scripts[0].contains("readonly SKIP_VOLUME=false\n"));
}

#[test]
fn values_a_script_cannot_hold_safely_are_refused() {
    let sb = Sandbox::new();
    let mut t = train(&sb, s(&["--set", "a\0b"]));
    assert!(matches!(
        t.render(),
        Err(ScriptError::Nul {
            field: "training argument"
        })
    ));
    t.train_args = s(&["--set", &format!("hub.token={TOKEN}")]);
    let err = t.render().unwrap_err().to_string();
    assert!(
        err.contains("Hugging Face token") && !err.contains(TOKEN),
        "{err}"
    );
    t.train_args.clear();
    t.run_timestamp = "latest".into();
    assert!(t
        .render()
        .unwrap_err()
        .to_string()
        .contains("YYYYmmdd_HHMMSS"));

    let mut d = deploy(&sb);
    d.volume_id = "vol-1; reboot".into();
    assert!(d
        .render()
        .unwrap_err()
        .to_string()
        .contains("aws.ebs.volume_id"));
    d.volume_id = VOLUME.into();
    d.mount_path = "/mnt/my volume".into();
    assert!(d
        .render()
        .unwrap_err()
        .to_string()
        .contains("aws.ebs.mount_path"));
    // Skipped parts need no values.
    let mut d = deploy(&sb);
    d.skip_volume = true;
    d.volume_id.clear();
    assert!(d.render().is_ok());
}
