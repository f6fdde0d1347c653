//! deploy.sh: the volume found, formatted only when blank, mounted once; the image pulled and its GPU checked.

use std::fs;
use std::os::unix::fs::symlink;
use std::time::Duration;

use ftslm_cloud::scripts::{StepStatus, DEPLOY_STEPS};

use crate::sandbox::*;
use crate::*;

#[test]
fn deploy_formats_a_blank_volume_once_and_a_second_run_changes_nothing() {
    let sb = Sandbox::new();
    sb.attach();
    let script = deploy(&sb).render().unwrap();
    let first = sb.run(&script);
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(first.steps(), all_ok(DEPLOY_STEPS));
    let dev = sb.device.to_str().unwrap();
    let mount = sb.mount_str();
    assert_eq!(sb.calls_to("mkfs"), vec![s(&["mkfs", "-t", "xfs", dev])]);
    assert_eq!(sb.calls_to("mount"), vec![s(&["mount", dev, &mount])]);
    let fstab = fs::read_to_string(&sb.fstab).unwrap();
    let ours: Vec<_> = fstab.lines().filter(|l| l.contains(&mount)).collect();
    assert_eq!(
        ours,
        vec![format!(
            "UUID=8f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b {mount} xfs defaults,nofail 0 2"
        )]
    );
    assert!(sb.mount.join("output").is_dir() && sb.mount.join("pulled").is_dir());
    assert_eq!(
        sb.calls_to("aws"),
        vec![s(&[
            "aws",
            "ecr",
            "get-login-password",
            "--region",
            "us-east-1"
        ])]
    );
    let docker = sb.calls_to("docker");
    assert_eq!(
        docker[..3].to_vec(),
        vec![
            // The stand-in also checked the password arrived on stdin.
            s(&[
                "docker",
                "login",
                "--username",
                "AWS",
                "--password-stdin",
                REGISTRY
            ]),
            s(&["docker", "pull", IMAGE]),
            s(&[
                "docker",
                "run",
                "--rm",
                "--gpus",
                "all",
                "--entrypoint",
                "nvidia-smi",
                IMAGE
            ]),
        ]
    );
    assert_eq!(
        sb.calls_to("chown"),
        vec![s(&["chown", "1000:1001", &format!("{mount}/output")])]
    );
    assert_idle_shutdown(&sb);

    sb.clear_log();
    let second = sb.run(&script);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(second.steps(), all_ok(DEPLOY_STEPS));
    assert!(sb.calls_to("mkfs").is_empty(), "formatted again");
    assert!(sb.calls_to("mount").is_empty(), "mounted again");
    assert_eq!(fs::read_to_string(&sb.fstab).unwrap(), fstab);
    assert!(
        second.stdout.contains("already mounted"),
        "{}",
        second.stdout
    );
}

#[test]
fn deploy_never_formats_a_volume_that_has_a_filesystem() {
    let sb = Sandbox::new();
    sb.attach();
    fs::write(sb.state.join("fs_type"), "ext4").unwrap();
    fs::write(sb.state.join("fs_uuid"), "1111-2222").unwrap();
    let out = sb.run(&deploy(&sb).render().unwrap());
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(sb.calls_to("mkfs").is_empty());
    let fstab = fs::read_to_string(&sb.fstab).unwrap();
    assert!(
        fstab.contains(&format!(
            "UUID=1111-2222 {} ext4 defaults,nofail 0 2\n",
            sb.mount_str()
        )),
        "{fstab}"
    );
}

#[test]
fn deploy_refuses_a_volume_holding_data_it_cannot_identify() {
    let mut sb = Sandbox::new();
    sb.attach();
    sb.set("FAKE_BLKID_PTTYPE", "gpt");
    let out = sb.run(&deploy(&sb).render().unwrap());
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("formats only blank volumes"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("PTTYPE=gpt"), "{}", out.stderr);
    assert!(sb.calls_to("mkfs").is_empty() && sb.calls_to("mount").is_empty());
    assert!(out
        .steps()
        .contains(&("volume-filesystem".to_string(), StepStatus::Failed)));
    assert_idle_shutdown(&sb);
}

#[test]
fn deploy_without_the_device_fails_naming_the_volume() {
    let sb = Sandbox::new();
    let out = sb.run(&deploy(&sb).render().unwrap());
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains(VOLUME), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.steps(),
        vec![("volume-device".to_string(), StepStatus::Failed)]
    );
    assert!(sb.calls_to("blkid").is_empty() && sb.calls_to("docker").is_empty());
    assert_idle_shutdown(&sb);
}

#[test]
fn deploy_waits_for_the_device_link_to_appear_after_attaching() {
    let mut sb = Sandbox::new();
    sb.set("FTSLM_DEVICE_WAIT_SECONDS", "20");
    let script = deploy(&sb).render().unwrap();
    let by_id = sb.by_id.clone();
    let device = sb.device.clone();
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        symlink(
            device,
            by_id.join("nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"),
        )
        .unwrap();
    });
    let out = sb.run(&script);
    late.join().unwrap();
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(sb.calls_to("mount").len(), 1);
}

#[test]
fn deploy_refuses_a_mount_path_where_something_else_is_mounted() {
    let sb = Sandbox::new();
    sb.attach();
    fs::write(sb.state.join("mounted_source"), "/dev/sdz1").unwrap();
    fs::write(sb.state.join("mounted_target"), sb.mount_str()).unwrap();
    let fstab = fs::read_to_string(&sb.fstab).unwrap();
    let out = sb.run(&deploy(&sb).render().unwrap());
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("already has /dev/sdz1 mounted, not volume vol-0123456789abcdef0"),
        "{}",
        out.stderr
    );
    assert!(sb.calls_to("mount").is_empty());
    assert_eq!(fs::read_to_string(&sb.fstab).unwrap(), fstab);
    assert!(out
        .steps()
        .contains(&("volume-mount".to_string(), StepStatus::Failed)));
}

#[test]
fn deploy_leaves_another_fstab_entry_for_the_mount_path_alone() {
    let sb = Sandbox::new();
    sb.attach();
    let line = format!(
        "UUID=old-volume {} xfs defaults,nofail 0 2\n",
        sb.mount_str()
    );
    fs::write(&sb.fstab, &line).unwrap();
    let out = sb.run(&deploy(&sb).render().unwrap());
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(fs::read_to_string(&sb.fstab).unwrap(), line);
    assert!(out.stderr.contains("UUID=old-volume"), "{}", out.stderr);
    assert!(out
        .steps()
        .contains(&("volume-fstab".to_string(), StepStatus::Skipped)));
}

#[test]
fn deploy_skip_flags_skip_their_parts() {
    let sb = Sandbox::new();
    let mut script = deploy(&sb);
    script.skip_volume = true;
    let out = sb.run(&script.render().unwrap());
    assert_eq!(out.code, 0, "{}", out.all());
    for name in ["blkid", "mkfs", "mount", "mountpoint"] {
        assert!(sb.calls_to(name).is_empty(), "{name} called");
    }
    let statuses: Vec<_> = out.steps().into_iter().map(|(_, st)| st).collect();
    assert_eq!(&statuses[..5], &[StepStatus::Skipped; 5]);
    assert_eq!(&statuses[5..8], &[StepStatus::Ok; 3]);
    // No output directory to hand to the image's user.
    assert_eq!(statuses[8], StepStatus::Skipped);

    let sb = Sandbox::new();
    sb.attach();
    let mut script = deploy(&sb);
    script.skip_image = true;
    script.registry.clear();
    script.image.clear();
    let out = sb.run(&script.render().unwrap());
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(sb.calls_to("docker").is_empty() && sb.calls_to("aws").is_empty());
    let statuses: Vec<_> = out.steps().into_iter().map(|(_, st)| st).collect();
    assert_eq!(&statuses[..5], &[StepStatus::Ok; 5]);
    assert_eq!(&statuses[5..], &[StepStatus::Skipped; 4]);
    assert_eq!(sb.calls_to("mount").len(), 1);
}

#[test]
fn deploy_fails_clearly_when_the_image_sees_no_gpu() {
    let mut sb = Sandbox::new();
    sb.attach();
    sb.set("FAKE_NO_GPU", "1");
    let out = sb.run(&deploy(&sb).render().unwrap());
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains(&format!("no GPU visible inside the image {IMAGE}")),
        "{}",
        out.stderr
    );
    let steps = out.steps();
    assert_eq!(
        steps.last(),
        Some(&("gpu-check".to_string(), StepStatus::Failed))
    );
    assert!(sb.calls_to("chown").is_empty());
    assert_idle_shutdown(&sb);
}
