//! Starting and stopping a server leaves no thread behind. Alone in its own
//! test binary, so that no other test's threads are counted.

use std::time::Duration;

use iobus::{Server, ServerOptions};

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

fn options() -> ServerOptions {
    ServerOptions::default()
}

#[test]
fn start_stop_cycles_and_drop_leave_no_threads_behind() {
    let before = thread_count();
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
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(thread_count(), before, "runtime threads ended");
}
