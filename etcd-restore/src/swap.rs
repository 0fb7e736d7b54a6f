//! `--swap`: the runbook's restore on one node, through the static pod. The manifest leaves the
//! manifests dir (the kubelet stops etcd), the snapshot is restored beside the data dir, the old
//! data dir goes to the backup dir, the new one is renamed into place, the manifest comes back
//! with the new cluster's flags, and etcd must come up healthy with at least the snapshot's
//! revision. Until then every step is undone on failure: old data dir and manifest back.

use crate::{Args, Membership, checked_snapshot, document, membership, render, restore_beside};
use anyhow::{Result, anyhow};
use common::backup;
use common::cli::{self, Shared};
use common::exit::{self, coded};
use common::manifest::Manifest;
use common::report::Plan;
use common::runtime::Crictl;
use std::path::{Path, PathBuf};

/// What has been done so far, to undo it.
#[derive(Default)]
struct Done {
    manifest_backup: Option<PathBuf>,
    old_data_backup: Option<PathBuf>,
    new_in_place: bool,
    manifest_written: bool,
    tmp: Option<PathBuf>,
}

/// Puts the old data dir and the original manifest back; says what it did and what it could not.
fn undo(
    done: &Done,
    original: &Manifest,
    data_dir: &Path,
    backup_dir: &Path,
    crictl: &Crictl,
    timeout: std::time::Duration,
) -> String {
    let mut said = Vec::new();
    if done.manifest_written {
        match backup::move_aside(&original.path, &backup_dir.join("restore-failed")) {
            Ok(_) => said.push("new manifest taken out".to_string()),
            Err(e) => said.push(format!("new manifest NOT taken out: {e:#}")),
        }
        if crictl.wait_stopped(timeout).is_err() {
            said.push("etcd did not stop".into());
        }
    }
    if done.new_in_place {
        let failed = backup_dir.join("restore-failed");
        let _ = std::fs::create_dir_all(&failed);
        match backup::move_aside(data_dir, &failed) {
            Ok(to) => said.push(format!("restored data dir moved to {}", to.display())),
            Err(e) => said.push(format!("restored data dir NOT moved: {e:#}")),
        }
    }
    if let Some(old) = &done.old_data_backup {
        match std::fs::rename(old, data_dir) {
            Ok(()) => said.push(format!("old data dir back in {}", data_dir.display())),
            Err(e) => said.push(format!("old data dir NOT back, it is in {}: {e}", old.display())),
        }
    }
    if let Some(m) = &done.manifest_backup {
        let put_back = std::fs::read(m)
            .map_err(anyhow::Error::from)
            .and_then(|b| common::manifest::write_atomic(&original.path, &b));
        match put_back {
            Ok(()) => said.push("original manifest back".into()),
            Err(e) => said.push(format!("original manifest NOT back, it is in {}: {e:#}", m.display())),
        }
    }
    if let Some(t) = &done.tmp {
        let _ = std::fs::remove_dir_all(t);
    }
    said.join("; ")
}

pub fn run(args: &Args, shared: &Shared, snapshot_arg: &str) -> Result<u8> {
    let timeout = cli::parse_duration(&args.timeout).map_err(|m| coded(exit::USAGE, format!("--timeout: {m}")))?;
    let original = Manifest::load(&shared.manifest)?;
    let name = args
        .name
        .clone()
        .or_else(|| original.flag("name"))
        .ok_or_else(|| coded(exit::USAGE, "no --name, none in the manifest"))?;
    let peer = args
        .initial_advertise_peer_urls
        .clone()
        .or_else(|| original.flag("initial-advertise-peer-urls"))
        .ok_or_else(|| coded(exit::USAGE, "no --initial-advertise-peer-urls, none in the manifest"))?;
    let data_dir = match &args.data_dir {
        Some(d) => PathBuf::from(d),
        None => original.host_path(&shared.rootfs, &original.flag("data-dir").unwrap_or("/var/lib/etcd".into())),
    };
    let initial = args
        .initial_cluster
        .clone()
        .unwrap_or_else(|| cli::split_list(&peer).iter().map(|u| format!("{name}={u}")).collect::<Vec<_>>().join(","));
    // A new token gives new member and cluster IDs: nothing of the old cluster can talk to the new one.
    let token = args.initial_cluster_token.clone().unwrap_or_else(|| {
        format!("restore-{}", common::time::compact_utc(std::time::SystemTime::now()).to_lowercase())
    });
    let m: Membership = membership(&initial, &token, &name, &peer)?;
    let client_url = original
        .client_urls()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("manifest {}: no client URL", original.path.display()))?;
    let (path, verified) = checked_snapshot(snapshot_arg, args.skip_hash_check)?;
    let crictl = Crictl::new(&shared.crictl);
    let root = backup::backup_root(shared, args.backup_dir.as_deref());

    let mut plan = Plan::new("etcd-restore --swap");
    plan.check(
        "snapshot verified",
        true,
        format!("{path}: revision {}, {} keys", verified.status.revision, verified.status.total_keys),
    );
    let crictl_ok = crictl.etcd_containers();
    plan.check(
        "crictl works",
        crictl_ok.is_ok(),
        crictl_ok.as_ref().map_or_else(|e| format!("{e:#}"), |l| format!("{} etcd container(s)", l.len())),
    );
    plan.check("data dir parent exists", data_dir.parent().is_some_and(Path::is_dir), data_dir.display().to_string());
    plan.step("move manifest", format!("{} -> {}/<timestamp>/", original.path.display(), root.display()), true);
    plan.step("wait", format!("until the kubelet has stopped etcd (at most {timeout:?})"), false);
    plan.step(
        "restore",
        format!(
            "{path} beside {} as member {} ({}) of {initial}",
            data_dir.display(),
            m.me.name,
            common::report::hex_id(m.me.id)
        ),
        false,
    );
    plan.step("move old data dir", format!("{} -> {}/<timestamp>/", data_dir.display(), root.display()), true);
    plan.step("swap in", format!("the restored dir becomes {}", data_dir.display()), true);
    plan.step(
        "write manifest",
        format!("--initial-cluster={initial} --initial-cluster-state=new --initial-cluster-token={token}"),
        true,
    );
    plan.step("verify", format!("{client_url} healthy with revision >= {}", verified.status.revision), false);
    if args.dry_run {
        cli::emit(&plan, shared.output, Plan::render_table);
        return Ok(if plan.failed().is_empty() { exit::OK } else { exit::REFUSED });
    }
    let failed = plan.failed();
    if !failed.is_empty() {
        let reasons: Vec<String> = failed.iter().map(|c| format!("{}: {}", c.check, c.detail)).collect();
        return Err(coded(exit::REFUSED, format!("refused: {}", reasons.join("; "))));
    }
    cli::confirm(args.yes, &format!("replace this node's etcd data ({}) with {path}", data_dir.display()))?;

    let backup_dir = backup::new_backup_dir(&root)?;
    let mut done = Done::default();
    let result = (|| -> Result<(common::disk::restore::Outcome, i64)> {
        done.manifest_backup = Some(backup::move_aside(&original.path, &backup_dir)?);
        crictl.wait_stopped(timeout).map_err(|running| {
            coded(exit::TIMEOUT, format!("etcd still running after {timeout:?} (containers {})", running.join(",")))
        })?;
        let (tmp, outcome) = restore_beside(&path, &data_dir, &m, args)?;
        done.tmp = Some(tmp.clone());
        if data_dir.exists() {
            done.old_data_backup = Some(backup::move_aside(&data_dir, &backup_dir)?);
        }
        std::fs::rename(&tmp, &data_dir)
            .map_err(|e| anyhow!("rename {} to {}: {e}", tmp.display(), data_dir.display()))?;
        done.tmp = None;
        done.new_in_place = true;
        let mut new = original.clone();
        new.set_flag("initial-cluster", &initial)?;
        new.set_flag("initial-cluster-state", "new")?;
        new.set_flag("initial-cluster-token", &token)?;
        new.remove_flag("force-new-cluster")?;
        new.save()?;
        done.manifest_written = true;
        let (_, revision) = common::cluster::wait_member(shared, &client_url, timeout)?;
        let want = outcome.bumped_revision.unwrap_or(outcome.revision);
        if revision < want {
            return Err(anyhow!("{client_url} is at revision {revision}, below the snapshot's {want}"));
        }
        Ok((outcome, revision))
    })();
    match result {
        Ok((outcome, _)) => {
            let mut doc = document(path, &data_dir, &m, &outcome);
            doc.swapped_in = true;
            doc.backups = [&done.manifest_backup, &done.old_data_backup]
                .into_iter()
                .flatten()
                .map(|p| p.display().to_string())
                .collect();
            cli::emit(&doc, shared.output, render);
            Ok(exit::OK)
        }
        Err(e) => {
            let state = undo(&done, &original, &data_dir, &backup_dir, &crictl, timeout);
            Err(coded(
                exit::code_of(&e),
                format!("{e:#}; undone: {}", if state.is_empty() { "nothing had changed" } else { &state }),
            ))
        }
    }
}
