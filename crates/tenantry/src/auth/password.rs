//! Passwords: policy, and argon2id hashing on threads of its own at a lower OS priority.
//!
//! Hashing costs ~19 MiB and tens of milliseconds by design, so at most
//! `PASSWORD_HASH_CONCURRENCY` run at once, on that many dedicated threads outside the async
//! runtime, each at `SCHED_IDLE` priority (or `nice`d by [`HASH_NICENESS`]) so the kernel
//! runs request handling first; a login storm queues here (and is shed with 503 past a
//! bound) and uses the CPU the rest of the API leaves, instead of competing with it as
//! equals.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Common passwords refused at registration and change.
const COMMON: &str = include_str!("common_passwords.txt");

/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 8;
/// Longest accepted password, in characters (hashing cost is bounded too).
pub const MAX_LEN: usize = 128;

/// Why a password is refused, fit for a 422 problem.
pub fn check_policy(password: &str, email: &str) -> Result<(), String> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(format!("must be at least {MIN_LEN} characters"));
    }
    if len > MAX_LEN {
        return Err(format!("must be at most {MAX_LEN} characters"));
    }
    let lower = password.to_lowercase();
    if COMMON.lines().any(|common| common == lower) {
        return Err("is too common; choose a less predictable password".to_owned());
    }
    let email = email.to_lowercase();
    let local = email.split('@').next().unwrap_or_default();
    if lower == email || (!local.is_empty() && lower == local) {
        return Err("must not be your email address".to_owned());
    }
    Ok(())
}

/// The hashing failed or was shed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many hashes are already waiting; the client should retry.
    #[error("password hashing is saturated")]
    Busy,
    /// argon2 or the blocking task failed.
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Verified against when the account does not exist, so the answer takes as long as for
/// a real account: a hash with the same parameters of a random password nobody kept (and
/// a match would not count: the account does not exist). A constant, so starting does not
/// spend 19 MiB and an argon2 run on it.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$Uf/f50jQAzXx9EdKgO9mJw$odlgfc5XkPhapYBQww2aVidXdY7Fugjqsulr80eBpOY";

/// How much lower than the process the hashing threads run when `SCHED_IDLE` is refused
/// (Linux `nice` increment).
pub const HASH_NICENESS: i32 = 10;

/// Work for a hashing thread.
type HashJob = Box<dyn FnOnce() + Send>;

/// argon2id hasher with bounded concurrency.
#[derive(Clone)]
pub struct Hasher {
    /// Sends work to the hashing threads; they end when the last clone is dropped.
    work: std::sync::mpsc::Sender<HashJob>,
    permits: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
    max_waiting: usize,
}

fn argon2() -> Argon2<'static> {
    // OWASP: argon2id, m = 19 MiB, t = 2, p = 1. The constants are valid parameters.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_now(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Failed(e.to_string()))
}

/// Starts `n` hashing threads taking work from one queue, each at lower priority.
fn start_threads(n: usize) -> Result<std::sync::mpsc::Sender<HashJob>, HashError> {
    let (work, queue) = std::sync::mpsc::channel::<HashJob>();
    let queue = Arc::new(std::sync::Mutex::new(queue));
    for i in 0..n {
        let queue = queue.clone();
        std::thread::Builder::new()
            .name(format!("argon2-{i}"))
            .spawn(move || {
                lower_priority();
                loop {
                    // The lock is held only while waiting for the next job.
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(job) = next else { break };
                    // A panicking job drops its answer (the caller sees `Failed`); the
                    // thread lives on.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .map_err(|e| HashError::Failed(format!("cannot start a hashing thread: {e}")))?;
    }
    Ok(work)
}

/// Moves the calling thread to Linux's `SCHED_IDLE` policy: it runs only on CPU time no
/// normal thread wants, and a waking request thread preempts it at once (a `nice`d thread
/// keeps the CPU until the scheduler's wake-up granularity runs out, which is what a
/// request's tail latency sees). If that is refused, the thread is `nice`d by
/// [`HASH_NICENESS`] instead (Linux keeps a nice value per thread). Elsewhere, or if both
/// are refused, hashing runs at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain system calls on the calling thread (pid 0 / its own tid); `param`
        // outlives the call.
        let idle = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 };
        if idle {
            return;
        }
        // SAFETY: as above, with no pointers.
        let refused = unsafe {
            let tid = libc::syscall(libc::SYS_gettid);
            match libc::id_t::try_from(tid) {
                Ok(tid) => libc::setpriority(libc::PRIO_PROCESS, tid, HASH_NICENESS) != 0,
                Err(_) => true,
            }
        };
        if refused {
            tracing::warn!("cannot lower the priority of a password hashing thread");
        }
    }
}

impl Hasher {
    /// A hasher running at most `concurrency` hashes at once.
    pub fn new(concurrency: usize) -> Result<Self, HashError> {
        Ok(Self {
            work: start_threads(concurrency.max(1))?,
            permits: Arc::new(Semaphore::new(concurrency)),
            queued: Arc::default(),
            max_waiting: concurrency * 64,
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let queued = QueueSlot::take(&self.queued, self.max_waiting).ok_or(HashError::Busy)?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError::Failed(e.to_string()))?;
        drop(queued);
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move || {
            let _ = answer.send(work());
        });
        self.work
            .send(job)
            .map_err(|_| HashError::Failed("the hashing threads stopped".to_owned()))?;
        answered
            .await
            .map_err(|_| HashError::Failed("a hashing job panicked".to_owned()))
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.run(move || hash_now(&password)).await?
    }

    /// Checks `password` against `stored`; with no stored hash, spends the same time on
    /// a dummy and answers false.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let exists = stored.is_some();
        let hash = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let ok = self
            .run(move || {
                match PasswordHash::new(&hash) {
                    Ok(parsed) => argon2()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok(),
                    Err(err) => {
                        // No password matches a hash that cannot be read: refused, and said.
                        tracing::error!(error = %err, "a stored password hash is corrupt");
                        false
                    }
                }
            })
            .await?;
        Ok(ok && exists)
    }
}

/// A place in the hashing queue, given back when dropped (also when the request is
/// cancelled while waiting).
struct QueueSlot<'a>(&'a AtomicUsize);

impl<'a> QueueSlot<'a> {
    fn take(queued: &'a AtomicUsize, max: usize) -> Option<Self> {
        if queued.fetch_add(1, Ordering::SeqCst) >= max {
            queued.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Self(queued))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(check_policy("short", "a@b.c").is_err());
        assert!(
            check_policy("Password123", "a@b.c").is_err(),
            "common, any case"
        );
        assert!(check_policy("alice.smith", "alice.smith@example.com").is_err());
        assert!(check_policy(&"x".repeat(129), "a@b.c").is_err());
        assert!(check_policy("correct horse battery", "a@b.c").is_ok());
    }

    #[tokio::test]
    async fn hashes_with_argon2id_and_verifies() {
        let hasher = Hasher::new(1).unwrap();
        let hash = hasher.hash("correct horse battery".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(hasher
            .verify("correct horse battery".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify("wrong horse battery".into(), Some(hash))
            .await
            .unwrap());
        assert!(!hasher.verify("anything at all".into(), None).await.unwrap());
    }

    #[test]
    fn the_dummy_costs_what_a_real_hash_costs() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let real = hash_now("correct horse battery").unwrap();
        let real = PasswordHash::new(&real).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_lower_priority() {
        let hasher = Hasher::new(1).unwrap();
        let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let (policy, nice) = hasher
            .run(|| unsafe {
                (
                    libc::sched_getscheduler(0),
                    libc::getpriority(libc::PRIO_PROCESS, 0),
                )
            })
            .await
            .unwrap();
        // SCHED_IDLE, or (where that is refused) a higher nice value.
        assert!(
            policy == libc::SCHED_IDLE || nice == (own + HASH_NICENESS).min(19),
            "policy {policy}, nice {nice}"
        );
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
    }
}
