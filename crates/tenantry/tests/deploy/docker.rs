//! The Docker engine and the images the suite builds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn required() -> bool {
    std::env::var("TENANTRY_TEST_REQUIRE_DOCKER").is_ok_and(|v| v == "1" || v == "true")
}

/// Skips (`None`) or fails, as the run requires.
fn unavailable<T>(why: &str) -> Option<T> {
    assert!(
        !required(),
        "Docker is required (TENANTRY_TEST_REQUIRE_DOCKER) but {why}"
    );
    eprintln!("SKIPPED docker: {why}");
    None
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A short random suffix for names that must not collide with another run's.
pub fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The engine, the compose command and the inputs of the images.
pub struct Docker {
    /// `docker-compose` or `docker compose`.
    compose: Vec<String>,
    base: String,
    binary: PathBuf,
}

impl Docker {
    /// Everything the suite needs, or `None` (skipped) when something is missing.
    pub fn find() -> Option<Self> {
        match Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return unavailable(&format!(
                    "no Docker engine answers: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
            Err(err) => return unavailable(&format!("no docker command: {err}")),
        }
        let compose = [vec!["docker", "compose"], vec!["docker-compose"]]
            .into_iter()
            .find(|cmd| {
                Command::new(cmd[0])
                    .args(&cmd[1..])
                    .arg("version")
                    .output()
                    .is_ok_and(|out| out.status.success())
            })
            .map(|cmd| cmd.into_iter().map(str::to_owned).collect());
        let Some(compose) = compose else {
            return unavailable("neither `docker compose` nor `docker-compose` is installed");
        };
        let base = std::env::var("TENANTRY_TEST_DOCKER_BASE")
            .unwrap_or_else(|_| "tenantry-base:bookworm".to_owned());
        let probe = Command::new("docker")
            .args(["image", "inspect", &base])
            .output()
            .unwrap();
        if !probe.status.success() {
            return unavailable(&format!(
                "no base image {base} (bash deploy/test/base-image.sh builds one)"
            ));
        }
        let binary = std::env::var("TENANTRY_TEST_DOCKER_BINARY")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo_root().join("target/release/tenantry"));
        if !binary.exists() {
            return unavailable(&format!(
                "no release binary at {} (cargo build --release)",
                binary.display()
            ));
        }
        Some(Self {
            compose,
            base,
            binary,
        })
    }

    /// The repository's `Dockerfile`, target `prebuilt`, on the base image, from the
    /// release binary (stripped, as the toolchain build does). Reports the image's size.
    /// The image is removed when the returned tag is dropped.
    pub fn build_tenantry_image(&self) -> Image {
        let context = tempfile::tempdir().unwrap();
        let binary = context.path().join("tenantry");
        std::fs::copy(&self.binary, &binary).unwrap();
        let stripped = Command::new("strip")
            .arg(&binary)
            .status()
            .is_ok_and(|s| s.success());
        for file in ["Dockerfile", "Cargo.lock"] {
            std::fs::copy(repo_root().join(file), context.path().join(file)).unwrap();
        }
        let tag = format!("tenantry-test:{}", suffix());
        self.build(&[
            "--target",
            "prebuilt",
            "--build-arg",
            &format!("RUNTIME_IMAGE={}", self.base),
            "--build-arg",
            "BINARY=tenantry",
            "-t",
            &tag,
            context.path().to_str().unwrap(),
        ]);
        eprintln!(
            "image {tag}: {} MB ({} MB of it the base image {}; binary {} MB{})",
            self.size_mb(&tag),
            self.size_mb(&self.base),
            self.base,
            std::fs::metadata(&binary).unwrap().len() / 1_000_000,
            if stripped { ", stripped" } else { "" }
        );
        Image(tag)
    }

    /// The stand-ins for the official postgres, redis and caddy images
    /// (`deploy/test/services.Dockerfile`), built once per content of its inputs.
    pub fn build_services_image(&self) -> String {
        let dir = repo_root().join("deploy/test");
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for file in ["services.Dockerfile", "entrypoint.sh"] {
            std::hash::Hash::hash(&std::fs::read(dir.join(file)).unwrap(), &mut hasher);
        }
        std::hash::Hash::hash(&self.base, &mut hasher);
        let tag = format!(
            "tenantry-test/services:{:016x}",
            std::hash::Hasher::finish(&hasher)
        );
        // Stand-ins built from earlier versions of the inputs are not needed any more.
        let listed = docker(&[
            "image",
            "ls",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "tenantry-test/services",
        ]);
        let mut exists = false;
        for old in listed.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if old == tag {
                exists = true;
            } else {
                let _ = run(Command::new("docker").args(["rmi", old]));
            }
        }
        if !exists {
            self.build(&[
                "--network",
                "host",
                "-f",
                dir.join("services.Dockerfile").to_str().unwrap(),
                "--build-arg",
                &format!("BASE_IMAGE={}", self.base),
                "-t",
                &tag,
                dir.to_str().unwrap(),
            ]);
        }
        tag
    }

    fn build(&self, args: &[&str]) {
        // The classic builder: BuildKit needs the buildx plug-in with newer clients.
        let out = Command::new("docker")
            .arg("build")
            .args(args)
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker build {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn size_mb(&self, image: &str) -> u64 {
        let out = docker(&["image", "inspect", "--format", "{{.Size}}", image]);
        out.trim().parse::<u64>().unwrap() / 1_000_000
    }

    /// `docker run -d …`; the container's id.
    pub fn run_detached(&self, args: &[&str]) -> String {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        docker(&all).trim().to_owned()
    }

    /// Waits until the container's health check settles; its last status.
    pub fn wait_health(&self, container: &str, within: Duration) -> String {
        let started = Instant::now();
        loop {
            let status = docker(&["inspect", "--format", "{{.State.Health.Status}}", container])
                .trim()
                .to_owned();
            if status != "starting" || started.elapsed() > within {
                return status;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs a command in the container; its standard output.
    pub fn exec(&self, container: &str, command: &[&str]) -> String {
        let mut all = vec!["exec", container];
        all.extend_from_slice(command);
        docker(&all)
    }

    /// The container's logs (for failure messages).
    pub fn logs(&self, container: &str) -> String {
        let out = run(Command::new("docker").args(["logs", "--tail", "50", container]));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// A compose command for `project` on the repository's `files`, with `env_file` in
    /// place of a `.env` beside them.
    pub fn compose_command(&self, project: &str, files: &[&str], env_file: &Path) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..]).args(["-p", project]);
        for file in files {
            cmd.args(["-f", file]);
        }
        cmd.arg("--env-file")
            .arg(env_file)
            .current_dir(repo_root())
            .stdin(Stdio::null());
        cmd
    }
}

/// An image this run built, removed when dropped.
pub struct Image(pub String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = run(Command::new("docker").args(["rmi", "-f", &self.0]));
    }
}

/// Removes a container when dropped.
pub struct Removal<'a> {
    docker: &'a Docker,
    container: String,
}

impl<'a> Removal<'a> {
    /// Removes `container` when dropped (with its volumes).
    pub fn container(docker: &'a Docker, container: &str) -> Self {
        Self {
            docker,
            container: container.to_owned(),
        }
    }
}

impl Drop for Removal<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.docker.logs(&self.container));
        }
        let _ = run(Command::new("docker").args(["rm", "-f", "-v", &self.container]));
    }
}

/// `docker …`, which must succeed; its standard output.
pub fn docker(args: &[&str]) -> String {
    let out = run(Command::new("docker").args(args));
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}
