//! Owns the deployment files (Dockerfile, .dockerignore, deploy/): checks, without Docker or a cluster, that they parse and agree with ringwatch (ports, probe paths, RINGWATCH__ variables through `ringwatch check-config`, drain timeout, exit code 64), and runs promtool, amtool, systemd-analyze and python3/PyYAML where installed.
//!
//! A missing tool skips its check with a notice on stderr; set
//! RINGWATCH_REQUIRE_DEPLOY_TOOLS=1 to make a missing tool a failure instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ringwatch::config::{Config, Validated};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ringwatch");
const RULE_FILES: [&str; 2] = [
    "deploy/prometheus/recording_rules.yml",
    "deploy/prometheus/alerting_rules.yml",
];
const CONFIG_PATH: &str = "/etc/ringwatch/ringwatch.toml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// A check that cannot run here: a notice, or a failure when
/// RINGWATCH_REQUIRE_DEPLOY_TOOLS is set.
fn skip(why: &str) {
    if std::env::var_os("RINGWATCH_REQUIRE_DEPLOY_TOOLS").is_some() {
        panic!("{why} (RINGWATCH_REQUIRE_DEPLOY_TOOLS is set)");
    }
    eprintln!("deploy_files: SKIPPED: {why}");
}

fn run(cmd: &mut Command) -> Option<Output> {
    cmd.current_dir(root()).output().ok()
}

fn tool_exists(name: &str) -> bool {
    run(Command::new(name).arg("--version")).is_some_and(|o| o.status.success())
}

fn have_pyyaml() -> bool {
    run(Command::new("python3").args(["-c", "import yaml"])).is_some_and(|o| o.status.success())
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// ringwatch's own defaults (config/default.toml, no file, no environment).
fn defaults() -> Validated {
    Config::load(None, Vec::new()).unwrap().validate().unwrap()
}

fn ports() -> (u16, u16) {
    let d = defaults();
    (d.ingest.listen.port(), d.http.listen.port())
}

/// Every .yml/.yaml file under deploy/, sorted, relative to the crate root.
fn yaml_files() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            ) {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("deploy"), &mut files);
    let mut rel: Vec<String> = files
        .iter()
        .map(|p| {
            p.strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    rel.sort();
    rel
}

/// The YAML documents of `rel` as JSON, through python3 and PyYAML; None
/// (after a skip notice) when they are not installed.
fn yaml_docs(rel: &str) -> Option<Vec<Value>> {
    if !have_pyyaml() {
        skip(&format!(
            "python3 with PyYAML not found: structure of {rel} not checked"
        ));
        return None;
    }
    let script = "import json,sys,yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout, default=str)";
    let o = run(Command::new("python3").args(["-c", script, rel])).unwrap();
    assert!(o.status.success(), "{rel} does not parse:\n{}", show(&o));
    let Value::Array(docs) = serde_json::from_slice(&o.stdout).unwrap() else {
        panic!("{rel}: expected a list of documents")
    };
    Some(docs)
}

fn yaml_doc(rel: &str) -> Option<Value> {
    let mut docs = yaml_docs(rel)?;
    assert_eq!(docs.len(), 1, "{rel}: expected one YAML document");
    docs.pop()
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// The RINGWATCH__ variables a deployment file sets, in its own syntax:
/// Dockerfile `ENV K=V`, compose `K: "V"` (or `- K=V`), Kubernetes
/// `- name: K` followed by `value: "V"`, systemd `Environment=K=V`.
fn env_vars(rel: &str) -> BTreeMap<String, String> {
    let text = read(rel);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let mut vars = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let l = line.strip_prefix("- ").unwrap_or(line);
        let l = l.strip_prefix("ENV ").unwrap_or(l);
        let l = l.strip_prefix("Environment=").unwrap_or(l);
        if let Some(name) = l.strip_prefix("name: ") {
            let name = unquote(name);
            if name.starts_with("RINGWATCH__") {
                let value = lines
                    .get(i + 1)
                    .and_then(|n| n.strip_prefix("value: "))
                    .unwrap_or_else(|| panic!("{rel}: no `value:` after `name: {name}`"));
                vars.insert(name.to_string(), unquote(value).to_string());
            }
        } else if l.starts_with("RINGWATCH__") {
            let (k, v) = l
                .split_once('=')
                .filter(|(k, _)| !k.contains(':'))
                .or_else(|| l.split_once(':'))
                .unwrap_or_else(|| panic!("{rel}: cannot read `{line}`"));
            vars.insert(unquote(k).to_string(), unquote(v).to_string());
        }
    }
    vars
}

/// `ringwatch [--config FILE] check-config` with exactly `vars` in its environment.
fn check_config(config: Option<&Path>, vars: &BTreeMap<String, String>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().envs(vars);
    if let Some(file) = config {
        cmd.arg("--config").arg(file);
    }
    run(cmd.arg("check-config")).expect("running ringwatch")
}

/// The ringwatch.toml embedded in deploy/kubernetes/configmap.yaml, written to
/// a file under the test tmpdir.
fn configmap_toml() -> PathBuf {
    let text = read("deploy/kubernetes/configmap.yaml");
    let mut lines = text.lines();
    let key = lines
        .by_ref()
        .find(|l| l.trim() == "ringwatch.toml: |")
        .expect("configmap.yaml: no `ringwatch.toml: |` block");
    let key_indent = key.len() - key.trim_start().len();
    let block: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > key_indent)
        .collect();
    let indent = block
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let toml: String = block
        .iter()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy_files_configmap.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// The entries under every `ports:` key of the compose file, unquoted.
fn compose_ports(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut within: Option<usize> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if let Some(ports_indent) = within {
            if indent > ports_indent && t.starts_with("- ") {
                let entry = t[2..].split(" #").next().unwrap();
                out.push(unquote(entry).to_string());
                continue;
            }
            within = None;
        }
        if t == "ports:" {
            within = Some(indent);
        }
    }
    out
}

fn port_of(listen: &str) -> u16 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("`{listen}` is not IP:port"))
}

fn seconds(v: &str) -> f64 {
    let v = v.trim();
    v.strip_suffix('s')
        .unwrap_or(v)
        .parse()
        .unwrap_or_else(|_| panic!("`{v}` is not a number of seconds"))
}

/// The value of `key` (`key: value` or `key=value`) on its first line in `text`.
fn setting<'a>(text: &'a str, key: &str, sep: char) -> &'a str {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(sep))
        .map(|v| unquote(v.split(" #").next().unwrap()))
        .unwrap_or_else(|| panic!("no `{key}{sep}` line"))
}

#[test]
fn every_yaml_file_parses() {
    let files = yaml_files();
    for owned in [
        "deploy/docker-compose.yml",
        "deploy/prometheus/prometheus.yml",
        "deploy/alertmanager/alertmanager.yml",
        "deploy/kubernetes/deployment.yaml",
        "deploy/kubernetes/service.yaml",
        "deploy/kubernetes/servicemonitor.yaml",
        "deploy/kubernetes/prometheusrule.yaml",
        "deploy/kubernetes/configmap.yaml",
    ] {
        assert!(files.iter().any(|f| f == owned), "{owned} is missing");
    }
    if !have_pyyaml() {
        return skip("python3 with PyYAML not found: YAML files not parsed");
    }
    let o = run(Command::new("python3")
        .args([
            "-c",
            "import yaml,sys; [list(yaml.safe_load_all(open(f))) for f in sys.argv[1:]]",
        ])
        .args(&files))
    .unwrap();
    assert!(
        o.status.success(),
        "a YAML file does not parse:\n{}",
        show(&o)
    );
    eprintln!("deploy_files: {} YAML files parse", files.len());
}

#[test]
fn dockerfile_matches_ringwatch() {
    let (ingest, http) = ports();
    let text = read("Dockerfile");
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let exposed: BTreeSet<u16> = instructions
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace())
        .map(|p| p.trim_end_matches("/tcp").parse().unwrap())
        .collect();
    assert_eq!(exposed, BTreeSet::from([ingest, http]), "EXPOSE");

    let env = env_vars("Dockerfile");
    assert_eq!(port_of(&env["RINGWATCH__INGEST__LISTEN"]), ingest);
    assert_eq!(port_of(&env["RINGWATCH__HTTP__LISTEN"]), http);
    assert!(env["RINGWATCH__INGEST__LISTEN"].starts_with("0.0.0.0:"));
    assert!(env["RINGWATCH__HTTP__LISTEN"].starts_with("0.0.0.0:"));

    let froms: Vec<&str> = instructions
        .iter()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "two stages: {froms:?}");
    assert!(froms[0].starts_with("rust:1-bookworm"), "{froms:?}");
    assert!(
        froms[1].starts_with("gcr.io/distroless/cc-debian12")
            || froms[1].starts_with("debian:bookworm-slim"),
        "{froms:?}"
    );
    assert!(text.contains("cargo build --release --locked"));
    assert!(instructions.contains(&"STOPSIGNAL SIGTERM"));
    assert!(instructions.contains(&r#"ENTRYPOINT ["/usr/local/bin/ringwatch"]"#));
    assert!(instructions.contains(&r#"CMD ["run"]"#));
    assert!(
        !instructions.iter().any(|l| l.starts_with("HEALTHCHECK")),
        "distroless has no curl: no HEALTHCHECK (see the comment)"
    );
    let user = setting(&text, "USER", ' ');
    assert_ne!(user.split(':').next(), Some("0"), "USER must not be root");
    assert_ne!(
        user.split(':').next(),
        Some("root"),
        "USER must not be root"
    );

    let ignore = read(".dockerignore");
    for entry in ["target/", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore: {entry}"
        );
    }
}

#[test]
fn compose_matches_ringwatch() {
    let (ingest, http) = ports();
    let text = read("deploy/docker-compose.yml");
    let published = compose_ports(&text);
    assert!(!published.is_empty());
    for p in &published {
        assert!(p.starts_with("127.0.0.1:"), "port {p} is not on 127.0.0.1");
    }
    for port in [ingest, http] {
        let want = format!("127.0.0.1:{port}:{port}");
        assert!(
            published.contains(&want),
            "{want} not published: {published:?}"
        );
    }
    let env = env_vars("deploy/docker-compose.yml");
    assert_eq!(port_of(&env["RINGWATCH__INGEST__LISTEN"]), ingest);
    assert_eq!(port_of(&env["RINGWATCH__HTTP__LISTEN"]), http);
    assert!(text.contains(&format!("ws://ringwatch:{ingest}/v1/events")));
    let grace = seconds(setting(&text, "stop_grace_period", ':'));
    assert!(
        grace > defaults().shutdown.drain_timeout.as_secs_f64(),
        "stop_grace_period"
    );

    let Some(doc) = yaml_doc("deploy/docker-compose.yml") else {
        return;
    };
    let services = &doc["services"];
    for s in [
        "ringwatch",
        "simulator",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        assert!(services[s].is_object(), "service {s}");
    }
    assert_eq!(services["ringwatch"]["build"]["context"], "..");
    assert_eq!(services["ringwatch"]["build"]["dockerfile"], "Dockerfile");
    assert_eq!(
        services["simulator"]["image"],
        services["ringwatch"]["image"]
    );
    let command: Vec<&str> = services["simulator"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let url = format!("ws://ringwatch:{ingest}/v1/events");
    assert_eq!(
        command,
        [
            "simulate",
            "--url",
            &url,
            "--realtime",
            "--duration",
            "86400"
        ]
    );
    let mounts = |s: &str| -> Vec<String> {
        services[s]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let host_paths: Vec<PathBuf> = ["prometheus", "alertmanager", "grafana"]
        .iter()
        .flat_map(|s| mounts(s))
        .filter(|m| m.starts_with('.'))
        .map(|m| Path::new("deploy").join(m.split(':').next().unwrap()))
        .collect();
    // Paths are relative to deploy/; normalise `deploy/../x` to `x`.
    let host_paths: BTreeSet<String> = host_paths
        .iter()
        .map(|p| {
            let s = p.to_string_lossy().replace("deploy/./", "deploy/");
            s.strip_prefix("deploy/../")
                .map_or(s.clone(), str::to_string)
        })
        .collect();
    for want in [
        "deploy/prometheus/prometheus.yml",
        RULE_FILES[0],
        RULE_FILES[1],
        "deploy/alertmanager/alertmanager.yml",
        "deploy/grafana/provisioning",
        "dashboards",
    ] {
        assert!(
            host_paths.contains(want),
            "{want} not mounted: {host_paths:?}"
        );
    }
}

#[test]
fn prometheus_config_matches_ringwatch() {
    let (_, http) = ports();
    let text = read("deploy/prometheus/prometheus.yml");
    assert!(text.contains(&format!("ringwatch:{http}")));
    assert!(text.contains("alertmanager:9093"));
    // The alerts name the job: up{job="ringwatch"}.
    assert_eq!(setting(&text, "- job_name", ':'), "ringwatch");
    let Some(doc) = yaml_doc("deploy/prometheus/prometheus.yml") else {
        return;
    };
    let rule_files: Vec<&str> = doc["rule_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(rule_files, ["recording_rules.yml", "alerting_rules.yml"]);
    let job = &doc["scrape_configs"][0];
    assert_eq!(job["job_name"], "ringwatch");
    assert_eq!(job["scrape_interval"], "15s");
    assert_eq!(job["metrics_path"], "/metrics");
    assert_eq!(
        job["static_configs"][0]["targets"][0],
        format!("ringwatch:{http}")
    );
    assert_eq!(
        doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0],
        "alertmanager:9093"
    );
}

#[test]
fn promtool_checks_prometheus_config() {
    if !tool_exists("promtool") {
        return skip("promtool not found: deploy/prometheus/prometheus.yml not checked");
    }
    if let Some(missing) = RULE_FILES.iter().find(|f| !root().join(f).exists()) {
        return skip(&format!(
            "{missing} does not exist yet: promtool check config not run"
        ));
    }
    let o =
        run(Command::new("promtool").args(["check", "config", "deploy/prometheus/prometheus.yml"]))
            .unwrap();
    assert!(o.status.success(), "promtool check config:\n{}", show(&o));
}

#[test]
fn amtool_checks_alertmanager_config() {
    if !tool_exists("amtool") {
        return skip("amtool not found: deploy/alertmanager/alertmanager.yml not checked");
    }
    let o =
        run(Command::new("amtool").args(["check-config", "deploy/alertmanager/alertmanager.yml"]))
            .unwrap();
    assert!(o.status.success(), "amtool check-config:\n{}", show(&o));
    let text = read("deploy/alertmanager/alertmanager.yml");
    assert!(text.contains("group_by: [alertname, queue]"));
}

#[test]
fn probe_paths_exist_in_ringwatch() {
    let http_rs = read("src/http.rs");
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert!(
            http_rs.contains(&format!("\"{path}\"")),
            "src/http.rs serves no {path}"
        );
    }
    let deployment = read("deploy/kubernetes/deployment.yaml");
    assert!(deployment.contains("path: /healthz"));
    assert!(deployment.contains("path: /readyz"));
    assert!(read("deploy/kubernetes/servicemonitor.yaml").contains("path: /metrics"));
}

#[test]
fn manifest_env_vars_are_valid_config_keys() {
    let mut sources = BTreeMap::new();
    for rel in [
        "Dockerfile",
        "deploy/docker-compose.yml",
        "deploy/kubernetes/deployment.yaml",
        "deploy/systemd/ringwatch.service",
    ] {
        sources.insert(rel, env_vars(rel));
    }
    for rel in [
        "Dockerfile",
        "deploy/docker-compose.yml",
        "deploy/kubernetes/deployment.yaml",
    ] {
        let vars = &sources[rel];
        for key in ["RINGWATCH__INGEST__LISTEN", "RINGWATCH__HTTP__LISTEN"] {
            assert!(vars.contains_key(key), "{rel} does not set {key}: {vars:?}");
        }
    }
    for (rel, vars) in &sources {
        let o = check_config(None, vars);
        assert!(
            o.status.success(),
            "{rel}: ringwatch check-config with {vars:?}:\n{}",
            show(&o)
        );
    }
    // The Kubernetes pod: the ConfigMap's file and the Deployment's variables.
    let toml = configmap_toml();
    let o = check_config(Some(&toml), &sources["deploy/kubernetes/deployment.yaml"]);
    assert!(
        o.status.success(),
        "configmap ringwatch.toml:\n{}",
        show(&o)
    );

    // The check has teeth: a misspelled key is refused with exit code 64,
    // the code ringwatch.service does not restart on.
    let mut bad = sources["deploy/kubernetes/deployment.yaml"].clone();
    bad.insert("RINGWATCH__INGEST__LISTN".into(), "0.0.0.0:9467".into());
    let o = check_config(None, &bad);
    assert_eq!(o.status.code(), Some(64), "{}", show(&o));
}

#[test]
fn kubernetes_manifests_match_ringwatch() {
    let (ingest, http) = ports();
    let toml = configmap_toml();
    let drain = Config::load(Some(&toml), Vec::new())
        .unwrap()
        .validate()
        .unwrap()
        .shutdown
        .drain_timeout;
    let deployment_text = read("deploy/kubernetes/deployment.yaml");
    let grace = seconds(setting(
        &deployment_text,
        "terminationGracePeriodSeconds",
        ':',
    ));
    assert!(
        grace > drain.as_secs_f64(),
        "terminationGracePeriodSeconds {grace} must exceed drain_timeout {drain:?}"
    );
    for port in [ingest, http] {
        assert!(deployment_text.contains(&format!("containerPort: {port}")));
        assert!(read("deploy/kubernetes/service.yaml").contains(&format!("port: {port}")));
    }
    let env = env_vars("deploy/kubernetes/deployment.yaml");
    assert_eq!(port_of(&env["RINGWATCH__INGEST__LISTEN"]), ingest);
    assert_eq!(port_of(&env["RINGWATCH__HTTP__LISTEN"]), http);

    if !have_pyyaml() {
        return skip(
            "python3 with PyYAML not found: structure of deploy/kubernetes/*.yaml not checked",
        );
    }
    let (Some(dep), Some(svc), Some(sm), Some(cm), Some(rule)) = (
        yaml_doc("deploy/kubernetes/deployment.yaml"),
        yaml_doc("deploy/kubernetes/service.yaml"),
        yaml_doc("deploy/kubernetes/servicemonitor.yaml"),
        yaml_doc("deploy/kubernetes/configmap.yaml"),
        yaml_doc("deploy/kubernetes/prometheusrule.yaml"),
    ) else {
        return;
    };
    assert_eq!(dep["kind"], "Deployment");
    assert_eq!(dep["spec"]["replicas"], 1);
    let pod = &dep["spec"]["template"]["spec"];
    let pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let dockerfile = read("Dockerfile");
    let docker_uid = setting(&dockerfile, "USER", ' ').split(':').next().unwrap();
    assert_eq!(
        pod["securityContext"]["runAsUser"].to_string(),
        docker_uid,
        "runAsUser and the Dockerfile's USER"
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(args, ["--config", CONFIG_PATH, "run"]);
    let container_ports: BTreeMap<&str, u64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        container_ports,
        BTreeMap::from([
            ("http-metrics", u64::from(http)),
            ("ingest", u64::from(ingest))
        ])
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http-metrics");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http-metrics");
    for kind in ["requests", "limits"] {
        assert!(
            c["resources"][kind]["memory"].is_string(),
            "resources.{kind}"
        );
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let structured_env: BTreeMap<String, String> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("name"), s("value"))
        })
        .collect();
    assert_eq!(structured_env, env, "env as read by the text scan");
    // The config file is the ConfigMap's key, at the path given to --config.
    let mount = &c["volumeMounts"][0];
    let volume = &pod["volumes"][0];
    assert_eq!(mount["name"], volume["name"]);
    let item = &volume["configMap"]["items"][0];
    assert_eq!(
        Path::new(mount["mountPath"].as_str().unwrap()).join(item["path"].as_str().unwrap()),
        Path::new(CONFIG_PATH)
    );
    assert_eq!(volume["configMap"]["name"], cm["metadata"]["name"]);
    assert!(cm["data"][item["key"].as_str().unwrap()].is_string());
    // The data directory is the PersistentVolumeClaim, mounted where
    // durability.dir points.
    let pvc = yaml_doc("deploy/kubernetes/pvc.yaml").expect("pvc.yaml parses");
    assert_eq!(pvc["kind"], "PersistentVolumeClaim");
    let data_mount = &c["volumeMounts"][1];
    let data_volume = &pod["volumes"][1];
    assert_eq!(data_mount["name"], data_volume["name"]);
    assert_eq!(
        data_volume["persistentVolumeClaim"]["claimName"],
        pvc["metadata"]["name"]
    );
    assert_eq!(
        data_mount["mountPath"].as_str(),
        env.get("RINGWATCH__DURABILITY__DIR").map(String::as_str)
    );
    assert_eq!(pod["securityContext"]["fsGroup"].to_string(), docker_uid);

    // The Service selects the pod and names its ports like the container.
    assert_eq!(svc["kind"], "Service");
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(pod_labels.get(k), Some(v), "service selector {k}");
    }
    for p in svc["spec"]["ports"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        assert_eq!(p["port"].as_u64(), container_ports.get(name).copied());
        assert_eq!(p["targetPort"], name);
    }

    // The ServiceMonitor selects the Service, scrapes http-metrics, and the
    // job label comes out as "ringwatch", as in the alerts.
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["kind"], "ServiceMonitor");
    let svc_labels = svc["metadata"]["labels"].as_object().unwrap();
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(svc_labels.get(k), Some(v), "servicemonitor selector {k}");
    }
    let job_label = sm["spec"]["jobLabel"].as_str().unwrap();
    assert_eq!(svc_labels[job_label], "ringwatch");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");

    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert!(!rule["spec"]["groups"].as_array().unwrap().is_empty());
}

#[test]
fn prometheusrule_is_generated_from_the_rule_files() {
    if let Some(missing) = RULE_FILES.iter().find(|f| !root().join(f).exists()) {
        return skip(&format!(
            "{missing} does not exist yet: prometheusrule.yaml not compared"
        ));
    }
    if !tool_exists("bash") {
        return skip("bash not found: gen-prometheusrule.sh not run");
    }
    let o = run(Command::new("bash").args(["deploy/kubernetes/gen-prometheusrule.sh", "--check"]))
        .unwrap();
    assert!(
        o.status.success(),
        "deploy/kubernetes/prometheusrule.yaml is not what gen-prometheusrule.sh makes of \
         the rule files; run deploy/kubernetes/gen-prometheusrule.sh:\n{}",
        show(&o)
    );
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let rel = "deploy/systemd/ringwatch.service";
    let text = read(rel);
    let lines: BTreeSet<&str> = text.lines().map(str::trim).collect();
    for want in [
        "Type=simple",
        "DynamicUser=yes",
        "ExecStart=/usr/local/bin/ringwatch --config /etc/ringwatch/ringwatch.toml run",
        "Restart=on-failure",
        "RestartPreventExitStatus=64",
        "KillSignal=SIGTERM",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute=yes",
        "LockPersonality=yes",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=",
        "StateDirectory=ringwatch",
    ] {
        assert!(lines.contains(want), "{rel}: no `{want}`");
    }
    let stop = seconds(setting(&text, "TimeoutStopSec", '='));
    assert!(
        stop > defaults().shutdown.drain_timeout.as_secs_f64(),
        "TimeoutStopSec"
    );

    if !tool_exists("systemd-analyze") {
        return skip("systemd-analyze not found: ringwatch.service not verified");
    }
    // /usr/local/bin/ringwatch need not exist here: verify a copy that runs
    // the binary under test.
    let copy = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ringwatch.service");
    std::fs::write(&copy, text.replace("/usr/local/bin/ringwatch", BIN)).unwrap();
    let o = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy))
    .unwrap();
    assert!(o.status.success(), "systemd-analyze verify:\n{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !stderr.contains("ringwatch.service"),
        "systemd-analyze verify warns:\n{stderr}"
    );
}
