//! The README's first command, `.ci/up`, where it can be run without its
//! release build: a second run on a broker where a demo runs, or from a
//! clone whose demo runs, is refused before it changes anything (the
//! running demo keeps its passwords), and the README's publish command and
//! first-hour text are what `.ci/up` prints and does, with no hand-written
//! timing or test count to go stale.

use std::process::Output;

use crate::brokeruser::BrokerUser;
use crate::util::{PATIENCE, repo_root};

/// Runs `bash .ci/up` with `env`; a run that does not end by itself fails
/// the test.
async fn up(env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new("bash");
    command
        .arg(repo_root().join(".ci").join("up"))
        .envs(env.iter().copied())
        .env_remove("MMT_KEEP_WORKER")
        .kill_on_drop(true);
    tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect(".ci/up ended")
        .expect("bash runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ci_up_on_a_broker_where_a_demo_runs_is_refused_and_changes_nothing() {
    let prefix = format!(
        "mmt-t-up-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // The first demo's worker, connected as its broker user.
    let worker = BrokerUser::create_named(format!("{prefix}-worker"), [".*", ".*", ".*"]);
    let running = worker.connect().await;
    let out = up(&[("MMT_DEMO_USER_PREFIX", prefix.as_str())]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("broker: RabbitMQ answers on 127.0.0.1:5672"),
        "says which broker first: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "up: refused: another .ci/up is running on this broker: {prefix}-worker connected"
        )) && stderr.contains("Nothing was changed."),
        "{stderr}"
    );
    assert!(
        !stdout.contains("building"),
        "refused before the build: {stdout}"
    );
    // Its password is the one it had: a new connection with it succeeds.
    let again = worker.connect().await;
    let _ = again.close(200, "done".into()).await;
    let _ = running.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ci_up_from_the_same_clone_is_refused_before_it_changes_anything() {
    let prefix = format!(
        "mmt-t-up-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // The first run holds the clone's lock; the second runs under it.
    let lock = repo_root().join("mmt-up.lock");
    let mut command = tokio::process::Command::new("flock");
    command
        .args(["-w", "10"])
        .arg(&lock)
        .arg("bash")
        .arg(repo_root().join(".ci").join("up"))
        .env("MMT_DEMO_USER_PREFIX", &prefix)
        .kill_on_drop(true);
    let out = tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect(".ci/up ended")
        .expect("flock runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("up: refused: another .ci/up is running from this clone"),
        "{stderr}"
    );
    let users = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_users"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        !String::from_utf8_lossy(&users.stdout).contains(&prefix),
        "no broker user was made"
    );
}

/// The README's `sh` block that holds `mmt-demo.env`: the publish command.
fn readme_publish_command(readme: &str) -> &str {
    readme
        .lines()
        .find(|line| line.contains(". ./mmt-demo.env;"))
        .map(|line| line.split("   #").next().unwrap_or(line).trim_end())
        .expect("README.md shows the command that publishes to the demo")
}

#[test]
fn the_readme_publish_command_is_the_one_ci_up_prints() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let script = std::fs::read_to_string(repo_root().join(".ci").join("up")).expect(".ci/up");
    let command = readme_publish_command(&readme);
    assert!(
        script.contains(&format!("echo \"    {command}\"")),
        ".ci/up must print the README's command {command:?}"
    );
}

/// A number followed by a unit of time or by "tests": what goes stale.
fn stale_figures(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|pair| {
            pair[0].chars().all(|c| c.is_ascii_digit() || c == ',')
                && ["min", "s", "tests", "passed", "minutes", "seconds"]
                    .iter()
                    .any(|unit| pair[1].trim_end_matches([',', '.', ')']) == *unit)
        })
        .map(|pair| pair.join(" "))
        .collect()
}

#[test]
fn the_readme_first_hour_has_no_hand_written_timing_or_test_count() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let start = readme
        .find("## Two commands")
        .expect("the first-hour section");
    let end = readme[start..]
        .find("## The console")
        .map_or(readme.len(), |at| start + at);
    let stale = stale_figures(&readme[start..end]);
    assert!(stale.is_empty(), "figures that go stale: {stale:?}");
    assert_eq!(
        stale_figures("took 3 min 43 s, the 131 tests took about a minute"),
        ["3 min", "43 s,", "131 tests"],
        "the check finds what it looks for"
    );
}
