//! The history commands (docs/history.md) of the built binary against the mock S3 (SigV4
//! verified, a session token required) and a mock Kong Admin API: `history`, `import
//! --version-id` / `--before`, `diff`, `drill --sample`, and the native README's "restore what
//! we had yesterday at 14:00" run as written there. History objects are seeded by PUTs the
//! core's store signs (`common::put_export`), dated as each test needs.

mod common;

use std::time::SystemTime;

use common::*;
use config_bridge::history::history_key;
use serde_json::Value;

const HISTORY: &str = "fallback/3.9.1/history/";
const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;

/// Seeds a history object of `body` exported at `at`; returns its version id.
fn seed(s3: &S3, body: &str, at: u64, uploader: &str) -> String {
    let sha = config_bridge::document::sha256_hex(body.as_bytes());
    let key = history_key(HISTORY, at, &sha).expect("a history key");
    put_export(&s3.env(), &key, body.as_bytes(), uploader, at);
    key.trim_start_matches(HISTORY)
        .trim_end_matches(".json")
        .to_string()
}

/// The latest object (`config.json`) as an export writes it.
fn seed_latest(s3: &S3, body: &str, at: u64) {
    put_export(&s3.env(), KEY, body.as_bytes(), "cp-cron", at);
}

/// 00:00 UTC of the day before today.
fn yesterday_midnight() -> u64 {
    let now = now_ms();
    now - now % DAY - DAY
}

/// `2026-12-05` of a time.
fn date_of(ms: u64) -> String {
    let t = config_bridge::store::timestamp::basic_utc(ms);
    format!("{}-{}-{}", &t[..4], &t[4..6], &t[6..8])
}

/// The two commands under the native README's "Restore what we had yesterday at 14:00", as
/// words, and the date they name.
fn readme_restore_commands() -> (Vec<Vec<String>>, String) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("native/README.md");
    let section = readme
        .split_once("### Restore what we had yesterday at 14:00")
        .expect("the README section")
        .1;
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("its sh block")
        .0;
    let commands: Vec<Vec<String>> = block
        .lines()
        .filter(|l| l.starts_with("config-bridge "))
        .map(|l| shell_words(l.split(" #").next().unwrap_or(l)))
        .collect();
    assert_eq!(commands.len(), 2, "two commands: {block}");
    let date = commands[1]
        .iter()
        .find(|w| w.len() == 16 && w.ends_with("14:00"))
        .expect("a 'YYYY-MM-DD 14:00' time")
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    (commands, date)
}

#[test]
fn restore_what_we_had_yesterday_at_14_00_with_the_two_readme_commands() {
    let s3 = S3::start();
    let y = yesterday_midnight();
    let seeded = [
        (y - DAY + 9 * HOUR, doc_n(1)),
        (y + 9 * HOUR + 30 * MIN, doc_n(2)),
        (y + 13 * HOUR + 55 * MIN, doc_n(3)), // what we had at 14:00
        (y + 14 * HOUR + 20 * MIN, doc_n(4)),
        (now_ms() - HOUR, doc_n(5)),
    ];
    let ids: Vec<String> = seeded
        .iter()
        .map(|(at, body)| seed(&s3, body, *at, "cp-cron"))
        .collect();
    seed_latest(&s3, &seeded[4].1, seeded[4].0);

    let (commands, readme_date) = readme_restore_commands();
    let dir = tempfile::tempdir().unwrap();
    let yesterday = date_of(y);
    let run = |words: &[String]| {
        let args: Vec<String> = words[1..]
            .iter()
            .map(|w| w.replace(&readme_date, &yesterday))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_in(dir.path(), &args, &s3.env())
    };

    let history = run(&commands[0]);
    history.expect(0);
    let listed: Vec<&str> = history
        .stdout
        .lines()
        .filter(|l| l.starts_with("  2"))
        .collect();
    assert_eq!(listed.len(), 5, "{history:#?}");
    for (line, id) in listed.iter().zip(ids.iter().rev()) {
        assert!(
            line.trim_start().starts_with(id.as_str()),
            "newest first: {history:#?}"
        );
        assert!(line.contains("cp-cron"), "{line}");
    }
    assert!(listed[0].ends_with("<- latest"), "{history:#?}");
    assert!(
        history
            .stdout
            .contains("5 export(s) in the history, newest first"),
        "{history:#?}"
    );

    let import = run(&commands[1]);
    import.expect(0);
    let out_file = commands[1]
        .iter()
        .skip_while(|w| *w != "--out")
        .nth(1)
        .expect("--out FILE");
    assert_eq!(
        std::fs::read_to_string(dir.path().join(out_file)).unwrap(),
        seeded[2].1,
        "the export of {yesterday} 13:55: {import:#?}"
    );
    assert!(import.stdout.contains(&ids[2]), "{import:#?}");
}

#[test]
fn history_json_and_imports_by_version_id_prefix_and_time() {
    let s3 = S3::start();
    // a and b on one day (10:00, 11:00), c the next.
    let t0 = yesterday_midnight() - 2 * DAY + 10 * HOUR;
    let a = seed(&s3, &doc_n(1), t0, "node-a");
    let b = seed(&s3, &doc_n(2), t0 + HOUR, "node-b");
    let c = seed(&s3, &doc_n(3), t0 + DAY, "node-c");
    seed_latest(&s3, &doc_n(3), t0 + DAY);
    // Not history objects: never listed.
    s3.put_direct(&format!("{HISTORY}notes.txt"), b"x", SystemTime::now());
    s3.put_direct(
        &format!("{HISTORY}deeper/{a}.json"),
        b"x",
        SystemTime::now(),
    );

    let json = s3.cli("history --version 3.9.1 --json").expect(0).json();
    assert_eq!(json["count"], 3, "{json}");
    let versions = json["versions"].as_array().unwrap();
    let ids: Vec<&str> = versions
        .iter()
        .map(|v| v["version_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [c.as_str(), b.as_str(), a.as_str()]);
    let newest = &versions[0];
    assert_eq!(newest["uploader"], "node-c");
    assert_eq!(newest["bytes"], doc_n(3).len());
    assert_eq!(
        newest["sha256"],
        config_bridge::document::sha256_hex(doc_n(3).as_bytes())
    );
    assert_eq!(newest["signed"], false);
    assert_eq!(newest["encrypted"], false);
    assert_eq!(newest["latest"], true);
    assert_eq!(versions[1]["latest"], false);
    assert_eq!(newest["object"], format!("s3://{BUCKET}/{HISTORY}{c}.json"));
    // c was exported at t0 + DAY: its age is the time since then, whatever the time of day
    // (a fixed ">= 2 days" held only after 10:00 UTC).
    let age = newest["age_seconds"].as_u64().unwrap();
    let expected = (now_ms() - (t0 + DAY)) / 1000;
    assert!(
        age.abs_diff(expected) <= 60,
        "age {age} s, expected about {expected} s"
    );
    // `--limit`: the newest only, one HEAD each.
    s3.s3.clear_requests();
    let one = s3
        .cli("history --version 3.9.1 --limit 1 --json")
        .expect(0)
        .json();
    assert_eq!(one["shown"], 1);
    assert_eq!(one["versions"].as_array().unwrap().len(), 1);
    let heads = s3.calls().iter().filter(|c| c.starts_with("HEAD")).count();
    assert_eq!(heads, 2, "config.json and one version: {:?}", s3.calls());

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kong.json");
    let out_s = out.display().to_string();
    // A full id: one GET, no listing (read-only keys without s3:ListBucket can restore it).
    s3.s3.clear_requests();
    let by_id = s3
        .cli(&format!(
            "import --version 3.9.1 --version-id {a} --out {out_s} --json"
        ))
        .expect(0)
        .json();
    assert_eq!(by_id["version_id"], a.as_str());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), doc_n(1));
    assert_eq!(s3.calls(), ["GET 200"]);
    // A unique prefix; an ambiguous one (two exports that day) is a usage error.
    let prefix = &b[..22];
    s3.cli(&format!(
        "import --version 3.9.1 --version-id {prefix} --out {out_s}"
    ))
    .expect(0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), doc_n(2));
    let day = &a[..9];
    let ambiguous = s3.cli(&format!(
        "import --version 3.9.1 --version-id {day} --out {out_s}"
    ));
    ambiguous.expect(2);
    assert!(
        ambiguous.stderr.contains("2 history objects match"),
        "{ambiguous:#?}"
    );
    s3.cli(&format!(
        "import --version 3.9.1 --version-id 20000101T000000Z-0123456789abcdef --out {out_s}"
    ))
    .expect(11);
    // By time: at or before; RFC 3339 with an offset; before the oldest is nothing.
    let before = |t: &str| {
        run_with(
            &[
                "import",
                "--version",
                "3.9.1",
                "--before",
                t,
                "--out",
                &out_s,
                "--json",
            ],
            &s3.env(),
        )
    };
    let at_b = before(&config_bridge::store::timestamp::basic_utc(t0 + HOUR));
    assert_eq!(at_b.expect(0).json()["version_id"], b.as_str());
    let between = before(&rfc3339_offset(t0 + 2 * HOUR));
    assert_eq!(between.expect(0).json()["version_id"], b.as_str());
    let too_early = before(&rfc3339_offset(t0 - MIN));
    too_early.expect(11);
    assert!(
        too_early.json()["message"]
            .as_str()
            .unwrap()
            .contains("3 export(s), from"),
        "{too_early:#?}"
    );
    let bad = before("yesterday");
    bad.expect(2);
    assert!(bad.json()["message"].as_str().unwrap().contains("--before"));
    // Both selectors at once: clap refuses.
    s3.cli(&format!(
        "import --version 3.9.1 --version-id {a} --before 2026-01-01T00:00:00Z --out {out_s}"
    ))
    .expect(2);

    // A hostile object under a valid name (its content is not the export its name records):
    // refused, nothing written.
    std::fs::remove_file(&out).unwrap();
    let forged = format!("{}-{}", &a[..16], "ffffffffffffffff");
    let forged_key = format!("{HISTORY}{forged}.json");
    put_export(&s3.env(), &forged_key, doc_n(7).as_bytes(), "mallory", t0);
    let refused = s3.cli(&format!(
        "import --version 3.9.1 --version-id {forged} --out {out_s}"
    ));
    refused.expect(12);
    assert!(
        refused
            .stderr
            .contains("is not the export its name records"),
        "{refused:#?}"
    );
    assert!(!out.exists());
}

/// `2026-12-05T15:00:00+01:00` for a time (an offset, to check offsets are honoured).
fn rfc3339_offset(ms: u64) -> String {
    let shifted = ms + HOUR;
    let secs = shifted / 1000 % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}+01:00",
        date_of(shifted),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[test]
fn diff_names_what_changed_between_history_latest_and_files() {
    let s3 = S3::start();
    let t0 = now_ms() - DAY;
    let old = seed(&s3, &doc_n(2), t0, "cp");
    let mut changed: Value = serde_json::from_str(&doc_n(3)).unwrap();
    changed["services"][0]["port"] = 8080.into();
    let changed = serde_json::to_string_pretty(&changed).unwrap();
    seed(&s3, &changed, t0 + HOUR, "cp");
    seed_latest(&s3, &changed, t0 + HOUR);

    let d = s3.cli(&format!("diff --version 3.9.1 {old} latest"));
    d.expect(0);
    let lines: Vec<&str> = d.stdout.lines().collect();
    assert!(
        lines[0].starts_with(&format!("a  {old}  s3://{BUCKET}/{HISTORY}{old}.json")),
        "{d:#?}"
    );
    assert!(
        lines[1].starts_with(&format!("b  latest  s3://{BUCKET}/{KEY}")),
        "{d:#?}"
    );
    assert_eq!(
        &lines[2..],
        [
            "~ services  svc-0: port",
            "+ services  svc-2",
            "+ routes    route-2",
            "2 added, 0 removed, 1 changed, 3 unchanged",
        ],
        "{d:#?}"
    );
    let j = s3
        .cli(&format!("diff --version 3.9.1 {old} latest --json"))
        .expect(0)
        .json();
    assert_eq!(j["summary"]["added"], 2);
    assert_eq!(j["by_type"]["services"]["changed"], 1);
    assert_eq!(j["changes"][0]["fields"][0], "port");
    assert_eq!(j["changes"][1]["change"], "added");
    assert_eq!(j["a"]["version_id"], old.as_str());
    assert_eq!(j["b"]["ref"], "latest");
    assert_eq!(j["identical"], false);

    // Files need no storage settings at all; the same file twice is identical.
    let dir = tempfile::tempdir().unwrap();
    let f1 = write(dir.path(), "a.json", &doc_n(1));
    let f2 = write(dir.path(), "b.json", &doc_n(2));
    let files = run_with(&["diff", &f1, &f2], &[]);
    files.expect(0);
    assert!(files.stdout.contains("+ services  svc-1"), "{files:#?}");
    let same = run_with(&["diff", &f1, &f1], &[]).expect(0).stdout.clone();
    assert!(
        same.ends_with("0 added, 0 removed, 0 changed, 2 unchanged (identical bytes)\n"),
        "{same}"
    );
    run_with(&["diff", &f1, "/nonexistent/kong.json"], &[]).expect(1);
    let not_kong = write(dir.path(), "c.json", "{\"services\": []}");
    run_with(&["diff", &f1, &not_kong], &[]).expect(12);
}

#[test]
fn drill_samples_the_history_applies_it_and_writes_a_report() {
    let s3 = S3::start();
    let (kong, kong_srv) = start_kong();
    let t0 = now_ms() - 2 * DAY;
    for i in 0..4u64 {
        seed(&s3, &doc_n(i as usize + 1), t0 + i * HOUR, "cp");
    }
    seed_latest(&s3, &doc_n(4), t0 + 3 * HOUR);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("drill.json");
    let report_s = report.display().to_string();
    let admin = kong_srv.url();

    let ok = s3.cli(&format!(
        "drill --version 3.9.1 --sample 3 --apply-to {admin} --report {report_s}"
    ));
    ok.expect(0);
    assert!(ok.stdout.contains("history   4 export(s) under"), "{ok:#?}");
    assert_eq!(
        kong.posts().len(),
        4,
        "the latest and three samples applied"
    );
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(written["command"], "drill");
    assert_eq!(written["result"], "ok");
    assert_eq!(written["exit_code"], 0);
    let sampled = written["history"]["sampled"].as_array().unwrap();
    assert_eq!(sampled.len(), 3);
    assert!(sampled.iter().all(|s| s["valid"] == true), "{written}");
    // The oldest is always in the sample.
    assert_eq!(sampled[0]["entities"]["services"], 1, "{written}");

    // A history object whose content is not what its name records: exit 22, in the report too.
    let forged = format!(
        "{}-ffffffffffffffff",
        config_bridge::store::timestamp::basic_utc(t0 - HOUR)
    );
    put_export(
        &s3.env(),
        &format!("{HISTORY}{forged}.json"),
        doc_n(9).as_bytes(),
        "mallory",
        t0,
    );
    let bad = s3.cli(&format!(
        "drill --version 3.9.1 --sample 5 --report {report_s} --json"
    ));
    bad.expect(22);
    let printed = bad.json();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(printed, written, "the report is what --json prints");
    assert_eq!(written["result"], "history-invalid");
    let problems = written["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{written}");
    assert!(problems[0].as_str().unwrap().contains(&forged), "{written}");

    // No history at all, with --sample: exit 11 (history is not being written).
    s3.s3
        .delete_object_direct(BUCKET, &format!("{HISTORY}{forged}.json"));
    for key in s3.s3.list_keys(BUCKET) {
        if key.starts_with(HISTORY) {
            s3.s3.delete_object_direct(BUCKET, &key);
        }
    }
    s3.cli("drill --version 3.9.1 --sample 2").expect(11);
    s3.cli("drill --version 3.9.1").expect(0);
    let none = s3.cli("history --version 3.9.1");
    none.expect(11);
    assert!(none.stderr.contains("no history under"), "{none:#?}");
    // A passing drill whose report cannot be written fails: no stale report read as today's.
    let unwritable = s3.cli("drill --version 3.9.1 --report /nonexistent-dir/drill.json");
    unwritable.expect(1);
    assert!(
        unwritable.stderr.contains("cannot write the report"),
        "{unwritable:#?}"
    );
}

/// The drill command lines of `examples/drill/` (the CronJob's container args, the systemd
/// unit's ExecStart), run as written against the mock S3 and a mock scratch Kong (only the
/// scratch node's URL and the report's path replaced).
#[test]
fn the_drill_examples_run_as_written() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/drill");
    let cronjob = std::fs::read_to_string(format!("{root}/kubernetes/drill-cronjob.yaml")).unwrap();
    let mut k8s: Vec<String> = Vec::new();
    let mut in_args = false;
    for line in cronjob.lines() {
        let t = line.trim();
        if t == "- drill" {
            in_args = true;
        } else if in_args && !t.starts_with("- ") {
            break;
        }
        if in_args {
            k8s.push(t.trim_start_matches("- ").trim_matches('"').to_string());
        }
    }
    let unit =
        std::fs::read_to_string(format!("{root}/systemd/config-bridge-drill.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/local/bin/config-bridge "))
        .expect("the unit's ExecStart");
    let systemd = shell_words(exec);
    assert!(k8s.len() > 3 && systemd.len() > 3, "{k8s:?} {systemd:?}");

    let s3 = S3::start();
    let (kong, kong_srv) = start_kong();
    let t0 = now_ms() - DAY;
    for i in 0..6u64 {
        seed(&s3, &doc_n(i as usize + 1), t0 + i * HOUR, "cp");
    }
    seed_latest(&s3, &doc_n(6), t0 + 5 * HOUR);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json").display().to_string();
    let mut env = s3.env();
    env.push(("CONFIG_BRIDGE_GATEWAY_VERSION", VERSION.into()));
    for (what, words) in [("CronJob", &k8s), ("systemd", &systemd)] {
        let mut args: Vec<String> = words.clone();
        for w in args.iter_mut() {
            if w.starts_with("http://127.0.0.1:") {
                *w = kong_srv.url();
            } else if w.ends_with("report.json") {
                *w = report.clone();
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let before = kong.posts().len();
        let run = run_with(&args, &env);
        run.expect(0);
        assert_eq!(
            kong.posts().len() - before,
            6,
            "{what}: the latest and 5 samples: {run:#?}"
        );
    }
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(written["history"]["sampled"].as_array().unwrap().len(), 5);
}

/// Sealed exports (docs/sealed-exports.md) in the history: the tool's own exports record them
/// (signed and encrypted, sealed for `config.json`); `history` shows the key ids; an import of
/// a history object verifies and decrypts it with the importers' keys and refuses it without
/// them; `import --admin-url --version-id` applies that export through the engine's pinned
/// import; `diff` reads both sealed sides.
#[test]
fn sealed_history_exports_are_listed_verified_decrypted_and_applied() {
    let s3 = S3::start();
    let mut env = s3.env();
    env.extend(seal_env());
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for n in [1, 2] {
        let file = write(dir.path(), &format!("v{n}.json"), &doc_n(n));
        let out = cli_with(
            &format!("export --version {VERSION} --from-file {file} --node-id cp-1 --json"),
            &env,
        );
        let out = out.expect(0).json();
        assert_eq!(out["history"]["recorded"], true, "{out}");
        let said = out["history"]["message"].as_str().unwrap();
        let id = said
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".json")
            .to_string();
        ids.push(id);
    }
    let h = cli_with(&format!("history --version {VERSION} --json"), &env)
        .expect(0)
        .json();
    let v = &h["versions"][0];
    assert_eq!(v["version_id"], ids[1].as_str(), "{h}");
    assert_eq!(v["signed"], true);
    assert_eq!(v["signature_key"], "sig-1");
    assert_eq!(v["encrypted"], true);
    assert_eq!(v["encryption_key"], "enc-1");
    assert_eq!(v["sealed"], "signed (key sig-1), encrypted (key enc-1)");
    assert_eq!(v["latest"], true);
    assert!(v["bytes"].as_u64().unwrap() > doc_n(2).len() as u64, "{h}");

    let out = dir.path().join("kong.json");
    let out_s = out.display().to_string();
    let opened = cli_with(
        &format!(
            "import --version {VERSION} --version-id {} --out {out_s}",
            ids[0]
        ),
        &env,
    );
    opened.expect(0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), doc_n(1));
    std::fs::remove_file(&out).unwrap();
    // Without the keys: refused, nothing written.
    let refused = s3.cli(&format!(
        "import --version {VERSION} --version-id {} --out {out_s}",
        ids[0]
    ));
    refused.expect(12);
    assert!(!out.exists());

    let d = cli_with(
        &format!("diff --version {VERSION} {} latest --json", ids[0]),
        &env,
    )
    .expect(0)
    .json();
    assert_eq!(d["summary"]["added"], 2, "{d}");
    assert_eq!(
        d["a"]["sealed"],
        "signed (key sig-1), encrypted (key enc-1)"
    );

    // Through an empty node's Admin API: the engine's import, pinned to that history object.
    // (Two exports in one second: the second is dated a second later, docs/history.md.)
    let (kong, kong_srv) = start_kong();
    let applied = cli_with(
        &format!(
            "import --version {VERSION} --before {} --admin-url {}",
            config_bridge::store::timestamp::basic_utc(now_ms() + 5_000),
            kong_srv.url()
        ),
        &env,
    );
    applied.expect(0);
    assert!(applied.stdout.contains(&ids[1]), "{applied:#?}");
    assert_eq!(
        kong.config().unwrap(),
        serde_json::from_str::<Value>(&doc_n(2)).unwrap()
    );
    let (kong, kong_srv) = start_kong();
    cli_with(
        &format!(
            "import --version {VERSION} --version-id {} --admin-url {}",
            &ids[0][..20],
            kong_srv.url()
        ),
        &env,
    )
    .expect(0);
    assert_eq!(
        kong.config().unwrap(),
        serde_json::from_str::<Value>(&doc_n(1)).unwrap()
    );
    let drill = cli_with(
        &format!("drill --version {VERSION} --sample 2 --json"),
        &env,
    )
    .expect(0)
    .json();
    assert_eq!(drill["history"]["sampled"][0]["valid"], true, "{drill}");
}
