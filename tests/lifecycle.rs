//! Starting and stopping a server leaves no thread behind, and the threads
//! it starts are scheduled as configured. Alone in its own test binary, so
//! that no other test's threads are counted.

use std::time::Duration;

use iobus::{Server, ServerOptions};

/// The tests here count and inspect this process's threads: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

fn options() -> ServerOptions {
    ServerOptions::default()
}

#[test]
fn start_stop_cycles_and_drop_leave_no_threads_behind() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Threads of an earlier test's runtime may still be ending.
    let settled = || {
        let mut last = thread_count();
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(20));
            let now = thread_count();
            if now == last {
                return now;
            }
            last = now;
        }
        last
    };
    let before = settled();
    for _ in 0..5 {
        let server = Server::new(options());
        let addr = server.start("127.0.0.1:0").unwrap();
        assert!(server.local_addr() == Some(addr));
        // A second start on a running server is refused.
        assert!(server.start("127.0.0.1:0").is_err());
        server.stop();
        server.stop(); // idempotent
        let again = server.start("127.0.0.1:0").unwrap();
        assert_ne!(again.port(), 0);
        drop(server); // stops on drop
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while thread_count() > before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // At most as many: threads of an earlier test may have ended meanwhile.
    assert!(thread_count() <= before, "runtime threads ended: {} > {before}", thread_count());
}

/// Scheduling policy of each thread of this process named `name`.
fn policies_of(name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis; policy is field 41.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        if let Some(policy) = rest.split_whitespace().nth(41 - 3).and_then(|p| p.parse().ok()) {
            out.push(policy);
        }
    }
    out
}

/// The policies of the two worker threads, once both have started.
fn worker_policies() -> Vec<u32> {
    for _ in 0..100 {
        let p = policies_of("iobus-worker");
        if p.len() == 2 {
            return p;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    policies_of("iobus-worker")
}

#[test]
#[cfg(target_os = "linux")]
fn network_threads_use_batch_scheduling_unless_turned_off() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    let server = Server::new(options());
    server.start("127.0.0.1:0").unwrap();
    let batch = worker_policies();
    drop(server);
    assert_eq!(batch, vec![SCHED_BATCH; 2]);

    let plain = Server::new(ServerOptions { batch_scheduling: false, ..options() });
    plain.start("127.0.0.1:0").unwrap();
    let normal = worker_policies();
    drop(plain);
    assert_eq!(normal, vec![SCHED_OTHER; 2]);
    // Let the runtimes' threads finish before another test counts threads.
    std::thread::sleep(Duration::from_millis(100));
}
