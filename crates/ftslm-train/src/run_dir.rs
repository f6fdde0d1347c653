//! The layout of a run's output directory (see DESIGN.md, "Run directory"):
//! where each artefact lives, which checkpoints exist, rotation under
//! `save_total_limit`, and the backup that `--no-resume` makes. One process
//! writes a run directory at a time: opening it takes its lock.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ftslm_fs::DirLock;

use crate::atomic::remove_debris;
use crate::checkpoint::Checkpoint;
use crate::error::TrainError;

pub const FINAL_MODEL: &str = "final_model";
pub const BEST_MODEL: &str = "best_model";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const LOGS_DIR: &str = "logs";
pub const SUMMARY_FILE: &str = "run_summary.json";
/// The run's charts, drawn when it finishes.
pub const PLOTS_DIR: &str = "plots";

#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
    /// Held for as long as the run writes here.
    _lock: Arc<DirLock>,
}

impl RunDir {
    /// Creates the directory if needed, locks it for this process (another
    /// live process's run is an error naming it), and removes debris
    /// (`*.tmp-*`) of killed processes — debris, because no live writer
    /// can hold the lock — returning what was removed so it can be reported.
    pub fn open(root: &Path) -> Result<(RunDir, Vec<PathBuf>), TrainError> {
        fs::create_dir_all(root)
            .map_err(|e| TrainError::io("cannot create output_dir", root, e))?;
        let lock = DirLock::acquire(root, &DirLock::this_process())?;
        let mut removed = remove_debris(root)?;
        removed.extend(remove_debris(&root.join(LOGS_DIR))?);
        Ok((
            RunDir {
                root: root.to_path_buf(),
                _lock: Arc::new(lock),
            },
            removed,
        ))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn final_model(&self) -> PathBuf {
        self.root.join(FINAL_MODEL)
    }
    pub fn best_model(&self) -> PathBuf {
        self.root.join(BEST_MODEL)
    }
    pub fn metrics(&self) -> PathBuf {
        self.root.join(METRICS_FILE)
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join(LOGS_DIR)
    }
    pub fn summary(&self) -> PathBuf {
        self.root.join(SUMMARY_FILE)
    }

    /// Complete checkpoints, oldest step first.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>, TrainError> {
        let entries =
            fs::read_dir(&self.root).map_err(|e| TrainError::io("cannot read", &self.root, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| TrainError::io("cannot read", &self.root, e))?;
            let name = entry.file_name();
            let Some(step) = Checkpoint::parse_name(&name.to_string_lossy()) else {
                continue;
            };
            if entry.path().is_dir() {
                out.push(Checkpoint {
                    step,
                    path: entry.path(),
                });
            }
        }
        out.sort_by_key(|c| c.step);
        Ok(out)
    }

    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, TrainError> {
        Ok(self.checkpoints()?.pop())
    }

    /// Deletes the oldest checkpoints beyond `limit`, never the one at
    /// `keep_step` (the best); returns the deleted paths.
    pub fn rotate(&self, limit: usize, keep_step: Option<u64>) -> Result<Vec<PathBuf>, TrainError> {
        let all = self.checkpoints()?;
        let mut deletable: Vec<&Checkpoint> =
            all.iter().filter(|c| Some(c.step) != keep_step).collect();
        // The best one takes a place among the newest only when it is one of them.
        let best_is_recent = all[all.len().saturating_sub(limit)..]
            .iter()
            .any(|c| Some(c.step) == keep_step);
        let newest_keep = limit - usize::from(best_is_recent);
        let excess = deletable.len().saturating_sub(newest_keep);
        let mut removed = Vec::new();
        for c in deletable.drain(..excess) {
            fs::remove_dir_all(&c.path)
                .map_err(|e| TrainError::io("cannot delete old checkpoint", &c.path, e))?;
            removed.push(c.path.clone());
        }
        Ok(removed)
    }

    /// Moves every result of an earlier run into `backup_<YYYYmmdd_HHMMSS>/`
    /// (local time, as the original system named it); returns the backup
    /// folder, or `None` when there was nothing to move.
    pub fn back_up_previous_run(&self) -> Result<Option<PathBuf>, TrainError> {
        let mut movable = Vec::new();
        for c in self.checkpoints()? {
            movable.push(c.path);
        }
        for p in [
            self.final_model(),
            self.best_model(),
            self.metrics(),
            self.logs(),
            self.summary(),
        ] {
            if p.exists() {
                movable.push(p);
            }
        }
        if movable.is_empty() {
            return Ok(None);
        }
        let stamp = chrono::Local::now().format("%Y%m%d_%H%M%S").to_string();
        let mut backup = self.root.join(format!("backup_{stamp}"));
        let mut n = 1;
        while backup.exists() {
            backup = self.root.join(format!("backup_{stamp}_{n}"));
            n += 1;
        }
        fs::create_dir(&backup).map_err(|e| TrainError::io("cannot create", &backup, e))?;
        for p in movable {
            let Some(name) = p.file_name() else { continue };
            let to = backup.join(name);
            fs::rename(&p, &to)
                .map_err(|e| TrainError::io("cannot move into the backup", &p, e))?;
        }
        Ok(Some(backup))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(steps: &[u64]) -> (tempfile::TempDir, RunDir) {
        let tmp = tempfile::tempdir().unwrap();
        let (run, _) = RunDir::open(tmp.path()).unwrap();
        for s in steps {
            fs::create_dir(tmp.path().join(Checkpoint::dir_name(*s))).unwrap();
        }
        (tmp, run)
    }

    fn steps(run: &RunDir) -> Vec<u64> {
        run.checkpoints().unwrap().iter().map(|c| c.step).collect()
    }

    #[test]
    fn rotation_keeps_the_newest_and_the_best() {
        let (_t, run) = run_with(&[100, 200, 300, 400, 500]);
        run.rotate(2, Some(100)).unwrap();
        assert_eq!(
            steps(&run),
            vec![100, 400, 500],
            "best kept beyond the limit"
        );
        run.rotate(2, Some(500)).unwrap();
        assert_eq!(
            steps(&run),
            vec![400, 500],
            "best among the newest counts once"
        );
        let (_t, run) = run_with(&[1, 2, 3, 10]);
        run.rotate(3, None).unwrap();
        assert_eq!(steps(&run), vec![2, 3, 10], "numeric, not lexical, order");
    }

    #[test]
    fn backup_moves_results_but_not_other_files() {
        let (tmp, run) = run_with(&[5]);
        fs::write(run.metrics(), "{}\n").unwrap();
        fs::create_dir(run.final_model()).unwrap();
        fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
        let backup = run.back_up_previous_run().unwrap().unwrap();
        let name = backup.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("backup_") && name.len() == "backup_20250101_120000".len(),
            "{name}"
        );
        assert!(backup.join("checkpoint-5").is_dir() && backup.join(METRICS_FILE).is_file());
        assert!(backup.join(FINAL_MODEL).is_dir());
        assert!(tmp.path().join("notes.txt").exists());
        assert!(run.checkpoints().unwrap().is_empty());
        assert_eq!(
            run.back_up_previous_run().unwrap(),
            None,
            "nothing left to move"
        );
    }
}
