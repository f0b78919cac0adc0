//! `compose.yaml` with `deploy/compose.host.yaml`: PostgreSQL, Redis, two instances, a
//! worker and the balancer, each on a free loopback port of the host's network.

use std::time::{Duration, Instant};

use crate::docker::{free_port, suffix, Docker};

/// A running stack, taken down (with its volumes) when dropped.
pub struct Stack<'a> {
    docker: &'a Docker,
    project: String,
    env_file: tempfile::NamedTempFile,
    vars: Vec<(String, String)>,
    lb_port: u16,
    api_ports: [u16; 2],
}

impl<'a> Stack<'a> {
    /// Brings the stack up on the images given and waits until every instance is ready.
    pub async fn up(docker: &'a Docker, image: &str, services: &str) -> Self {
        let (lb_port, api_ports) = (free_port(), [free_port(), free_port()]);
        let vars = vec![
            ("TENANTRY_IMAGE".to_owned(), image.to_owned()),
            ("POSTGRES_IMAGE".to_owned(), services.to_owned()),
            ("REDIS_IMAGE".to_owned(), services.to_owned()),
            ("CADDY_IMAGE".to_owned(), services.to_owned()),
            ("TENANTRY_PORT".to_owned(), lb_port.to_string()),
            ("TENANTRY_API_1_PORT".to_owned(), api_ports[0].to_string()),
            ("TENANTRY_API_2_PORT".to_owned(), api_ports[1].to_string()),
            ("TENANTRY_DB_PORT".to_owned(), free_port().to_string()),
            ("TENANTRY_REDIS_PORT".to_owned(), free_port().to_string()),
            (
                "PUBLIC_BASE_URL".to_owned(),
                format!("http://127.0.0.1:{lb_port}"),
            ),
        ];
        let stack = Self {
            docker,
            project: format!("tenantrytest{}", suffix()),
            // Compose reads a `.env` beside compose.yaml; the suite's settings are its own.
            env_file: tempfile::NamedTempFile::new().unwrap(),
            vars,
            lb_port,
            api_ports,
        };
        // The default (bridge) file on its own is valid too.
        let out = stack
            .docker
            .compose_command(&stack.project, &["compose.yaml"], stack.env_file.path())
            .args(["config", "-q"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stack.compose(&["up", "-d"]);
        stack.wait_ready().await;
        stack
    }

    /// Runs a compose sub-command, which must succeed; its output.
    pub fn compose(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "compose {args:?}: {text}");
        text
    }

    /// The balancer.
    pub fn lb_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.lb_port)
    }

    /// The two instances, directly.
    pub fn instance_urls(&self) -> [String; 2] {
        self.api_ports.map(|p| format!("http://127.0.0.1:{p}"))
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let mut urls: Vec<String> = self
            .instance_urls()
            .iter()
            .map(|u| format!("{u}/ready"))
            .collect();
        urls.push(format!("{}/health", self.lb_url()));
        let started = Instant::now();
        for url in urls {
            loop {
                let ok = client
                    .get(&url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if ok {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(180),
                    "{url} never answered 200:\n{}",
                    self.logs()
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }

    /// Requests to the items endpoint each instance served (from its `/metrics`).
    pub async fn data_requests_served(&self) -> Vec<u64> {
        let mut served = Vec::new();
        for base in self.instance_urls() {
            let text = reqwest::get(format!("{base}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let total: f64 = text
                .lines()
                .filter(|l| l.starts_with("http_requests_total{") && l.contains("/data\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            // Prometheus counters are floats in the text format; these are small integers.
            served.push(format!("{total:.0}").parse().unwrap());
        }
        served
    }

    /// A compose command on both files with the suite's settings.
    fn command(&self) -> std::process::Command {
        let mut cmd = self.docker.compose_command(
            &self.project,
            &["compose.yaml", "deploy/compose.host.yaml"],
            self.env_file.path(),
        );
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    fn logs(&self) -> String {
        let out = self
            .command()
            .args(["logs", "--no-color", "--tail", "40"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = self
            .command()
            .args(["down", "-v", "--remove-orphans", "--timeout", "10"])
            .output();
    }
}
